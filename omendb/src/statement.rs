//! SQL statements that change the database: `CREATE TABLE`, `DROP TABLE`, `ALTER TABLE ...
//! ADD COLUMN`, `INSERT` (`VALUES` or `SELECT`), `UPDATE` and `DELETE`.
//!
//! DataFusion parses and plans every statement. For a write, its plan's input is the rows to
//! write (`INSERT`: the new rows cast to the table's types; `UPDATE`: each matching row with
//! its new values; `DELETE`: the matching rows). We run that input as a query at a snapshot
//! taken while holding the writer lock, so nothing commits between the read and the write
//! (no lost updates), and commit the result as one [`WriteBatch`]: the statement applies
//! whole or not at all. `ALTER TABLE` is not planned by DataFusion; its column definition is
//! planned as a one-column `CREATE TABLE` to get the same type mapping.

use std::sync::Arc;

use arrow::array::{
    Array, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType as ArrowType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::Constraint;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{DdlStatement, DmlStatement, Expr, LogicalPlan, WriteOp};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    AlterTableOperation, CharacterLength, ColumnOption, DataType as SqlDataType, ObjectName,
    ObjectNamePart, Statement as SqlStatement,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use omen_replicator::change::{ColumnDef, DataType, TableSchema, Value};
use omen_wal::Lsn;

use crate::db::{Db, QueryResult, WriteBatch};
use crate::error::{Error, Result};
use crate::interrupt::Interrupt;
use crate::transaction::Transaction;
use crate::write_set::{WriteSet, WrittenRows};

/// What a statement does, as far as locking is concerned.
enum Kind {
    /// Reads only.
    Query,
    /// Changes the schema (each Db call takes the writer lock itself).
    Ddl,
    /// Reads rows, then writes: runs under the writer lock.
    Dml,
}

fn kind(statement: &DfStatement) -> Kind {
    match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            SqlStatement::Insert(_) | SqlStatement::Update(_) | SqlStatement::Delete(_) => {
                Kind::Dml
            }
            SqlStatement::CreateTable(_)
            | SqlStatement::Drop { .. }
            | SqlStatement::AlterTable(_) => Kind::Ddl,
            _ => Kind::Query,
        },
        _ => Kind::Query,
    }
}

/// Whether `statement` is `CREATE`, `DROP` or `ALTER TABLE`.
pub(crate) fn is_schema_change(statement: &DfStatement) -> bool {
    matches!(kind(statement), Kind::Ddl)
}

fn unsupported(what: impl Into<String>) -> Error {
    Error::Unsupported(what.into())
}

impl Db {
    /// Runs SQL: a query (any `SELECT` DataFusion supports, `EXPLAIN`), or a statement that
    /// changes the database (`CREATE TABLE`, `DROP TABLE`, `ALTER TABLE ... ADD COLUMN`,
    /// `INSERT`, `UPDATE`, `DELETE`). Several statements separated by `;` run in order as one
    /// transaction (see [`Db::begin`]; a schema change among them commits those before it);
    /// the result is the last one's. A query sees a snapshot of every write acknowledged before it
    /// started. A write statement applies whole or not at all and returns one row with its
    /// `count` of rows. Errors (bad SQL, unknown tables or columns, bad values) leave the
    /// database usable and unchanged by the failed statement.
    pub fn sql(&self, text: &str) -> Result<QueryResult> {
        self.sql_with(text, &Interrupt::new())
    }

    /// [`Db::sql`], cancelled when `interrupt` is given: a statement cancelled before it
    /// commits fails with [`Error::Cancelled`] and changes nothing; once its write has begun
    /// it runs to the end and reports what it applied. In a script, nothing of the
    /// transaction the cancelled statement ran in is applied.
    pub fn sql_with(&self, text: &str, interrupt: &Interrupt) -> Result<QueryResult> {
        crate::limits::with_plan_stack(|| self.sql_in(text, interrupt))
    }

