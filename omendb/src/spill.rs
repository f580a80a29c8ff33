//! A transaction's writes beyond its memory budget, on disk.
//!
//! When a write set outgrows `DbOptions::transaction_memory`, its rows move to a **run**: per
//! table, the rows sorted by key, in blocks of about [`BLOCK_BYTES`] (each a change record of
//! [`omen_replicator::change`]), appended to one unlinked temporary file (gone with the
//! process, however it ends). A run keeps in memory only each block's key range and a Bloom
//! filter of its keys (about 10 bits a key), so a key is looked up in one block read and a
//! key the run does not hold almost never costs one.
//!
//! Invariants: runs are immutable and ordered oldest first, and a later run (or the memory
//! part of the write set) wins over an earlier one for the same key; within a run each key
//! appears once.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use omen_replicator::change::{self, ChangeEncoder, Entry, RowChange, Value};

use crate::error::{Error, Result};
use crate::row::Row;

/// The rows a transaction wrote to one table, by key (`None`: deleted).
pub(crate) type TableRows = BTreeMap<i64, Option<Row>>;

/// Bytes of rows per block (a block holds at least one row).
const BLOCK_BYTES: usize = 64 << 10;

/// One block of a run's table: its key range and where it is.
#[derive(Debug)]
struct Block {
    first: i64,
    last: i64,
    offset: u64,
    len: usize,
}

/// One table's rows in a run.
#[derive(Debug)]
struct RunTable {
    key_index: usize,
    blocks: Vec<Block>,
    filter: Bloom,
}

/// One run: its tables' rows.
type Run = BTreeMap<Arc<str>, RunTable>;

/// The runs of one write set.
#[derive(Debug)]
pub(crate) struct Spill {
    len: u64,
    view: SpillView,
}

/// The runs of a write set at one moment, readable while the write set goes on (a running
/// statement reads its transaction's writes as they were when it began).
#[derive(Clone, Debug)]
pub(crate) struct SpillView {
    file: Arc<File>,
    runs: Vec<Arc<Run>>,
    /// The block read last (by offset), decoded: key reads in key order (an `INSERT` checking
    /// each of its keys against the runs) read each block once, not once a key.
    last_block: Arc<Mutex<Option<(u64, DecodedBlock)>>>,
}

/// A block's rows, by key.
type DecodedBlock = Arc<Vec<(i64, Option<Row>)>>;

fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { op, source }
}

impl Spill {
    /// An empty spill whose file is in `dir`.
    pub(crate) fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io("create the directory for spilled writes"))?;
        let file = tempfile::tempfile_in(dir).map_err(io("create a file for spilled writes"))?;
        Ok(Self {
            len: 0,
            view: SpillView {
                file: Arc::new(file),
                runs: Vec::new(),
                last_block: Arc::default(),
            },
        })
    }

    /// Runs written so far.
    pub(crate) fn runs(&self) -> usize {
        self.view.runs.len()
    }

    /// Drops the runs after the first `keep` (a rollback to a savepoint). Their file space
    /// is not reused; reads of a view taken before still see them.
    pub(crate) fn truncate(&mut self, keep: usize) {
        self.view.runs.truncate(keep);
    }

    /// The runs as they are now.
    pub(crate) fn view(&self) -> SpillView {
        self.view.clone()
    }

    /// [`SpillView::get`] of the runs as they are now.
    pub(crate) fn get(&self, table: &str, key: i64) -> Result<Option<Option<Row>>> {
        self.view.get(table, key)
    }

    /// [`SpillView::merged`] of the runs as they are now.
    pub(crate) fn merged<'a>(
        &'a self,
        table: &str,
        memory: Option<&'a TableRows>,
    ) -> MergedRows<'a> {
        self.view
            .merged(table, memory, (Bound::Unbounded, Bound::Unbounded))
    }

    /// Writes `tables` (name, key column, rows) as a new run, newer than every run before.
    pub(crate) fn write_run<'a>(
        &mut self,
        tables: impl Iterator<Item = (&'a Arc<str>, usize, &'a TableRows)>,
    ) -> Result<()> {
        let mut run = BTreeMap::new();
        let mut out = Vec::with_capacity(1 << 20);
        // Written at its offset (not appended): a failed run leaves `len` and the runs
        // before it as they were.
        let mut written = self.len;
        let mut offset = self.len;
        for (name, key_index, rows) in tables {
            if rows.is_empty() {
                continue;
            }
            let mut table = RunTable {
                key_index,
                blocks: Vec::new(),
                filter: Bloom::new(rows.len()),
            };
            let mut rows = rows.iter().peekable();
            while let Some(&(&first, _)) = rows.peek() {
                let mut encoder = ChangeEncoder::new();
                let mut last = first;
                while let Some((&key, row)) = rows.next_if(|_| encoder.len() < BLOCK_BYTES) {
                    match row {
                        Some(row) => encoder.upsert(name, row),
                        None => encoder.delete(name, key),
                    }
                    table.filter.insert(key);
                    last = key;
                }
                let bytes = encoder.finish();
                out.extend_from_slice(&bytes);
                table.blocks.push(Block {
                    first,
                    last,
                    offset,
                    len: bytes.len(),
                });
                offset += bytes.len() as u64;
                if out.len() >= 1 << 20 {
                    self.view
                        .file
                        .write_all_at(&out, written)
                        .map_err(io("write spilled writes"))?;
                    written += out.len() as u64;
                    out.clear();
                }
            }
            run.insert(Arc::clone(name), table);
        }
        self.view
            .file
            .write_all_at(&out, written)
            .map_err(io("write spilled writes"))?;
        self.len = offset;
        self.view.runs.push(Arc::new(run));
        Ok(())
    }
}

