//! SQL queries over the database: a DataFusion session per query, with one
//! [`OmenTableProvider`] per table, all at the query's snapshot LSN.

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use omen_replicator::TableSnapshot;
use omen_replicator::WalReplicator;
use omen_replicator::change::{OP_DELETE, OP_UPSERT};
use std::collections::BTreeMap;

use crate::write_set::{WrittenRows, WrittenTable};
use omen_replicator::change::{DataType, TableSchema, Value};
use omen_sql::{KeyLookup, OmenTable, SnapshotFile, SnapshotSource, TableError};
use omen_wal::Lsn;

use crate::db::{Db, QueryResult, Table};
use crate::error::Result;
use crate::interrupt::Interrupt;
use crate::row::Row;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use omen_sql::{OmenTableProvider, RouteLog};

/// `applied` while a batch is being applied to the in-memory tables.
pub(crate) const APPLYING: u64 = u64::MAX;

/// The Arrow schema SQL sees for a table: the key non-null, every other column nullable
/// (as stored, since deletes and added columns leave NULLs).
pub(crate) fn sql_schema(schema: &TableSchema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(&c.name, c.data_type.to_arrow(), i != schema.key))
            .collect::<Vec<_>>(),
    ))
}

/// Builds a record batch of `rows` (values in column order).
pub(crate) fn rows_to_batch(
    schema: &TableSchema,
    rows: &[Row],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let arrow_schema = sql_schema(schema);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.columns.len());
    for (i, column) in schema.columns.iter().enumerate() {
        let values = rows.iter().map(|row| row.get(i).unwrap_or(&Value::Null));
        macro_rules! build {
            ($builder:ty, $variant:ident) => {{
                let mut b = <$builder>::with_capacity(rows.len());
                for value in values {
                    match value {
                        Value::$variant(v) => b.append_value(v.clone()),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish()) as ArrayRef
            }};
        }
        columns.push(match column.data_type {
            DataType::Boolean => build!(BooleanBuilder, Boolean),
            DataType::Int32 => build!(Int32Builder, Int32),
            DataType::Int64 => build!(Int64Builder, Int64),
            DataType::Float64 => build!(Float64Builder, Float64),
            DataType::TimestampMicros => build!(TimestampMicrosecondBuilder, TimestampMicros),
            DataType::Date32 => build!(Date32Builder, Date32),
            DataType::Utf8 => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
                for value in values {
                    match value {
                        Value::Utf8(v) => b.append_value(v),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
        });
    }
    RecordBatch::try_new(arrow_schema, columns)
}

/// One table at one snapshot LSN, for the SQL layer.
pub(crate) struct SnapshotTable {
    pub(crate) name: String,
    pub(crate) table: Arc<Table>,
    pub(crate) lsn: u64,
    pub(crate) applied: Arc<AtomicU64>,
    pub(crate) replicator: Arc<WalReplicator>,
    /// Refuse a snapshot that compaction may have thinned (see [`SnapshotMoved`]).
    pub(crate) strict: bool,
    /// A transaction's writes to the table, read over its committed rows.
    pub(crate) written: Option<WrittenTable>,
    /// In a transaction: what tells whether the index still holds its snapshot's rows.
    pub(crate) conflicts: Option<Arc<crate::transaction::Conflicts>>,
}

/// The error of a scan that finds a Parquet file holding writes above its snapshot.
///
/// Compaction keeps only each key's latest version, so such a file may have dropped a
/// version the snapshot needs (written at or below the snapshot, replaced above it; the
/// file's LSN range only covers the versions it kept). Files hold only applied writes
/// except in the instant between a write's WAL append and its apply, so the query retries
/// with a fresh snapshot ([`Db::retry_moved`]).
#[derive(Debug, thiserror::Error)]
#[error("a Parquet file spans the query's snapshot (compacted meanwhile); run the query again")]
pub(crate) struct SnapshotMoved;

/// Whether `error` was caused by [`SnapshotMoved`] (it reaches us through DataFusion).
fn snapshot_moved(error: &crate::Error) -> bool {
    crate::error::find_cause::<SnapshotMoved>(error).is_some()
}

impl std::fmt::Debug for SnapshotTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotTable")
            .field("name", &self.name)
            .field("lsn", &self.lsn)
            .finish()
    }
}

