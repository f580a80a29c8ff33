//! Parquet files: sort, write with a checksum, verify and read back, adapt old files to a
//! newer schema, and resolve row versions.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, UInt32Array, UInt64Array, new_null_array,
};
use arrow::compute::{
    SortColumn, concat_batches, filter_record_batch, lexsort_to_indices, take_record_batch,
};
use arrow::datatypes::{Int64Type, SchemaRef, UInt8Type, UInt64Type};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::change::{LSN_COLUMN, OP_COLUMN, OP_UPSERT};
use crate::error::{ReplicatorError, Result};
use crate::manifest::FileMeta;

/// Sorts a stored-form batch by key, then LSN, keeping the order of the batch among equal
/// pairs (one record may change a key twice: the later change wins). A batch already in that
/// order (keys that arrive ascending, the common case of a backlog or of merging files whose
/// key ranges follow each other) is returned as is: the sort would be the identity.
pub(crate) fn sort_by_key(batch: &RecordBatch, key: usize) -> Result<RecordBatch> {
    if is_sorted_by_key(batch, key) {
        return Ok(batch.clone());
    }
    sort_by_key_always(batch, key)
}

/// The sort itself, without the sortedness check (tests compare the two paths).
///
/// Why not `lexsort_to_indices`: its comparator goes through a dynamic closure per column per
/// comparison, and sorting was a quarter of the writer's CPU. The (key, `_lsn`, position)
/// triples sort as plain integers here; the position makes every triple distinct, so the
/// unstable sort gives the stable order.
pub(crate) fn sort_by_key_always(batch: &RecordBatch, key: usize) -> Result<RecordBatch> {
    let keys = batch.column(key).as_primitive::<Int64Type>();
    let lsns = batch
        .column(batch.num_columns() - 2)
        .as_primitive::<UInt64Type>();
    let (Ok(rows), 0) = (u32::try_from(batch.num_rows()), keys.null_count()) else {
        return lexsort_by_key(batch, key);
    };
    let mut order: Vec<(i64, u64, u32)> = keys
        .values()
        .iter()
        .zip(lsns.values().iter())
        .zip(0..rows)
        .map(|((&k, &l), i)| (k, l, i))
        .collect();
    order.sort_unstable();
    let indices = UInt32Array::from_iter_values(order.into_iter().map(|(_, _, i)| i));
    Ok(take_record_batch(batch, &indices)?)
}

/// The general sort (NULL keys, which stored batches never have, or over `u32::MAX` rows).
fn lexsort_by_key(batch: &RecordBatch, key: usize) -> Result<RecordBatch> {
    let lsn = batch.num_columns() - 2;
    let position: ArrayRef = Arc::new(UInt64Array::from_iter_values(0..batch.num_rows() as u64));
    let columns = [
        SortColumn {
            values: Arc::clone(batch.column(key)),
            options: None,
        },
        SortColumn {
            values: Arc::clone(batch.column(lsn)),
            options: None,
        },
        SortColumn {
            values: position,
            options: None,
        },
    ];
    let indices = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(batch, &indices)?)
}

/// Whether the rows are in (key, `_lsn`) order already, equal pairs included (their batch
/// order is what the stable sort keeps). One pass over two columns; keys are never NULL.
pub(crate) fn is_sorted_by_key(batch: &RecordBatch, key: usize) -> bool {
    let keys = batch.column(key).as_primitive::<Int64Type>();
    let lsns = batch
        .column(batch.num_columns() - 2)
        .as_primitive::<UInt64Type>();
    if keys.null_count() > 0 {
        return false;
    }
    let (keys, lsns) = (keys.values(), lsns.values());
    keys.windows(2)
        .zip(lsns.windows(2))
        .all(|(k, l)| k[0] < k[1] || (k[0] == k[1] && l[0] <= l[1]))
}

/// Counts bytes and their CRC32C on the way to the file.
struct ChecksumWriter {
    file: File,
    crc: u32,
    bytes: u64,
    /// Bytes before this offset have been handed to the kernel's writeback.
    writeback_from: u64,
}

/// Bytes a file may accumulate before its writeback is started.
const WRITEBACK_CHUNK: u64 = 1 << 20;

impl Write for ChecksumWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.bytes += n as u64;
        // Why: the final fsync of a multi-megabyte file otherwise hands the disk all of it at
        // once, and the WAL's fsyncs queue behind it. Started a megabyte at a time, the
        // writeback interleaves with them and the final fsync has little left to do.
        if self.bytes - self.writeback_from >= WRITEBACK_CHUNK {
            start_writeback(&self.file, self.writeback_from, self.bytes);
            self.writeback_from = self.bytes;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Makes a written file durable (its data and size; its directory entry needs the
/// directory's fsync).
pub(crate) fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|e| ReplicatorError::io("fsync Parquet file", path, e))
}

