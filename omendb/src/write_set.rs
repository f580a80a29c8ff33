//! A transaction's buffered writes: per table, the rows by key (`None`: deleted), with the
//! undo log of its savepoints; beyond `DbOptions::transaction_memory` they move to runs on
//! disk ([`crate::spill`]), so a transaction of any size holds a bounded amount of memory.
//!
//! Invariants:
//! - the memory part (`tables`) is newer than every spilled run, and a read of a key looks
//!   there first, then at the runs newest first;
//! - `bytes` counts the memory part's values and undo entries and stays within the budget
//!   after each write (a write past it spills everything first);
//! - a write goes to a table's `pending` rows only while a read still shares its `rows` (a
//!   statement writing what it reads): copying `rows` then would cost every statement of a
//!   large transaction the size of all its writes. `settle` moves them into `rows` once the
//!   statement ended; `pending` is empty between statements;
//! - every live savepoint (taken and not yet released) can be rolled back to, spilled or not.
//!   The first spill after a savepoint writes the memory part as runs that end at each live
//!   savepoint taken since the previous spill: the rows written up to the first one, as
//!   they were there; then those written from it up to the next, as they were there; and so
//!   on, the last run ending now. A rollback to one of them drops the runs after its own
//!   (`splits` says how many runs to keep). These runs hold each written row once per
//!   savepoint interval it was written in, so a spill writes at most the bytes the memory
//!   part and its undo log counted, however many savepoints there are. A rollback to a
//!   released savepoint past a spill fails and marks the write set `broken`: a broken write
//!   set refuses every write and its commit. Each statement takes a savepoint and releases
//!   it when it ends.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;

use crate::db::Table;
use crate::error::{Error, LimitKind, Result};
use crate::row::Row;
pub(crate) use crate::spill::TableRows;
use crate::spill::{Spill, SpillView};

/// A point in a transaction to roll back to ([`crate::Transaction::savepoint`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Savepoint {
    undo: usize,
    runs: usize,
    total: u64,
}

/// What a transaction wrote, as its reads see them: each table's written rows at one moment
/// (a later write does not change what a running read sees).
#[derive(Clone, Debug, Default)]
pub struct WrittenRows {
    pub(crate) snapshot: u64,
    pub(crate) tables: HashMap<String, WrittenTable>,
}

impl WrittenRows {
    /// The transaction's snapshot LSN.
    pub(crate) fn snapshot(&self) -> u64 {
        self.snapshot
    }

    /// The rows written to `table`, if any.
    pub(crate) fn table(&self, table: &str) -> Option<&WrittenTable> {
        self.tables.get(table)
    }

    /// Whether nothing was written.
    pub(crate) fn is_empty(&self) -> bool {
        self.tables.values().all(WrittenTable::is_empty)
    }
}

/// A transaction's writes to one table as a read sees them: the rows in memory over the
/// runs spilled to disk. The runs are read lazily: a key costs one block read, and only a
/// range read brings rows back into memory, within a limit.
#[derive(Clone, Debug)]
pub(crate) struct WrittenTable {
    name: Arc<str>,
    memory: Arc<TableRows>,
    spill: Option<SpillView>,
    /// Bytes a read may bring back into memory from the runs (`54000` past it).
    limit: usize,
}

impl WrittenTable {
    pub(crate) fn is_empty(&self) -> bool {
        self.memory.is_empty() && self.spill.is_none()
    }

    /// The entry for `key`: `None` if it was not written, `Some(None)` if it was deleted.
    pub(crate) fn get(&self, key: i64) -> Result<Option<Option<Row>>> {
        if let Some(row) = self.memory.get(&key) {
            return Ok(Some(row.clone()));
        }
        match &self.spill {
            Some(spill) => spill.get(&self.name, key),
            None => Ok(None),
        }
    }

