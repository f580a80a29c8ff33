//! The query handlers: simple protocol (scripts, each statement answered on its own) and
//! extended protocol (parse, describe, bind with parameters, execute).
//!
//! `Db::sql` blocks on the database's own runtime, so every call runs on a blocking thread
//! (`spawn_blocking`), never on a server worker. Each statement runs with its session's
//! interrupt: a cancel request, a disconnect, the `statement_timeout` or the server's
//! shutdown stops it, and a statement cancelled before its write leaves nothing applied.

use std::fmt::Debug;
use std::sync::{Arc, PoisonError};

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use futures::Sink;
use futures::stream;
use omendb::Db;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::commands::{self, Local};
use super::metrics::Metrics;
use super::params::{self, Prepared};
use super::session::{Session, Sessions};
use super::{encode, sqlstate};
use crate::cli::statements::{self, Kind, Statement};
use arrow::record_batch::RecordBatch;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use omendb::CancelReason;
use pgwire::api::query::send_describe_response;
use pgwire::api::results::DescribeResponse;
use pgwire::api::store::Entry;
use pgwire::messages::extendedquery::Describe;

/// Runs `statement` in the database, cancellable by the session (cancel request,
/// disconnect) and bounded by its `statement_timeout`. The statement goes as its syntax
/// tree: parameters bound into it are values, not text to print and parse again.
async fn run_in_db(
    db: &Arc<Db>,
    session: &Session,
    statement: DfStatement,
) -> Result<omendb::QueryResult, omendb::Error> {
    let mut running = session.start();
    let interrupt = running.interrupt().clone();
    let db = Arc::clone(db);
    let signal = interrupt.clone();
    let transaction = session.transaction_block.transaction();
    let mut task = tokio::task::spawn_blocking(move || {
        let Some(shared) = transaction else {
            return db.sql_parsed_with(statement, &signal);
        };
        let mut open = shared.lock().unwrap_or_else(PoisonError::into_inner);
        match open.as_mut() {
            Some(transaction) => transaction.sql_parsed_with(statement, &signal),
            None => db.sql_parsed_with(statement, &signal),
        }
    });
    let joined = match session.statement_timeout() {
        Some(timeout) => match tokio::time::timeout(timeout, &mut task).await {
            Ok(joined) => joined,
            Err(_) => {
                interrupt.interrupt(CancelReason::StatementTimeout);
                task.await
            }
        },
        None => task.await,
    };
    running.disarm();
    joined.unwrap_or_else(|e| {
        Err(omendb::Error::Unsupported(format!(
            "the statement's thread failed: {e}"
        )))
    })
}

/// Runs one statement of the database and turns its result into a response.
async fn execute(
    db: &Arc<Db>,
    metrics: &Metrics,
    session: &Session,
    statement: DfStatement,
    kind: Kind,
    format: Option<&Format>,
    described: Option<&SchemaRef>,
) -> PgWireResult<Response> {
    let started = std::time::Instant::now();
    let result = run_in_db(db, session, statement).await;
    match &result {
        Ok(result) => metrics.statement(started.elapsed(), true, &result.routes),
        Err(_) => metrics.statement(started.elapsed(), false, &[]),
    }
    let result = result.map_err(|e| sqlstate::from_db(&e))?;
    match kind {
        Kind::Count(tag) => {
            let rows = statements::count(&result.batches);
            let tag = Tag::new(tag).with_rows(rows);
            // PostgreSQL's INSERT tag carries an OID (always 0).
            let tag = if kind == Kind::Count("INSERT") {
                tag.with_oid(0)
            } else {
                tag
            };
            Ok(Response::Execution(tag))
        }
        Kind::Done(tag) => Ok(Response::Execution(Tag::new(tag))),
        Kind::Rows | Kind::Local => {
            // A described statement is answered in the described types (the client decodes
            // with them); values are cast to them.
            if let Some(described) = described {
                same_columns(described, &result.batches)?;
            }
            let schema = described
                .filter(|s| !s.fields().is_empty())
                .cloned()
                .or_else(|| result.batches.first().map(|b| b.schema()))
                .unwrap_or_else(|| Arc::new(arrow::datatypes::Schema::empty()));
            rows_response(&schema, &result.batches, format)
        }
    }
}

/// How many computed batches wait for a client that reads slowly (each up to 8192 rows).
const STREAM_BUFFER: usize = 2;