    /// [`Db::sql_with`] of one statement already parsed (by [`crate::parse_sql`]), which is
    /// checked against the expression limits again but not against the length of a text:
    /// values bound into it (a server's parameters) are no statement text.
    pub fn sql_parsed_with(
        &self,
        statement: DfStatement,
        interrupt: &Interrupt,
    ) -> Result<QueryResult> {
        crate::limits::with_plan_stack(|| {
            crate::limits::check(&statement, &self.sql_limits)?;
            interrupt.check()?;
            self.run_statement(statement, interrupt, None)
        })
    }

    fn sql_in(&self, text: &str, interrupt: &Interrupt) -> Result<QueryResult> {
        let mut statements = crate::limits::parse_sql(text, &self.sql_limits)?;
        if statements.len() <= 1 {
            let statement = statements
                .pop_front()
                .ok_or_else(|| unsupported("an empty statement: write a SQL statement"))?;
            return self.run_statement(statement, interrupt, None);
        }
        // Several statements run as one transaction, as PostgreSQL runs a query string
        // holding several: an error applies nothing of it. A schema change is not
        // transactional: it commits the statements before it, and those after it begin anew.
        let mut transaction: Option<Transaction<'_>> = None;
        let mut result = None;
        for statement in statements {
            interrupt.check()?;
            if matches!(kind(&statement), Kind::Ddl) {
                if let Some(before) = transaction.take() {
                    before.commit()?;
                }
                result = Some(self.run_ddl(statement)?);
            } else {
                let open = transaction.get_or_insert_with(|| self.begin());
                result = Some(open.run(statement, interrupt)?);
            }
        }
        if let Some(open) = transaction {
            open.commit()?;
        }
        result.ok_or_else(|| unsupported("an empty statement"))
    }

    /// Runs one statement: in a transaction when `writes` is its write set (its writes are
    /// added to it, its reads see it), else on its own (its writes committed at once).
    pub(crate) fn run_statement(
        &self,
        statement: DfStatement,
        interrupt: &Interrupt,
        writes: Option<&mut WriteSet>,
    ) -> Result<QueryResult> {
        // In a transaction: its snapshot and its writes so far.
        let view = match &writes {
            Some(w) => {
                // Only the tables the statement reads: their spilled rows are read back, and
                // a write to a table the view holds goes aside until the statement ends.
                let read = (!w.is_empty()).then(|| read_tables(&statement)).flatten();
                Some(w.written(self.sql_memory_limit, read.as_ref()))
            }
            None => None,
        };
        match kind(&statement) {
            Kind::Query => {
                if view.as_ref().is_none_or(WrittenRows::is_empty)
                    && let Some(result) =
                        self.key_read_at(&statement, view.as_ref().map(WrittenRows::snapshot))?
                {
                    return Ok(result);
                }
                self.query(statement, interrupt, view.as_ref())
            }
            // Not transactional: applied at once, in a transaction too (whose commit then
            // fails if it wrote to a table changed so).
            Kind::Ddl => self.run_ddl(statement),
            Kind::Dml => {
                // An INSERT reads its snapshot only (as PostgreSQL's does under READ
                // COMMITTED), so its rows are computed before the writer lock is taken and
                // other writers wait for its commit alone. UPDATE and DELETE read the rows
                // they change: they hold the lock from their read to their write. In a
                // transaction nothing is locked: its commit checks for conflicting writes.
                let insert = matches!(
                    &statement,
                    DfStatement::Statement(s) if matches!(s.as_ref(), SqlStatement::Insert(_))
                );
                let writer = (!insert && writes.is_none()).then(|| self.lock_writer());
                // On its own, a statement larger than one log record runs again as a
                // transaction, whose writes spill and commit as a group of records.
                let again = writes.is_none().then(|| statement.clone());
                let session = self.sql_session_in(view.as_ref())?;
                let lsn = session.lsn;
                let plan = self
                    .sql_runtime()
                    .block_on(interrupt.run(session.plan(statement)))?;
                let LogicalPlan::Dml(dml) = plan else {
                    return Err(unsupported("this write statement"));
                };
                let count = match (writes, again) {
                    (Some(writes), _) => self.dml_rows(session, dml, interrupt, None, |part| {
                        crate::transaction::apply_batch(self, writes, &part)
                    })?,
                    (None, again) => {
                        let mut batch = WriteBatch::new();
                        let cap = Some(self.max_write_bytes);
                        let rows = self.dml_rows(session, dml, interrupt, cap, |part| {
                            batch.ops.extend(part.ops);
                            Ok(())
                        });
                        match (rows, again) {
                            (
                                Err(Error::Limit {
                                    kind: crate::error::LimitKind::WriteBytes,
                                    ..
                                }),
                                Some(again),
                            ) => {
                                drop(batch);
                                return self.run_large(again, interrupt, writer);
                            }
                            (rows, again) => {
                                let count = rows?;
                                let writer = writer.unwrap_or_else(|| self.lock_writer());
                                // The last moment to cancel: from here on the statement is
                                // applied whole.
                                interrupt.check()?;
                                if !batch.is_empty() {
                                    match (self.write_locked(&batch), again) {
                                        // Its values fit, their encoding did not.
                                        (
                                            Err(Error::Wal(omen_wal::WalError::RecordTooLarge {
                                                ..
                                            })),
                                            Some(again),
                                        ) => {
                                            drop(batch);
                                            let writer = (!insert).then_some(writer);
                                            return self.run_large(again, interrupt, writer);
                                        }
                                        (written, _) => {
                                            written?;
                                        }
                                    }
                                }
                                count
                            }
                        }
                    }
                };
                count_result(count, lsn)
            }
        }
    }

