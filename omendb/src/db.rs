//! `Db`: tables, atomic durable write batches, point reads from the learned index, and the
//! replicator feeding Parquet.
//!
//! Every change goes through one path: it is encoded as a change record, appended to the WAL
//! (durable per the sync mode), then applied to the in-memory tables by the same function
//! that replays the log on open. So what recovery rebuilds is exactly what was served.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use arrow::record_batch::RecordBatch;
use std::time::Duration;

use omen_alex::AlexMap;
use omen_replicator::change::{
    self, ChangeEncoder, ChangeError, ColumnDef, Entry, RowChange, TableSchema, Value,
};
use omen_replicator::{ReplicatorOptions, WalReplicator};
use omen_sql::Route;
use omen_wal::{Lsn, Wal, WalOptions};

use crate::error::{Error, Result};
use crate::row::{Row, RowBuf, RowRef};
use crate::sql::APPLYING;
use crate::stored_row::{Encoded, StoredRow};
use crate::table_cache::{self, CatalogStamp};

/// Rows a [`Db::scan`] reads per hold of a table's read lock.
pub const SCAN_CHUNK: usize = 4096;

/// Stack of each SQL thread: room for expressions nested `SqlLimits::max_expression_depth`
/// deep (see `limits::PLAN_STACK`; only the pages touched are committed).
const SQL_THREAD_STACK: usize = 64 << 20;

/// Options of [`Db::open`].
#[derive(Clone, Debug)]
pub struct DbOptions {
    /// The write-ahead log's options (sync mode, segment size, recovery mode).
    pub wal: WalOptions,
    /// The replicator's options (batch rows and age, compaction, lag budget).
    pub replicator: ReplicatorOptions,
    /// How long a write waits for a replicator that is beyond its lag budget and reads
    /// nothing before failing with `ReplicatorError::Behind` (while it makes progress, writes
    /// wait: they are slowed to its pace).
    pub throttle_timeout: Duration,
    /// Threads (and DataFusion partitions) for SQL queries. Default: the available cores, at
    /// least 1.
    pub sql_threads: usize,
    /// What a SQL statement may be: its length and the depth of its expressions.
    pub sql_limits: crate::SqlLimits,
    /// Memory one SQL query may use for its operators (sorts, aggregations and joins), in
    /// bytes. Sorts and aggregations spill to disk beyond it; others fail with a clear error.
    /// Default: 2 GiB.
    pub sql_memory_limit: usize,
    /// Memory all SQL queries together may use for their operators, in bytes, suspended
    /// ones included (see `sql_memory_limit`). Default: 4 GiB.
    pub sql_total_memory: usize,
    /// Temporary disk one SQL query's sorts and aggregations may spill to, in bytes; past it
    /// the query fails. Default: 16 GiB (a sort of a huge series could fill the disk the
    /// log lives on).
    pub sql_spill_limit: u64,
    /// Whether key reads (`SELECT cols FROM t WHERE id = 5`, `IN (...)`, short ranges) are
    /// answered from the learned index without DataFusion (see `omen-router`). Default: on;
    /// off, every query is planned by DataFusion (for comparisons).
    pub sql_fast_path: bool,
    /// How long a transaction may run from its first read or write: past it, its statements
    /// and its commit fail with `Error::SerializationFailure` (nothing applied), and
    /// compaction stops keeping the versions its snapshot reads. Bounds what an abandoned
    /// transaction holds. Default: one hour.
    pub max_transaction_age: Duration,
    /// Bytes of a transaction's writes held in memory: beyond, they spill to a temporary
    /// file in the database's directory, so a transaction of any size holds at most about
    /// this much (plus a Bloom filter of 10 bits a spilled key). Default: 64 MiB.
    pub transaction_memory: usize,
    /// Bytes one transaction (or statement) may write, spilled included: beyond, its
    /// statement fails with `54000` and applies nothing. Default: 64 GiB.
    pub max_transaction_bytes: u64,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            wal: WalOptions::default(),
            replicator: ReplicatorOptions::default(),
            throttle_timeout: Duration::from_secs(1),
            sql_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            sql_limits: crate::SqlLimits::default(),
            sql_memory_limit: 2 << 30,
            sql_total_memory: 4 << 30,
            sql_spill_limit: 16 << 30,
            sql_fast_path: true,
            max_transaction_age: Duration::from_secs(3600),
            transaction_memory: 64 << 20,
            max_transaction_bytes: 64 << 30,
        }
    }
}