/// Computes a query's batches one at a time on a blocking thread and hands them to `batches`,
/// waiting for room without a thread: a client that stops reading holds no thread, only its
/// buffered batches, until its statement's timeout, a cancel request or a disconnect ends
/// the query (dropping the stream). `db` stays open while the stream is read.
async fn pump(
    db: Arc<Db>,
    mut stream: omendb::QueryStream<'static>,
    batches: tokio::sync::mpsc::Sender<Result<RecordBatch, omendb::Error>>,
    signal: omendb::Interrupt,
) {
    loop {
        let computed = tokio::task::spawn_blocking(move || {
            let next = stream.next();
            (stream, next)
        })
        .await;
        let (rest, batch) = match computed {
            Ok((rest, Some(batch))) => (rest, batch),
            Ok((_, None)) => break,
            // A bug while computing a batch (the panic hook logged it): the client is told,
            // never left with the rows before it as if they were the whole answer.
            Err(_) => {
                let bug = datafusion::error::DataFusionError::Internal(
                    "the query failed on a bug (the server's log has it); its result is \
                     incomplete"
                        .into(),
                );
                let _ = batches.send(Err(omendb::Error::Sql(bug))).await;
                break;
            }
        };
        stream = rest;
        let sent = tokio::select! {
            biased;
            _ = signal.given() => false,
            sent = batches.send(batch) => sent.is_ok(),
        };
        if !sent {
            break;
        }
    }
    drop(db);
}

/// Runs a query and streams its rows to the client as they are computed, with backpressure:
/// a client that stops reading stops the query (which waits for room without a thread, see
/// [`pump`]), and one that goes away or cancels ends it. The statement timeout covers the
/// whole stream.
async fn stream_query(
    db: &Arc<Db>,
    metrics: &Arc<Metrics>,
    session: &Arc<Session>,
    statement: DfStatement,
    format: Option<&Format>,
    described: Option<&SchemaRef>,
) -> PgWireResult<Response> {
    let started = std::time::Instant::now();
    let running = session.start();
    let interrupt = running.interrupt().clone();
    session.admit_query(&interrupt)?;
    let (schema_tx, schema_rx) = tokio::sync::oneshot::channel();
    let (batch_tx, batch_rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
    let database = Arc::clone(db);
    let signal = interrupt.clone();
    let transaction = session.transaction_block.transaction();
    tokio::task::spawn_blocking(move || {
        // The transaction's writes as they are now; the stream does not hold the transaction.
        let written = transaction.and_then(|shared| {
            let open = shared.lock().unwrap_or_else(PoisonError::into_inner);
            open.as_ref().map(omendb::Transaction::written)
        });
        let stream = match written {
            Some(Ok(written)) => database.sql_stream_parsed_in(statement, &signal, &written),
            Some(Err(error)) => Err(error),
            None => database.sql_stream_parsed_with(statement, &signal),
        };
        match stream {
            Err(error) => {
                let _ = schema_tx.send(Err(error));
            }
            Ok(stream) => {
                if schema_tx
                    .send(Ok((stream.schema(), stream.routes())))
                    .is_err()
                {
                    return;
                }
                let stream = stream.detach();
                tokio::runtime::Handle::current().spawn(pump(database, stream, batch_tx, signal));
            }
        }
    });
    let timer = session.statement_timeout().map(|timeout| {
        let signal = interrupt.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            signal.interrupt(CancelReason::StatementTimeout);
        })
    });
    let (schema, routes) = match schema_rx.await {
        Ok(Ok(found)) => found,
        Ok(Err(error)) => {
            metrics.statement(started.elapsed(), false, &[]);
            return Err(sqlstate::from_db(&error));
        }
        Err(_) => {
            return Err(sqlstate::error(
                sqlstate::INTERNAL_ERROR,
                "the query's thread ended without an answer",
            ));
        }
    };
    if let Some(described) = described
        && !described.fields().is_empty()
        && same_columns(described, &[RecordBatch::new_empty(Arc::clone(&schema))]).is_err()
    {
        metrics.statement(started.elapsed(), false, &[]);
        // Dropping the armed `running` stops the query.
        timer.inspect(tokio::task::JoinHandle::abort);
        let empty = RecordBatch::new_empty(schema);
        return same_columns(described, &[empty]).map(|()| Response::EmptyQuery);
    }
    let schema = described
        .filter(|s| !s.fields().is_empty())
        .cloned()
        .unwrap_or(schema);
    let fields = Arc::new(encode::fields(&schema, format));
    let metrics = Arc::clone(metrics);
    let session = Arc::clone(session);
    // Ends the timer and the query with the stream, however it ends.
    let finish = (running, timer.map(|t| t.abort_handle()));
    let rows = stream::unfold(
        (
            batch_rx,
            fields.clone(),
            std::collections::VecDeque::new(),
            Some(finish),
        ),
        move |(mut rx, fields, mut pending, mut finish)| {
            let (metrics, session) = (Arc::clone(&metrics), Arc::clone(&session));
            let signal = interrupt.clone();
            let routes = routes.clone();
            async move {
                loop {
                    if let Some(row) = pending.pop_front() {
                        return Some((Ok(row), (rx, fields, pending, finish)));
                    }
                    finish.as_ref()?;
                    match rx.recv().await {
                        Some(Ok(batch)) => match encode_and_free(batch, &fields, &signal) {
                            Ok(rows) => pending.extend(rows),
                            Err(error) => {
                                session.note(false, true);
                                finish = None;
                                return Some((Err(error), (rx, fields, pending, finish)));
                            }
                        },
                        Some(Err(error)) => {
                            // Its rows so far were sent; the statement failed all the same,
                            // and so does the block it ran in.
                            session.note(false, true);
                            metrics.statement(started.elapsed(), false, &[]);
                            if let Some((mut running, timer)) = finish.take() {
                                running.disarm();
                                timer.inspect(tokio::task::AbortHandle::abort);
                            }
                            return Some((
                                Err(sqlstate::from_db(&error)),
                                (rx, fields, pending, finish),
                            ));
                        }
                        None if let Some(reason) = signal.reason() => {
                            // The query stopped early: the rows sent are not all of them.
                            session.note(false, true);
                            metrics.statement(started.elapsed(), false, &[]);
                            if let Some((mut running, timer)) = finish.take() {
                                running.disarm();
                                timer.inspect(tokio::task::AbortHandle::abort);
                            }
                            let error = omendb::Error::Cancelled(reason);
                            return Some((
                                Err(sqlstate::from_db(&error)),
                                (rx, fields, pending, finish),
                            ));
                        }
                        None => {
                            metrics.statement(started.elapsed(), true, &routes);
                            if let Some((mut running, timer)) = finish.take() {
                                running.disarm();
                                timer.inspect(tokio::task::AbortHandle::abort);
                            }
                            return None;
                        }
                    }
                }
            }
        },
    );
    Ok(Response::Query(QueryResponse::new(fields, rows)))
}