    /// Runs one query with DataFusion even where the index fast path would answer it, for
    /// tests and benchmarks that compare the two. Not for applications.
    #[doc(hidden)]
    pub fn sql_planned(&self, query: &str) -> Result<QueryResult> {
        crate::limits::with_plan_stack(|| {
            let statement = self.one_query(query)?;
            self.query(statement, &Interrupt::new(), None)
        })
    }

    /// Plans and runs a query with DataFusion (at a transaction's snapshot with its writes,
    /// when `written` is given).
    pub(crate) fn query(
        &self,
        statement: DfStatement,
        interrupt: &Interrupt,
        written: Option<&WrittenRows>,
    ) -> Result<QueryResult> {
        self.retry_moved(written.is_none(), || {
            let session = self.sql_session_in(written)?;
            let plan = self
                .sql_runtime()
                .block_on(interrupt.run(session.plan(statement.clone())))?;
            match plan {
                LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) | LogicalPlan::Copy(_) => Err(
                    unsupported("this statement; see docs/sql.md for what OmenDB runs"),
                ),
                LogicalPlan::Statement(_) => Err(unsupported(
                    "transaction and session statements in Db::sql: use Db::begin for a transaction",
                )),
                plan => self.run_plan(session, plan, interrupt),
            }
        })
    }

    fn run_ddl(&self, statement: DfStatement) -> Result<QueryResult> {
        if let DfStatement::Statement(s) = &statement
            && let SqlStatement::AlterTable(alter) = s.as_ref()
        {
            let table = table_name(&alter.name);
            let mut lsn = Lsn(0);
            for operation in &alter.operations {
                let AlterTableOperation::AddColumn {
                    if_not_exists,
                    column_def,
                    ..
                } = operation
                else {
                    return Err(unsupported(format!(
                        "ALTER TABLE {operation}: only ADD COLUMN is supported"
                    )));
                };
                if !column_def.options.iter().all(|o| {
                    matches!(
                        o.option,
                        ColumnOption::Null | ColumnOption::NotNull | ColumnOption::Comment(_)
                    )
                }) {
                    // They would be accepted and not enforced (a second PRIMARY KEY, UNIQUE,
                    // DEFAULT reading NULL, GENERATED).
                    return Err(unsupported(format!(
                        "ALTER TABLE ... ADD COLUMN {column_def}: constraints, DEFAULT and \
                         generated columns; add a plain column"
                    )));
                }
                let schema = self.schema(&table)?;
                let name = column_def.name.value.clone();
                if *if_not_exists && schema.columns.iter().any(|c| c.name == name) {
                    continue;
                }
                let field = self.plan_column(&column_def.to_string())?;
                let column = ColumnDef::new(name, omen_type(&table, &field)?, field.is_nullable())
                    .with_max_chars(max_chars(&table, &column_def.data_type)?)
                    .with_small_int(is_small_int(field.data_type()));
                lsn = self.alter_table_add_column(&table, column)?;
            }
            return count_result(0, lsn.0);
        }
        // DataFusion's plan drops the lengths of `VARCHAR(n)` and `CHAR(n)`: read them here.
        let lengths = match &statement {
            DfStatement::Statement(s) => match s.as_ref() {
                SqlStatement::CreateTable(create) => create
                    .columns
                    .iter()
                    .map(|c| max_chars(&table_name(&create.name), &c.data_type))
                    .collect::<Result<Vec<_>>>()?,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let session = self.sql_session()?;
        // Not `SqlSession::plan`: the table a DDL statement names need not exist.
        let plan = self
            .sql_runtime()
            .block_on(session.context.state().statement_to_plan(statement))?;
        let LogicalPlan::Ddl(ddl) = plan else {
            return Err(unsupported("this statement"));
        };
        let lsn = match ddl {
            DdlStatement::CreateMemoryTable(create) => {
                let name = create.name.table().to_string();
                if !matches!(create.input.as_ref(), LogicalPlan::EmptyRelation(_)) {
                    return Err(unsupported(
                        "CREATE TABLE ... AS SELECT: create the table with a PRIMARY KEY, \
                         then INSERT ... SELECT",
                    ));
                }
                if !create.column_defaults.is_empty() {
                    return Err(unsupported("DEFAULT values for columns"));
                }
                if create.or_replace || create.temporary {
                    return Err(unsupported("CREATE OR REPLACE / TEMPORARY tables"));
                }
                if create.if_not_exists && self.schema(&name).is_ok() {
                    return count_result(0, self.wal.last_lsn().0);
                }
                let mut schema = table_schema(&name, create.input.schema().as_arrow(), &create)?;
                if lengths.len() == schema.columns.len() {
                    for (column, max) in schema.columns.iter_mut().zip(lengths) {
                        column.max_chars = max;
                    }
                }
                self.create_table(&name, schema)?
            }
            DdlStatement::DropTable(drop) => {
                let name = drop.name.table().to_string();
                if drop.if_exists && self.schema(&name).is_err() {
                    return count_result(0, self.wal.last_lsn().0);
                }
                self.drop_table(&name)?
            }
            _ => return Err(unsupported("this kind of CREATE or DROP; tables only")),
        };
        count_result(0, lsn.0)
    }

    /// The Arrow field DataFusion gives a column definition such as `qty BIGINT NOT NULL`.
    fn plan_column(&self, definition: &str) -> Result<Field> {
        let sql = format!("CREATE TABLE omendb_column_probe ({definition})");
        let mut statements = DFParser::parse_sql_with_dialect(&sql, &GenericDialect {})?;
        let statement = statements
            .pop_front()
            .ok_or_else(|| unsupported(format!("column definition {definition:?}")))?;
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_default_features()
            .build();
        let plan = self
            .sql_runtime()
            .block_on(state.statement_to_plan(statement))?;
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => create
                .input
                .schema()
                .fields()
                .first()
                .map(|f| f.as_ref().clone())
                .ok_or_else(|| unsupported(format!("column definition {definition:?}"))),
            _ => Err(unsupported(format!("column definition {definition:?}"))),
        }
    }

    /// A write statement larger than one log record, on its own: run as a transaction, whose
    /// writes spill and commit as a group. Other writers go on while it is built: an `UPDATE`
    /// or `DELETE` gives up the writer lock it took before its read (`writer`), and its
    /// commit checks that no other commit wrote its rows since its snapshot. If one did, it
    /// runs once more holding the lock from its read to its commit, as a small one does.
    fn run_large(
        &self,
        statement: DfStatement,
        interrupt: &Interrupt,
        writer: Option<std::sync::MutexGuard<'_, ()>>,
    ) -> Result<QueryResult> {
        let locked = writer.is_some();
        drop(writer);
        let optimistic = self.run_as_transaction(statement.clone(), interrupt, None);
        match optimistic {
            Err(Error::SerializationFailure(_)) if locked => {
                let writer = self.lock_writer();
                self.run_as_transaction(statement, interrupt, Some(&writer))
            }
            done => done,
        }
    }

    /// Runs `statement` in a transaction of its own and commits it (holding `writer`, if
    /// given, from the start).
    fn run_as_transaction(
        &self,
        statement: DfStatement,
        interrupt: &Interrupt,
        writer: Option<&std::sync::MutexGuard<'_, ()>>,
    ) -> Result<QueryResult> {
        let mut transaction = self.begin();
        // Bulk work takes the CPU shorter statements leave; its commit, which other writers
        // wait for, runs at normal priority.
        let result = self.in_bulk(|| transaction.run(statement, interrupt))?;
        match writer {
            Some(writer) => transaction.commit_locked(writer)?,
            None => transaction.commit()?,
        };
        Ok(result)
    }

    /// The rows a planned `INSERT`, `UPDATE` or `DELETE` writes, handed to `sink` a batch
    /// at a time (one change per row); returns how many. Past `cap` bytes of values it
    /// fails with [`crate::error::LimitKind::WriteBytes`].
    fn dml_rows(
        &self,
        session: crate::sql::SqlSession,
        dml: DmlStatement,
        interrupt: &Interrupt,
        cap: Option<usize>,
        mut sink: impl FnMut(WriteBatch) -> Result<()>,
    ) -> Result<u64> {
        let table = dml.table_name.table().to_string();
        let schema = self.schema(&table)?;
        if matches!(dml.op, WriteOp::Update) && !update_keeps_key(&dml.input, &schema) {
            // DataFusion plans an UPDATE as every column of the matching rows with the new
            // values: a changed key would leave the old row behind.
            return Err(unsupported(
                "UPDATE of the primary key: DELETE the row and INSERT it with the new key",
            ));
        }
        assignment_casts(&table, &dml.input)?;
        let input = Arc::unwrap_or_clone(dml.input);
        // The rows are streamed, so a write too large for one log record is refused once
        // its values alone exceed the record, not after all of it is built.
        let context = session.context;
        let mut rows = self.sql_runtime().block_on(interrupt.run(async {
            let frame = context.execute_logical_plan(input).await?;
            Ok::<_, Error>(frame.execute_stream().await?)
        }))?;
        let mut count = 0u64;
        let mut bytes = 0usize;
        loop {
            let next = self.sql_runtime().block_on(interrupt.run(async {
                Ok::<_, Error>(futures::StreamExt::next(&mut rows).await.transpose()?)
            }))?;
            let Some(part) = next else { break };
            let values = batch_values(&table, &schema, &part)?;
            let mut batch = WriteBatch::new();
            for row in values {
                bytes = bytes.saturating_add(row.iter().map(value_bytes).sum::<usize>());
                if let Some(cap) = cap
                    && bytes > cap
                {
                    return Err(Error::Limit {
                        kind: crate::error::LimitKind::WriteBytes,
                        found: bytes,
                        limit: cap,
                    });
                }
                match &dml.op {
                    WriteOp::Insert(InsertOp::Append) => {
                        batch.insert(&table, row);
                    }
                    WriteOp::Insert(InsertOp::Replace) | WriteOp::Update => {
                        batch.upsert(&table, row);
                    }
                    WriteOp::Delete => match row.get(schema.key) {
                        Some(Value::Int64(key)) => {
                            batch.delete(&table, *key);
                        }
                        _ => return Err(unsupported("a DELETE of a row without a key")),
                    },
                    other => return Err(unsupported(format!("{other} statements"))),
                }
            }
            count += batch.len() as u64;
            interrupt.check()?;
            sink(batch)?;
        }
        Ok(count)
    }
}