/// Makes everything written to the file system holding `file` durable (`syncfs`): data,
/// metadata and directory entries of every file on it, with one journal commit.
#[cfg(target_os = "linux")]
#[expect(unsafe_code, reason = "syncfs is a C function")]
pub(crate) fn sync_filesystem(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs takes a file descriptor, which `file` keeps open for the call, and
    // touches no memory of ours.
    if unsafe { libc::syncfs(file.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Elsewhere: unsupported (the caller fsyncs file by file).
#[cfg(not(target_os = "linux"))]
pub(crate) fn sync_filesystem(_file: &File) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Starts the asynchronous writeback of bytes `from..to` of `file` (`sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`: it neither waits nor makes anything durable; the fsync that
/// follows does). A hint: errors are ignored.
#[cfg(target_os = "linux")]
#[expect(unsafe_code, reason = "sync_file_range is a C function")]
fn start_writeback(file: &File, from: u64, to: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(from), i64::try_from(to.saturating_sub(from)))
    else {
        return;
    };
    // SAFETY: the descriptor is open for the whole call (borrowed from `file`); the call takes
    // plain integers and touches no memory of ours.
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _from: u64, _to: u64) {}

/// Rows sampled to decide whether a column gets a dictionary.
const DICTIONARY_SAMPLE_ROWS: usize = 4096;

/// Writer properties for `batch`: zstd, page statistics, one row group, delta encoding for the
/// key and `_lsn` (the key strictly increases in a file, and LSNs span a narrow range: 8% fewer
/// bytes than plain + zstd on the benchmark's rows), and a dictionary only for the columns
/// where it pays. A dictionary costs a hash-table probe per value on every
/// write; it saves bytes only when values repeat. The key and `_lsn` are unique per version,
/// so they never get one; `_op` always does (two values). Other columns are sampled: a
/// dictionary when at most a quarter of the sampled values are distinct.
fn properties(batch: &RecordBatch, key: usize) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(1 << 20));
    let lsn = batch.num_columns() - 2;
    for (i, field) in batch.schema().fields().iter().enumerate() {
        let dictionary = if i == key || i == lsn {
            false
        } else if i == lsn + 1 {
            true
        } else {
            repeats_enough(batch.column(i))
        };
        let path = parquet::schema::types::ColumnPath::from(field.name().as_str());
        builder = builder.set_column_dictionary_enabled(path.clone(), dictionary);
        if i == key || i == lsn {
            builder = builder.set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
        }
    }
    builder.build()
}

/// Whether at most a quarter of a sample of the column's values (evenly spread) are distinct.
/// Counted by sorting the sampled values, not hashing them: on the small files of a steady
/// trickle, hashing every value of every column was 6% of the replicator's CPU.
fn repeats_enough(column: &ArrayRef) -> bool {
    use arrow::datatypes::DataType as Arrow;
    let n = column.len();
    if n == 0 {
        return false;
    }
    let step = n.div_ceil(DICTIONARY_SAMPLE_ROWS).max(1);
    let sample = (0..n).step_by(step);
    let sampled = sample.len();
    let distinct = match column.data_type() {
        Arrow::Utf8 => {
            let strings = column.as_string::<i32>();
            let values: Vec<&[u8]> = sample
                .filter(|&i| strings.is_valid(i))
                .map(|i| strings.value(i).as_bytes())
                .collect();
            count_distinct(values)
        }
        Arrow::Boolean => return true,
        _ => {
            // Fixed-width values: compare their bytes.
            let Some(width) = column.data_type().primitive_width() else {
                return false;
            };
            let data = column.to_data();
            let Some(values) = data.buffers().first() else {
                return false;
            };
            let at = |i: usize| (data.offset() + i) * width;
            let values: Vec<&[u8]> = sample
                .filter(|&i| column.is_valid(i))
                .filter_map(|i| values.get(at(i)..at(i + 1)))
                .collect();
            count_distinct(values)
        }
    };
    distinct * 4 <= sampled
}

/// How many distinct values `values` holds.
fn count_distinct(mut values: Vec<&[u8]>) -> usize {
    values.sort_unstable();
    values.dedup();
    values.len()
}

/// Writes a sorted stored-form batch to a new file at `path`, without an fsync: the manifest
/// that first lists the file fsyncs it before it is stored (see `sync_file`).
pub(crate) fn write_file(
    path: &Path,
    name: &str,
    batch: &RecordBatch,
    key: usize,
) -> Result<FileMeta> {
    let parquet_error = |source| ReplicatorError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file =
        File::create(path).map_err(|e| ReplicatorError::io("create Parquet file", path, e))?;
    let sink = ChecksumWriter {
        file,
        crc: 0,
        bytes: 0,
        writeback_from: 0,
    };
    let mut writer = ArrowWriter::try_new(sink, batch.schema(), Some(properties(batch, key)))
        .map_err(parquet_error)?;
    writer.write(batch).map_err(parquet_error)?;
    let sink = writer.into_inner().map_err(parquet_error)?;
    let keys = batch.column(key).as_primitive::<Int64Type>();
    let lsns = batch
        .column(batch.num_columns() - 2)
        .as_primitive::<UInt64Type>();
    let min_key = arrow::compute::min(keys).unwrap_or(0);
    let max_key = arrow::compute::max(keys).unwrap_or(0);
    let min_lsn = arrow::compute::min(lsns).unwrap_or(0);
    let max_lsn = arrow::compute::max(lsns).unwrap_or(0);
    // The batch is sorted by (key, _lsn): keys are distinct when they strictly increase.
    let distinct_keys = keys.values().windows(2).all(|pair| pair[0] < pair[1]);
    Ok(FileMeta {
        name: name.to_string(),
        rows: batch.num_rows() as u64,
        bytes: sink.bytes,
        crc32c: sink.crc,
        min_key,
        max_key,
        min_lsn,
        max_lsn,
        distinct_keys,
        complete_from: 0,
    })
}

/// Reads a file and checks its size and CRC32C against the manifest.
pub(crate) fn verify_file(path: &Path, meta: &FileMeta) -> Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).map_err(|e| ReplicatorError::io("read Parquet file", path, e))?;
    if bytes.len() as u64 != meta.bytes {
        return Err(ReplicatorError::FileCorrupt {
            path: path.to_path_buf(),
            reason: format!("{} bytes, the manifest says {}", bytes.len(), meta.bytes),
        });
    }
    let crc = crc32c::crc32c(&bytes);
    if crc != meta.crc32c {
        return Err(ReplicatorError::FileCorrupt {
            path: path.to_path_buf(),
            reason: format!("CRC32C {crc:08x}, the manifest says {:08x}", meta.crc32c),
        });
    }
    Ok(bytes)
}

