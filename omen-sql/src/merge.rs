//! Version resolution at a snapshot LSN, per source.
//!
//! Sources are the table's files in LSN order, then the unflushed rows (the delta, newest).
//! A row version is live when its `_lsn` is at or below the snapshot, no later version of its
//! key is visible (in its own source or a newer one), and it is an upsert. Inside a file rows
//! are sorted by (key, `_lsn`), so "no later version in its own source" is "last of its run of
//! equal visible keys"; "none in a newer source" is "key not among the visible keys of the
//! newer sources that overlap the file's key range" (the shadow keys). Files that overlap no
//! newer source need no shadow keys at all.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{Int64Type, SchemaRef, UInt8Type, UInt64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result;

/// Sorted, distinct keys.
pub(crate) type Keys = Arc<Vec<i64>>;

/// The delta resolved: its live rows (stored form, sorted by key) and every key it holds a
/// visible version of, deletes included (those shadow older files).
pub(crate) struct ResolvedDelta {
    pub(crate) live: Option<RecordBatch>,
    pub(crate) keys: Keys,
}

/// Resolves the delta's versions (already all at or below the snapshot LSN).
pub(crate) fn resolve_delta(
    schema: &SchemaRef,
    key: usize,
    op_upsert: u8,
    delta: &[RecordBatch],
) -> Result<ResolvedDelta> {
    let all = concat_batches(schema, delta)?;
    let lsn_column = all.num_columns().saturating_sub(2);
    let keys = all.column(key).as_primitive::<Int64Type>();
    let lsns = all.column(lsn_column).as_primitive::<UInt64Type>();
    let ops = all.column(lsn_column + 1).as_primitive::<UInt8Type>();
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    // Stable: of two changes to a key in one record (same LSN), the later one wins.
    order.sort_by_key(|&i| (keys.value(i as usize), lsns.value(i as usize)));
    let mut live = Vec::new();
    let mut distinct = Vec::new();
    for (n, &i) in order.iter().enumerate() {
        let k = keys.value(i as usize);
        let last_of_key = order
            .get(n + 1)
            .is_none_or(|&next| keys.value(next as usize) != k);
        if last_of_key {
            distinct.push(k);
            if ops.value(i as usize) == op_upsert {
                live.push(i);
            }
        }
    }
    let live = if live.is_empty() {
        None
    } else {
        Some(take_record_batch(&all, &UInt32Array::from(live))?)
    };
    Ok(ResolvedDelta {
        live,
        keys: Arc::new(distinct),
    })
}

/// Where the merge finds its columns in a decoded batch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MergeColumns {
    pub(crate) key: Option<usize>,
    pub(crate) lsn: Option<usize>,
    pub(crate) op: Option<usize>,
}

/// What one file needs beyond a plain read.
#[derive(Clone, Debug)]
pub(crate) struct MergeNeeds {
    /// Some rows have `_lsn` above the snapshot.
    pub(crate) snapshot: Option<u64>,
    /// A key may have several versions in the file.
    pub(crate) dedup: bool,
    /// Some rows may be deletes; anything but this `_op` is one.
    pub(crate) deletes: Option<u8>,
    /// Keys a newer source holds a visible version of.
    pub(crate) shadow: Option<Keys>,
}

impl MergeNeeds {
    pub(crate) fn any(&self) -> bool {
        self.snapshot.is_some() || self.dedup || self.deletes.is_some() || self.shadow.is_some()
    }
}

struct Pending {
    batch: RecordBatch,
    keep: Vec<bool>,
    /// The last visible row and its key: whether it is its key's latest version depends on
    /// the next batch's first visible row.
    last_visible: Option<(usize, i64)>,
}

/// Resolves one file's versions batch by batch, holding back one batch so that a run of
/// equal keys may cross batch boundaries.
pub(crate) struct FileMerge {
    needs: MergeNeeds,
    columns: MergeColumns,
    shadow_position: usize,
    pending: Option<Pending>,
}

impl FileMerge {
    pub(crate) fn new(needs: MergeNeeds, columns: MergeColumns) -> Self {
        Self {
            needs,
            columns,
            shadow_position: 0,
            pending: None,
        }
    }