impl SpillView {
    /// The newest spilled version of `key` of `table`: `None` if no run holds it,
    /// `Some(None)` if it was deleted.
    pub(crate) fn get(&self, table: &str, key: i64) -> Result<Option<Option<Row>>> {
        for run in self.runs.iter().rev() {
            let Some(t) = run.get(table) else { continue };
            if !t.filter.may_hold(key) {
                continue;
            }
            let at = t.blocks.partition_point(|b| b.last < key);
            let Some(block) = t.blocks.get(at).filter(|b| b.first <= key) else {
                continue;
            };
            let rows = self.cached_block(block, t.key_index)?;
            if let Ok(i) = rows.binary_search_by_key(&key, |(k, _)| *k) {
                return Ok(Some(rows[i].1.clone()));
            }
        }
        Ok(None)
    }

    /// [`SpillView::read_block`], of the last block read again without reading it.
    fn cached_block(&self, block: &Block, key_index: usize) -> Result<DecodedBlock> {
        let mut last = self
            .last_block
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((offset, rows)) = last.as_ref()
            && *offset == block.offset
        {
            return Ok(Arc::clone(rows));
        }
        let rows = Arc::new(self.read_block(block, key_index)?);
        *last = Some((block.offset, Arc::clone(&rows)));
        Ok(rows)
    }

    fn read_block(&self, block: &Block, key_index: usize) -> Result<Vec<(i64, Option<Row>)>> {
        let mut bytes = vec![0; block.len];
        self.file
            .read_exact_at(&mut bytes, block.offset)
            .map_err(io("read spilled writes"))?;
        decode_block(&bytes, key_index)
    }

    /// The rows of `table` with keys in `range`, by key, newest version of each, with
    /// `memory` (the write set's rows not spilled) newer than every run.
    pub(crate) fn merged<'a>(
        &'a self,
        table: &str,
        memory: Option<&'a TableRows>,
        range: (Bound<i64>, Bound<i64>),
    ) -> MergedRows<'a> {
        let mut sources: Vec<Source<'a>> = self
            .runs
            .iter()
            .filter_map(|run| run.get(table))
            .map(|t| Source::Run {
                spill: self,
                table: t,
                // The first block that may hold a key of the range.
                block: t.blocks.partition_point(|b| below(b.last, range.0)),
                rows: Vec::new().into_iter().peekable(),
            })
            .collect();
        if let Some(memory) = memory {
            sources.push(Source::Memory(memory.range(range).peekable()));
        }
        MergedRows { sources, range }
    }
}

fn decode_block(bytes: &[u8], key_index: usize) -> Result<Vec<(i64, Option<Row>)>> {
    let bad = |reason: String| Error::Io {
        op: "read spilled writes",
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
    };
    let entries = change::decode(bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for entry in entries {
        let Entry::Rows { rows, .. } = entry else {
            continue;
        };
        for row in rows {
            match row.map_err(|e| bad(e.to_string()))? {
                RowChange::Upsert(values) => {
                    let row: Row = values
                        .map(|v| v.map(|v| v.to_owned()))
                        .collect::<std::result::Result<Vec<Value>, _>>()
                        .map_err(|e| bad(e.to_string()))?
                        .into_boxed_slice();
                    let Some(&Value::Int64(key)) = row.get(key_index) else {
                        return Err(bad("a spilled row has no key".into()));
                    };
                    out.push((key, Some(row)));
                }
                RowChange::Delete(key) => out.push((key, None)),
            }
        }
    }
    Ok(out)
}

/// One ordered source of a merge.
enum Source<'a> {
    Run {
        spill: &'a SpillView,
        table: &'a RunTable,
        block: usize,
        rows: std::iter::Peekable<std::vec::IntoIter<(i64, Option<Row>)>>,
    },
    Memory(std::iter::Peekable<std::collections::btree_map::Range<'a, i64, Option<Row>>>),
}

impl Source<'_> {
    /// The key at the head, reading the next block if needed.
    fn head(&mut self) -> Result<Option<i64>> {
        match self {
            Source::Memory(rows) => Ok(rows.peek().map(|(k, _)| **k)),
            Source::Run {
                spill,
                table,
                block,
                rows,
            } => loop {
                if let Some((key, _)) = rows.peek() {
                    return Ok(Some(*key));
                }
                let Some(next) = table.blocks.get(*block) else {
                    return Ok(None);
                };
                *block += 1;
                *rows = spill
                    .read_block(next, table.key_index)?
                    .into_iter()
                    .peekable();
            },
        }
    }

    fn take(&mut self) -> Option<Option<Row>> {
        match self {
            Source::Memory(rows) => rows.next().map(|(_, row)| row.clone()),
            Source::Run { rows, .. } => rows.next().map(|(_, row)| row),
        }
    }
}