/// PostgreSQL's answer when a prepared statement's rows no longer have the columns it was
/// described with (a table changed between Parse and Execute): drivers prepare it again.
fn same_columns(described: &SchemaRef, batches: &[RecordBatch]) -> PgWireResult<()> {
    let expected = described.fields().len();
    let Some(batch) = batches.first() else {
        return Ok(());
    };
    if expected == 0 {
        return Ok(());
    }
    let refuse = |now: String| {
        Err(sqlstate::error(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!(
                "cached plan must not change result type: the statement was prepared for \
                 {expected} columns and now returns {now} (a table changed); prepare it again"
            ),
        ))
    };
    if batch.num_columns() != expected {
        return refuse(format!("{}", batch.num_columns()));
    }
    // Values are cast to the described types: within a kind (a narrower integer, an exact
    // number) that is exact; across kinds it would read text as NULL or a double as text.
    // An exact number described as a double (a parameter typed by the statement's plan as a
    // double, where execution computed a NUMERIC) is sent as the double it was described as.
    for (field, column) in described.fields().iter().zip(batch.columns()) {
        let (was, now) = (kind_of(field.data_type()), kind_of(column.data_type()));
        let to_double = was == ValueKind::Float && now == ValueKind::Exact;
        if was != now && !to_double && was != ValueKind::Null && now != ValueKind::Null {
            return refuse(format!(
                "{} for column {:?}, described as {}",
                column.data_type(),
                field.name(),
                field.data_type()
            ));
        }
    }
    Ok(())
}

/// Types whose values cast into one another exactly: integers and decimals; floats; text;
/// each other type by itself (as the PostgreSQL type it is sent as).
#[derive(PartialEq)]
enum ValueKind {
    Exact,
    Float,
    Text,
    /// Untyped NULLs (`SELECT NULL`), which read as any type.
    Null,
    Other(Type),
}

fn kind_of(data_type: &arrow::datatypes::DataType) -> ValueKind {
    use arrow::datatypes::DataType;
    match data_type {
        t if t.is_integer() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) => {
            ValueKind::Exact
        }
        t if t.is_floating() => ValueKind::Float,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ValueKind::Text,
        DataType::Null => ValueKind::Null,
        other => ValueKind::Other(encode::pg_type(other)),
    }
}

/// `batch`'s rows for the wire; the query's meter is given the batch back as it is freed
/// here, on a server thread (`omendb::Interrupt::charged`).
fn encode_and_free(
    batch: RecordBatch,
    fields: &Arc<Vec<FieldInfo>>,
    signal: &omendb::Interrupt,
) -> PgWireResult<Vec<pgwire::messages::data::DataRow>> {
    let batches = [batch];
    let rows = encode::rows(&batches, fields);
    let _charged = signal.charged();
    drop(batches);
    rows
}

