//! [`OmenScanExec`]: a table's snapshot read from its Parquet files and unflushed rows, in
//! parallel partitions, streaming.
//!
//! Per file, in order of cost: files whose key range misses the pushed key filter, or whose
//! rows are all above the snapshot LSN, are skipped at plan time; row groups are pruned by
//! their key statistics; only the projected columns are decoded, plus the key, `_lsn` and
//! `_op` when the file's statistics say versions may need resolving (see [`crate::merge`]).
//! A compacted file with distinct keys, no deletes, nothing above the snapshot and no newer
//! overlapping source is read like any Parquet file. Files are spread over the partitions by
//! size; the delta, resolved once at plan time, goes to the least loaded one.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, PoisonError};

use datafusion::arrow::array::{ArrayRef, BooleanArray, new_null_array};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions, RecordBatchReader};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};

use crate::KeyLookup;
use crate::error::ScanError;
use crate::merge::{FileMerge, Keys, MergeColumns, MergeNeeds, resolve_delta, visible_keys};
use crate::source::{SnapshotSource, i32_range, i64_range, open_file};

/// One unit of a partition's work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Work {
    File(usize),
    Delta,
}

/// What every partition shares: the snapshot and what plan time learned about it.
struct Shared {
    source: SnapshotSource,
    /// The SQL schema of the table (all columns).
    table_schema: SchemaRef,
    lookup: Option<KeyLookup>,
    /// The delta's live rows in stored form.
    delta_live: Option<RecordBatch>,
    delta_keys: Keys,
    /// Per file: the newer files whose key range overlaps it.
    newer: Vec<Vec<usize>>,
    /// Per file: whether a delta key falls in its key range.
    delta_overlaps: Vec<bool>,
    /// Per file: its visible keys, once a newer-overlapped older file needed them.
    visible_keys: Vec<Mutex<Option<Keys>>>,
    batch_size: usize,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

fn bounds_meet(lookup: Option<&KeyLookup>, low: i64, high: i64) -> bool {
    match lookup {
        None => true,
        Some(KeyLookup::Points(points)) => {
            let first = points.partition_point(|&p| p < low);
            points.get(first).is_some_and(|&p| p <= high)
        }
        Some(KeyLookup::Range(from, to)) => {
            let above_low = match from {
                Bound::Unbounded => true,
                Bound::Included(v) => high >= *v,
                Bound::Excluded(v) => high > *v,
            };
            let below_high = match to {
                Bound::Unbounded => true,
                Bound::Included(v) => low <= *v,
                Bound::Excluded(v) => low < *v,
            };
            above_low && below_high
        }
    }
}

fn keys_in(keys: &[i64], low: i64, high: i64) -> &[i64] {
    let start = keys.partition_point(|&k| k < low);
    let end = keys.partition_point(|&k| k <= high);
    keys.get(start..end).unwrap_or(&[])
}

impl Shared {
    fn column_name(&self, index: usize) -> &str {
        self.source.stored_schema.field(index).name()
    }

    fn lsn_column(&self) -> usize {
        self.source.stored_schema.fields().len().saturating_sub(2)
    }