    /// The entries `lookup` reads (all without one), by key.
    pub(crate) fn rows_of(&self, lookup: Option<&omen_sql::KeyLookup>) -> Result<Arc<TableRows>> {
        match lookup {
            Some(omen_sql::KeyLookup::Points(keys)) => {
                let mut rows = TableRows::new();
                for &key in keys {
                    if let Some(row) = self.get(key)? {
                        rows.insert(key, row);
                    }
                }
                Ok(Arc::new(rows))
            }
            Some(omen_sql::KeyLookup::Range(low, high)) => self.range((*low, *high)),
            None => self.range((Bound::Unbounded, Bound::Unbounded)),
        }
    }

    /// The entries with keys in `range`, by key.
    pub(crate) fn range(&self, range: (Bound<i64>, Bound<i64>)) -> Result<Arc<TableRows>> {
        match &self.spill {
            None if range == (Bound::Unbounded, Bound::Unbounded) => Ok(Arc::clone(&self.memory)),
            None => Ok(Arc::new(
                self.memory
                    .range(range)
                    .map(|(k, row)| (*k, row.clone()))
                    .collect(),
            )),
            Some(spill) => {
                let mut rows = TableRows::new();
                let mut bytes = 0usize;
                for item in spill.merged(&self.name, Some(&self.memory), range) {
                    let (key, row) = item?;
                    bytes = bytes.saturating_add(read_back_bytes(row.as_ref()));
                    if bytes > self.limit {
                        return Err(Error::Limit {
                            kind: LimitKind::SpilledReadBytes,
                            found: bytes,
                            limit: self.limit,
                        });
                    }
                    rows.insert(key, row);
                }
                Ok(Arc::new(rows))
            }
        }
    }
}

/// The memory a row read back from a run takes while a query reads it: its map entry and
/// its values, in the map, in the rows a record batch is built from, in the batch and in
/// the scan's merge of it with the committed rows (measured: about 1 KB a row of 200 bytes
/// of values).
fn read_back_bytes(row: Option<&Row>) -> usize {
    let values = row.map_or(0, |row| {
        row.iter()
            .map(|v| match v {
                crate::Value::Utf8(text) => std::mem::size_of::<crate::Value>() + text.len(),
                _ => std::mem::size_of::<crate::Value>(),
            })
            .sum()
    });
    4 * (64 + values) + row_bytes(row)
}

/// One table's part of a write set.
#[derive(Debug)]
pub(crate) struct TableWrites {
    /// The table as it was at the first write: a commit fails if it changed since.
    pub(crate) table: Arc<Table>,
    /// The rows not spilled (but for `pending`).
    pub(crate) rows: Arc<TableRows>,
    /// Rows written while a read shared `rows`, newer than them.
    pending: TableRows,
}

impl TableWrites {
    /// The entry for `key`, newest first.
    fn get(&self, key: i64) -> Option<&Option<Row>> {
        self.pending.get(&key).or_else(|| self.rows.get(&key))
    }

    /// The rows not spilled, as a read sees them.
    pub(crate) fn rows(&self) -> Arc<TableRows> {
        if self.pending.is_empty() {
            return Arc::clone(&self.rows);
        }
        let mut rows = TableRows::clone(&self.rows);
        rows.extend(self.pending.iter().map(|(k, row)| (*k, row.clone())));
        Arc::new(rows)
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.pending.is_empty()
    }
}

/// Undoes one write: the table's entry for `key` as it was before.
#[derive(Debug)]
struct Undo {
    table: Arc<str>,
    key: i64,
    previous: Option<Option<Row>>,
    bytes: usize,
}

/// How much a write set may hold, and where it spills.
#[derive(Clone, Debug)]
pub(crate) struct WriteLimits {
    /// Bytes held in memory before spilling.
    pub(crate) memory: usize,
    /// Bytes written in all (spilled included).
    pub(crate) total: u64,
    /// The directory of spill files.
    pub(crate) dir: PathBuf,
}

