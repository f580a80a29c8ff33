//! The index fast path of SQL: key reads that `omen-router` sends to the learned index are
//! answered from the in-memory table, with no DataFusion session or plan.
//!
//! Invariants:
//! - The result is what DataFusion's plan of the same statement returns at the same
//!   snapshot: the same columns (names, types, nullability) and rows; the rows come in key
//!   order (DataFusion's order, without `ORDER BY`, is unspecified). Anything the fast path
//!   does not match exactly (an unknown table or column, a predicate on a column that is not
//!   the key) is left to DataFusion, which also reports the errors.
//! - The rows are one snapshot: read while no batch is being applied, and checked
//!   unchanged afterwards (the sequence check of `SnapshotTable::lookup`); a read that races
//!   an apply is tried again, then left to DataFusion.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::sql::parser::Statement as DfStatement;
use omen_replicator::change::DataType;
use omen_router::{KeyRead, Keys, Path};
use omen_sql::{KeyLookup, Route};
use omen_wal::Lsn;

use crate::db::{Db, QueryResult, Table};
use crate::error::Result;
use crate::row::Row;
use crate::sql::{APPLYING, SqlDescription, index_rows_at, lookup_rows, rows_to_batch};

/// How often a read racing applies is tried before it is left to DataFusion.
const ATTEMPTS: usize = 8;

impl Db {
    /// Answers `statement` from the index if the router sends it there and the table
    /// matches; `None`: plan it with DataFusion. At snapshot `at` (a transaction's), only
    /// while no commit came after the snapshot.
    pub(crate) fn key_read_at(
        &self,
        statement: &DfStatement,
        at: Option<u64>,
    ) -> Result<Option<QueryResult>> {
        self.key_read_bound(statement, &|_| None, at)
    }

    /// Answers a prepared query from the index, its placeholders `$1`, `$2`, ... bound to
    /// `parameters`, if the router sends it there; `None`: the statement is not a key read
    /// (or not with these values), so bind the parameters into it and run it with
    /// [`Db::sql`]. The result is what [`Db::sql`] returns for the bound statement. This is
    /// how the PostgreSQL server runs a prepared point query: once parsed, each execution is
    /// an index lookup, with no SQL text printed or parsed again.
    pub fn prepared_key_read(
        &self,
        statement: &DfStatement,
        parameters: &[Option<i64>],
    ) -> Result<Option<QueryResult>> {
        self.prepared_key_read_at(statement, parameters, None)
    }

    /// [`Db::prepared_key_read`] in a transaction with snapshot `at` (see
    /// [`crate::Transaction::snapshot`]) that has written nothing: answered from the index
    /// only while no commit came after the snapshot.
    pub fn prepared_key_read_at(
        &self,
        statement: &DfStatement,
        parameters: &[Option<i64>],
        at: Option<Lsn>,
    ) -> Result<Option<QueryResult>> {
        self.key_read_bound(
            statement,
            &|n| parameters.get(n - 1).copied().flatten(),
            at.map(|lsn| lsn.0),
        )
    }

    /// What a key read with placeholders returns, without DataFusion: `None` when the
    /// statement is no key read (with any keys) of an existing table's key.
    pub(crate) fn describe_key_read(&self, statement: &DfStatement) -> Option<SqlDescription> {
        self.router.as_ref()?;
        let used = std::cell::RefCell::new(std::collections::BTreeSet::new());
        // Distinct dummy keys, so an `IN` list keeps its length; only the columns matter.
        let (_, read) = omen_router::classify_bound(statement, &|n| {
            used.borrow_mut().insert(n);
            i64::try_from(n).ok()
        });
        let read = read?;
        let output = self
            .with_table(&read.table, |table| Output::of(table, &read))
            .ok()??;
        let parameters = used
            .into_inner()
            .into_iter()
            .map(|n| (format!("${n}"), Some(arrow::datatypes::DataType::Int64)))
            .collect();
        Some(SqlDescription {
            parameters,
            schema: crate::names::display_schema(&output.schema),
            key_read: true,
        })
    }