    /// The visible keys of file `index`, read once (key and `_lsn` columns only).
    fn file_keys(&self, index: usize) -> Result<Keys, ScanError> {
        let slot = self
            .visible_keys
            .get(index)
            .ok_or_else(|| ScanError::Internal(format!("no file {index}")))?;
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(keys) = &*slot {
            return Ok(Arc::clone(keys));
        }
        let file = &self.source.files[index];
        let builder = open_file(file)?;
        let names = [
            self.column_name(self.source.key).to_string(),
            self.column_name(self.lsn_column()).to_string(),
        ];
        let leaves = leaf_indices(builder.parquet_schema(), &names);
        if leaves.len() != 2 {
            return Err(ScanError::Decode {
                path: file.path.clone(),
                reason: "the key or _lsn column is missing".into(),
            });
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), leaves);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(64 << 10)
            .build()
            .map_err(|e| decode_error(file, e))?;
        let schema = reader.schema();
        let (key, lsn) = match (schema.index_of(&names[0]), schema.index_of(&names[1])) {
            (Ok(k), Ok(l)) => (k, l),
            _ => {
                return Err(ScanError::Decode {
                    path: file.path.clone(),
                    reason: "the key or _lsn column is missing".into(),
                });
            }
        };
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| decode_error(file, e))?;
        let keys = Arc::new(visible_keys(&batches, key, lsn, self.source.lsn));
        *slot = Some(Arc::clone(&keys));
        Ok(keys)
    }

    /// Keys of newer sources that hide versions in file `index`.
    fn shadow_keys(&self, index: usize) -> Result<Keys, ScanError> {
        let file = &self.source.files[index];
        let (low, high) = (file.min_key, file.max_key);
        let mut keys: Vec<i64> = Vec::new();
        for &newer in &self.newer[index] {
            keys.extend_from_slice(keys_in(&self.file_keys(newer)?, low, high));
        }
        if self.delta_overlaps[index] {
            keys.extend_from_slice(keys_in(&self.delta_keys, low, high));
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(Arc::new(keys))
    }
}

fn decode_error(file: &crate::SnapshotFile, e: impl fmt::Display) -> ScanError {
    ScanError::Decode {
        path: file.path.clone(),
        reason: e.to_string(),
    }
}

/// Leaf (= root: the stored schema is flat) indices of the named columns present.
fn leaf_indices(
    schema: &datafusion::parquet::schema::types::SchemaDescriptor,
    names: &[String],
) -> Vec<usize> {
    let mut out: Vec<usize> = schema
        .columns()
        .iter()
        .enumerate()
        .filter(|(_, c)| names.iter().any(|n| n == c.name()))
        .map(|(i, _)| i)
        .collect();
    out.sort_unstable();
    out
}

/// Reads a table's snapshot: its Parquet files and its unflushed rows, versions resolved.
pub struct OmenScanExec {
    shared: Arc<Shared>,
    /// Table column indices of the output.
    projection: Vec<usize>,
    schema: SchemaRef,
    partitions: Vec<Vec<Work>>,
    properties: Arc<PlanProperties>,
    /// Files that need version resolution against newer sources.
    overlapping_files: usize,
    pruned_files: usize,
}

impl fmt::Debug for OmenScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OmenScanExec")
            .field("snapshot", &self.shared.source)
            .field("partitions", &self.partitions.len())
            .finish_non_exhaustive()
    }
}