/// A transaction's buffered writes, with the undo log of its savepoints.
#[derive(Debug, Default)]
pub(crate) struct WriteSet {
    /// The transaction's snapshot (set before each statement).
    pub(crate) snapshot: u64,
    pub(crate) tables: BTreeMap<Arc<str>, TableWrites>,
    undo: Vec<Undo>,
    /// Bytes of the memory part's values and of the undo log.
    pub(crate) bytes: usize,
    /// Bytes written in all, spilled included.
    total: u64,
    /// The runs spilled so far.
    pub(crate) spill: Option<Spill>,
    /// A rollback to a savepoint could not be made: only a rollback of all remains.
    broken: bool,
    /// The live savepoints, by (runs, undo length), with how many were taken there.
    live: std::cell::RefCell<BTreeMap<(usize, usize), usize>>,
    /// For each savepoint (runs, undo length) a spill came after, the runs that hold the
    /// writes as they were there.
    splits: BTreeMap<(usize, usize), usize>,
}

/// The bytes a row takes in a log record at least (as a statement's write counts them).
fn row_bytes(row: Option<&Row>) -> usize {
    row.map_or(8, |row| row.iter().map(crate::statement::value_bytes).sum())
}

impl WriteSet {
    /// A point to roll back to, live until [`WriteSet::release`]d.
    pub(crate) fn savepoint(&self) -> Savepoint {
        let runs = self.spill.as_ref().map_or(0, Spill::runs);
        *self
            .live
            .borrow_mut()
            .entry((runs, self.undo.len()))
            .or_default() += 1;
        Savepoint {
            undo: self.undo.len(),
            runs,
            total: self.total,
        }
    }

    /// Forgets `savepoint`: a later spill keeps no runs for it.
    pub(crate) fn release(&mut self, savepoint: Savepoint) {
        let at = (savepoint.runs, savepoint.undo);
        let live = self.live.get_mut();
        if let Some(count) = live.get_mut(&at) {
            *count -= 1;
            if *count == 0 {
                live.remove(&at);
                self.splits.remove(&at);
            }
        }
    }

    /// Moves the rows written while a read shared a table's rows into them (after the read
    /// ended, so nothing is copied).
    pub(crate) fn settle(&mut self) {
        for t in self.tables.values_mut() {
            if !t.pending.is_empty() {
                let pending = std::mem::take(&mut t.pending);
                Arc::make_mut(&mut t.rows).extend(pending);
            }
        }
    }

    /// Whether no write waits in a `pending` map (true between statements).
    pub(crate) fn is_settled(&self) -> bool {
        self.tables.values().all(|t| t.pending.is_empty())
    }

    /// Undoes the writes since `savepoint` (savepoints taken after it are released). Fails,
    /// and leaves the write set good for a rollback only, if it spilled since and the
    /// savepoint was released.
    pub(crate) fn rollback_to(&mut self, savepoint: Savepoint) -> Result<()> {
        self.settle();
        let at = (savepoint.runs, savepoint.undo);
        // The savepoints taken after it go.
        let later = (savepoint.runs, savepoint.undo + 1);
        self.live.get_mut().split_off(&later);
        self.splits.split_off(&later);
        if self.spill.as_ref().map_or(0, Spill::runs) > savepoint.runs {
            let keep = self.splits.get(&at).copied();
            let (Some(spill), Some(keep)) = (self.spill.as_mut(), keep) else {
                self.broken = true;
                return Err(self.broken_error());
            };
            // The runs up to the split hold the state at the savepoint.
            spill.truncate(keep);
            for t in self.tables.values_mut() {
                t.rows = Arc::default();
            }
            self.undo.clear();
            self.bytes = 0;
            self.total = savepoint.total;
            return Ok(());
        }
        while self.undo.len() > savepoint.undo {
            let Some(undo) = self.undo.pop() else { break };
            self.bytes -= undo.bytes;
            if let Some(table) = self.tables.get_mut(&undo.table) {
                let rows = Arc::make_mut(&mut table.rows);
                match undo.previous {
                    Some(previous) => rows.insert(undo.key, previous),
                    None => rows.remove(&undo.key),
                };
            }
        }
        self.total = savepoint.total;
        Ok(())
    }