/// The tables `statement` reads (an `INSERT`'s target only if its source reads it too), by
/// name; `None` if that cannot be told (then every table counts as read).
fn read_tables(statement: &DfStatement) -> Option<std::collections::HashSet<String>> {
    let read = match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            SqlStatement::Insert(insert) => match &insert.source {
                Some(source) => {
                    DfStatement::Statement(Box::new(SqlStatement::Query(source.clone())))
                }
                None => return Some(std::collections::HashSet::new()),
            },
            _ => statement.clone(),
        },
        _ => statement.clone(),
    };
    let (tables, _) = datafusion::sql::resolve::resolve_table_references(&read, true).ok()?;
    Some(tables.iter().map(|t| t.table().to_string()).collect())
}

/// The bytes `value` takes at least in a log record.
pub(crate) fn value_bytes(value: &Value) -> usize {
    match value {
        Value::Utf8(text) => text.len(),
        Value::Null | Value::Boolean(_) => 1,
        Value::Int32(_) | Value::Date32(_) => 4,
        _ => 8,
    }
}

/// Refuses the casts DataFusion adds to store a number in a `BOOLEAN`, `DATE` or `TIMESTAMP`
/// column: PostgreSQL has no such assignment (42804), and `20240101` stored as a date was
/// the year 57385, which no reader could print.
fn assignment_casts(table: &str, input: &LogicalPlan) -> Result<()> {
    // The new values: a projection of the rows to write, or (INSERT ... VALUES) the cells of
    // the VALUES under it, which DataFusion casts to the columns' types.
    let mut candidates: Vec<(String, &Expr, &datafusion::common::DFSchema)> = Vec::new();
    let mut node = input;
    loop {
        match node {
            LogicalPlan::Projection(projection) => {
                for expr in &projection.expr {
                    let name = match expr {
                        Expr::Alias(alias) => alias.name.clone(),
                        other => other.schema_name().to_string(),
                    };
                    candidates.push((name, expr, projection.input.schema()));
                }
                node = projection.input.as_ref();
            }
            LogicalPlan::Values(values) => {
                for row in &values.values {
                    for (field, expr) in values.schema.fields().iter().zip(row) {
                        candidates.push((field.name().clone(), expr, values.schema.as_ref()));
                    }
                }
                break;
            }
            _ => break,
        }
    }
    for (name, expr, schema) in candidates {
        let expr = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let (Expr::Cast(datafusion::logical_expr::Cast { expr: from, field })
        | Expr::TryCast(datafusion::logical_expr::TryCast { expr: from, field })) = expr
        else {
            continue;
        };
        let to = field.data_type();
        let target = matches!(
            to,
            ArrowType::Boolean | ArrowType::Date32 | ArrowType::Date64 | ArrowType::Timestamp(..)
        );
        if target
            && let Ok(source) =
                datafusion::logical_expr::ExprSchemable::get_type(from.as_ref(), schema)
            && source.is_numeric()
        {
            return Err(Error::BadRow {
                table: table.to_string(),
                column: name,
                reason: format!(
                    "the column is {to}, but the expression is {source}; write a {to} value \
                     (a number is not one, cast or not)"
                ),
            });
        }
    }
    Ok(())
}

