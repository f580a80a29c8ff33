//! Compaction: merges a run of small files of a table into one, keeping only the latest
//! version of each key, and swaps it in through the manifest. Deletes are dropped only when
//! the run starts at the table's oldest file (nothing older is left for them to shadow).

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::Result;
use crate::manifest::Manifest;
use crate::replicator::SharedView;
use crate::storage;

/// Compacts the first table that has enough small files; at most one run per call.
pub(crate) fn maybe_compact(view: SharedView<'_>) -> Result<()> {
    let target = view.options.compaction_target_rows as u64;
    let trigger = view.options.compaction_trigger_files.max(2);
    for (name, table) in &view.manifest.tables {
        let small = table.files.iter().filter(|f| f.rows < target).count();
        if small < trigger {
            continue;
        }
        // The first run of consecutive small files, up to the target size.
        let Some(start) = table.files.iter().position(|f| f.rows < target) else {
            continue;
        };
        let mut end = start;
        let mut rows = 0;
        while end < table.files.len() && table.files[end].rows < target && rows < target {
            rows += table.files[end].rows;
            end += 1;
        }
        if end - start < 2 {
            continue;
        }
        let stored = Arc::new(table.schema.stored_arrow_schema());
        let mut batches = Vec::new();
        for file in &table.files[start..end] {
            let path = Manifest::file_path(view.root, table, file);
            batches.extend(storage::read_file(&path, file, &stored)?);
        }
        let merged = storage::resolve(&batches, &stored, table.schema.key, u64::MAX, start > 0)?;
        let mut manifest = (*view.manifest).clone();
        let file_id = manifest.next_file_id;
        manifest.next_file_id += 1;
        let obsolete: Vec<PathBuf> = table.files[start..end]
            .iter()
            .map(|f| Manifest::file_path(view.root, table, f))
            .collect();
        let replacement = if merged.num_rows() == 0 {
            None
        } else {
            let file_name = format!("{file_id:012}.parquet");
            let path = view.root.join(&table.dir).join(&file_name);
            Some(storage::write_file(
                &path,
                &file_name,
                &merged,
                table.schema.key,
            )?)
        };
        let Some(entry) = manifest.tables.get_mut(name) else {
            continue;
        };
        entry.files.splice(start..end, replacement);
        return (view.commit)(manifest, obsolete);
    }
    Ok(())
}