    fn broken_error(&self) -> Error {
        Error::Unsupported(
            "a rollback to a savepoint released before the transaction's writes spilled to \
             disk (past DbOptions::transaction_memory): roll back the whole transaction"
                .into(),
        )
    }

    /// Fails if the write set can only be rolled back.
    pub(crate) fn check_usable(&self) -> Result<()> {
        if self.broken {
            return Err(self.broken_error());
        }
        Ok(())
    }

    /// What the transaction wrote for `key` of `table`: `None` if nothing, `Some(None)` if it
    /// deleted the row.
    pub(crate) fn get(&self, table: &str, key: i64) -> Result<Option<Option<Row>>> {
        if let Some(row) = self.tables.get(table).and_then(|t| t.get(key)) {
            return Ok(Some(row.clone()));
        }
        match &self.spill {
            Some(spill) => spill.get(table, key),
            None => Ok(None),
        }
    }

    /// Whether `key` of `table` exists as the transaction wrote it: `None` if it did not
    /// write it.
    pub(crate) fn exists(&self, table: &str, key: i64) -> Result<Option<bool>> {
        if let Some(row) = self.tables.get(table).and_then(|t| t.get(key)) {
            return Ok(Some(row.is_some()));
        }
        Ok(self.get(table, key)?.map(|row| row.is_some()))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tables.values().all(TableWrites::is_empty)
            && self.spill.as_ref().is_none_or(|s| s.runs() == 0)
    }

    /// Whether some of the writes are on disk.
    pub(crate) fn spilled(&self) -> bool {
        self.spill.as_ref().is_some_and(|s| s.runs() > 0)
    }

    /// The writes to the tables in `read` (all if `None`) as reads see them; a range read
    /// brings at most `limit` bytes of spilled rows back into memory (`54000` past it).
    pub(crate) fn written(&self, limit: usize, read: Option<&HashSet<String>>) -> WrittenRows {
        let tables = self
            .tables
            .keys()
            .filter(|name| read.is_none_or(|read| read.contains(name.as_ref())))
            .filter_map(|name| Some((name.to_string(), self.written_table(name, limit)?)))
            .collect();
        WrittenRows {
            snapshot: self.snapshot,
            tables,
        }
    }

    /// The writes to `table` as reads see them, if any (see [`WriteSet::written`]).
    pub(crate) fn written_table(&self, table: &str, limit: usize) -> Option<WrittenTable> {
        let (name, t) = self.tables.get_key_value(table)?;
        let written = WrittenTable {
            name: Arc::clone(name),
            memory: t.rows(),
            spill: self
                .spill
                .as_ref()
                .filter(|s| s.runs() > 0)
                .map(Spill::view),
            limit,
        };
        (!written.is_empty()).then_some(written)
    }