impl OmenTable for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        sql_schema(&self.table.schema)
    }

    fn key_column(&self) -> usize {
        self.table.schema.key
    }

    fn lookup(&self, lookup: &KeyLookup) -> Result<Option<RecordBatch>, TableError> {
        let conflicts = self.conflicts.as_deref();
        let read = index_rows_at(&self.table, self.lsn, &self.applied, conflicts, lookup)?;
        let Some(mut rows) = read else {
            return Ok(None);
        };
        if let Some(written) = &self.written {
            rows = over_written(&self.table.schema, rows, written, lookup)?;
        }
        Ok(Some(rows_to_batch(&self.table.schema, &rows)?))
    }

    fn snapshot_source(&self, lookup: Option<&KeyLookup>) -> Result<SnapshotSource, TableError> {
        let mut source = match self.replicator.snapshot(&self.name, Lsn(self.lsn)) {
            Ok(snapshot) => {
                if self.strict
                    && snapshot
                        .files
                        .iter()
                        .any(|(_, meta)| !meta.exact_at(self.lsn))
                {
                    return Err(Box::new(SnapshotMoved));
                }
                snapshot_source(snapshot)
            }
            // A table created after a transaction's snapshot: none of its rows are in the
            // snapshot, only the transaction's own.
            Err(omen_replicator::ReplicatorError::NoTable(_)) if self.conflicts.is_some() => {
                SnapshotSource {
                    lsn: self.lsn,
                    stored_schema: Arc::new(self.table.schema.stored_arrow_schema()),
                    key: self.table.schema.key,
                    op_upsert: OP_UPSERT,
                    files: Vec::new(),
                    delta: Vec::new(),
                    keep_alive: Arc::new(()),
                }
            }
            Err(error) => return Err(error.into()),
        };
        if let Some(written) = &self.written {
            source.delta.push(written_batch(
                &self.table.schema,
                &source.stored_schema,
                source.lsn,
                written,
                lookup,
            )?);
        }
        Ok(source)
    }
}

/// The rows of `table` matching `lookup` at snapshot `lsn`, from the index, when it holds
/// them: no commit was applied after the snapshot (a sequence check around the read), or,
/// for a transaction (`conflicts`), none after it wrote these keys. `None`: read the
/// snapshot's versions instead.
pub(crate) fn index_rows_at(
    table: &Table,
    lsn: u64,
    applied: &AtomicU64,
    conflicts: Option<&crate::transaction::Conflicts>,
    lookup: &KeyLookup,
) -> Result<Option<Vec<Row>>> {
    if applied.load(Ordering::SeqCst) == lsn {
        let rows = lookup_rows(table, lookup)?;
        if applied.load(Ordering::SeqCst) == lsn {
            return Ok(Some(rows));
        }
    }
    let Some(conflicts) = conflicts else {
        return Ok(None);
    };
    conflicts
        .read_unchanged(applied, &table.name, lsn, lookup, || {
            lookup_rows(table, lookup)
        })
        .transpose()
}

/// The key of `row`, a row of a table of `schema`.
pub(crate) fn row_key(schema: &TableSchema, row: &Row) -> i64 {
    match row.get(schema.key) {
        Some(Value::Int64(key)) => *key,
        _ => i64::MIN,
    }
}

/// `rows` (committed, in key order, those of `lookup`) with a transaction's `written` rows
/// over them.
pub(crate) fn over_written(
    schema: &TableSchema,
    rows: Vec<Row>,
    written: &WrittenTable,
    lookup: &KeyLookup,
) -> Result<Vec<Row>> {
    let mut merged: BTreeMap<i64, Row> =
        rows.into_iter().map(|r| (row_key(schema, &r), r)).collect();
    let mut put = |key: i64, row: &Option<Row>| match row {
        Some(row) => {
            merged.insert(key, row.clone());
        }
        None => {
            merged.remove(&key);
        }
    };
    for (key, row) in written.rows_of(Some(lookup))?.iter() {
        put(*key, row);
    }
    Ok(merged.into_values().collect())
}