pub(crate) enum Op {
    Insert { table: String, row: Vec<Value> },
    Upsert { table: String, row: Vec<Value> },
    Delete { table: String, key: i64 },
}

/// Changes to commit atomically: all of them or none.
#[derive(Default)]
pub struct WriteBatch {
    pub(crate) ops: Vec<Op>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a row; its key must not exist.
    pub fn insert(&mut self, table: &str, row: Vec<Value>) -> &mut Self {
        self.ops.push(Op::Insert {
            table: table.to_string(),
            row,
        });
        self
    }

    /// Inserts or replaces a row.
    pub fn upsert(&mut self, table: &str, row: Vec<Value>) -> &mut Self {
        self.ops.push(Op::Upsert {
            table: table.to_string(),
            row,
        });
        self
    }

    /// Deletes the row with `key`, if any.
    pub fn delete(&mut self, table: &str, key: i64) -> &mut Self {
        self.ops.push(Op::Delete {
            table: table.to_string(),
            key,
        });
        self
    }

    /// Number of changes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A table in memory: its schema and its rows, encoded, in the learned index.
pub(crate) struct Table {
    pub(crate) schema: TableSchema,
    rows: RwLock<AlexMap<i64, StoredRow>>,
    /// Name, for errors.
    pub(crate) name: String,
}

impl Table {
    pub(crate) fn new(name: &str, schema: TableSchema) -> Self {
        Self {
            schema,
            rows: RwLock::new(AlexMap::new()),
            name: name.to_string(),
        }
    }

