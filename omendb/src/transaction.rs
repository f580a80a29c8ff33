//! Transactions: many reads and writes, committed atomically or not at all.
//!
//! A [`Transaction`] buffers its writes (its write set: each table's written rows by key, a
//! deleted row as `None`) and commits them as one change record, that is one WAL record: the
//! log, recovery, the index, the replicator and every reader see all of it or none of it.
//! Until the commit nobody else sees them; the transaction's own reads ([`Transaction::get`],
//! [`Transaction::scan`], [`Transaction::sql`], on the index fast path and in DataFusion
//! scans alike) see them over the committed rows.
//!
//! Isolation (stated in `docs/sql.md`): snapshot isolation. The transaction's snapshot is
//! taken at its first read or write: every read sees the commits before it plus the
//! transaction's own writes, whatever commits after. Writes follow first-committer-wins: a
//! commit fails with [`Error::SerializationFailure`] (`40001`) and applies nothing when
//! another commit wrote one of its keys, or changed the schema of a table it writes, after
//! its snapshot. The index answers a transaction's key reads while no commit came after its
//! snapshot; after one, its reads go to the replicator's versions (Parquet files and delta),
//! which compaction keeps for the oldest running snapshot (`ReplicatorOptions::snapshot_pin`).
//!
//! Invariants:
//! - a statement changes the write set whole or not at all (a failed one is undone to the
//!   savepoint taken before it);
//! - the write set's bytes, undo entries included, stay within the WAL's record limit, so the
//!   commit fits one record and the transaction's memory is bounded;
//! - [`Conflicts`] knows every key committed after the oldest running transaction began (or,
//!   past its capacity, fails every transaction that began before its horizon).

use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, Deref, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use omen_replicator::change::Value;
use omen_wal::Lsn;

use crate::db::{Db, Op, Table, WriteBatch, check_row};
use crate::error::{Error, Result};
use crate::interrupt::Interrupt;
use crate::row::Row;
use crate::sql::APPLYING;
pub use crate::write_set::{Savepoint, WrittenRows};
use crate::write_set::{WriteSet, WrittenTable};
use crate::{QueryResult, QueryStream};
use omen_sql::KeyLookup;

/// Keys whose last commit [`Conflicts`] remembers at most; past it, it forgets them all and
/// fails the transactions that began before (they retry).
pub(crate) const MAX_TRACKED_KEYS: usize = 1 << 20;

/// The last commit of each key written since the oldest running transaction began: what a
/// commit checks its write set against (first committer wins).
#[derive(Debug)]
pub(crate) struct Conflicts {
    state: Mutex<ConflictState>,
    /// The oldest running transaction's snapshot (`u64::MAX`: none), for compaction.
    pin: Arc<AtomicU64>,
    /// Transactions older than this fail, and stop holding the pin.
    max_age: Duration,
}

#[derive(Debug, Default)]
struct ConflictState {
    /// Start LSNs of the running transactions, with their number and when the first of them
    /// began.
    running: BTreeMap<u64, (usize, Instant)>,
    /// Table -> key -> LSN of the last commit that wrote it (only commits above the oldest
    /// running start).
    written: HashMap<String, HashMap<i64, u64>>,
    /// Keys in `written`.
    keys: usize,
    /// Transactions that began below it cannot be checked (`written` was emptied at it).
    horizon: u64,
    /// The LSN of the last commit [`Conflicts::record`] was told of: while `applied` equals
    /// it, `written` knows every commit after each running snapshot.
    seen: u64,
}

impl Conflicts {
    /// Conflicts that publish the oldest running snapshot in `pin`.
    pub(crate) fn new(pin: Arc<AtomicU64>, max_age: Duration, applied: u64) -> Self {
        pin.store(u64::MAX, Ordering::SeqCst);
        Self {
            state: Mutex::new(ConflictState {
                seen: applied,
                ..ConflictState::default()
            }),
            pin,
            max_age,
        }
    }