/// A transaction's `written` rows in the stored form of a snapshot's delta, at the snapshot's
/// LSN: the delta's versions are ordered by (key, LSN) stably, and these come last, so they
/// win over every committed version and a deleted row hides the key.
fn written_batch(
    schema: &TableSchema,
    stored_schema: &SchemaRef,
    lsn: u64,
    written: &WrittenTable,
    lookup: Option<&KeyLookup>,
) -> Result<RecordBatch, TableError> {
    // Only the rows the scan keeps: a key read in a transaction that spilled reads a block
    // a key, not every row it wrote.
    let written = written.rows_of(lookup)?;
    let mut ops = Vec::with_capacity(written.len());
    let rows: Vec<Row> = written
        .iter()
        .map(|(&key, row)| match row {
            Some(row) => {
                ops.push(OP_UPSERT);
                row.clone()
            }
            None => {
                ops.push(OP_DELETE);
                let mut row = vec![Value::Null; schema.columns.len()];
                row[schema.key] = Value::Int64(key);
                row.into_boxed_slice()
            }
        })
        .collect();
    let values = rows_to_batch(schema, &rows)?;
    let mut columns = values.columns().to_vec();
    columns.push(Arc::new(arrow::array::UInt64Array::from(vec![
        lsn;
        rows.len()
    ])));
    columns.push(Arc::new(arrow::array::UInt8Array::from(ops)));
    if columns.len() != stored_schema.fields().len() {
        return Err(Box::new(crate::Error::SerializationFailure(
            "could not serialize access: a table this transaction wrote to was altered; \
             nothing of it was applied: retry it"
                .into(),
        )));
    }
    Ok(RecordBatch::try_new(Arc::clone(stored_schema), columns)?)
}

/// The rows of `table` with the keys of `lookup`, in key order, under one hold of its read
/// lock.
pub(crate) fn lookup_rows(table: &Table, lookup: &KeyLookup) -> Result<Vec<Row>> {
    match lookup {
        KeyLookup::Points(keys) => table
            .get_many(keys, |key, s| table.decode(key, s))
            .into_iter()
            .flatten()
            .collect(),
        KeyLookup::Range(low, high) => {
            let bounds: (Bound<i64>, Bound<i64>) = (*low, *high);
            let rows = table.read();
            rows.range(bounds)
                .map(|(key, s)| table.decode(key, s))
                .collect()
        }
    }
}

/// The scan's view of a replicator snapshot; the plan holds the snapshot's manifest.
pub(crate) fn snapshot_source(snapshot: TableSnapshot) -> SnapshotSource {
    let files = snapshot
        .files
        .iter()
        .map(|(path, meta)| SnapshotFile {
            path: path.clone(),
            rows: meta.rows,
            bytes: meta.bytes,
            crc32c: meta.crc32c,
            min_key: meta.min_key,
            max_key: meta.max_key,
            min_lsn: meta.min_lsn,
            max_lsn: meta.max_lsn,
            distinct_keys: meta.distinct_keys,
        })
        .collect();
    SnapshotSource {
        lsn: snapshot.lsn,
        stored_schema: Arc::clone(&snapshot.stored_schema),
        key: snapshot.schema.key,
        op_upsert: OP_UPSERT,
        files,
        delta: snapshot.delta,
        keep_alive: snapshot.manifest,
    }
}

/// The batches of a query as they are computed ([`Db::sql_stream`]); dropping it cancels the
/// query.
pub struct QueryStream<'a> {
    /// The runtime the plan runs on (the database's; see [`QueryStream::detach`]).
    runtime: tokio::runtime::Handle,
    _db: std::marker::PhantomData<&'a Db>,
    /// `None` once the stream ended or failed.
    stream: Option<datafusion::execution::SendableRecordBatchStream>,
    interrupt: Interrupt,
    routes: RouteLog,
}

impl<'a> QueryStream<'a> {
    /// A stream of the rows of a query already answered.
    pub(crate) fn of(db: &'a Db, result: QueryResult, interrupt: &Interrupt) -> Self {
        let schema = result
            .batches
            .first()
            .map_or_else(|| Arc::new(Schema::empty()), |b| b.schema());
        let batches = futures::stream::iter(result.batches.into_iter().map(Ok));
        let routes = RouteLog::default();
        for route in result.routes {
            routes.push(route);
        }
        QueryStream {
            runtime: db.sql_runtime().handle().clone(),
            _db: std::marker::PhantomData,
            stream: Some(Box::pin(
                datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, batches),
            )),
            interrupt: interrupt.clone(),
            routes,
        }
    }

    /// The same stream, no longer tied to a borrow of the database: for a caller that moves
    /// it between threads (a server computes each batch on a blocking thread and waits for
    /// its client without one). The database must stay open while it is read: after it
    /// closed, reading fails.
    pub fn detach(self) -> QueryStream<'static> {
        QueryStream {
            runtime: self.runtime,
            _db: std::marker::PhantomData,
            stream: self.stream,
            interrupt: self.interrupt,
            routes: self.routes,
        }
    }

    /// How each table scan of the query is served (known once the stream exists).
    pub fn routes(&self) -> Vec<omen_sql::Route> {
        self.routes.routes()
    }

    /// The columns of every batch.
    pub fn schema(&self) -> SchemaRef {
        self.stream.as_ref().map_or_else(
            || Arc::new(Schema::empty()),
            |s| crate::names::display_schema(&s.schema()),
        )
    }
}