/// Reads a file after checking its size and checksum against the manifest, and adapts it to
/// `schema` (columns added since it was written read as NULL).
pub(crate) fn read_file(
    path: &Path,
    meta: &FileMeta,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let bytes = verify_file(path, meta)?;
    let parquet_error = |source| ReplicatorError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .map_err(parquet_error)?
        .with_batch_size(64 << 10)
        .build()
        .map_err(parquet_error)?;
    let mut batches = Vec::new();
    for batch in reader {
        batches.push(adapt(&batch?, schema)?);
    }
    Ok(batches)
}

/// Reorders a batch's columns to `schema` by name, filling missing ones with NULL.
pub(crate) fn adapt(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| match batch.schema().index_of(field.name()) {
            Ok(i) => Arc::clone(batch.column(i)),
            Err(_) => new_null_array(field.data_type(), batch.num_rows()),
        })
        .collect();
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// Resolves row versions: of each key's versions with `_lsn <= snapshot`, keeps the latest,
/// and drops it if it is a delete (unless `keep_deletes`, for compactions that must keep
/// shadowing older files). Returns the rows sorted by key, still in stored form.
pub(crate) fn resolve(
    batches: &[RecordBatch],
    schema: &SchemaRef,
    key: usize,
    snapshot: u64,
    keep_deletes: bool,
) -> Result<RecordBatch> {
    resolve_versions(batches, schema, key, snapshot, u64::MAX, keep_deletes)
}

/// Compaction's version resolution with readers at snapshots from `pin` on: of each key,
/// keeps every version above `pin` (deletes too: they hide older versions from newer
/// snapshots) and the latest at or below it, dropped if it is a delete (unless
/// `keep_deletes`). With `pin` at `u64::MAX` it is [`resolve`] at the latest snapshot.
pub(crate) fn resolve_from(
    batches: &[RecordBatch],
    schema: &SchemaRef,
    key: usize,
    pin: u64,
    keep_deletes: bool,
) -> Result<RecordBatch> {
    resolve_versions(batches, schema, key, u64::MAX, pin, keep_deletes)
}