    fn key_read_bound(
        &self,
        statement: &DfStatement,
        parameter: &dyn Fn(usize) -> Option<i64>,
        at: Option<u64>,
    ) -> Result<Option<QueryResult>> {
        let Some(router) = &self.router else {
            return Ok(None);
        };
        let (shape, read) = omen_router::classify_bound(statement, parameter);
        let Some(mut read) = read else {
            return Ok(None);
        };
        let path = router.route(shape, Some(&read)).path;
        if path == Path::DataFusion {
            return Ok(None);
        }
        // The closure takes the read's keys; the name stays out here.
        let name = std::mem::take(&mut read.table);
        let found = self.with_table(&name, |table| {
            let Some(output) = Output::of(table, &read) else {
                return Ok(None);
            };
            let lookup = match read.keys {
                Keys::Points(keys) => KeyLookup::Points(keys),
                Keys::Range(low, high) => KeyLookup::Range(low, high),
            };
            if let Some(at) = at {
                // A transaction's snapshot: the index serves it while no later commit wrote
                // these keys.
                let read = index_rows_at(table, at, &self.applied, Some(&self.conflicts), &lookup)?;
                return match read {
                    Some(rows) => output.result(table, &lookup, rows, at).map(Some),
                    None => Ok(None),
                };
            }
            for _ in 0..ATTEMPTS {
                let lsn = match self.applied.load(Ordering::SeqCst) {
                    APPLYING => {
                        std::thread::yield_now();
                        continue;
                    }
                    lsn => lsn,
                };
                let rows = lookup_rows(table, &lookup)?;
                if self.applied.load(Ordering::SeqCst) == lsn {
                    return output.result(table, &lookup, rows, lsn).map(Some);
                }
            }
            Ok(None)
        });
        // An unknown table is DataFusion's to report, with its message.
        found.unwrap_or(Ok(None))
    }
}

/// The columns a key read returns: which table columns, under which names.
struct Output {
    indices: Vec<usize>,
    schema: Arc<Schema>,
}

impl Output {
    /// The output of `read` over `table`, if the read is one the fast path answers.
    fn of(table: &Table, read: &KeyRead) -> Option<Self> {
        let schema = &table.schema;
        let key = schema.columns.get(schema.key)?;
        if key.name != read.column || key.data_type != DataType::Int64 {
            return None;
        }
        let full = crate::sql::sql_schema(schema);
        let Some(columns) = &read.columns else {
            return Some(Output {
                indices: (0..schema.columns.len()).collect(),
                schema: full,
            });
        };
        let mut indices = Vec::with_capacity(columns.len());
        let mut fields = Vec::with_capacity(columns.len());
        for column in columns {
            let index = schema
                .columns
                .iter()
                .position(|c| c.name == column.column)?;
            let field: &Field = full.field(index);
            fields.push(field.clone().with_name(&column.name));
            indices.push(index);
        }
        Some(Output {
            indices,
            schema: Arc::new(Schema::new(fields)),
        })
    }

    fn result(
        &self,
        table: &Table,
        lookup: &KeyLookup,
        rows: Vec<Row>,
        lsn: u64,
    ) -> Result<QueryResult> {
        let all = rows_to_batch(&table.schema, &rows)
            .map_err(datafusion::error::DataFusionError::from)?;
        let columns = self
            .indices
            .iter()
            .map(|&i| Arc::clone(all.column(i)))
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .map_err(datafusion::error::DataFusionError::from)?;
        let route = match lookup {
            KeyLookup::Points(keys) => Route::index_point(&table.name, keys.len(), rows.len()),
            KeyLookup::Range(low, high) => Route::index_range(&table.name, *low, *high, rows.len()),
        };
        Ok(QueryResult {
            batches: vec![crate::names::display_batch(batch)],
            snapshot_lsn: Lsn(lsn),
            routes: vec![route],
        })
    }
}
