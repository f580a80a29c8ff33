//! A transaction's buffered writes: per table, the rows by key (`None`: deleted), with the
//! undo log of its savepoints; beyond `DbOptions::transaction_memory` they move to runs on
//! disk ([`crate::spill`]), so a transaction of any size holds a bounded amount of memory.
//!
//! Invariants:
//! - the memory part (`tables`) is newer than every spilled run, and a read of a key looks
//!   there first, then at the runs newest first;
//! - `bytes` counts the memory part's values and undo entries and stays within the budget
//!   after each write (a write past it spills everything first);
//! - a savepoint taken before a spill cannot be rolled back to exactly (the undo entries
//!   that would restore it were spilled with the rows): trying marks the write set
//!   `broken`, and a broken write set refuses every write and its commit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::db::Table;
use crate::error::{Error, LimitKind, Result};
use crate::row::Row;
use crate::spill::Spill;
pub(crate) use crate::spill::TableRows;

/// A point in a transaction to roll back to ([`crate::Transaction::savepoint`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Savepoint {
    undo: usize,
    runs: usize,
    total: u64,
}

/// What a transaction wrote, as its reads see it: each table's written rows at one moment,
/// shared (a later write copies them rather than change what a running read sees).
#[derive(Clone, Debug, Default)]
pub struct WrittenRows {
    pub(crate) snapshot: u64,
    pub(crate) tables: HashMap<String, Arc<TableRows>>,
}

impl WrittenRows {
    /// The transaction's snapshot LSN.
    pub(crate) fn snapshot(&self) -> u64 {
        self.snapshot
    }

    /// The rows written to `table`, if any.
    pub(crate) fn table(&self, table: &str) -> Option<&Arc<TableRows>> {
        self.tables.get(table)
    }

    /// Whether nothing was written.
    pub(crate) fn is_empty(&self) -> bool {
        self.tables.values().all(|rows| rows.is_empty())
    }
}

/// One table's part of a write set.
#[derive(Debug)]
pub(crate) struct TableWrites {
    /// The table as it was at the first write: a commit fails if it changed since.
    pub(crate) table: Arc<Table>,
    /// The rows not spilled.
    pub(crate) rows: Arc<TableRows>,
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
}

/// The bytes a row takes in a log record at least (as a statement's write counts them).
fn row_bytes(row: Option<&Row>) -> usize {
    row.map_or(8, |row| row.iter().map(crate::statement::value_bytes).sum())
}

/// The rows of `table` in `spill` and `memory` (newest of each key) whose keys `keep`
/// takes, counting their bytes into `bytes`: past `limit`, `54000`.
pub(crate) fn read_back(
    spill: &Spill,
    table: &str,
    memory: &TableRows,
    keep: impl Fn(i64) -> bool,
    limit: usize,
    bytes: &mut usize,
) -> Result<TableRows> {
    let mut rows = TableRows::new();
    for item in spill.merged(table, Some(memory)) {
        let (key, row) = item?;
        if !keep(key) {
            continue;
        }
        *bytes = bytes.saturating_add(row_bytes(row.as_ref()) + 32);
        if *bytes > limit {
            return Err(Error::Limit {
                kind: LimitKind::SpilledReadBytes,
                found: *bytes,
                limit,
            });
        }
        rows.insert(key, row);
    }
    Ok(rows)
}

impl WriteSet {
    pub(crate) fn savepoint(&self) -> Savepoint {
        Savepoint {
            undo: self.undo.len(),
            runs: self.spill.as_ref().map_or(0, Spill::runs),
            total: self.total,
        }
    }

    /// Undoes the writes since `savepoint`. Fails, and leaves the write set good for a
    /// rollback only, if it spilled since.
    pub(crate) fn rollback_to(&mut self, savepoint: Savepoint) -> Result<()> {
        if self.spill.as_ref().map_or(0, Spill::runs) > savepoint.runs {
            self.broken = true;
            return Err(self.broken_error());
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
            "a rollback to a savepoint taken before the transaction's writes spilled to disk \
             (past DbOptions::transaction_memory): roll back the whole transaction"
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
        if let Some(row) = self.tables.get(table).and_then(|t| t.rows.get(&key)) {
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
        if let Some(row) = self.tables.get(table).and_then(|t| t.rows.get(&key)) {
            return Ok(Some(row.is_some()));
        }
        Ok(self.get(table, key)?.map(|row| row.is_some()))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tables.values().all(|t| t.rows.is_empty())
            && self.spill.as_ref().is_none_or(|s| s.runs() == 0)
    }

    /// Whether some of the writes are on disk.
    pub(crate) fn spilled(&self) -> bool {
        self.spill.as_ref().is_some_and(|s| s.runs() > 0)
    }

    /// The writes as reads see them. Spilled rows are read back into memory, of the tables
    /// in `read` only (all if `None`), at most `limit` bytes of them (a query in a transaction
    /// that wrote more fails with `54000`).
    pub(crate) fn written(
        &self,
        limit: usize,
        read: Option<&HashSet<String>>,
    ) -> Result<WrittenRows> {
        let mut tables = HashMap::new();
        let mut bytes = 0usize;
        for (name, t) in &self.tables {
            let rows = match &self.spill {
                Some(_) if read.is_some_and(|read| !read.contains(name.as_ref())) => continue,
                Some(spill) if spill.runs() > 0 => Arc::new(read_back(
                    spill,
                    name,
                    &t.rows,
                    |_| true,
                    limit,
                    &mut bytes,
                )?),
                _ => Arc::clone(&t.rows),
            };
            if !rows.is_empty() {
                tables.insert(name.to_string(), rows);
            }
        }
        Ok(WrittenRows {
            snapshot: self.snapshot,
            tables,
        })
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
                }),
        };
        if !Arc::ptr_eq(&entry.table, table) {
            return Err(crate::transaction::schema_changed(name));
        }
        let previous = entry.rows.get(&key).cloned();
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
        Arc::make_mut(&mut entry.rows).insert(key, row);
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

    /// Moves the memory part to a new run on disk.
    fn spill_all(&mut self, limits: &WriteLimits) -> Result<()> {
        let spill = match &mut self.spill {
            Some(spill) => spill,
            None => self.spill.insert(Spill::new(&limits.dir)?),
        };
        spill.write_run(
            self.tables
                .iter()
                .map(|(name, t)| (name, t.table.schema.key, t.rows.as_ref())),
        )?;
        for t in self.tables.values_mut() {
            t.rows = Arc::default();
        }
        self.undo.clear();
        self.bytes = 0;
        Ok(())
    }
}