    /// `read` of the index, if it holds what a transaction with snapshot `at` (running)
    /// reads for `lookup` of `table`: no commit after the snapshot wrote one of its keys.
    /// `None`: read the versions at the snapshot instead. The check holds while no commit is
    /// applied: `applied` equals the last commit recorded before the check and after `read`
    /// (it only grows, so equal means none came between), and `read` runs without the lock.
    pub(crate) fn read_unchanged<T>(
        &self,
        applied: &AtomicU64,
        table: &str,
        at: u64,
        lookup: &KeyLookup,
        read: impl FnOnce() -> T,
    ) -> Option<T> {
        /// A range read checks every key written to its table: not when there are many.
        const MAX_RANGE_CHECK: usize = 4096;
        let seen = {
            let state = self.lock();
            let seen = state.seen;
            if at < state.horizon || applied.load(Ordering::SeqCst) != seen {
                return None;
            }
            if let Some(rows) = state.written.get(table) {
                let changed = |key: &i64| rows.get(key).is_some_and(|&lsn| lsn > at);
                let touched = match lookup {
                    KeyLookup::Points(keys) => keys.iter().any(changed),
                    KeyLookup::Range(..) if rows.len() > MAX_RANGE_CHECK => return None,
                    KeyLookup::Range(low, high) => rows
                        .iter()
                        .any(|(key, &lsn)| lsn > at && (*low, *high).contains(key)),
                };
                if touched {
                    return None;
                }
            }
            seen
        };
        let found = read();
        (applied.load(Ordering::SeqCst) == seen).then_some(found)
    }

    fn lock(&self) -> MutexGuard<'_, ConflictState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a transaction; returns its start: the LSN of the last applied commit. A
    /// commit records its keys after it is applied, under this lock, so each commit is either
    /// seen by the start or recorded for the transaction.
    fn begin(&self, applied: &AtomicU64) -> u64 {
        let mut state = self.lock();
        let start = loop {
            match applied.load(Ordering::SeqCst) {
                APPLYING => std::thread::yield_now(),
                lsn => break lsn,
            }
        };
        state
            .running
            .entry(start)
            .or_insert_with(|| (0, Instant::now()))
            .0 += 1;
        self.publish(&state);
        start
    }

    /// Publishes the oldest snapshot a transaction young enough to read still needs.
    fn publish(&self, state: &ConflictState) {
        let oldest = state
            .running
            .iter()
            .find(|(_, (_, since))| since.elapsed() <= self.max_age)
            .map_or(u64::MAX, |(&start, _)| start);
        self.pin.store(oldest, Ordering::SeqCst);
    }

    /// Unregisters a transaction that began at `start`, forgetting what no running
    /// transaction needs any more.
    fn end(&self, start: u64) {
        let mut state = self.lock();
        let oldest = state.running.keys().next().copied();
        if let Some((count, _)) = state.running.get_mut(&start) {
            *count -= 1;
            if *count == 0 {
                state.running.remove(&start);
            }
        }
        match state.running.keys().next().copied() {
            None => {
                state.written.clear();
                state.keys = 0;
            }
            Some(now) if Some(now) != oldest => {
                let mut keys = 0;
                for rows in state.written.values_mut() {
                    rows.retain(|_, lsn| *lsn > now);
                    keys += rows.len();
                }
                state.written.retain(|_, rows| !rows.is_empty());
                state.keys = keys;
            }
            Some(_) => {}
        }
        self.publish(&state);
    }

    /// Records that the commit at `lsn` (applied) wrote `keys`, if a running transaction
    /// began before it.
    pub(crate) fn record<'a>(&self, lsn: u64, keys: impl Iterator<Item = (&'a str, i64)>) {
        let mut state = self.lock();
        if state.seen < lsn {
            state.seen = lsn;
        }
        if state
            .running
            .keys()
            .next()
            .is_none_or(|&oldest| oldest >= lsn)
        {
            return;
        }
        // Transactions that outlived their age stop holding the pin.
        self.publish(&state);
        for (table, key) in keys {
            if state.keys >= MAX_TRACKED_KEYS {
                state.written.clear();
                state.keys = 0;
                state.horizon = lsn;
                return;
            }
            let rows = match state.written.get_mut(table) {
                Some(rows) => rows,
                None => state.written.entry(table.to_string()).or_default(),
            };
            if rows.insert(key, lsn).is_none() {
                state.keys += 1;
            }
        }
    }

    /// Fails if a commit after `start` wrote one of `keys` of `table`.
    pub(crate) fn check(
        &self,
        start: u64,
        table: &str,
        keys: impl Iterator<Item = i64>,
    ) -> Result<()> {
        let state = self.lock();
        if start < state.horizon {
            return Err(Error::SerializationFailure(format!(
                "could not serialize access: other transactions wrote more than \
                 {MAX_TRACKED_KEYS} rows while this one ran; nothing of it was applied: retry it"
            )));
        }
        let Some(rows) = state.written.get(table) else {
            return Ok(());
        };
        for key in keys {
            if rows.get(&key).is_some_and(|&lsn| lsn > start) {
                return Err(Error::SerializationFailure(format!(
                    "could not serialize access due to concurrent update: the row with key \
                     {key} of table {table:?} was written by a transaction that committed \
                     after this one began; nothing of this one was applied: retry it"
                )));
            }
        }
        Ok(())
    }
}