    #[inline]
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, AlexMap<i64, StoredRow>> {
        self.rows.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, AlexMap<i64, StoredRow>> {
        self.rows.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The row with `key`, decoded from its stored form.
    #[inline]
    pub(crate) fn decode(&self, key: i64, stored: &StoredRow) -> Result<Row> {
        stored
            .decode(key, self.schema.key, self.schema.columns.len())
            .map_err(|e| self.damaged(key, &e))
    }

    /// `read` of the rows with `keys` (key, stored row), in order, under one hold of the read
    /// lock (batched lookups overlap their cache misses).
    pub(crate) fn get_many<T>(
        &self,
        keys: &[i64],
        read: impl Fn(i64, &StoredRow) -> T,
    ) -> Vec<Option<T>> {
        let rows = self.read();
        rows.get_many(keys)
            .into_iter()
            .zip(keys)
            .map(|(stored, &key)| stored.map(|s| read(key, s)))
            .collect()
    }

    pub(crate) fn damaged(&self, key: i64, error: &ChangeError) -> Error {
        Error::DamagedRow {
            table: self.name.clone(),
            key,
            reason: error.to_string(),
        }
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("columns", &self.schema.columns.len())
            .field("rows", &self.read().len())
            .finish()
    }
}

pub(crate) type Catalog = BTreeMap<String, Arc<Table>>;

/// An OmenDB database in a directory: `wal/` holds the log, `parquet/` the analytics tier.
///
/// Concurrency: one writer at a time (writes serialize on a mutex; the WAL shares fsyncs
/// underneath), any number of readers. A reader holds a table's read lock only for the
/// lookup itself; a writer holds it only while applying an already durable batch. `Db` is
/// `Send + Sync`.
pub struct Db {
    dir: PathBuf,
    pub(crate) wal: Arc<Wal>,
    pub(crate) replicator: Arc<WalReplicator>,
    pub(crate) catalog: RwLock<Catalog>,
    /// The catalog's version, for the per-thread table handles of point reads.
    stamp: CatalogStamp,
    writer: Mutex<()>,
    pub(crate) throttle_timeout: Duration,
    /// LSN of the last batch applied to the tables, or `sql::APPLYING` during an apply.
    pub(crate) applied: Arc<AtomicU64>,
    pub(crate) runtime: tokio::runtime::Runtime,
    /// The runtime of bulk statements (`crate::bulk`): its threads run at `SCHED_IDLE`, so
    /// the plan of a statement larger than one log record takes only the CPU that shorter
    /// statements leave (their plans run on `runtime`).
    pub(crate) bulk_runtime: tokio::runtime::Runtime,
    pub(crate) sql_limits: crate::SqlLimits,
    pub(crate) sql_memory_limit: usize,
    /// `DbOptions::sql_spill_limit`.
    pub(crate) sql_spill_limit: u64,
    /// What a query, and all queries, may hold by their meters (`crate::query_meter`).
    pub(crate) sql_meter_limits: crate::query_meter::MeterLimits,
    /// The pool every query's pool takes its memory from (`DbOptions::sql_total_memory`).
    pub(crate) sql_memory: Arc<datafusion::execution::memory_pool::GreedyMemoryPool>,
    /// The largest write one log record holds (`WalOptions::max_record_size`).
    pub(crate) max_write_bytes: usize,
    /// The router of SQL statements; `None`: everything goes to DataFusion.
    pub(crate) router: Option<omen_router::RuleRouter>,
    /// The keys committed while transactions run, for their commits' conflict checks.
    pub(crate) conflicts: Arc<crate::transaction::Conflicts>,
    /// What a transaction's write set may hold, and where it spills.
    write_limits: crate::write_set::WriteLimits,
}

/// The result of [`Db::sql`].
#[derive(Debug)]
pub struct QueryResult {
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// The snapshot LSN the query saw: every write at or below it, nothing above.
    pub snapshot_lsn: Lsn,
    /// How each table scan was served (index or Parquet + delta), in order.
    pub routes: Vec<Route>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

impl Db {
    /// Opens (or creates) the database in `dir`: recovers the WAL, replays it into the
    /// tables, and starts the replicator.
    pub fn open(dir: impl AsRef<Path>, options: DbOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let wal = Arc::new(Wal::open(dir.join("wal"), options.wal.clone())?);
        let catalog = RwLock::new(Catalog::new());
        let stamp = CatalogStamp::new();
        // The log is the checkpoint: it is kept whole, so replay starts at its first record.
        // The parts of a transaction group count only if it committed (`group_commit`).
        let mut groups = omen_replicator::group::GroupFilter::new();
        for record in wal.reader(Lsn(1))? {
            let record = record?;
            if groups.counts(&wal, record.lsn.0, &record.payload)? {
                apply(&catalog, &stamp, record.lsn.0, &record.payload)?;
            }
        }
        // A group the crash cut short: its end says so to every later reader of the log.
        if let Some(first) = groups.unfinished() {
            wal.append(&omen_replicator::change::group_end(first, false))?;
        }
        let applied_at_open = wal.last_lsn().0;
        let spill_dir = dir.join("tmp");
        // Compaction keeps the versions running transactions' snapshots read.
        let pin = Arc::new(AtomicU64::new(u64::MAX));
        let replicator_options = ReplicatorOptions {
            snapshot_pin: Arc::clone(&pin),
            ..options.replicator
        };
        let replicator =
            WalReplicator::start(Arc::clone(&wal), dir.join("parquet"), replicator_options)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.sql_threads.max(1))
            .thread_name("omendb-sql")
            // Expressions are evaluated recursively; SqlLimits bounds their depth.
            .thread_stack_size(SQL_THREAD_STACK)
            .build()
            .map_err(|e| Error::Io {
                op: "start the SQL runtime",
                source: e,
            })?;
        let bulk_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.sql_threads.max(1))
            .thread_name("omendb-bulk")
            .thread_stack_size(SQL_THREAD_STACK)
            .on_thread_start(omen_replicator::lower_current_thread)
            .build()
            .map_err(|e| Error::Io {
                op: "start the SQL runtime of bulk statements",
                source: e,
            })?;
        Ok(Self {
            applied: Arc::new(AtomicU64::new(applied_at_open)),
            dir,
            wal,
            replicator: Arc::new(replicator),
            catalog,
            stamp,
            writer: Mutex::new(()),
            throttle_timeout: options.throttle_timeout,
            runtime,
            bulk_runtime,
            sql_limits: options.sql_limits,
            sql_memory_limit: options.sql_memory_limit,
            sql_spill_limit: options.sql_spill_limit,
            sql_meter_limits: crate::query_meter::MeterLimits::from_pools(
                options.sql_memory_limit,
                options.sql_total_memory,
            ),
            sql_memory: Arc::new(datafusion::execution::memory_pool::GreedyMemoryPool::new(
                options.sql_total_memory,
            )),
            max_write_bytes: options.wal.max_record_size as usize,
            router: options.sql_fast_path.then(omen_router::RuleRouter::default),
            conflicts: Arc::new(crate::transaction::Conflicts::new(
                pin,
                options.max_transaction_age,
                applied_at_open,
            )),
            write_limits: crate::write_set::WriteLimits {
                memory: options.transaction_memory.max(1),
                total: options.max_transaction_bytes,
                dir: spill_dir,
            },
        })
    }

    pub(crate) fn catalog(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn table(&self, name: &str) -> Result<Arc<Table>> {
        self.catalog()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NoSuchTable(name.to_string()))
    }

    /// The tables and their schemas.
    pub fn tables(&self) -> Vec<(String, TableSchema)> {
        self.catalog()
            .iter()
            .map(|(name, t)| (name.clone(), t.schema.clone()))
            .collect()
    }

    /// A table's schema.
    pub fn schema(&self, table: &str) -> Result<TableSchema> {
        Ok(self.table(table)?.schema.clone())
    }

    /// Appends a change record to the WAL and applies it: the one write path.
    fn commit(&self, record: ChangeEncoder) -> Result<Lsn> {
        self.replicator.throttle(self.throttle_timeout)?;
        let bytes = record.finish();
        let lsn = self.wal.append(&bytes)?;
        self.applied.store(APPLYING, Ordering::SeqCst);
        let applied = apply(&self.catalog, &self.stamp, lsn.0, &bytes);
        self.applied.store(lsn.0, Ordering::SeqCst);
        applied?;
        Ok(lsn)
    }

    /// [`Db::commit`] of a schema change, which writes no row: running transactions' key
    /// reads need not see it as a write to any key.
    fn commit_schema(&self, record: ChangeEncoder) -> Result<Lsn> {
        let lsn = self.commit(record)?;
        self.conflicts.record(lsn.0, std::iter::empty());
        Ok(lsn)
    }

    pub(crate) fn write_limits(&self) -> &crate::write_set::WriteLimits {
        &self.write_limits
    }

    pub(crate) fn lock_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `CREATE TABLE`: columns of the given types and an `Int64` primary key.
    pub fn create_table(&self, name: &str, schema: TableSchema) -> Result<Lsn> {
        let invalid = |reason: String| Error::InvalidSchema {
            table: name.to_string(),
            reason,
        };
        if !valid_name(name) {
            return Err(invalid(
                "a table name is letters, digits and '_', starting with a letter or '_'".into(),
            ));
        }
        if let Some(bad) = schema.columns.iter().find(|c| !valid_name(&c.name)) {
            return Err(invalid(format!(
                "column name {:?}: letters, digits and '_', starting with a letter or '_'",
                bad.name
            )));
        }
        schema.validate().map_err(invalid)?;
        let _writer = self.lock_writer();
        if self.catalog().contains_key(name) {
            return Err(Error::TableExists(name.to_string()));
        }
        let mut record = ChangeEncoder::new();
        record.create_table(name, &schema);
        self.commit_schema(record)
    }

    /// `DROP TABLE`.
    pub fn drop_table(&self, name: &str) -> Result<Lsn> {
        let _writer = self.lock_writer();
        self.table(name)?;
        let mut record = ChangeEncoder::new();
        record.drop_table(name);
        self.commit_schema(record)
    }

    /// `ALTER TABLE ... ADD COLUMN` (nullable; existing rows read NULL there).
    pub fn alter_table_add_column(&self, table: &str, column: ColumnDef) -> Result<Lsn> {
        let _writer = self.lock_writer();
        let current = self.table(table)?;
        let invalid = |reason: String| Error::InvalidSchema {
            table: table.to_string(),
            reason,
        };
        if !column.nullable {
            return Err(invalid(format!(
                "added column {:?} must be nullable: existing rows have no value for it",
                column.name
            )));
        }
        let mut schema = current.schema.clone();
        schema.columns.push(column.clone());
        if !valid_name(&column.name) {
            return Err(invalid(format!(
                "column name {:?} is not valid",
                column.name
            )));
        }
        schema.validate().map_err(invalid)?;
        let mut record = ChangeEncoder::new();
        record.add_column(table, &column);
        self.commit_schema(record)
    }

    /// Commits a batch atomically and durably (per the WAL's sync mode). Rows are checked
    /// against their schemas first; a duplicate key on insert or a bad value fails the whole
    /// batch with an error naming the table and column, and nothing is applied.
    pub fn write(&self, batch: &WriteBatch) -> Result<Lsn> {
        let _writer = self.lock_writer();
        self.write_locked(batch)
    }

    /// [`Db::write`] with the writer lock already held.
    pub(crate) fn write_locked(&self, batch: &WriteBatch) -> Result<Lsn> {
        let catalog = self.catalog();
        let mut record = ChangeEncoder::new();
        // Keys this batch has made present (true) or absent (false) so far.
        let mut present: HashMap<(&str, i64), bool> = HashMap::new();
        for op in &batch.ops {
            match op {
                Op::Insert { table, row } | Op::Upsert { table, row } => {
                    let t = catalog
                        .get(table.as_str())
                        .ok_or_else(|| Error::NoSuchTable(table.clone()))?;
                    let key = check_row(table, &t.schema, row)?;
                    if matches!(op, Op::Insert { .. }) {
                        let exists = present
                            .get(&(table.as_str(), key))
                            .copied()
                            .unwrap_or_else(|| t.read().contains_key(key));
                        if exists {
                            return Err(Error::DuplicateKey {
                                table: table.clone(),
                                key,
                            });
                        }
                    }
                    present.insert((table.as_str(), key), true);
                    record.upsert(table, row);
                }
                Op::Delete { table, key } => {
                    if !catalog.contains_key(table.as_str()) {
                        return Err(Error::NoSuchTable(table.clone()));
                    }
                    present.insert((table.as_str(), *key), false);
                    record.delete(table, *key);
                }
            }
        }
        drop(catalog);
        if record.is_empty() {
            return Ok(self.wal.last_lsn());
        }
        let lsn = self.commit(record)?;
        // Running transactions check their writes against it at their commits.
        self.conflicts
            .record(lsn.0, present.keys().map(|&(table, key)| (table, key)));
        Ok(lsn)
    }

    /// The row with `key`, from the learned index: a copy of its encoded values, decoded on
    /// demand ([`RowBuf::value`], [`RowBuf::to_row`]).
    #[inline]
    pub fn get(&self, table: &str, key: i64) -> Result<Option<RowBuf>> {
        self.with_table(table, |t| {
            t.read().get(key).map(|s| RowBuf::copy(t, key, s))
        })
    }

    /// Reads the row with `key` in place: `read` gets a view of it (or `None`) and decodes
    /// only the values it asks for; no row is built. It runs under the table's read lock, so
    /// keep it short: the writer waits for it.
    #[inline]
    pub fn get_with<R>(
        &self,
        table: &str,
        key: i64,
        read: impl FnOnce(Option<RowRef<'_>>) -> R,
    ) -> Result<R> {
        self.with_table(table, |t| {
            let rows = t.read();
            read(rows.get(key).map(|stored| RowRef {
                table: t,
                key,
                stored,
            }))
        })
    }

    /// Runs `read` on a table, found through this thread's cached handle when the catalog
    /// has not changed (see `table_cache`): point reads take no catalog lock.
    #[inline]
    pub(crate) fn with_table<R>(&self, name: &str, read: impl FnOnce(&Table) -> R) -> Result<R> {
        let lookup = || {
            let catalog = self.catalog();
            let table = catalog.get(name).cloned()?;
            Some((table, self.stamp.version()))
        };
        table_cache::with_table(&self.stamp, name, lookup, read)
            .ok_or_else(|| Error::NoSuchTable(name.to_string()))
    }

    /// The shape and memory of a table's learned index (depth, nodes, search distances,
    /// bytes): what the point reads of this table cost.
    pub fn index_stats(&self, table: &str) -> Result<omen_alex::AlexStats> {
        Ok(self.table(table)?.read().stats())
    }

    /// The rows with `keys`, in order (batched lookups overlap their cache misses).
    pub fn multi_get(&self, table: &str, keys: &[i64]) -> Result<Vec<Option<RowBuf>>> {
        self.with_table(table, |t| {
            t.get_many(keys, |key, s| RowBuf::copy(t, key, s))
        })
    }

    /// The rows with keys in `range`, by key, from the learned index.
    ///
    /// A long scan does not hold up the writer: it takes the table's read lock for
    /// [`SCAN_CHUNK`] rows at a time. So each row is a committed version and keys come in
    /// order, but writes committed while the scan runs may show in its later chunks. For a
    /// consistent snapshot of a range, use SQL (`SELECT ... WHERE id BETWEEN a AND b`).
    pub fn scan(&self, table: &str, range: impl RangeBounds<i64>) -> Result<Vec<RowBuf>> {
        use std::ops::Bound;
        let table = self.table(table)?;
        let end = range.end_bound().cloned();
        let mut start = range.start_bound().cloned();
        let mut out = Vec::new();
        loop {
            let rows = table.read();
            let before = out.len();
            for (key, stored) in rows.range((start, end)).take(SCAN_CHUNK) {
                out.push(RowBuf::copy(&table, key, stored));
            }
            drop(rows);
            match out.last() {
                Some(last) if out.len() - before == SCAN_CHUNK => {
                    start = Bound::Excluded(last.key());
                }
                _ => return Ok(out),
            }
        }
    }

    /// Number of rows in a table.
    pub fn len(&self, table: &str) -> Result<usize> {
        Ok(self.table(table)?.read().len())
    }

    /// The replicator (snapshots for analytics, lag, flushes).
    pub fn replicator(&self) -> &WalReplicator {
        &self.replicator
    }

    /// The write-ahead log.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Flushes the replicator, syncs the log and stops, reporting any failure.
    pub fn close(self) -> Result<()> {
        self.replicator.flush_now()?;
        self.wal.sync()?;
        Ok(())
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // Other threads' cached table handles (see `table_cache`) may outlive the Db: give
        // the rows back now rather than when those threads next read or exit.
        for table in self.catalog().values() {
            table.write().clear();
        }
    }
}

/// Checks a row against its schema; returns its key.
pub(crate) fn check_row(table: &str, schema: &TableSchema, row: &[Value]) -> Result<i64> {
    let bad = |column: &str, reason: String| Error::BadRow {
        table: table.to_string(),
        column: column.to_string(),
        reason,
    };
    if row.len() != schema.columns.len() {
        return Err(bad(
            "",
            format!(
                "the row has {} values, the table has {} columns",
                row.len(),
                schema.columns.len()
            ),
        ));
    }
    for (column, value) in schema.columns.iter().zip(row) {
        let fits = match value.as_ref().data_type() {
            None => column.nullable,
            Some(data_type) => data_type == column.data_type,
        };
        // A date or time no reader can print (days or microseconds beyond chrono's ±262,000
        // years) would make every read of its column fail.
        let printable = match value {
            Value::Date32(days) => days
                .checked_add(719_163)
                .and_then(chrono::NaiveDate::from_num_days_from_ce_opt)
                .is_some(),
            Value::TimestampMicros(micros) => {
                chrono::DateTime::from_timestamp_micros(*micros).is_some()
            }
            _ => true,
        };
        if !printable {
            return Err(Error::Data {
                kind: crate::error::DataErrorKind::DatetimeOutOfRange,
                message: format!(
                    "date/time out of range: {value:?} (table {table:?}, column {:?}); nothing \
                     of the batch was applied",
                    column.name
                ),
            });
        }
        if let Value::Utf8(text) = value
            && text.contains('\0')
        {
            // As PostgreSQL, whose text cannot hold it (C clients would cut the value there).
            return Err(Error::Data {
                kind: crate::error::DataErrorKind::NulInText,
                message: format!(
                    "invalid byte sequence for encoding \"UTF8\": 0x00 (table {table:?}, \
                     column {:?}); nothing of the batch was applied",
                    column.name
                ),
            });
        }
        if let Value::Int32(v) = value
            && column.small_int
            && i16::try_from(*v).is_err()
        {
            return Err(Error::OutOfRange(format!(
                "{v} for a SMALLINT (table {table:?}, column {:?}); nothing of the batch was \
                 applied",
                column.name
            )));
        }
        if let (Some(max_chars), Value::Utf8(text)) = (column.max_chars, value) {
            // Bytes bound characters: most values skip the count.
            let chars = if text.len() <= max_chars as usize {
                text.len()
            } else {
                text.chars().count()
            };
            if chars > max_chars as usize {
                return Err(Error::ValueTooLong {
                    table: table.to_string(),
                    column: column.name.clone(),
                    chars,
                    max_chars,
                });
            }
        }
        if !fits {
            return Err(match value {
                Value::Null => Error::NullValue {
                    table: table.to_string(),
                    column: column.name.clone(),
                },
                other => bad(
                    &column.name,
                    format!("expects {:?}, got {other:?}", column.data_type),
                ),
            });
        }
    }
    match row.get(schema.key) {
        Some(Value::Int64(key)) => Ok(*key),
        _ => Err(bad(
            &schema.columns[schema.key].name,
            "the primary key must be a BIGINT".into(),
        )),
    }
}

/// Applies one change record to the tables: used by writes and by replay alike. Schema
/// changes hold the catalog's write lock; row changes only the table's.
fn apply(catalog: &RwLock<Catalog>, stamp: &CatalogStamp, lsn: u64, bytes: &[u8]) -> Result<()> {
    let bad = |reason: String| Error::BadLog { lsn, reason };
    let entries = change::decode(bytes).map_err(|e| bad(e.to_string()))?;
    let write = || catalog.write().unwrap_or_else(PoisonError::into_inner);
    for entry in entries {
        match entry {
            Entry::CreateTable { table, schema } => {
                write().insert(table.to_string(), Arc::new(Table::new(table, schema)));
                stamp.bump();
            }
            Entry::DropTable { table } => {
                let dropped = {
                    let mut catalog = write();
                    let dropped = catalog.remove(table);
                    stamp.bump();
                    dropped
                };
                // Handles cached by other threads may outlive the table: give back its rows
                // now (a read racing the drop finds it empty).
                if let Some(dropped) = dropped {
                    dropped.write().clear();
                }
            }
            Entry::AddColumn { table, column } => {
                let mut catalog = write();
                let old = catalog
                    .get(table)
                    .ok_or_else(|| bad(format!("no table {table:?}")))?;
                let mut schema = old.schema.clone();
                schema.columns.push(column);
                let padded: Vec<(i64, StoredRow)> = old
                    .read()
                    .iter()
                    .map(|(k, row)| (k, row.with_null()))
                    .collect();
                let rows = AlexMap::from_sorted(padded).map_err(|e| bad(e.to_string()))?;
                let table_now = Table {
                    schema,
                    rows: RwLock::new(rows),
                    name: table.to_string(),
                };
                catalog.insert(table.to_string(), Arc::new(table_now));
                stamp.bump();
            }
            Entry::Rows { table, rows } => {
                let t = catalog
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(table)
                    .cloned()
                    .ok_or_else(|| bad(format!("no table {table:?}")))?;
                apply_rows(&mut t.write(), t.schema.key, table, rows, lsn)?;
            }
            // A group's parts are applied only if it commits; its end holds no rows.
            Entry::Part | Entry::Commit(_) | Entry::Abort(_) => {}
        }
    }
    Ok(())
}

/// Applies the row changes of `table` in the record at `lsn` to its index.
pub(crate) fn apply_rows(
    map: &mut AlexMap<i64, StoredRow>,
    key_index: usize,
    table: &str,
    rows: omen_replicator::change::Rows<'_>,
    lsn: u64,
) -> Result<()> {
    let bad = |reason: String| Error::BadLog { lsn, reason };
    let mut scratch = Vec::new();
    for row in rows {
        match row.map_err(|e| bad(e.to_string()))? {
            RowChange::Upsert(values) => {
                let encoded = StoredRow::encode(values, key_index, &mut scratch)
                    .map_err(|e| bad(e.to_string()))?;
                let Encoded::Row(key, stored) = encoded else {
                    return Err(bad(format!("a row of {table:?} has no BIGINT key")));
                };
                map.insert(key, stored);
            }
            RowChange::Delete(key) => {
                map.remove(key);
            }
        }
    }
    Ok(())
}
