//! Repair: verify every file against the manifest's checksum; a damaged file is moved aside
//! as `*.corrupt` and rebuilt from the WAL when the WAL still holds its LSN range.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use omen_wal::{Lsn, Wal};

use crate::buffer::TableBuffer;
use crate::change::{self, Entry, RowChange, TableSchema};
use crate::error::{ReplicatorError, Result};
use crate::manifest::{Manifest, TableManifest};
use crate::replicator::SharedView;
use crate::storage;

/// What [`crate::WalReplicator::repair`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Files whose checksum was verified.
    pub checked: usize,
    /// Damaged files rebuilt from the WAL (their damaged bytes are kept as `*.corrupt`).
    pub rebuilt: Vec<PathBuf>,
    /// Damaged files that could not be rebuilt, with the reason: their rows are lost from
    /// the Parquet tier and must come from a backup or the row tiers.
    pub unrecoverable: Vec<(PathBuf, String)>,
}

/// Checks every file; rebuilds what it can and commits the result.
pub(crate) fn repair(view: SharedView<'_>, wal: &Wal) -> Result<RepairReport> {
    let mut report = RepairReport::default();
    let mut manifest = (*view.manifest).clone();
    let mut next_file_id = manifest.next_file_id;
    for (name, table) in manifest.tables.iter_mut() {
        for index in 0..table.files.len() {
            let meta = table.files[index].clone();
            let path = Manifest::file_path(view.root, table, &meta);
            report.checked += 1;
            let reason = match storage::verify_file(&path, &meta) {
                Ok(_) => continue,
                Err(ReplicatorError::FileCorrupt { reason, .. }) => reason,
                Err(ReplicatorError::Io { source, .. }) => source.to_string(),
                Err(other) => return Err(other),
            };
            if wal.first_lsn().0 > meta.min_lsn {
                report.unrecoverable.push((
                    path,
                    format!(
                        "{reason}; the WAL starts at LSN {}, after the file's first LSN {}",
                        wal.first_lsn(),
                        meta.min_lsn
                    ),
                ));
                continue;
            }
            let rebuilt = rebuild(wal, name, table, meta.min_lsn, meta.max_lsn, index > 0)?;
            let mut aside = path.clone().into_os_string();
            aside.push(".corrupt");
            if path.exists() {
                std::fs::rename(&path, &aside)
                    .map_err(|e| ReplicatorError::io("quarantine damaged file", &path, e))?;
            }
            let file_id = next_file_id;
            next_file_id += 1;
            let file_name = format!("{file_id:012}-rebuilt.parquet");
            let new_path = view.root.join(&table.dir).join(&file_name);
            let mut meta = storage::write_file(&new_path, &file_name, &rebuilt, table.schema.key)?;
            // One version per key: exact only for snapshots at or above its newest version.
            meta.complete_from = meta.max_lsn;
            table.files[index] = meta;
            report.rebuilt.push(path);
        }
    }
    if !report.rebuilt.is_empty() {
        manifest.next_file_id = next_file_id;
        (view.commit)(manifest, Vec::new())?;
    }
    Ok(report)
}

/// The table's row changes with LSNs in `min..=max`, re-read from the WAL, resolved to one
/// version per key (keeping deletes unless nothing older exists) in the current stored form.
fn rebuild(
    wal: &Wal,
    name: &str,
    table: &TableManifest,
    min: u64,
    max: u64,
    keep_deletes: bool,
) -> Result<arrow::record_batch::RecordBatch> {
    let stored = Arc::new(table.schema.stored_arrow_schema());
    // Columns are only ever appended: a row with n values belongs to the first n columns.
    let mut buffers: BTreeMap<usize, TableBuffer> = BTreeMap::new();
    let width = table.schema.columns.len();
    let buffer_for = |buffers: &mut BTreeMap<usize, TableBuffer>, n: usize| {
        buffers.entry(n).or_insert_with(|| {
            TableBuffer::new(TableSchema {
                columns: table.schema.columns[..n.min(width)].to_vec(),
                key: table.schema.key,
            })
        });
    };
    let mut groups = crate::group::GroupFilter::new();
    for record in wal.reader_of_written(Lsn(min))? {
        let record = record?;
        let lsn = record.lsn.0;
        if lsn > max {
            break;
        }
        if !groups.counts(wal, lsn, &record.payload)? {
            continue;
        }
        let entries = change::decode(&record.payload)
            .map_err(|source| ReplicatorError::BadRecord { lsn, source })?;
        for entry in entries {
            let Entry::Rows { table: t, rows } = entry else {
                continue;
            };
            if t != name {
                continue;
            }
            for row in rows {
                match row.map_err(|source| ReplicatorError::BadRecord { lsn, source })? {
                    RowChange::Upsert(values) => {
                        let n = values.len();
                        buffer_for(&mut buffers, n);
                        if let Some(buffer) = buffers.get_mut(&n) {
                            buffer.upsert(name, lsn, 0, values)?;
                        }
                    }
                    RowChange::Delete(key) => {
                        buffer_for(&mut buffers, width);
                        if let Some(buffer) = buffers.get_mut(&width) {
                            buffer.delete(lsn, 0, key);
                        }
                    }
                }
            }
        }
    }
    let mut batches = Vec::new();
    for buffer in buffers.values_mut() {
        batches.push(storage::adapt(&buffer.seal()?, &stored)?);
    }
    storage::resolve(&batches, &stored, table.schema.key, u64::MAX, keep_deletes)
}