/// Whether an UPDATE's planned rows take the key column unchanged (DataFusion projects an
/// unassigned column as itself).
fn update_keeps_key(input: &LogicalPlan, schema: &TableSchema) -> bool {
    let LogicalPlan::Projection(projection) = input else {
        return false;
    };
    let key = &schema.columns[schema.key].name;
    projection
        .expr
        .get(schema.key)
        .is_some_and(|e| matches!(e.clone().unalias(), Expr::Column(c) if &c.name == key))
}

fn count_result(count: u64, lsn: u64) -> Result<QueryResult> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "count",
        ArrowType::UInt64,
        false,
    )]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(vec![count]))])
        .map_err(datafusion::error::DataFusionError::from)?;
    Ok(QueryResult {
        batches: vec![batch],
        snapshot_lsn: Lsn(lsn),
        routes: Vec::new(),
    })
}

/// The table `name` refers to, as DataFusion resolves it: a quoted name as written, an
/// unquoted one lowercased.
fn table_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(ObjectNamePart::as_ident)
        .map_or_else(|| name.to_string(), crate::names::folded)
}

/// Longest `VARCHAR(n)` or `CHAR(n)`, as PostgreSQL's.
const MAX_DECLARED_CHARS: u64 = 10_485_760;

/// The most characters a column of SQL type `data_type` holds: `n` of `VARCHAR(n)` and
/// `CHAR(n)` (`CHAR` alone is `CHAR(1)`, as in PostgreSQL); `None` for other types.
fn max_chars(table: &str, data_type: &SqlDataType) -> Result<Option<u32>> {
    let declared = match data_type {
        SqlDataType::Varchar(length)
        | SqlDataType::CharacterVarying(length)
        | SqlDataType::CharVarying(length)
        | SqlDataType::Nvarchar(length) => length.as_ref(),
        SqlDataType::Char(length) | SqlDataType::Character(length) => match length {
            None => return Ok(Some(1)),
            Some(length) => Some(length),
        },
        _ => None,
    };
    let Some(CharacterLength::IntegerLength { length, .. }) = declared else {
        return Ok(None);
    };
    if *length == 0 || *length > MAX_DECLARED_CHARS {
        return Err(Error::InvalidSchema {
            table: table.to_string(),
            reason: format!("{data_type}: the length must be between 1 and {MAX_DECLARED_CHARS}"),
        });
    }
    Ok(u32::try_from(*length).ok())
}