    /// Takes the next decoded batch; returns the previous one with its keep mask, if final.
    pub(crate) fn push(&mut self, batch: RecordBatch) -> Option<(RecordBatch, Vec<bool>)> {
        let n = batch.num_rows();
        let keys = self
            .columns
            .key
            .map(|i| batch.column(i).as_primitive::<Int64Type>().clone());
        let mut keep: Vec<bool> = match (self.needs.snapshot, self.columns.lsn) {
            (Some(snapshot), Some(i)) => batch
                .column(i)
                .as_primitive::<UInt64Type>()
                .values()
                .iter()
                .map(|&lsn| lsn <= snapshot)
                .collect(),
            _ => vec![true; n],
        };
        let visible = keep.clone();
        let mut last_visible = None;
        let mut first_visible_key = None;
        if let (true, Some(keys)) = (self.needs.dedup, &keys) {
            let values = keys.values();
            let mut previous: Option<usize> = None;
            for i in (0..n).filter(|&i| visible[i]) {
                if let Some(p) = previous {
                    if values[p] == values[i] {
                        keep[p] = false;
                    }
                } else {
                    first_visible_key = Some(values[i]);
                }
                previous = Some(i);
            }
            last_visible = previous.map(|p| (p, values[p]));
        }
        if let (Some(upsert), Some(i)) = (self.needs.deletes, self.columns.op) {
            let ops = batch.column(i).as_primitive::<UInt8Type>().values();
            for (k, &op) in keep.iter_mut().zip(ops.iter()) {
                *k &= op == upsert;
            }
        }
        if let (Some(shadow), Some(keys)) = (&self.needs.shadow, &keys) {
            let values = keys.values();
            for (i, k) in keep.iter_mut().enumerate() {
                if !*k {
                    continue;
                }
                let key = values[i];
                while shadow.get(self.shadow_position).is_some_and(|&s| s < key) {
                    self.shadow_position += 1;
                }
                if shadow.get(self.shadow_position) == Some(&key) {
                    *k = false;
                }
            }
        }
        let next = Pending {
            batch,
            keep,
            last_visible,
        };
        if !self.needs.dedup {
            return Some((next.batch, next.keep));
        }
        // A batch with no visible row decides nothing and keeps nothing.
        next.last_visible?;
        let previous = self.pending.replace(next);
        previous.map(|mut previous| {
            if let (Some((i, key)), Some(first)) = (previous.last_visible, first_visible_key)
                && key == first
                && let Some(k) = previous.keep.get_mut(i)
            {
                *k = false;
            }
            (previous.batch, previous.keep)
        })
    }

    /// The held-back batch, once the file has no more rows.
    pub(crate) fn finish(&mut self) -> Option<(RecordBatch, Vec<bool>)> {
        self.pending.take().map(|p| (p.batch, p.keep))
    }
}

/// A file's visible keys (with `_lsn <= snapshot`), sorted and distinct, from a batch
/// holding the key and `_lsn` columns.
pub(crate) fn visible_keys(
    batches: &[RecordBatch],
    key: usize,
    lsn: usize,
    snapshot: u64,
) -> Vec<i64> {
    let mut out: Vec<i64> = Vec::new();
    for batch in batches {
        let keys = batch.column(key).as_primitive::<Int64Type>();
        let lsns = batch.column(lsn).as_primitive::<UInt64Type>();
        debug_assert_eq!(keys.null_count(), 0);
        for (&k, &l) in keys.values().iter().zip(lsns.values().iter()) {
            if l <= snapshot && out.last() != Some(&k) {
                out.push(k);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, UInt8Array, UInt64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    const UPSERT: u8 = 1;
    const DELETE: u8 = 2;

    fn batch(rows: &[(i64, u64, u8)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("_lsn", DataType::UInt64, false),
            Field::new("_op", DataType::UInt8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(UInt8Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .expect("batch")
    }

    /// Live (key, lsn) pairs of one file fed in `batches`.
    fn live(needs: MergeNeeds, batches: &[&[(i64, u64, u8)]]) -> Vec<(i64, u64)> {
        let columns = MergeColumns {
            key: Some(0),
            lsn: Some(1),
            op: Some(2),
        };
        let mut merge = FileMerge::new(needs, columns);
        let mut out = Vec::new();
        let mut take = |(batch, keep): (RecordBatch, Vec<bool>)| {
            let keys = batch.column(0).as_primitive::<Int64Type>().clone();
            let lsns = batch.column(1).as_primitive::<UInt64Type>().clone();
            for (i, k) in keep.iter().enumerate() {
                if *k {
                    out.push((keys.value(i), lsns.value(i)));
                }
            }
        };
        for rows in batches {
            if let Some(done) = merge.push(batch(rows)) {
                take(done);
            }
        }
        if let Some(done) = merge.finish() {
            take(done);
        }
        out
    }

    #[test]
    fn runs_of_versions_resolve_across_batch_boundaries() {
        let needs = MergeNeeds {
            snapshot: Some(10),
            dedup: true,
            deletes: Some(UPSERT),
            shadow: Some(Arc::new(vec![5])),
        };
        let batches: [&[(i64, u64, u8)]; 5] = [
            &[(1, 1, UPSERT), (1, 2, UPSERT), (2, 3, UPSERT)],
            &[(2, 4, UPSERT), (3, 5, UPSERT)],
            // Every row above the snapshot: decides nothing.
            &[(3, 11, UPSERT), (3, 12, DELETE)],
            &[(3, 6, DELETE), (4, 7, UPSERT), (5, 8, UPSERT)],
            &[(6, 9, UPSERT), (6, 13, DELETE)],
        ];
        // Key 3's run is out of (key, lsn) order only in this made-up input; the merge reads
        // the last visible version of each run, as the files' sort guarantees.
        assert_eq!(live(needs, &batches), vec![(1, 2), (2, 4), (4, 7), (6, 9)]);
    }

    #[test]
    fn delta_keeps_the_last_change_of_a_key_within_one_record() {
        let rows = batch(&[
            (2, 5, UPSERT),
            (1, 4, UPSERT),
            (2, 5, DELETE),
            (1, 6, UPSERT),
        ]);
        let resolved =
            resolve_delta(&rows.schema(), 0, UPSERT, std::slice::from_ref(&rows)).expect("delta");
        assert_eq!(*resolved.keys, vec![1, 2]);
        let live = resolved.live.expect("live rows");
        assert_eq!(live.num_rows(), 1);
        assert_eq!(live.column(1).as_primitive::<UInt64Type>().value(0), 6);
    }
}