    /// Writes `row` (or a delete) for `key` of `table`, within `limits`.
    pub(crate) fn put(
        &mut self,
        name: &str,
        table: &Arc<Table>,
        key: i64,
        row: Option<Row>,
        limits: &WriteLimits,
    ) -> Result<()> {
        self.check_usable()?;
        let entry = match self.tables.get_mut(name) {
            Some(entry) => entry,
            None => self
                .tables
                .entry(Arc::from(name))
                .or_insert_with(|| TableWrites {
                    table: Arc::clone(table),
                    rows: Arc::default(),
                    pending: TableRows::new(),
                }),
        };
        if !Arc::ptr_eq(&entry.table, table) {
            return Err(crate::transaction::schema_changed(name));
        }
        let previous = entry.get(key).cloned();
        let written = row_bytes(row.as_ref());
        let bytes = written + previous.as_ref().map_or(0, |p| row_bytes(p.as_ref()));
        let total = self.total.saturating_add(written as u64);
        if total > limits.total {
            return Err(Error::Limit {
                kind: LimitKind::TransactionBytes,
                found: usize::try_from(total).unwrap_or(usize::MAX),
                limit: usize::try_from(limits.total).unwrap_or(usize::MAX),
            });
        }
        match Arc::get_mut(&mut entry.rows) {
            Some(rows) => rows.insert(key, row),
            None => entry.pending.insert(key, row),
        };
        let table_name = match self.tables.get_key_value(name) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(name),
        };
        self.undo.push(Undo {
            table: table_name,
            key,
            previous,
            bytes,
        });
        self.bytes += bytes;
        self.total = total;
        if self.bytes > limits.memory {
            self.spill_all(limits)?;
        }
        Ok(())
    }

    /// The rows written before each of `ends` (undo lengths, not descending) and since the one
    /// before it, by table, as they were at that end.
    fn intervals(&self, ends: &[usize]) -> Vec<BTreeMap<Arc<str>, TableRows>> {
        // Walking the undo log back from now, `reverted` holds for each key written since
        // the position reached its value there (`None`: not in the memory part then).
        let mut reverted: HashMap<(&Arc<str>, i64), Option<&Option<Row>>> = HashMap::new();
        let mut parts = vec![BTreeMap::new(); ends.len()];
        let mut position = self.undo.len();
        for (j, &end) in ends.iter().enumerate().rev() {
            for entry in self.undo[end..position].iter().rev() {
                reverted.insert((&entry.table, entry.key), entry.previous.as_ref());
            }
            position = end;
            let start = if j == 0 { 0 } else { ends[j - 1] };
            for entry in &self.undo[start..end] {
                let value = match reverted.get(&(&entry.table, entry.key)) {
                    Some(value) => *value,
                    None => self.tables.get(&entry.table).and_then(|t| t.get(entry.key)),
                };
                if let Some(value) = value {
                    let part: &mut TableRows =
                        parts[j].entry(Arc::clone(&entry.table)).or_default();
                    part.insert(entry.key, value.clone());
                }
            }
        }
        parts
    }

    /// Moves the memory part to runs on disk: one ending at each live savepoint taken since
    /// the last spill, then one for the rest (see the module docs).
    fn spill_all(&mut self, limits: &WriteLimits) -> Result<()> {
        self.settle();
        let runs = self.spill.as_ref().map_or(0, Spill::runs);
        let savepoints: Vec<usize> = self
            .live
            .get_mut()
            .range((runs, 0)..=(runs, self.undo.len()))
            .map(|(&(_, undo), _)| undo)
            .collect();
        // With no savepoint to end at, the memory part is written as it is (not copied).
        let parts = if savepoints.is_empty() {
            Vec::new()
        } else {
            self.intervals(&[savepoints.as_slice(), &[self.undo.len()]].concat())
        };
        let spill = match &mut self.spill {
            Some(spill) => spill,
            None => self.spill.insert(Spill::new(&limits.dir)?),
        };
        let tables = &self.tables;
        let key_of = |name: &Arc<str>| tables.get(name).map_or(0, |t| t.table.schema.key);
        for (i, part) in parts.iter().enumerate() {
            if !part.is_empty() {
                spill.write_run(part.iter().map(|(name, rows)| (name, key_of(name), rows)))?;
            }
            if let Some(&undo) = savepoints.get(i) {
                self.splits.insert((runs, undo), spill.runs());
            }
        }
        if parts.is_empty() {
            spill.write_run(
                tables
                    .iter()
                    .map(|(name, t)| (name, t.table.schema.key, t.rows.as_ref())),
            )?;
        }
        for t in self.tables.values_mut() {
            t.rows = Arc::default();
        }
        self.undo.clear();
        self.bytes = 0;
        Ok(())
    }
}