/// Whether a column DataFusion typed `data_type` is a `SMALLINT`, stored as an `INT` held to
/// `i16`'s range.
fn is_small_int(data_type: &ArrowType) -> bool {
    matches!(data_type, ArrowType::Int8 | ArrowType::Int16)
}

/// The OmenDB type for a column DataFusion typed as `field`. Narrower types widen to ours
/// (`SMALLINT` to `INT`, `REAL` to `DOUBLE`, any string to `TEXT`).
fn omen_type(table: &str, field: &Field) -> Result<DataType> {
    Ok(match field.data_type() {
        ArrowType::Boolean => DataType::Boolean,
        ArrowType::Int8 | ArrowType::Int16 | ArrowType::Int32 => DataType::Int32,
        ArrowType::Int64 => DataType::Int64,
        ArrowType::Float16 | ArrowType::Float32 | ArrowType::Float64 => DataType::Float64,
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => DataType::Utf8,
        ArrowType::Timestamp(_, None) => DataType::TimestampMicros,
        ArrowType::Date32 => DataType::Date32,
        other => {
            return Err(Error::InvalidSchema {
                table: table.to_string(),
                reason: format!(
                    "column {:?} has type {other}, which OmenDB does not store; use BOOLEAN, \
                     INT, BIGINT, DOUBLE, TEXT, TIMESTAMP or DATE",
                    field.name()
                ),
            });
        }
    })
}