impl OmenScanExec {
    /// Plans the scan of `source`: output columns `projection` (all if `None`) of
    /// `table_schema`, files pruned by `lookup`, spread over up to `target_partitions`.
    pub fn try_new(
        source: SnapshotSource,
        table_schema: SchemaRef,
        projection: Option<&Vec<usize>>,
        lookup: Option<KeyLookup>,
        target_partitions: usize,
        batch_size: usize,
    ) -> Result<Self> {
        let files = &source.files;
        // Version order is file order: each file's LSNs are at or above the previous one's.
        if let Some(pair) = files.windows(2).find(|w| w[0].max_lsn > w[1].min_lsn) {
            return Err(ScanError::Internal(format!(
                "files out of LSN order: {} ends at LSN {}, the next file {} starts at {}",
                pair[0].path.display(),
                pair[0].max_lsn,
                pair[1].path.display(),
                pair[1].min_lsn
            ))
            .into());
        }
        let resolved = resolve_delta(
            &source.stored_schema,
            source.key,
            source.op_upsert,
            &source.delta,
        )?;
        let snapshot = source.lsn;
        let visible: Vec<bool> = files.iter().map(|f| f.min_lsn <= snapshot).collect();
        let newer: Vec<Vec<usize>> = (0..files.len())
            .map(|i| {
                ((i + 1)..files.len())
                    .filter(|&j| {
                        visible[j]
                            && files[j].min_key <= files[i].max_key
                            && files[j].max_key >= files[i].min_key
                    })
                    .collect()
            })
            .collect();
        let delta_overlaps: Vec<bool> = files
            .iter()
            .map(|f| !keys_in(&resolved.keys, f.min_key, f.max_key).is_empty())
            .collect();
        let mut work: Vec<(Work, u64)> = Vec::new();
        let mut pruned_files = 0;
        for (i, file) in files.iter().enumerate() {
            if visible[i] && bounds_meet(lookup.as_ref(), file.min_key, file.max_key) {
                work.push((Work::File(i), file.bytes));
            } else {
                pruned_files += 1;
            }
        }
        let overlapping_files = work
            .iter()
            .filter(
                |(w, _)| matches!(w, Work::File(i) if !newer[*i].is_empty() || delta_overlaps[*i]),
            )
            .count();
        if let Some(live) = &resolved.live {
            work.push((Work::Delta, live.get_array_memory_size() as u64));
        }
        let partitions = spread(work, target_partitions);
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..table_schema.fields().len()).collect(),
        };
        let schema = Arc::new(table_schema.project(&projection)?);
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(partitions.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        let visible_keys = files.iter().map(|_| Mutex::new(None)).collect();
        Ok(Self {
            shared: Arc::new(Shared {
                table_schema,
                lookup,
                delta_live: resolved.live,
                delta_keys: resolved.keys,
                newer,
                delta_overlaps,
                visible_keys,
                batch_size: batch_size.max(1),
                source,
            }),
            projection,
            schema,
            partitions,
            properties: Arc::new(properties),
            overlapping_files,
            pruned_files,
        })
    }

    /// A short account for `EXPLAIN`: files read and skipped, merges, delta, partitions.
    pub fn describe(&self) -> String {
        let source = &self.shared.source;
        let delta_rows: usize = source.delta.iter().map(|b| b.num_rows()).sum();
        format!(
            "{} file(s), {} skipped by key range or LSN, {} overlapping newer rows, {} \
             unflushed row version(s), snapshot LSN {}, {} partition(s)",
            source.files.len(),
            self.pruned_files,
            self.overlapping_files,
            delta_rows,
            source.lsn,
            self.partitions.len()
        )
    }
}

/// Spreads work over up to `target` partitions, largest first onto the least loaded.
fn spread(mut work: Vec<(Work, u64)>, target: usize) -> Vec<Vec<Work>> {
    let count = target.max(1).min(work.len()).max(1);
    let mut partitions: Vec<(u64, Vec<Work>)> = vec![(0, Vec::new()); count];
    work.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
    for (item, bytes) in work {
        if let Some(least) = partitions.iter_mut().min_by_key(|(load, _)| *load) {
            least.0 += bytes.max(1);
            least.1.push(item);
        }
    }
    partitions
        .into_iter()
        .map(|(_, mut items)| {
            items.sort_by_key(|w| match w {
                Work::File(i) => *i,
                Work::Delta => usize::MAX,
            });
            items
        })
        .collect()
}

impl DisplayAs for OmenScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        write!(
            f,
            "OmenScanExec: projection=[{}], {}",
            names.join(", "),
            self.describe()
        )
    }
}

impl ExecutionPlan for OmenScanExec {
    fn name(&self) -> &str {
        "OmenScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let work = self.partitions.get(partition).ok_or_else(|| {
            DataFusionError::Internal(format!(
                "OmenScanExec has {} partitions, asked for {partition}",
                self.partitions.len()
            ))
        })?;
        let iter = PartitionIter {
            shared: Arc::clone(&self.shared),
            schema: Arc::clone(&self.schema),
            projection: self.projection.clone(),
            work: work.iter().copied().collect(),
            current: None,
            ready: VecDeque::new(),
            failed: false,
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            futures::stream::iter(iter),
        )))
    }
}

/// How one open file yields batches.
enum Reader {
    /// Decoding the needed columns.
    Decode {
        reader: Box<ParquetRecordBatchReader>,
        /// Per output column: its position in the decoded batch (`None`: not in the file).
        outputs: Vec<Option<usize>>,
        merge: Option<FileMerge>,
    },
    /// No column needed and no versions to resolve: only row counts.
    Count { rows_left: usize },
}