pub(crate) fn schema_changed(table: &str) -> Error {
    Error::SerializationFailure(format!(
        "could not serialize access: table {table:?} was altered, dropped or created again \
         while this transaction wrote to it; nothing of it was applied: retry it"
    ))
}

/// The database a transaction runs in: borrowed, or shared (a server's sessions hold their
/// transactions between statements).
enum DbRef<'db> {
    Borrowed(&'db Db),
    Shared(Arc<Db>),
}

impl Deref for DbRef<'_> {
    type Target = Db;

    fn deref(&self) -> &Db {
        match self {
            DbRef::Borrowed(db) => db,
            DbRef::Shared(db) => db,
        }
    }
}

/// A transaction: reads that see its own writes, and writes applied together at
/// [`Transaction::commit`] or not at all ([`Transaction::rollback`], or dropping it). See
/// the module documentation for its isolation.
pub struct Transaction<'db> {
    db: DbRef<'db>,
    /// The snapshot, taken at the first read or write, and when.
    start: std::sync::OnceLock<(u64, Instant)>,
    writes: WriteSet,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("start", &self.start.get().map(|s| s.0))
            .field("bytes", &self.writes.bytes)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Begins a transaction.
    pub fn begin(&self) -> Transaction<'_> {
        Transaction {
            db: DbRef::Borrowed(self),
            start: std::sync::OnceLock::new(),
            writes: WriteSet::default(),
        }
    }

    /// [`Db::begin`] for a transaction that holds the database itself (to keep it between
    /// calls, as a server's session does).
    pub fn begin_shared(self: &Arc<Self>) -> Transaction<'static> {
        Transaction {
            db: DbRef::Shared(Arc::clone(self)),
            start: std::sync::OnceLock::new(),
            writes: WriteSet::default(),
        }
    }
}