/// Of each key's versions at or below `snapshot`: those above `pin`, and the latest at or
/// below it (unless it is a delete and not `keep_deletes`). Sorted by key, in stored form.
fn resolve_versions(
    batches: &[RecordBatch],
    schema: &SchemaRef,
    key: usize,
    snapshot: u64,
    pin: u64,
    keep_deletes: bool,
) -> Result<RecordBatch> {
    let all = concat_batches(schema, batches)?;
    let sorted = sort_by_key(&all, key)?;
    let keys = sorted.column(key).as_primitive::<Int64Type>();
    let lsns = sorted
        .column(sorted.num_columns() - 2)
        .as_primitive::<UInt64Type>();
    let ops = sorted
        .column(sorted.num_columns() - 1)
        .as_primitive::<UInt8Type>();
    let n = sorted.num_rows();
    let mut keep = vec![false; n];
    // Walk backwards: each key's versions from the newest; the first at or below the pin is
    // the last one kept.
    let mut done_key: Option<i64> = None;
    for i in (0..n).rev() {
        let (k, lsn) = (keys.value(i), lsns.value(i));
        if lsn > snapshot || done_key == Some(k) {
            continue;
        }
        if lsn > pin {
            keep[i] = true;
            continue;
        }
        done_key = Some(k);
        keep[i] = keep_deletes || ops.value(i) == OP_UPSERT;
    }
    Ok(filter_record_batch(&sorted, &BooleanArray::from(keep))?)
}

/// Drops the hidden `_lsn` and `_op` columns.
pub fn without_hidden_columns(batch: &RecordBatch) -> Result<RecordBatch> {
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| {
            let name = batch.schema().field(i).name().clone();
            name != LSN_COLUMN && name != OP_COLUMN
        })
        .collect();
    Ok(batch.project(&keep)?)
}