impl Iterator for QueryStream<'_> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let stream = self.stream.as_mut()?;
        let (runtime, interrupt) = (&self.runtime, &self.interrupt);
        // The plan's last operators run on this thread.
        let next = crate::limits::with_plan_stack(|| {
            runtime.block_on(
                interrupt.run(async { Ok::<_, crate::Error>(omen_sql::next_batch(stream).await) }),
            )
        });
        let item = match next {
            Ok(Some(Ok(batch))) => return Some(Ok(crate::names::display_batch(batch))),
            Ok(None) => None,
            Ok(Some(Err(error))) => Some(Err(crate::Error::from(error))),
            Err(error) => Some(Err(error)),
        };
        self.stream = None;
        item
    }
}

/// A statement's placeholders and result columns ([`Db::describe_sql`]).
#[derive(Clone, Debug)]
pub struct SqlDescription {
    /// The inferred type of each placeholder (`$1`, ...), `None` where planning cannot tell.
    pub parameters: std::collections::HashMap<String, Option<arrow::datatypes::DataType>>,
    /// The columns of the rows the statement returns (empty for a write's plan input).
    pub schema: SchemaRef,
    /// Whether the statement is a key read the index answers
    /// ([`Db::prepared_key_read`]) when its parameters are keys.
    pub key_read: bool,
}

/// A DataFusion session over every table at one snapshot LSN, and the routes its scans take.
pub(crate) struct SqlSession {
    pub(crate) context: SessionContext,
    pub(crate) lsn: u64,
    pub(crate) routes: RouteLog,
}

impl SqlSession {
    /// Plans `statement` in this session. A table it names that does not exist fails as
    /// [`Error::NoSuchTable`](crate::Error::NoSuchTable), typed (DataFusion says so only in
    /// a message).
    pub(crate) async fn plan(&self, statement: DfStatement) -> Result<LogicalPlan> {
        let state = self.context.state();
        for reference in state.resolve_table_references(&statement)? {
            let function = reference.schema().is_none()
                && state.table_functions().contains_key(reference.table());
            if !function && !self.context.table_exist(reference.clone())? {
                return Err(crate::Error::NoSuchTable(reference.to_string()));
            }
        }
        Ok(state.statement_to_plan(statement).await?)
    }
}

impl Db {
    /// A session over every table at a snapshot of every write applied so far.
    pub(crate) fn sql_session(&self) -> Result<SqlSession> {
        self.sql_session_in(None)
    }

    /// [`Db::sql_session`] in a transaction: at its snapshot, seeing its `written` rows over
    /// the committed ones.
    pub(crate) fn sql_session_in(&self, written: Option<&WrittenRows>) -> Result<SqlSession> {
        if let Some(view) = written {
            return self.sql_session_at(view.snapshot(), true, Some(view));
        }
        let lsn = loop {
            match self.applied.load(Ordering::SeqCst) {
                APPLYING => std::thread::yield_now(),
                lsn => break lsn,
            }
        };
        self.sql_session_at(lsn, true, written)
    }

    /// Runs `attempt` again (up to a few times) while it fails with [`SnapshotMoved`], when
    /// it takes a fresh snapshot each time (`fresh`); a transaction's snapshot cannot move,
    /// so there it is a serialization failure (rare: compaction keeps what a running
    /// transaction's snapshot reads, see `ReplicatorOptions::snapshot_pin`).
    pub(crate) fn retry_moved<T>(
        &self,
        fresh: bool,
        mut attempt: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        for _ in 0..16 {
            match attempt() {
                Err(e) if snapshot_moved(&e) && fresh => std::thread::yield_now(),
                Err(e) if snapshot_moved(&e) => {
                    return Err(crate::Error::SerializationFailure(
                        "could not serialize access: the files this transaction's snapshot \
                         reads were compacted; nothing of it was applied: retry it"
                            .into(),
                    ));
                }
                done => return done,
            }
        }
        attempt()
    }

