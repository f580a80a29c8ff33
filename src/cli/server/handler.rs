//! The query handlers: simple protocol (scripts, each statement answered on its own) and
//! extended protocol (parse, describe, bind with parameters, execute).
//!
//! `Db::sql` blocks on the database's own runtime, so every call runs on a blocking thread
//! (`spawn_blocking`), never on a server worker.

use std::fmt::Debug;
use std::sync::Arc;

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

use super::metrics::Metrics;
use super::params::{self, Prepared};
use super::{encode, sqlstate};
use crate::cli::statements::{self, Kind};

/// Runs `text` (one statement) and turns its result into a response.
async fn execute(
    db: &Arc<Db>,
    metrics: &Metrics,
    text: String,
    kind: Kind,
    format: Option<&Format>,
    described: Option<&SchemaRef>,
) -> PgWireResult<Response> {
    let db = Arc::clone(db);
    tracing::debug!(sql = %text, "execute");
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || db.sql(&text))
        .await
        .map_err(|e| sqlstate::error(sqlstate::INTERNAL_ERROR, format!("query task: {e}")))?;
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
        Kind::Rows => {
            // A described statement is answered in the described types (the client decodes
            // with them); values are cast to them.
            let schema = described
                .filter(|s| !s.fields().is_empty())
                .cloned()
                .or_else(|| result.batches.first().map(|b| b.schema()))
                .unwrap_or_else(|| Arc::new(arrow::datatypes::Schema::empty()));
            let fields = Arc::new(encode::fields(&schema, format));
            let rows = encode::rows(&result.batches, &fields)?;
            Ok(Response::Query(QueryResponse::new(
                fields,
                stream::iter(rows.into_iter().map(Ok)),
            )))
        }
    }
}

/// The handler of one server (shared by its connections).
pub struct Backend {
    db: Arc<Db>,
    parser: Arc<OmenParser>,
    metrics: Arc<Metrics>,
}

impl Backend {
    /// A handler serving `db`, counting statements in `metrics`.
    pub fn new(db: Arc<Db>, metrics: Arc<Metrics>) -> Self {
        Self {
            parser: Arc::new(OmenParser {
                db: Arc::clone(&db),
            }),
            db,
            metrics,
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let parsed = statements::split(query).map_err(|e| sqlstate::from_db(&e))?;
        let mut responses = Vec::with_capacity(parsed.len());
        for statement in parsed {
            let executed = execute(
                &self.db,
                &self.metrics,
                statement.text,
                statement.kind,
                None,
                None,
            );
            match executed.await {
                Ok(response) => responses.push(response),
                Err(error) => {
                    // As in PostgreSQL, an error ends the script; earlier results stand.
                    responses.push(Response::Error(Box::new(error.into())));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

/// Parses statements for the extended protocol and describes them.
pub struct OmenParser {
    db: Arc<Db>,
}

#[async_trait]
impl QueryParser for OmenParser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut parsed = statements::split(sql).map_err(|e| sqlstate::from_db(&e))?;
        if parsed.len() > 1 {
            return Err(sqlstate::error(
                sqlstate::SYNTAX_ERROR,
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        match parsed.pop() {
            None => Ok(None),
            Some(statement) => params::prepare(&self.db, statement).await.map(Some),
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
        _client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let text = params::bind(portal)?;
        let prepared = &portal.statement.statement;
        execute(
            &self.db,
            &self.metrics,
            text,
            prepared.statement.kind,
            Some(&portal.result_column_format),
            Some(&prepared.schema),
        )
        .await
    }
}