fn rows_response(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: Option<&Format>,
) -> PgWireResult<Response> {
    let fields = Arc::new(encode::fields(schema, format));
    let rows = encode::rows(batches, &fields)?;
    Ok(Response::Query(QueryResponse::new(
        fields,
        stream::iter(rows.into_iter().map(Ok)),
    )))
}

/// A result of text columns.
fn text_rows(
    columns: &[&str],
    rows: Vec<Vec<Option<String>>>,
) -> PgWireResult<(SchemaRef, RecordBatch)> {
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let arrays = (0..columns.len())
        .map(|i| {
            Arc::new(arrow::array::StringArray::from(
                rows.iter()
                    .map(|r| r.get(i).cloned().flatten())
                    .collect::<Vec<_>>(),
            )) as arrow::array::ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(Arc::clone(&schema), arrays)
        .map_err(|e| sqlstate::error(sqlstate::INTERNAL_ERROR, e.to_string()))?;
    Ok((schema, batch))
}

/// The result columns of a statement the server answers itself (for Describe).
pub fn local_schema(local: &Local) -> SchemaRef {
    let columns: Vec<String> = match local {
        Local::Show(Some(name)) => vec![name.replace(' ', "_")],
        Local::Show(None) => vec!["name".into(), "setting".into()],
        Local::Functions(values) => values.iter().map(|(c, _)| c.clone()).collect(),
        Local::EmptyCatalog(columns) => columns.clone(),
        _ => Vec::new(),
    };
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    text_rows(&refs, Vec::new())
        .map(|(schema, _)| schema)
        .unwrap_or_else(|_| Arc::new(arrow::datatypes::Schema::empty()))
}

/// A Describe answer: `NoData` exactly when the statement returns no rows, whatever its
/// parameters (pgwire's own answer keys `NoData` on having neither).
struct Described {
    parameters: Option<Vec<Type>>,
    fields: Vec<FieldInfo>,
}

impl DescribeResponse for Described {
    fn parameters(&self) -> Option<&[Type]> {
        self.parameters.as_deref()
    }

    fn fields(&self) -> &[FieldInfo] {
        &self.fields
    }

    fn no_data() -> Self {
        Self {
            parameters: None,
            fields: Vec::new(),
        }
    }

    fn is_no_data(&self) -> bool {
        self.fields.is_empty()
    }
}

/// The handler of one server (shared by its connections).
pub struct Backend {
    db: Arc<Db>,
    parser: Arc<OmenParser>,
    metrics: Arc<Metrics>,
    sessions: Arc<Sessions>,
}

impl Backend {
    /// A handler serving `db`, counting statements in `metrics`, keeping each connection's
    /// state in `sessions`.
    pub fn new(db: Arc<Db>, metrics: Arc<Metrics>, sessions: Arc<Sessions>) -> Self {
        Self {
            parser: Arc::new(OmenParser {
                db: Arc::clone(&db),
                sessions: Arc::clone(&sessions),
            }),
            db,
            metrics,
            sessions,
        }
    }

    fn session(&self, client: &impl ClientInfo) -> Arc<Session> {
        self.sessions
            .get(client.socket_addr())
            .unwrap_or_else(|| Arc::new(Session::new(std::time::Duration::ZERO, Arc::default())))
    }

    /// Runs one statement for `client`'s session.
    async fn run<C>(
        &self,
        client: &C,
        statement: Statement,
        (format, described): (Option<&Format>, Option<&SchemaRef>),
        stream: bool,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore,
        C::PortalStore: PortalStore,
    {
        let session = self.session(client);
        let user = client
            .metadata()
            .get(pgwire::api::METADATA_USER)
            .cloned()
            .unwrap_or_default();
        // Any error in a block fails it, the server's own statements' too.
        let local = commands::classify(&statement.ast, &user).inspect_err(|_| {
            session.note(false, true);
        })?;
        if let Some(local) = local {
            let answered = self.local(client, &session, local, format, stream).await;
            if answered.is_err() {
                session.note(false, true);
            }
            return answered;
        }
        let writes = !matches!(statement.kind, Kind::Rows);
        if writes && session.read_only() && !session.block().is_some_and(|b| b.failed) {
            session.note(false, true);
            return Err(sqlstate::error(
                "25006",
                format!(
                    "cannot execute {} in a read-only transaction",
                    match statement.kind {
                        Kind::Count(tag) | Kind::Done(tag) => tag,
                        _ => "this statement",
                    }
                ),
            ));
        }
        if let Some(block) = session.block() {
            if block.failed {
                return Err(aborted());
            }
            if matches!(statement.kind, Kind::Done(_)) {
                // A schema change is not transactional: an implicit block commits what
                // precedes it; in an explicit one it is applied at once, and the client told.
                if !block.explicit {
                    if block.wrote {
                        session.warn(
                            "CREATE, DROP and ALTER TABLE are not transactional in OmenDB: the \
                             writes before this one in the query are committed first",
                        );
                    }
                    if let Some(Err(error)) = session.finish_block().await {
                        return Err(sqlstate::from_db(&error));
                    }
                } else {
                    session.warn(
                        "CREATE, DROP and ALTER TABLE are not transactional in OmenDB: this one \
                         is applied now and stays if the transaction block rolls back",
                    );
                }
            }
        }
        let streams = stream
            && matches!(&statement.ast, DfStatement::Statement(s) if matches!(s.as_ref(), SqlStatement::Query(_)));
        let result = if streams {
            stream_query(
                &self.db,
                &self.metrics,
                &session,
                statement.ast,
                format,
                described,
            )
            .await
        } else {
            execute(
                &self.db,
                &self.metrics,
                &session,
                statement.ast,
                statement.kind,
                format,
                described,
            )
            .await
        };
        session.note(writes && result.is_ok(), result.is_err());
        result
    }

    /// Runs a prepared key read with `keys` for its parameters on the index, if the router
    /// sends it there; `None`: run it as any other statement.
    async fn key_read<C>(
        &self,
        client: &C,
        portal: &Portal<Prepared>,
        keys: Vec<Option<i64>>,
    ) -> PgWireResult<Option<Response>>
    where
        C: ClientInfo,
    {
        let session = self.session(client);
        if session.block().is_some_and(|b| b.failed || b.wrote) {
            // `run` gives the error of a failed block, and sees the block's writes.
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let (db, stored) = (Arc::clone(&self.db), Arc::clone(&portal.statement));
        let transaction = session.transaction_block.transaction();
        let found = tokio::task::spawn_blocking(move || {
            // In a block, at its snapshot.
            let at = transaction.and_then(|shared| {
                let open = shared.lock().unwrap_or_else(PoisonError::into_inner);
                open.as_ref().map(omendb::Transaction::snapshot)
            });
            db.prepared_key_read_at(&stored.statement.statement.ast, &keys, at)
        })
        .await
        .map_err(|e| sqlstate::error(sqlstate::INTERNAL_ERROR, e.to_string()))?;
        let result = match found {
            Ok(None) => return Ok(None),
            Ok(Some(result)) => result,
            Err(error) => {
                self.metrics.statement(started.elapsed(), false, &[]);
                session.note(false, true);
                return Err(sqlstate::from_db(&error));
            }
        };
        self.metrics
            .statement(started.elapsed(), true, &result.routes);
        let described = &portal.statement.statement.schema;
        let response = same_columns(described, &result.batches).and_then(|()| {
            rows_response(
                described,
                &result.batches,
                Some(&portal.result_column_format),
            )
        });
        session.note(false, response.is_err());
        response.map(Some)
    }

    async fn local<C>(
        &self,
        client: &C,
        session: &Arc<Session>,
        local: Local,
        format: Option<&Format>,
        stream: bool,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore,
        C::PortalStore: PortalStore,
    {
        if let Some(block) = session.block()
            && block.failed
            && !matches!(
                local,
                Local::Commit | Local::Rollback | Local::RollbackTo(_)
            )
        {
            return Err(aborted());
        }
        let done = |tag: &str| Ok(Response::Execution(Tag::new(tag)));
        match local {
            Local::Set { name, value, local } => {
                session.set_scoped(&name, value, local)?;
                done("SET")
            }
            Local::SetTransaction {
                read_only,
                session: true,
            } => {
                if let Some(read_only) = read_only {
                    let value = if read_only { "on" } else { "off" };
                    session.set("default_transaction_read_only", value.into())?;
                }
                done("SET")
            }
            Local::SetTransaction { read_only, .. } => {
                match session.block() {
                    Some(_) => {
                        if let Some(read_only) = read_only {
                            session.transaction_block.set_read_only(read_only)?;
                        }
                    }
                    None => session.warn("SET TRANSACTION can only be used in transaction blocks"),
                }
                done("SET")
            }
            Local::SetNothing => done("SET"),
            Local::Show(name) => {
                let rows = session.show(name.as_deref())?;
                let (schema, batch) = match &name {
                    Some(name) => text_rows(
                        &[&name.replace(' ', "_")],
                        rows.into_iter().map(|(_, v)| vec![Some(v)]).collect(),
                    )?,
                    None => text_rows(
                        &["name", "setting"],
                        rows.into_iter()
                            .map(|(n, v)| vec![Some(n), Some(v)])
                            .collect(),
                    )?,
                };
                rows_response(&schema, &[batch], format)
            }
            Local::Functions(values) => {
                let columns: Vec<&str> = values.iter().map(|(c, _)| c.as_str()).collect();
                let (schema, batch) = text_rows(
                    &columns,
                    vec![values.iter().map(|(_, v)| v.clone()).collect()],
                )?;
                rows_response(&schema, &[batch], format)
            }
            Local::Reset(name) => {
                session.reset_scoped(name.as_deref())?;
                done("RESET")
            }
            Local::Begin { read_only, tag } => {
                match session.block() {
                    Some(block) if block.explicit => {
                        session.warn("there is already a transaction in progress");
                    }
                    _ => {
                        let read_only = read_only.unwrap_or_else(|| session.default_read_only());
                        session.transaction_block.begin(&self.db, read_only);
                    }
                }
                Ok(Response::TransactionStart(Tag::new(tag)))
            }
            Local::Commit => {
                // As PostgreSQL: the block's portals end with it (they read its writes).
                client.portal_store().clear_portals();
                match session.finish_block().await {
                    None => {
                        session.warn("there is no transaction in progress");
                        Ok(Response::TransactionEnd(Tag::new("COMMIT")))
                    }
                    // A failed block applied nothing, and says so.
                    Some(Ok(state)) if state.failed => {
                        Ok(Response::TransactionEnd(Tag::new("ROLLBACK")))
                    }
                    Some(Ok(_)) => Ok(Response::TransactionEnd(Tag::new("COMMIT"))),
                    // Nothing was applied, and the block is over, as in PostgreSQL.
                    Some(Err(error)) => Err(sqlstate::from_db(&error)),
                }
            }
            Local::Rollback => {
                client.portal_store().clear_portals();
                if session.block().is_none() {
                    session.warn("there is no transaction in progress");
                }
                session.rollback_block();
                Ok(Response::TransactionEnd(Tag::new("ROLLBACK")))
            }
            Local::Prepare { name, statement } => {
                session.prepare(name, *statement)?;
                done("PREPARE")
            }
            Local::Execute { name, parameters } => {
                let statement = session.prepared(&name)?;
                let statement = params::substitute(statement, &parameters)?;
                Box::pin(self.run(client, statement, (format, None), stream)).await
            }
            Local::Deallocate(name) => {
                session.deallocate(name.as_deref())?;
                done(if name.is_some() {
                    "DEALLOCATE"
                } else {
                    "DEALLOCATE ALL"
                })
            }
            Local::Savepoint(name) => {
                session.savepoint(name)?;
                done("SAVEPOINT")
            }
            Local::Release(name) => {
                session.release(&name)?;
                done("RELEASE")
            }
            Local::RollbackTo(name) => {
                session.rollback_to(&name)?;
                // A portal opened since would read writes that are gone.
                client.portal_store().clear_portals();
                done("ROLLBACK")
            }
            Local::EmptyCatalog(columns) => {
                let names: Vec<&str> = columns.iter().map(String::as_str).collect();
                let (schema, batch) = text_rows(&names, Vec::new())?;
                rows_response(&schema, &[batch], format)
            }
            Local::Discard => {
                if session.block().is_some() {
                    return Err(sqlstate::error(
                        "25001",
                        "DISCARD ALL cannot run inside a transaction block",
                    ));
                }
                session.discard();
                done("DISCARD ALL")
            }
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    /// pgwire's `on_query`, but ReadyForQuery reports the session's own transaction status
    /// (pgwire derives it from the responses, and cannot say that `ROLLBACK TO` recovered a
    /// failed block or that a failed `COMMIT` ended one).
    async fn on_query<C>(
        &self,
        client: &mut C,
        query: pgwire::messages::simplequery::Query,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        use pgwire::api::PgWireConnectionState;
        use pgwire::messages::response::EmptyQueryResponse;
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        if query.query.chars().all(|c| c == ';' || c.is_whitespace()) {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        } else {
            for response in SimpleQueryHandler::do_query(self, client, &query.query).await? {
                send_response(client, response).await?;
            }
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        let status = self.session(&*client).transaction_block.status();
        client.set_transaction_status(status);
        pgwire::api::query::send_ready_for_query(client, status).await
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let parsed = split(query).await?;
        // A lone query streams its rows; in a script each statement completes before the next.
        let stream = parsed.len() == 1;
        // Several statements are one transaction (an implicit block), as in PostgreSQL.
        let implicit = parsed.len() > 1;
        let session = self.session(&*client);
        let mut responses = Vec::with_capacity(parsed.len());
        // Each statement's warnings, then its answer, are sent as it completes.
        for statement in parsed {
            if implicit && session.block().is_none() {
                session
                    .transaction_block
                    .open(&self.db, false, session.default_read_only());
            }
            let result = self.run(&*client, statement, (None, None), stream).await;
            send_warnings(client, &session).await?;
            // A streamed query's error comes while its rows are sent.
            let result = match result {
                Ok(response) => send_response(client, response).await,
                Err(error) => Err(error),
            };
            match result {
                Ok(()) => {}
                Err(error @ PgWireError::IoError(_)) => return Err(error),
                Err(error) => {
                    // As in PostgreSQL, an error ends the script; its implicit block applies
                    // nothing.
                    session.note(false, true);
                    send_response(client, Response::Error(Box::new(error.into()))).await?;
                    break;
                }
            }
        }
        if session.block().is_some_and(|b| !b.explicit)
            && let Some(Err(error)) = session.finish_block().await
        {
            responses.push(Response::Error(Box::new(sqlstate::db_info(&error))));
        }
        Ok(responses)
    }
}

/// Sends one answer of a simple Query.
async fn send_response<C>(client: &mut C, response: Response) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    use futures::SinkExt;
    let message = match response {
        Response::EmptyQuery => PgWireBackendMessage::EmptyQueryResponse(
            pgwire::messages::response::EmptyQueryResponse::new(),
        ),
        Response::Query(results) => {
            return pgwire::api::query::send_query_response(client, results, true).await;
        }
        Response::Execution(tag)
        | Response::TransactionStart(tag)
        | Response::TransactionEnd(tag) => {
            return pgwire::api::query::send_execution_response(client, tag).await;
        }
        Response::Error(error) => PgWireBackendMessage::ErrorResponse((*error).into()),
        Response::CopyIn(_) | Response::CopyOut(_) | Response::CopyBoth(_) => {
            let info = sqlstate::info(
                "ERROR",
                sqlstate::FEATURE_NOT_SUPPORTED,
                "COPY is not supported",
            );
            PgWireBackendMessage::ErrorResponse(info.into())
        }
    };
    client.feed(message).await?;
    Ok(())
}

/// Sends the session's queued warnings as notices.
async fn send_warnings<C>(client: &mut C, session: &Session) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    use futures::SinkExt;
    for warning in session.take_warnings() {
        let notice = sqlstate::info("WARNING", "01000", warning);
        client
            .feed(PgWireBackendMessage::NoticeResponse(notice.into()))
            .await?;
    }
    Ok(())
}

/// PostgreSQL's answer to a statement in a failed block.
fn aborted() -> PgWireError {
    sqlstate::error(
        "25P02",
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

/// Parses `text`; a long one on a blocking thread, so that parsing megabytes of SQL never
/// holds one of the two async workers every connection is served by.
async fn split(text: &str) -> PgWireResult<Vec<statements::Statement>> {
    const INLINE: usize = 64 << 10;
    let parsed = if text.len() <= INLINE {
        statements::split(text)
    } else {
        let text = text.to_string();
        tokio::task::spawn_blocking(move || statements::split(&text))
            .await
            .map_err(|e| sqlstate::error(sqlstate::INTERNAL_ERROR, e.to_string()))?
    };
    parsed.map_err(|e| sqlstate::from_db(&e))
}

/// Parses statements for the extended protocol and describes them.
pub struct OmenParser {
    db: Arc<Db>,
    sessions: Arc<Sessions>,
}

#[async_trait]
impl QueryParser for OmenParser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut parsed = split(sql).await?;
        if parsed.len() > 1 {
            return Err(sqlstate::error(
                sqlstate::SYNTAX_ERROR,
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        // In a failed block only what ends it may be parsed, as PostgreSQL's Parse refuses.
        let failed = self
            .sessions
            .get(client.socket_addr())
            .and_then(|session| session.block())
            .is_some_and(|block| block.explicit && block.failed);
        if failed
            && let Some(statement) = parsed.first()
            && !matches!(
                commands::classify(&statement.ast, "").ok().flatten(),
                Some(Local::Commit | Local::Rollback | Local::RollbackTo(_))
            )
        {
            return Err(aborted());
        }
        match parsed.pop() {
            None => Ok(None),
            Some(mut statement) => {
                params::declare_types(&mut statement.ast, types);
                params::prepare(&self.db, statement).await.map(Some)
            }
        }
    }

    fn get_parameter_types(&self, prepared: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(prepared.parameter_types.clone())
    }

    fn get_result_schema(
        &self,
        prepared: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(encode::fields(&prepared.schema, column_format))
    }
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = Prepared;
    type QueryParser = OmenParser;

    fn query_parser(&self) -> Arc<OmenParser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        params::check_formats(portal, prepared.schema.fields().len())?;
        let session = self.session(&*client);
        if session.write_finished(&portal.state) {
            return Err(sqlstate::error(
                "55000",
                format!(
                    "portal \"{}\" cannot be run: its write has run",
                    portal.name
                ),
            ));
        }
        if prepared.key_read
            && let Some(keys) = params::keys(portal)?
            && let Some(response) = self.key_read(&*client, portal, keys).await?
        {
            return Ok(response);
        }
        let statement = params::bind(portal)?;
        if session.block().is_none()
            && matches!(statement.kind, Kind::Count(_))
            && !session.sync_next()
        {
            // A pipeline's writes up to Sync are one transaction (an implicit block). A write
            // that is the pipeline's last statement, as drivers send an autocommit statement
            // (Parse, Bind, Execute, Sync), runs on its own like a simple Query's: under the
            // writer lock, never failing with 40001.
            session
                .transaction_block
                .open(&self.db, false, session.default_read_only());
        }
        let response = self
            .run(
                &*client,
                statement,
                (Some(&portal.result_column_format), Some(&prepared.schema)),
                true,
            )
            .await;
        send_warnings(client, &session).await?;
        let response = response?;
        if matches!(response, Response::Execution(_)) {
            session.finish_write(&portal.state);
        }
        Ok(response)
    }

    /// As PostgreSQL: outside a block, Sync ends the implicit transaction and with it every
    /// portal, named ones too, so a suspended portal holds its snapshot (and the Parquet
    /// files it reads, which compaction may not delete) only until the client's next Sync.
    async fn on_sync<C>(
        &self,
        client: &mut C,
        _message: pgwire::messages::extendedquery::Sync,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        let session = self.session(&*client);
        // Sync ends an implicit block: committed unless a message since the last Sync failed.
        if session.block().is_some_and(|b| !b.explicit)
            && let Some(Err(error)) = session.finish_block().await
        {
            client
                .send(PgWireBackendMessage::ErrorResponse(
                    sqlstate::db_info(&error).into(),
                ))
                .await?;
        }
        if session.block().is_none() {
            client.portal_store().clear_portals();
        } else {
            client.portal_store().rm_portal(pgwire::api::DEFAULT_NAME);
        }
        let status = session.transaction_block.status();
        client.set_transaction_status(status);
        client
            .send(PgWireBackendMessage::ReadyForQuery(
                pgwire::messages::response::ReadyForQuery::new(status),
            ))
            .await?;
        client.flush().await?;
        Ok(())
    }

    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // As PostgreSQL: a statement without rows is described as NoData (pgwire's default
        // sends an empty RowDescription when the statement has parameters, which drivers read
        // as "returns rows").
        let name = message.name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
        let (parameters, prepared, format) = match message.target_type {
            b'S' => match client.portal_store().get_statement(name) {
                Some(Entry::Value(stored)) => {
                    let types = (0..stored
                        .parameter_types
                        .len()
                        .max(stored.statement.parameter_types.len()))
                        .map(|i| {
                            stored
                                .parameter_types
                                .get(i)
                                .cloned()
                                .flatten()
                                .or_else(|| stored.statement.parameter_types.get(i).cloned())
                                .unwrap_or(Type::UNKNOWN)
                        })
                        .collect::<Vec<_>>();
                    (Some(types), Some(stored.statement.clone()), None)
                }
                Some(Entry::Empty) => (Some(Vec::new()), None, None),
                None => return Err(PgWireError::StatementNotFound(name.to_owned())),
            },
            b'P' => match client.portal_store().get_portal(name) {
                Some(Entry::Value(portal)) => (
                    params::check_formats(
                        &portal,
                        portal.statement.statement.schema.fields().len(),
                    )
                    .map(|()| None)?,
                    Some(portal.statement.statement.clone()),
                    Some(portal.result_column_format.clone()),
                ),
                Some(Entry::Empty) => (None, None, None),
                None => return Err(PgWireError::PortalNotFound(name.to_owned())),
            },
            other => return Err(PgWireError::InvalidTargetType(other)),
        };
        let fields = prepared
            .as_ref()
            .filter(|p| matches!(p.statement.kind, Kind::Rows | Kind::Local))
            .map(|p| encode::fields(&p.schema, format.as_ref()))
            .unwrap_or_default();
        send_describe_response(client, &Described { parameters, fields }).await?;
        Ok(())
    }
}
