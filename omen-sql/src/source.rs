//! What a snapshot scan reads: the table's Parquet files (oldest first) and its unflushed rows,
//! as the facade hands them over; and opening one file after checking its checksum.

use std::any::Any;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::metadata::RowGroupMetaData;
use datafusion::parquet::file::statistics::Statistics;

use crate::error::ScanError;

/// One Parquet file of a snapshot, with what the manifest says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Where it is.
    pub path: PathBuf,
    /// Row versions (deletes included).
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// CRC32C of the whole file.
    pub crc32c: u32,
    /// Smallest key.
    pub min_key: i64,
    /// Largest key.
    pub max_key: i64,
    /// Smallest `_lsn`.
    pub min_lsn: u64,
    /// Largest `_lsn`.
    pub max_lsn: u64,
    /// Each key appears in at most one row of the file (the writer checked), so versions
    /// need no resolving within it.
    pub distinct_keys: bool,
}

/// A table at a snapshot LSN in stored form: files whose rows are sorted by (key, `_lsn`) and
/// whose LSNs never go down from one file to the next, then the rows not yet in a file.
///
/// Stored form: the table's columns, then `_lsn` (`UInt64`) and `_op` (`UInt8`).
#[derive(Clone)]
pub struct SnapshotSource {
    /// The snapshot LSN: versions above it are ignored.
    pub lsn: u64,
    /// The stored-form Arrow schema at the snapshot (files written before a column was added
    /// lack it; it reads as NULL).
    pub stored_schema: SchemaRef,
    /// The key column's index.
    pub key: usize,
    /// The `_op` value of an upsert (anything else is a delete).
    pub op_upsert: u8,
    /// The files, oldest first.
    pub files: Vec<SnapshotFile>,
    /// Rows not in `files`, all with `_lsn <= lsn`, in stored form and LSN order.
    pub delta: Vec<RecordBatch>,
    /// Held for as long as the scan's plan lives: keeps the files from being deleted (the
    /// replicator deletes replaced files only when no snapshot holds their manifest).
    pub keep_alive: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for SnapshotSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotSource")
            .field("lsn", &self.lsn)
            .field("files", &self.files.len())
            .field("delta_batches", &self.delta.len())
            .finish_non_exhaustive()
    }
}

/// Reads a file whole and checks its size and CRC32C against the manifest before anything
/// decodes it; returns a reader builder over the bytes in memory.
pub(crate) fn open_file(
    file: &SnapshotFile,
) -> Result<ParquetRecordBatchReaderBuilder<Bytes>, ScanError> {
    let bytes = std::fs::read(&file.path).map_err(|source| ScanError::Io {
        path: file.path.clone(),
        source,
    })?;
    if bytes.len() as u64 != file.bytes {
        return Err(ScanError::FileCorrupt {
            path: file.path.clone(),
            reason: format!("{} bytes, the manifest says {}", bytes.len(), file.bytes),
        });
    }
    let crc = crc32c::crc32c(&bytes);
    if crc != file.crc32c {
        return Err(ScanError::FileCorrupt {
            path: file.path.clone(),
            reason: format!("CRC32C {crc:08x}, the manifest says {:08x}", file.crc32c),
        });
    }
    ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).map_err(|e| ScanError::Decode {
        path: file.path.clone(),
        reason: e.to_string(),
    })
}

/// A row group's min and max of an `Int64` column, if its statistics hold them.
pub(crate) fn i64_range(group: &RowGroupMetaData, column: usize) -> Option<(i64, i64)> {
    match group.columns().get(column)?.statistics()? {
        Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        _ => None,
    }
}

/// A row group's min and max of a small unsigned column stored as `INT32` (`_op`).
pub(crate) fn i32_range(group: &RowGroupMetaData, column: usize) -> Option<(i32, i32)> {
    match group.columns().get(column)?.statistics()? {
        Statistics::Int32(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        _ => None,
    }
}