struct PartitionIter {
    shared: Arc<Shared>,
    schema: SchemaRef,
    projection: Vec<usize>,
    work: VecDeque<Work>,
    current: Option<(usize, Reader)>,
    ready: VecDeque<RecordBatch>,
    failed: bool,
}

impl PartitionIter {
    fn output(&self, batch: &RecordBatch, outputs: &[Option<usize>]) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        let columns: Vec<ArrayRef> = outputs
            .iter()
            .zip(self.schema.fields())
            .map(|(position, field)| match position {
                Some(i) => Arc::clone(batch.column(*i)),
                None => new_null_array(field.data_type(), rows),
            })
            .collect();
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?)
    }

    fn emit(
        &mut self,
        batch: &RecordBatch,
        keep: Option<Vec<bool>>,
        outputs: &[Option<usize>],
    ) -> Result<()> {
        let batch = match keep {
            Some(keep) if keep.iter().all(|&k| k) => batch.clone(),
            Some(keep) => filter_record_batch(batch, &BooleanArray::from(keep))?,
            None => batch.clone(),
        };
        if batch.num_rows() > 0 {
            let out = self.output(&batch, outputs)?;
            self.ready.push_back(out);
        }
        Ok(())
    }

    /// Opens file `index`: checks its checksum, prunes row groups, decides what to decode.
    fn open(&self, index: usize) -> Result<Option<Reader>> {
        let shared = &*self.shared;
        let source = &shared.source;
        let file = &source.files[index];
        let builder = open_file(file)?;
        let metadata = Arc::clone(builder.metadata());
        let parquet_schema = builder.parquet_schema();
        let key_name = shared.column_name(source.key).to_string();
        let lsn_name = shared.column_name(shared.lsn_column()).to_string();
        let op_name = shared.column_name(shared.lsn_column() + 1).to_string();
        let leaf = |name: &str| {
            parquet_schema
                .columns()
                .iter()
                .position(|c| c.name() == name)
        };
        let (Some(key_leaf), Some(op_leaf)) = (leaf(&key_name), leaf(&op_name)) else {
            return Err(decode_error(file, "the key or _op column is missing").into());
        };
        let groups: Vec<usize> = metadata
            .row_groups()
            .iter()
            .enumerate()
            .filter(|(_, g)| {
                i64_range(g, key_leaf)
                    .is_none_or(|(low, high)| bounds_meet(shared.lookup.as_ref(), low, high))
            })
            .map(|(i, _)| i)
            .collect();
        if groups.is_empty() {
            return Ok(None);
        }
        let row_groups = metadata.row_groups();
        // Statistics cannot prove a file's keys distinct (a dense key range with as many rows
        // can hide a repeated key next to a missing one); the writer records it instead.
        // Compacted files are always distinct, so a compacted table with nothing newer on
        // top reads only the projected columns.
        let distinct = file.distinct_keys;
        let mut all_upserts = true;
        for &g in &groups {
            let group = &row_groups[g];
            let upsert = i32::from(source.op_upsert);
            if i32_range(group, op_leaf) != Some((upsert, upsert)) {
                all_upserts = false;
            }
        }
        let overlapped = !shared.newer[index].is_empty() || shared.delta_overlaps[index];
        let shadow = if overlapped {
            let keys = shared.shadow_keys(index)?;
            (!keys.is_empty()).then_some(keys)
        } else {
            None
        };
        let needs = MergeNeeds {
            snapshot: (file.max_lsn > source.lsn).then_some(source.lsn),
            dedup: !distinct,
            deletes: (!all_upserts).then_some(source.op_upsert),
            shadow,
        };
        let mut names: Vec<String> = self
            .projection
            .iter()
            .map(|&i| shared.table_schema.field(i).name().clone())
            .collect();
        if needs.dedup || needs.shadow.is_some() {
            names.push(key_name.clone());
        }
        if needs.snapshot.is_some() {
            names.push(lsn_name.clone());
        }
        if needs.deletes.is_some() {
            names.push(op_name.clone());
        }
        let leaves = leaf_indices(parquet_schema, &names);
        if leaves.is_empty() && !needs.any() {
            let rows: i64 = groups.iter().map(|&g| row_groups[g].num_rows()).sum();
            return Ok(Some(Reader::Count {
                rows_left: usize::try_from(rows).unwrap_or(0),
            }));
        }
        let mask = ProjectionMask::roots(parquet_schema, leaves);
        let reader = builder
            .with_projection(mask)
            .with_row_groups(groups)
            .with_batch_size(shared.batch_size)
            .build()
            .map_err(|e| decode_error(file, e))?;
        let decoded = reader.schema();
        let position = |name: &str| decoded.index_of(name).ok();
        let outputs = self
            .projection
            .iter()
            .map(|&i| position(shared.table_schema.field(i).name()))
            .collect();
        let merge = needs.any().then(|| {
            let columns = MergeColumns {
                key: position(&key_name),
                lsn: position(&lsn_name),
                op: position(&op_name),
            };
            FileMerge::new(needs, columns)
        });
        Ok(Some(Reader::Decode {
            reader: Box::new(reader),
            outputs,
            merge,
        }))
    }

    /// Does one unit of work: opens the next file, or decodes one batch of the open one.
    /// `false` when the partition is done.
    fn step(&mut self) -> Result<bool> {
        let Some((index, mut reader)) = self.current.take() else {
            match self.work.pop_front() {
                None => return Ok(false),
                Some(Work::Delta) => self.emit_delta()?,
                Some(Work::File(index)) => {
                    self.current = self.open(index)?.map(|r| (index, r));
                }
            }
            return Ok(true);
        };
        let more = match &mut reader {
            Reader::Count { rows_left } => {
                let rows = (*rows_left).min(self.shared.batch_size);
                *rows_left -= rows;
                if rows > 0 {
                    // The wanted columns (if any) are not in the file: columns added after
                    // it was written read NULL.
                    let nulls = self
                        .schema
                        .fields()
                        .iter()
                        .map(|f| new_null_array(f.data_type(), rows))
                        .collect();
                    self.ready.push_back(RecordBatch::try_new_with_options(
                        Arc::clone(&self.schema),
                        nulls,
                        &RecordBatchOptions::new().with_row_count(Some(rows)),
                    )?);
                }
                *rows_left > 0
            }
            Reader::Decode {
                reader,
                outputs,
                merge,
            } => match reader.next() {
                Some(batch) => {
                    let batch =
                        batch.map_err(|e| decode_error(&self.shared.source.files[index], e))?;
                    match merge {
                        None => self.emit(&batch, None, outputs)?,
                        Some(merge) => {
                            if let Some((batch, keep)) = merge.push(batch) {
                                self.emit(&batch, Some(keep), outputs)?;
                            }
                        }
                    }
                    true
                }
                None => {
                    if let Some(merge) = merge
                        && let Some((batch, keep)) = merge.finish()
                    {
                        self.emit(&batch, Some(keep), outputs)?;
                    }
                    false
                }
            },
        };
        if more {
            self.current = Some((index, reader));
        }
        Ok(true)
    }

    fn emit_delta(&mut self) -> Result<()> {
        let Some(live) = self.shared.delta_live.clone() else {
            return Ok(());
        };
        // Stored form: the table's columns come first, in order.
        let outputs: Vec<Option<usize>> = self.projection.iter().map(|&i| Some(i)).collect();
        let size = self.shared.batch_size;
        for start in (0..live.num_rows()).step_by(size) {
            let slice = live.slice(start, size.min(live.num_rows() - start));
            self.emit(&slice, None, &outputs)?;
        }
        Ok(())
    }
}

impl Iterator for PartitionIter {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(batch) = self.ready.pop_front() {
                return Some(Ok(batch));
            }
            if self.failed {
                return None;
            }
            match self.step() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
