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
use omen_replicator::WalReplicator;
use omen_replicator::change::{DataType, TableSchema, Value};
use omen_sql::{KeyLookup, OmenTable};
use omen_wal::Lsn;

use crate::db::{Db, QueryResult, Row, Table};
use crate::error::Result;
use datafusion::prelude::{SessionConfig, SessionContext};
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
pub(crate) fn rows_to_batch(schema: &TableSchema, rows: &[Row]) -> Result<RecordBatch, String> {
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
    RecordBatch::try_new(arrow_schema, columns).map_err(|e| e.to_string())
}

/// One table at one snapshot LSN, for the SQL layer.
pub(crate) struct SnapshotTable {
    pub(crate) name: String,
    pub(crate) table: Arc<Table>,
    pub(crate) lsn: u64,
    pub(crate) applied: Arc<AtomicU64>,
    pub(crate) replicator: Arc<WalReplicator>,
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

    fn lookup(&self, lookup: &KeyLookup) -> Result<Option<RecordBatch>, String> {
        // A sequence check: the index serves the query only if no batch was applied after
        // the snapshot, before or during the lookup.
        if self.applied.load(Ordering::SeqCst) != self.lsn {
            return Ok(None);
        }
        let rows: Vec<Row> = {
            let map = self.table.read();
            match lookup {
                KeyLookup::Points(keys) => {
                    map.get_many(keys).into_iter().flatten().cloned().collect()
                }
                KeyLookup::Range(low, high) => {
                    let bounds: (Bound<i64>, Bound<i64>) = (*low, *high);
                    map.range(bounds).map(|(_, row)| row.clone()).collect()
                }
            }
        };
        if self.applied.load(Ordering::SeqCst) != self.lsn {
            return Ok(None);
        }
        rows_to_batch(&self.table.schema, &rows).map(Some)
    }

    fn snapshot_rows(&self) -> Result<(RecordBatch, String), String> {
        let snapshot = self
            .replicator
            .snapshot(&self.name, Lsn(self.lsn))
            .map_err(|e| e.to_string())?;
        let delta_rows: usize = snapshot.delta.iter().map(|b| b.num_rows()).sum();
        let detail = format!(
            "{} file(s), {} unflushed row version(s), snapshot LSN {}",
            snapshot.files.len(),
            delta_rows,
            self.lsn
        );
        let batch = snapshot.read().map_err(|e| e.to_string())?;
        // Same columns; take the SQL schema's field definitions.
        let batch = RecordBatch::try_new(self.schema(), batch.columns().to_vec())
            .map_err(|e| e.to_string())?;
        Ok((batch, detail))
    }
}

impl Db {
    /// Runs a SQL query at a snapshot of every write acknowledged before it started. Key
    /// filters are served by the learned index; everything else by Parquet plus the rows not
    /// yet flushed. Errors (bad SQL, unknown tables or columns) leave the database usable.
    pub(crate) fn run_query(&self, query: &str) -> Result<QueryResult> {
        let lsn = loop {
            match self.applied.load(Ordering::SeqCst) {
                APPLYING => std::thread::yield_now(),
                lsn => break lsn,
            }
        };
        let routes = RouteLog::default();
        let config = SessionConfig::new().with_target_partitions(1);
        let context = SessionContext::new_with_config(config);
        for (name, table) in self.catalog().iter() {
            let snapshot = SnapshotTable {
                name: name.clone(),
                table: Arc::clone(table),
                lsn,
                applied: Arc::clone(&self.applied),
                replicator: Arc::clone(&self.replicator),
            };
            let provider = OmenTableProvider::new(name, Arc::new(snapshot), routes.clone());
            context.register_table(name.as_str(), Arc::new(provider))?;
        }
        let mut batches = self.runtime.block_on(async {
            let frame = context.sql(query).await?;
            frame.collect().await
        })?;
        let explain = query
            .trim_start()
            .get(..7)
            .is_some_and(|w| w.eq_ignore_ascii_case("explain"));
        if explain && let Some(first) = batches.first() {
            // EXPLAIN's rows are (plan_type, plan): add one row per route taken.
            let routes = routes.routes();
            let kinds = arrow::array::StringArray::from(vec!["omendb_route"; routes.len()]);
            let plans = arrow::array::StringArray::from(routes);
            let extra =
                RecordBatch::try_new(first.schema(), vec![Arc::new(kinds), Arc::new(plans)]);
            batches.push(extra.map_err(datafusion::error::DataFusionError::from)?);
        }
        Ok(QueryResult {
            batches,
            snapshot_lsn: Lsn(lsn),
            routes: routes.routes(),
        })
    }
}