/// [`Spill::merged`]: `(key, row or None if deleted)` by key.
pub(crate) struct MergedRows<'a> {
    /// Oldest first.
    sources: Vec<Source<'a>>,
    range: (Bound<i64>, Bound<i64>),
}

/// Whether `key` lies below the range starting at `start`.
fn below(key: i64, start: Bound<i64>) -> bool {
    match start {
        Bound::Included(low) => key < low,
        Bound::Excluded(low) => key <= low,
        Bound::Unbounded => false,
    }
}

impl Iterator for MergedRows<'_> {
    type Item = Result<(i64, Option<Row>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let mut min: Option<i64> = None;
            for source in &mut self.sources {
                match source.head() {
                    Ok(Some(key)) => min = Some(min.map_or(key, |m| m.min(key))),
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
            }
            let key = min?;
            let mut newest = None;
            for source in &mut self.sources {
                if matches!(source.head(), Ok(Some(k)) if k == key) {
                    newest = source.take();
                }
            }
            // A run's first block may start below the range.
            if below(key, self.range.0) {
                continue;
            }
            if !self.range.contains(&key) {
                self.sources.clear();
                return None;
            }
            return newest.map(|row| Ok((key, row)));
        }
    }
}

/// A Bloom filter of keys, about 10 bits and 1% false positives a key.
#[derive(Debug)]
struct Bloom {
    bits: Vec<u64>,
}

/// Hashes per key.
const BLOOM_HASHES: u64 = 7;

impl Bloom {
    fn new(keys: usize) -> Self {
        let words = (keys.saturating_mul(10) / 64).max(1);
        Self {
            bits: vec![0; words],
        }
    }

    /// The bit positions of `key` (double hashing over a 64-bit mix).
    fn positions(&self, key: i64) -> impl Iterator<Item = usize> + 'static {
        let mut h = (key as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        let (a, b) = (h & 0xffff_ffff, (h >> 32) | 1);
        let bits = self.bits.len() as u64 * 64;
        (0..BLOOM_HASHES).map(move |i| (a.wrapping_add(i.wrapping_mul(b)) % bits) as usize)
    }

    fn insert(&mut self, key: i64) {
        for bit in self.positions(key) {
            self.bits[bit / 64] |= 1 << (bit % 64);
        }
    }

    fn may_hold(&self, key: i64) -> bool {
        self.positions(key)
            .all(|bit| self.bits[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: i64, v: &str) -> Option<Row> {
        Some(vec![Value::Int64(key), Value::Utf8(v.into())].into_boxed_slice())
    }

    /// Runs and memory read back as a `BTreeMap` that applied the same writes in order.
    #[test]
    fn runs_merge_newest_first_like_a_map() {
        let dir = tempfile::tempdir().expect("dir");
        let mut spill = Spill::new(dir.path()).expect("spill");
        let name: Arc<str> = Arc::from("t");
        let mut model: TableRows = BTreeMap::new();
        let mut state = 7u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for run in 0..4 {
            let mut rows = TableRows::new();
            for _ in 0..3000 {
                let key = (next() % 5000) as i64 - 2500;
                let value = if next() % 5 == 0 {
                    None
                } else {
                    row(
                        key,
                        &format!("r{run}-{}", "x".repeat((next() % 40) as usize)),
                    )
                };
                rows.insert(key, value);
            }
            model.extend(rows.clone());
            spill
                .write_run([(&name, 0, &rows)].into_iter())
                .expect("run");
        }
        let mut memory = TableRows::new();
        for key in [-2500, 0, 17, 4999] {
            memory.insert(key, row(key, "memory"));
        }
        model.extend(memory.clone());
        let merged: Vec<_> = spill
            .merged("t", Some(&memory))
            .collect::<Result<_>>()
            .expect("merge");
        let expected: Vec<_> = model.clone().into_iter().collect();
        assert_eq!(merged, expected);
        for key in -2600..2600 {
            let spilled = spill.get("t", key).expect("get");
            let in_runs = model.get(&key).cloned();
            if !memory.contains_key(&key) {
                assert_eq!(spilled, in_runs, "key {key}");
            }
        }
        assert_eq!(spill.get("u", 1).expect("get"), None);
        assert_eq!(spill.runs(), 4);
    }
}