impl Transaction<'_> {
    /// The transaction's snapshot LSN (taken now if this is its first read or write).
    pub fn snapshot(&self) -> Lsn {
        Lsn(self.start())
    }

    fn start(&self) -> u64 {
        self.start
            .get_or_init(|| (self.db.conflicts.begin(&self.db.applied), Instant::now()))
            .0
    }

    /// Fails once the transaction is older than `DbOptions::max_transaction_age` (its
    /// snapshot's versions are no longer kept for it).
    fn check_age(&self) -> Result<()> {
        match self.start.get() {
            Some((_, since)) if since.elapsed() > self.db.conflicts.max_age => {
                Err(Error::SerializationFailure(format!(
                    "the transaction ran longer than the {:?} a transaction may \
                     (DbOptions::max_transaction_age); nothing of it was applied: retry it",
                    self.db.conflicts.max_age
                )))
            }
            _ => Ok(()),
        }
    }

    /// The rows of `table` at the snapshot matching `lookup`, by key, with this
    /// transaction's writes over them.
    fn rows_at(&self, table: &str, lookup: &KeyLookup) -> Result<Vec<Row>> {
        let snapshot = self.start();
        self.check_age()?;
        let t = self.db.table(table)?;
        let conflicts = Some(self.db.conflicts.as_ref());
        // A row the index cannot decode is read from the versions instead.
        let from_index =
            crate::sql::index_rows_at(&t, snapshot, &self.db.applied, conflicts, lookup)
                .ok()
                .flatten();
        let committed = match from_index {
            Some(rows) => rows,
            None => self.versions_at(table, &t, lookup, snapshot)?,
        };
        Ok(match self.writes_of(table) {
            Some(written) => crate::sql::over_written(&t.schema, committed, &written, lookup)?,
            None => committed,
        })
    }

    /// This transaction's writes to `table`, if it wrote to it.
    fn writes_of(&self, table: &str) -> Option<WrittenTable> {
        self.writes.written_table(table, self.db.sql_memory_limit)
    }

    /// The committed rows matching `lookup` at `snapshot`, from the replicator's versions
    /// (a SQL scan at the snapshot).
    fn versions_at(
        &self,
        name: &str,
        table: &Table,
        lookup: &KeyLookup,
        snapshot: u64,
    ) -> Result<Vec<Row>> {
        let key = &table.schema.columns[table.schema.key].name;
        let condition = match lookup {
            KeyLookup::Points(keys) if keys.is_empty() => "false".to_string(),
            KeyLookup::Points(keys) => {
                let list: Vec<String> = keys.iter().map(i64::to_string).collect();
                format!("\"{key}\" IN ({})", list.join(", "))
            }
            KeyLookup::Range(low, high) => {
                let mut parts = vec!["true".to_string()];
                match low {
                    Bound::Included(v) => parts.push(format!("\"{key}\" >= {v}")),
                    Bound::Excluded(v) => parts.push(format!("\"{key}\" > {v}")),
                    Bound::Unbounded => {}
                }
                match high {
                    Bound::Included(v) => parts.push(format!("\"{key}\" <= {v}")),
                    Bound::Excluded(v) => parts.push(format!("\"{key}\" < {v}")),
                    Bound::Unbounded => {}
                }
                parts.join(" AND ")
            }
        };
        let sql = format!("SELECT * FROM \"{name}\" WHERE {condition} ORDER BY \"{key}\"");
        let statement = crate::limits::parse_sql(&sql, &crate::SqlLimits::default())?
            .pop_front()
            .ok_or_else(|| Error::Unsupported("an empty statement".into()))?;
        let view = WrittenRows {
            snapshot,
            tables: HashMap::new(),
        };
        let db: &Db = &self.db;
        let result =
            crate::limits::with_plan_stack(|| db.query(statement, &Interrupt::new(), Some(&view)))?;
        let mut rows = Vec::new();
        for batch in &result.batches {
            rows.extend(
                crate::statement::batch_values(name, &table.schema, batch)?
                    .into_iter()
                    .map(Vec::into_boxed_slice),
            );
        }
        Ok(rows)
    }

    /// The row with `key` at the transaction's snapshot: its own version if it wrote it.
    pub fn get(&self, table: &str, key: i64) -> Result<Option<Row>> {
        if let Some(row) = self.writes.get(table, key)? {
            return Ok(row);
        }
        Ok(self
            .rows_at(table, &KeyLookup::Points(vec![key]))?
            .into_iter()
            .next())
    }

    /// The rows with `keys`, in order ([`Transaction::get`] of each).
    pub fn multi_get(&self, table: &str, keys: &[i64]) -> Result<Vec<Option<Row>>> {
        let mut sorted = keys.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let t = self.db.table(table)?;
        let found: HashMap<i64, Row> = self
            .rows_at(table, &KeyLookup::Points(sorted))?
            .into_iter()
            .map(|row| (crate::sql::row_key(&t.schema, &row), row))
            .collect();
        Ok(keys.iter().map(|key| found.get(key).cloned()).collect())
    }

    /// The rows with keys in `range`, by key, at the transaction's snapshot with its writes
    /// over them.
    pub fn scan(&self, table: &str, range: impl RangeBounds<i64>) -> Result<Vec<Row>> {
        let lookup = KeyLookup::Range(range.start_bound().cloned(), range.end_bound().cloned());
        self.rows_at(table, &lookup)
    }

    /// Inserts a row; its key must not exist (committed, or written by this transaction).
    pub fn insert(&mut self, table: &str, row: Vec<Value>) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.insert(table, row);
        self.apply(&batch)
    }

    /// Inserts or replaces a row.
    pub fn upsert(&mut self, table: &str, row: Vec<Value>) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.upsert(table, row);
        self.apply(&batch)
    }

    /// Deletes the row with `key`, if any.
    pub fn delete(&mut self, table: &str, key: i64) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.delete(table, key);
        self.apply(&batch)
    }

    /// Adds `batch` to the write set, whole or not at all.
    pub fn apply(&mut self, batch: &WriteBatch) -> Result<()> {
        self.writes.snapshot = self.start();
        self.check_age()?;
        let savepoint = self.writes.savepoint();
        let applied = apply_batch(&self.db, &mut self.writes, batch);
        self.end_statement(savepoint, applied.is_ok());
        applied
    }

    /// Runs SQL in the transaction: queries see the transaction's writes, writes join them. A
    /// statement that fails changes nothing; the transaction stays usable. `CREATE`, `DROP`
    /// and `ALTER TABLE` are not transactional: they are applied at once, and stay after a
    /// rollback (a commit fails if the transaction wrote to a table changed so).
    pub fn sql(&mut self, text: &str) -> Result<QueryResult> {
        self.sql_with(text, &Interrupt::new())
    }

    /// [`Transaction::sql`], cancelled when `interrupt` is given.
    pub fn sql_with(&mut self, text: &str, interrupt: &Interrupt) -> Result<QueryResult> {
        crate::limits::with_plan_stack(|| {
            let statements = crate::limits::parse_sql(text, &self.db.sql_limits)?;
            let mut result = None;
            for statement in statements {
                interrupt.check()?;
                result = Some(self.run(statement, interrupt)?);
            }
            result.ok_or_else(|| Error::Unsupported("an empty statement".into()))
        })
    }

    /// [`Transaction::sql_with`] of one statement already parsed (see
    /// [`Db::sql_parsed_with`]).
    pub fn sql_parsed_with(
        &mut self,
        statement: datafusion::sql::parser::Statement,
        interrupt: &Interrupt,
    ) -> Result<QueryResult> {
        crate::limits::with_plan_stack(|| {
            crate::limits::check(&statement, &self.db.sql_limits)?;
            interrupt.check()?;
            self.run(statement, interrupt)
        })
    }

    /// Runs a statement checked against the limits, on a thread with the plan stack.
    pub(crate) fn run(
        &mut self,
        statement: datafusion::sql::parser::Statement,
        interrupt: &Interrupt,
    ) -> Result<QueryResult> {
        // A schema change runs outside the transaction: it does not take the snapshot, so
        // that a block's statements after its CREATE TABLE see the table.
        if !crate::statement::is_schema_change(&statement) {
            self.writes.snapshot = self.start();
            self.check_age()?;
        }
        let savepoint = self.writes.savepoint();
        let db: &Db = &self.db;
        let result = db.run_statement(statement, interrupt, Some(&mut self.writes));
        self.end_statement(savepoint, result.is_ok());
        result
    }

    /// Ends a statement begun at `savepoint`: rolled back to it unless it `succeeded`, and
    /// the savepoint released.
    fn end_statement(&mut self, savepoint: Savepoint, succeeded: bool) {
        if !succeeded {
            // A live savepoint can always be rolled back to; should it fail (a spill's I/O
            // error), the write set is broken and says so to every later write and the
            // commit.
            let _ = self.writes.rollback_to(savepoint);
        }
        self.writes.release(savepoint);
        self.writes.settle();
    }

    /// What the transaction has written, for a query streamed outside it
    /// ([`Db::sql_stream_parsed_in`]).
    pub fn written(&self) -> Result<WrittenRows> {
        let mut written = self.writes.written(self.db.sql_memory_limit, None);
        written.snapshot = self.start();
        Ok(written)
    }

    /// Whether the transaction has written nothing (or rolled all of it back).
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// A point to roll back to.
    pub fn savepoint(&self) -> Savepoint {
        self.writes.savepoint()
    }

    /// Undoes the writes made since `savepoint`, which stays valid; savepoints taken after
    /// it are released.
    ///
    /// Fails for a savepoint already released, if the writes spilled to disk since (past
    /// `DbOptions::transaction_memory`): then only [`Transaction::rollback`] remains.
    pub fn rollback_to(&mut self, savepoint: Savepoint) -> Result<()> {
        self.writes.rollback_to(savepoint)
    }

    /// Forgets `savepoint` (as SQL's `RELEASE SAVEPOINT`): the writes made since stay, and
    /// a spill no longer keeps the rows as they were there. A transaction that takes many
    /// savepoints should release those it no longer needs.
    pub fn release(&mut self, savepoint: Savepoint) {
        self.writes.release(savepoint);
    }

    /// Commits the writes atomically and durably (per the WAL's sync mode); returns the LSN
    /// of their commit. Fails with [`Error::SerializationFailure`] (nothing applied) if
    /// another transaction committed a write to one of its keys after it began.
    pub fn commit(self) -> Result<Lsn> {
        let writer = self.db.lock_writer();
        self.commit_locked(&writer)
    }

    /// [`Transaction::commit`] with the writer lock held.
    pub(crate) fn commit_locked(&self, _writer: &MutexGuard<'_, ()>) -> Result<Lsn> {
        let db: &Db = &self.db;
        let Some(&(start, _)) = self.start.get().filter(|_| !self.writes.is_empty()) else {
            return Ok(db.wal.last_lsn());
        };
        self.writes.check_usable()?;
        self.check_age()?;
        assert!(
            self.writes.is_settled(),
            "a write set committed mid-statement"
        );
        let spilled = self.writes.spilled();
        {
            let catalog = db.catalog();
            for (name, written) in &self.writes.tables {
                if written.rows.is_empty() && !spilled {
                    continue;
                }
                match catalog.get(name.as_ref()) {
                    Some(now) if Arc::ptr_eq(now, &written.table) => {}
                    _ => return Err(schema_changed(name)),
                }
            }
        }
        if !spilled {
            // One record when it fits in one, else a group of them (`group_commit`).
            let mut batch = WriteBatch::new();
            for (name, written) in &self.writes.tables {
                db.conflicts
                    .check(start, name, written.rows.keys().copied())?;
                for (&key, row) in written.rows.iter() {
                    match row {
                        Some(row) => batch.upsert(name, row.to_vec()),
                        None => batch.delete(name, key),
                    };
                }
            }
            match db.write_locked(&batch) {
                Err(Error::Wal(omen_wal::WalError::RecordTooLarge { .. })) => {}
                done => return done,
            }
        }
        db.commit_group(start, &self.writes)
    }

    /// Drops the writes.
    pub fn rollback(self) {}
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if let Some(&(start, _)) = self.start.get() {
            self.db.conflicts.end(start);
        }
    }
}