/// Keeps the rows with `_lsn <= lsn`.
pub(crate) fn up_to(batch: &RecordBatch, lsn: u64) -> Result<RecordBatch> {
    let lsns = batch
        .column(batch.num_columns() - 2)
        .as_primitive::<UInt64Type>();
    if lsns.is_empty() || arrow::compute::max(lsns).unwrap_or(0) <= lsn {
        return Ok(batch.clone());
    }
    let mask: BooleanArray = lsns.iter().map(|v| Some(v.unwrap_or(0) <= lsn)).collect();
    Ok(filter_record_batch(batch, &mask)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, UInt8Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use proptest::prelude::*;

    /// A stored-form batch (`id`, `v`, `_lsn`, `_op`) from (key, LSN) pairs; `v` is the row's
    /// position, so that any reordering shows.
    fn batch(rows: &[(i64, u64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
            Field::new("_lsn", DataType::UInt64, false),
            Field::new("_op", DataType::UInt8, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(0..rows.len() as i64)),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(UInt8Array::from_iter_values(rows.iter().map(|_| OP_UPSERT))),
        ];
        RecordBatch::try_new(schema, columns).expect("batch")
    }

    /// `batch` with each row's `_op` from `deletes` (true: a delete).
    fn with_ops(batch: &RecordBatch, deletes: &[bool]) -> RecordBatch {
        let mut columns = batch.columns().to_vec();
        columns[3] = Arc::new(UInt8Array::from_iter_values(
            deletes
                .iter()
                .map(|&d| if d { OP_UPSERT + 1 } else { OP_UPSERT }),
        ));
        RecordBatch::try_new(batch.schema(), columns).expect("batch")
    }

    proptest! {
        /// Compaction with a pinned snapshot keeps what every snapshot from the pin on reads:
        /// resolving the compacted rows at such a snapshot gives what resolving the original
        /// rows gives (deletes too, whether or not they are kept).
        #[test]
        fn compaction_keeps_what_pinned_snapshots_read(
            versions in proptest::collection::vec((0i64..12, any::<bool>()), 0..120),
            pin in 0u64..130,
            keep_deletes in any::<bool>(),
        ) {
            // Distinct LSNs, in order, as the log gives them.
            let rows: Vec<(i64, u64)> =
                versions.iter().enumerate().map(|(i, (k, _))| (*k, i as u64 + 1)).collect();
            let deletes: Vec<bool> = versions.iter().map(|(_, d)| *d).collect();
            let input = with_ops(&batch(&rows), &deletes);
            let schema = input.schema();
            let compacted = resolve_from(std::slice::from_ref(&input), &schema, 0, pin, keep_deletes)
                .expect("compact");
            for snapshot in pin..=rows.len() as u64 + 1 {
                let expected = resolve(std::slice::from_ref(&input), &schema, 0, snapshot, false).expect("a");
                let got = resolve(std::slice::from_ref(&compacted), &schema, 0, snapshot, false).expect("b");
                prop_assert_eq!(&got, &expected, "snapshot {}", snapshot);
            }
            // Nothing pinned: the latest version of each key only.
            let latest = resolve_from(std::slice::from_ref(&input), &schema, 0, u64::MAX, keep_deletes)
                .expect("latest");
            prop_assert_eq!(latest, resolve(&[input], &schema, 0, u64::MAX, keep_deletes).expect("c"));
        }

        /// The fast path (no sort when already in order) returns exactly what the sort
        /// returns, for batches in order, nearly in order and not at all; and it is taken
        /// exactly when the model (a stable sort of the pairs) leaves the rows in place.
        #[test]
        fn sortedness_fast_path_matches_the_sort(
            mut rows in proptest::collection::vec((0i64..50, 1u64..20), 0..200),
            presort in any::<bool>(),
        ) {
            if presort {
                rows.sort_unstable();
            }
            let input = batch(&rows);
            let fast = sort_by_key(&input, 0).expect("fast");
            let slow = sort_by_key_always(&input, 0).expect("sort");
            prop_assert_eq!(&fast, &slow);
            prop_assert_eq!(&slow, &lexsort_by_key(&input, 0).expect("lexsort"));
            let mut model: Vec<usize> = (0..rows.len()).collect();
            model.sort_by_key(|&i| rows[i]);
            // `v` is the row's position: the sorted batch lists the model's order.
            let positions: Vec<i64> = slow.column(1).as_primitive::<Int64Type>().values().to_vec();
            let expected: Vec<i64> = model.iter().map(|&i| i as i64).collect();
            prop_assert_eq!(positions, expected);
            let in_place = model.iter().enumerate().all(|(i, &j)| i == j);
            prop_assert_eq!(is_sorted_by_key(&input, 0), in_place);
        }
    }

    #[test]
    fn dictionaries_only_where_values_repeat() {
        let repeating: ArrayRef =
            Arc::new(Int64Array::from_iter_values((0..10_000).map(|i| i % 7)));
        let unique: ArrayRef = Arc::new(Int64Array::from_iter_values(0..10_000));
        assert!(repeats_enough(&repeating));
        assert!(!repeats_enough(&unique));
        // A full file of a column with 500 groups keeps its dictionary (GROUP BY on it reads
        // the dictionary's indices: without it, 3–4 times slower here and in DuckDB).
        let group = |i: u64| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 500;
        let groups: ArrayRef = Arc::new(Int64Array::from_iter_values(
            (0..131_072).map(|i| group(i) as i64),
        ));
        assert!(repeats_enough(&groups));
        let names: ArrayRef = Arc::new(arrow::array::StringArray::from_iter_values(
            (0..131_072).map(|i| format!("group-{}", group(i))),
        ));
        assert!(repeats_enough(&names));
        let rows: Vec<(i64, u64)> = (0..10_000).map(|i| (i, i as u64)).collect();
        let properties = properties(&batch(&rows), 0);
        let dictionary = |name: &str| {
            properties.dictionary_enabled(&parquet::schema::types::ColumnPath::from(name))
        };
        assert!(!dictionary("id"), "the key is unique");
        assert!(!dictionary("_lsn"), "LSNs are unique per version");
        assert!(!dictionary("v"), "positions are unique");
        assert!(dictionary("_op"), "two values");
    }

    /// A file of several megabytes goes through the writeback hint several times
    /// (`sync_file_range` on Linux) and reads back whole, checksum verified.
    #[test]
    fn a_large_file_is_written_in_writeback_chunks_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("omen-storage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        // Keys spread over the whole range and distinct LSNs compress poorly: several MiB.
        let rows: Vec<(i64, u64)> = (0..2_000_000i64)
            .map(|i| {
                (
                    i.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as i64) >> 8,
                    i as u64,
                )
            })
            .collect();
        let input = sort_by_key(&batch(&rows), 0).expect("sort");
        let path = dir.join("large.parquet");
        let meta = write_file(&path, "large.parquet", &input, 0).expect("write");
        assert!(
            meta.bytes > 2 * WRITEBACK_CHUNK,
            "the file should span several chunks: {} bytes",
            meta.bytes
        );
        let read = read_file(&path, &meta, &input.schema()).expect("read");
        let read = arrow::compute::concat_batches(&input.schema(), &read).expect("concat");
        assert_eq!(read, input);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