/// The table schema of a `CREATE TABLE`: its columns and its one `BIGINT` primary key.
fn table_schema(
    name: &str,
    columns: &Schema,
    create: &datafusion::logical_expr::CreateMemoryTable,
) -> Result<TableSchema> {
    let invalid = |reason: String| Error::InvalidSchema {
        table: name.to_string(),
        reason,
    };
    let keys: Vec<&Vec<usize>> = create
        .constraints
        .iter()
        .filter_map(|c| match c {
            Constraint::PrimaryKey(columns) => Some(columns),
            Constraint::Unique(_) => None,
        })
        .collect();
    let key = match keys.as_slice() {
        [columns] if columns.len() == 1 => columns[0],
        [] => {
            return Err(invalid(
                "a table needs a PRIMARY KEY: one BIGINT column, e.g. `id BIGINT PRIMARY KEY`"
                    .into(),
            ));
        }
        _ => return Err(invalid("the PRIMARY KEY must be one BIGINT column".into())),
    };
    if create
        .constraints
        .iter()
        .any(|c| matches!(c, Constraint::Unique(_)))
    {
        return Err(invalid(
            "UNIQUE constraints other than the primary key are not supported".into(),
        ));
    }
    let mut defs = Vec::with_capacity(columns.fields().len());
    for (i, field) in columns.fields().iter().enumerate() {
        let data_type = omen_type(name, field)?;
        if i == key && data_type != DataType::Int64 {
            return Err(invalid(format!(
                "the primary key {:?} must be BIGINT, not {}",
                field.name(),
                field.data_type()
            )));
        }
        defs.push(
            ColumnDef::new(
                field.name().clone(),
                data_type,
                i != key && field.is_nullable(),
            )
            .with_small_int(is_small_int(field.data_type())),
        );
    }
    Ok(TableSchema { columns: defs, key })
}