/// Adds the changes of `batch` to `writes`: rows checked against their schemas, inserts
/// against the keys that exist (committed, or written before).
pub(crate) fn apply_batch(db: &Db, writes: &mut WriteSet, batch: &WriteBatch) -> Result<()> {
    let limits = db.write_limits();
    for op in &batch.ops {
        match op {
            Op::Insert { table, row } | Op::Upsert { table, row } => {
                let t = db.table(table)?;
                let key = check_row(table, &t.schema, row)?;
                if matches!(op, Op::Insert { .. }) {
                    let exists = match writes.exists(table, key)? {
                        Some(exists) => exists,
                        None => t.read().contains_key(key),
                    };
                    if exists {
                        return Err(Error::DuplicateKey {
                            table: table.clone(),
                            key,
                        });
                    }
                }
                writes.put(table, &t, key, Some(row.clone().into_boxed_slice()), limits)?;
            }
            Op::Delete { table, key } => {
                let t = db.table(table)?;
                writes.put(table, &t, *key, None, limits)?;
            }
        }
    }
    Ok(())
}

impl Db {
    /// [`Db::sql_stream_parsed_with`] of a query that sees `written` over the committed rows
    /// (a transaction's writes, [`Transaction::written`]).
    pub fn sql_stream_parsed_in(
        &self,
        statement: datafusion::sql::parser::Statement,
        interrupt: &Interrupt,
        written: &WrittenRows,
    ) -> Result<QueryStream<'_>> {
        crate::limits::with_plan_stack(|| {
            crate::limits::check(&statement, &self.sql_limits)?;
            self.stream_checked(statement, interrupt, Some(written))
        })
    }
}