    /// A session over every table at snapshot `lsn` (`strict`: see [`SnapshotMoved`]).
    fn sql_session_at(
        &self,
        lsn: u64,
        strict: bool,
        written: Option<&WrittenRows>,
    ) -> Result<SqlSession> {
        let routes = RouteLog::default();
        // As many partitions as the runtime has workers (DbOptions::sql_threads).
        let threads = self.sql_runtime().metrics().num_workers().max(1);
        let config = SessionConfig::new().with_target_partitions(threads);
        // Each query gets its own pool within the database's: sorts and aggregations spill
        // to disk beyond it, other operators fail with ResourcesExhausted rather than grow
        // without bound.
        let pool = crate::query_memory::QueryPool::new(self.sql_memory_limit, &self.sql_memory);
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .with_max_temp_directory_size(self.sql_spill_limit)
            .build_arc()?;
        let value_limit = self.sql_limits.max_value_bytes;
        let context = SessionContext::new_with_state(crate::planning::session_state(
            config,
            runtime,
            value_limit,
            self.sql_meter_limits,
        ));
        for (name, table) in self.catalog().iter() {
            let snapshot = SnapshotTable {
                name: name.clone(),
                table: Arc::clone(table),
                lsn,
                applied: Arc::clone(&self.applied),
                replicator: Arc::clone(&self.replicator),
                strict,
                written: written.and_then(|w| w.table(name)).cloned(),
                conflicts: written.map(|_| Arc::clone(&self.conflicts)),
            };
            let provider = OmenTableProvider::new(name, Arc::new(snapshot), routes.clone());
            // Bare: the catalog's name is already resolved (`"Mixed"` and `mixed` are two
            // tables); a string would be parsed and lowercased again.
            let reference = datafusion::common::TableReference::bare(name.as_str());
            context.register_table(reference, Arc::new(provider))?;
        }
        Ok(SqlSession {
            context,
            lsn,
            routes,
        })
    }