/// `text` for a column of at most `max_chars` characters: as PostgreSQL, spaces past the
/// limit are cut; anything else past it stays, for the row check to refuse (22001).
fn without_excess_spaces(text: &str, max_chars: Option<u32>) -> String {
    if let Some(max) = max_chars
        && let Some((cut, _)) = text.char_indices().nth(max as usize)
        && text[cut..].bytes().all(|b| b == b' ')
    {
        return text[..cut].to_string();
    }
    text.to_string()
}

/// The rows of `batch` as values of `schema`'s columns (cast from DataFusion's types).
pub(crate) fn batch_values(
    table: &str,
    schema: &TableSchema,
    batch: &RecordBatch,
) -> Result<Vec<Vec<Value>>> {
    if batch.num_columns() != schema.columns.len() {
        return Err(Error::BadRow {
            table: table.to_string(),
            column: String::new(),
            reason: format!(
                "the statement gives {} columns, the table has {}",
                batch.num_columns(),
                schema.columns.len()
            ),
        });
    }
    let mut rows: Vec<Vec<Value>> = (0..batch.num_rows())
        .map(|_| Vec::with_capacity(schema.columns.len()))
        .collect();
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    for (column, array) in schema.columns.iter().zip(batch.columns()) {
        let bad = |reason: String| Error::BadRow {
            table: table.to_string(),
            column: column.name.clone(),
            reason,
        };
        let target = column.data_type.to_arrow();
        // A fraction stored in an integer column rounds, as in PostgreSQL (1.7 is 2).
        let rounded;
        let array = if target.is_integer() && crate::rounding::is_fractional(array.data_type()) {
            rounded = crate::rounding::round_for_integer(array)?;
            &rounded
        } else {
            array
        };
        let array = cast_with_options(array, &target, &options).map_err(|e| bad(e.to_string()))?;
        macro_rules! push {
            ($array:ty, $variant:ident, $convert:expr) => {{
                let typed = array
                    .as_any()
                    .downcast_ref::<$array>()
                    .ok_or_else(|| bad("cannot read the cast values".into()))?;
                for (row, i) in rows.iter_mut().zip(0..) {
                    row.push(if typed.is_null(i) {
                        Value::Null
                    } else {
                        Value::$variant($convert(typed.value(i)))
                    });
                }
            }};
        }
        match column.data_type {
            DataType::Boolean => push!(BooleanArray, Boolean, |v| v),
            DataType::Int32 => push!(Int32Array, Int32, |v| v),
            DataType::Int64 => push!(Int64Array, Int64, |v| v),
            DataType::Float64 => push!(Float64Array, Float64, |v| v),
            DataType::Utf8 => push!(StringArray, Utf8, |v: &str| without_excess_spaces(
                v,
                column.max_chars
            )),
            DataType::TimestampMicros => push!(TimestampMicrosecondArray, TimestampMicros, |v| v),
            DataType::Date32 => push!(Date32Array, Date32, |v| v),
        }
    }
    Ok(rows)
}