    /// Runs a planned query in its session and collects the rows. `EXPLAIN` output gets one
    /// `omendb_route` row per table scan, saying how it was served.
    pub(crate) fn run_plan(
        &self,
        session: SqlSession,
        plan: LogicalPlan,
        interrupt: &Interrupt,
    ) -> Result<QueryResult> {
        let explain = matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_));
        let SqlSession {
            context,
            lsn,
            routes,
        } = session;
        let mut batches = self.sql_runtime().block_on(interrupt.run(async {
            let frame = context.execute_logical_plan(plan).await?;
            frame.collect().await
        }))?;
        if explain && let Some(first) = batches.first() {
            // EXPLAIN's rows are (plan_type, plan): add one row per route taken.
            let routes = routes.routes();
            let kinds = arrow::array::StringArray::from(vec!["omendb_route"; routes.len()]);
            let plans: arrow::array::StringArray =
                routes.iter().map(|r| Some(r.to_string())).collect();
            let extra =
                RecordBatch::try_new(first.schema(), vec![Arc::new(kinds), Arc::new(plans)]);
            batches.push(extra.map_err(datafusion::error::DataFusionError::from)?);
        }
        Ok(QueryResult {
            batches: batches
                .into_iter()
                .map(crate::names::display_batch)
                .collect(),
            snapshot_lsn: Lsn(lsn),
            routes: routes.routes(),
        })
    }

    /// Runs a query and returns its rows as they are computed, for results too large to
    /// collect: each item is one batch (of up to DataFusion's batch size, 8192 rows), and
    /// the table scans run in `DbOptions::sql_threads` parallel partitions while the caller
    /// consumes. The snapshot is taken now: the stream sees every write acknowledged before
    /// this call and none after, however long it is consumed. Dropping the iterator cancels
    /// the query. Only queries (`SELECT`, `WITH`, `VALUES`, `EXPLAIN`) stream; statements that
    /// write go through [`Db::sql`].
    ///
    /// Must not be called from inside an async runtime (it blocks on the database's own).
    ///
    /// ```
    /// # fn main() -> Result<(), omendb::Error> {
    /// # let dir = std::env::temp_dir().join(format!("omendb-doc-stream-{}", std::process::id()));
    /// use omendb::{Db, DbOptions, Value, WriteBatch};
    /// use omendb::replicator::change::{ColumnDef, DataType, TableSchema};
    /// let db = Db::open(&dir, DbOptions::default())?;
    /// db.create_table("t", TableSchema {
    ///     columns: vec![ColumnDef::new("id", DataType::Int64, false)],
    ///     key: 0,
    /// })?;
    /// let mut batch = WriteBatch::new();
    /// for id in 0..100 {
    ///     batch.insert("t", vec![Value::Int64(id)]);
    /// }
    /// db.write(&batch)?;
    /// let mut rows = 0;
    /// for batch in db.sql_stream("SELECT id FROM t WHERE id % 2 = 0")? {
    ///     rows += batch?.num_rows();
    /// }
    /// assert_eq!(rows, 50);
    /// # db.close()?; std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn sql_stream(&self, query: &str) -> Result<QueryStream<'_>> {
        self.sql_stream_with(query, &Interrupt::new())
    }

    /// [`Db::sql_stream`], cancelled when `interrupt` is given: the next batch is then
    /// `Err(Error::Cancelled)` and the stream ends.
    pub fn sql_stream_with(&self, query: &str, interrupt: &Interrupt) -> Result<QueryStream<'_>> {
        crate::limits::with_plan_stack(|| {
            // one_query has checked it against the limits.
            let statement = self.one_query(query)?;
            self.stream_checked(statement, interrupt, None)
        })
    }

    /// [`Db::sql_stream_with`] of a query already parsed (see [`Db::sql_parsed_with`]).
    pub fn sql_stream_parsed_with(
        &self,
        statement: DfStatement,
        interrupt: &Interrupt,
    ) -> Result<QueryStream<'_>> {
        crate::limits::with_plan_stack(|| {
            crate::limits::check(&statement, &self.sql_limits)?;
            self.stream_checked(statement, interrupt, None)
        })
    }

    /// Streams a query already checked against the limits.
    pub(crate) fn stream_checked(
        &self,
        statement: DfStatement,
        interrupt: &Interrupt,
        written: Option<&WrittenRows>,
    ) -> Result<QueryStream<'_>> {
        if written.is_none_or(WrittenRows::is_empty)
            && let Some(result) =
                self.key_read_at(&statement, written.map(WrittenRows::snapshot))?
        {
            return Ok(QueryStream::of(self, result, interrupt));
        }
        self.retry_moved(written.is_none(), || {
            let session = self.sql_session_in(written)?;
            self.stream_in(session, statement.clone(), interrupt)
        })
    }

    /// What `statement` takes and returns, without running it (the PostgreSQL protocol's
    /// Parse and Describe): the types DataFusion infers for its `$n` placeholders, by name
    /// (`None`: not inferred), and the columns of its rows. A table it names that does not
    /// exist is [`Error::NoSuchTable`](crate::Error::NoSuchTable).
    pub fn describe_sql(&self, statement: DfStatement) -> Result<SqlDescription> {
        match self.describe_key_read(&statement) {
            Some(described) => Ok(described),
            None => self.describe_planned(statement),
        }
    }

    /// [`Db::describe_sql`] by DataFusion's plan even for a key read, for tests that compare
    /// the two. Not for applications.
    #[doc(hidden)]
    pub fn describe_planned(&self, statement: DfStatement) -> Result<SqlDescription> {
        crate::limits::with_plan_stack(|| {
            let session = self.sql_session()?;
            let plan = self.sql_runtime().block_on(session.plan(statement))?;
            let parameters = plan.get_parameter_types()?;
            // The columns as the analyzer types them, as execution will (`avg` of integers is
            // a NUMERIC, a NUMERIC met by a DOUBLE a DOUBLE); as planned if it cannot yet
            // (a parameter whose type only its value will tell).
            let state = session.context.state();
            let schema = match state.analyzer().execute_and_check(
                plan.clone(),
                state.config_options(),
                |_, _| {},
            ) {
                Ok(analyzed) => Arc::clone(analyzed.schema()),
                Err(_) => Arc::clone(plan.schema()),
            };
            Ok(SqlDescription {
                parameters,
                schema: crate::names::display_schema(&Arc::new(schema.as_arrow().clone())),
                key_read: false,
            })
        })
    }

    /// The one statement of `query` ([`Db::sql_stream`] runs exactly one).
    pub(crate) fn one_query(&self, query: &str) -> Result<DfStatement> {
        let mut statements = crate::limits::parse_sql(query, &self.sql_limits)?;
        let (Some(statement), None) = (statements.pop_front(), statements.pop_front()) else {
            return Err(crate::Error::Unsupported(
                "Db::sql_stream runs exactly one query".into(),
            ));
        };
        Ok(statement)
    }

    fn stream_in(
        &self,
        session: SqlSession,
        statement: DfStatement,
        interrupt: &Interrupt,
    ) -> Result<QueryStream<'_>> {
        let stream = self.sql_runtime().block_on(interrupt.run(async {
            let plan = session.plan(statement).await?;
            if matches!(
                plan,
                LogicalPlan::Ddl(_)
                    | LogicalPlan::Dml(_)
                    | LogicalPlan::Copy(_)
                    | LogicalPlan::Statement(_)
            ) {
                return Err(crate::Error::Unsupported(
                    "Db::sql_stream runs queries only; run statements with Db::sql".into(),
                ));
            }
            let frame = session.context.execute_logical_plan(plan).await?;
            Ok(frame.execute_stream().await?)
        }))?;
        Ok(QueryStream {
            runtime: self.sql_runtime().handle().clone(),
            _db: std::marker::PhantomData,
            stream: Some(stream),
            interrupt: interrupt.clone(),
            routes: session.routes,
        })
    }

    /// Runs a query at an earlier snapshot `lsn` of the replicator (no index route), for
    /// tests that compare the Parquet scan with `TableSnapshot::read`. Not for applications:
    /// compaction keeps only each key's latest version, so an old snapshot may miss rows.
    #[doc(hidden)]
    pub fn sql_at_snapshot(&self, query: &str, lsn: Lsn) -> Result<Vec<RecordBatch>> {
        let session = self.sql_session_at(lsn.0, false, None)?;
        self.stream_in(session, self.one_query(query)?, &Interrupt::new())?
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DbOptions, Value, WriteBatch};
    use omen_replicator::ReplicatorOptions;
    use omen_replicator::change::{ColumnDef, DataType};

    /// A key written at LSN `u` and replaced later, both versions flushed and compacted into
    /// one file: a query at `u` must not silently miss the key.
    #[test]
    fn a_snapshot_inside_a_compacted_file_is_refused_not_thinned() {
        let dir = std::env::temp_dir().join(format!("omendb-moved-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = DbOptions {
            replicator: ReplicatorOptions {
                compaction_trigger_files: 2,
                ..ReplicatorOptions::default()
            },
            ..DbOptions::default()
        };
        let db = Db::open(&dir, options).expect("open");
        let schema = TableSchema {
            columns: vec![
                ColumnDef::new("id", DataType::Int64, false),
                ColumnDef::new("v", DataType::Int64, true),
            ],
            key: 0,
        };
        db.create_table("t", schema).expect("create");
        let write = |v: i64| {
            let mut batch = WriteBatch::new();
            batch.upsert("t", vec![Value::Int64(1), Value::Int64(v)]);
            let lsn = db.write(&batch).expect("write");
            db.replicator().flush_now().expect("flush");
            lsn
        };
        let first = write(1);
        write(2);
        // Compaction runs after a flush; wait until it has merged the two files.
        for _ in 0..1000 {
            if db.replicator().stats().files == 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            db.replicator().stats().files,
            1,
            "the files were not compacted"
        );
        let count = |strict: bool| -> Result<Vec<RecordBatch>> {
            let session = db.sql_session_at(first.0, strict, None)?;
            db.stream_in(session, db.one_query("SELECT v FROM t")?, &Interrupt::new())?
                .collect()
        };
        match count(true) {
            Err(e) => assert!(snapshot_moved(&e), "{e}"),
            Ok(batches) => panic!("a thinned snapshot was served: {batches:?}"),
        }
        // What a lax reader sees: the version at `first` is gone.
        let lax: usize = count(false)
            .expect("lax")
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(lax, 0);
        // Current snapshots are never refused.
        let now = db.sql("SELECT v FROM t").expect("query");
        assert_eq!(now.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        db.close().expect("close");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
