//! `omen-sql`: DataFusion over OmenDB tables.
//!
//! An [`OmenTableProvider`] wraps one table as the database sees it at one snapshot LSN (the
//! [`OmenTable`] trait, implemented by the facade). Its scan takes one of two routes:
//!
//! - **index**: filters on the primary key (`pk = c`, `pk IN (...)`, `pk BETWEEN a AND b`,
//!   `<`, `<=`, `>`, `>=`, and conjunctions of them) are answered by the learned index
//!   without opening Parquet, when the index holds exactly the snapshot;
//! - **snapshot**: otherwise an [`OmenScanExec`] over the table's Parquet files plus the
//!   rows not yet flushed, merged by key at the snapshot LSN (latest version wins, deletes
//!   hide rows), in parallel partitions, decoding only the needed columns and row groups.
//!
//! Key filters are pushed down as `Inexact`: DataFusion still applies them, so a route only
//! has to return a superset of the matching rows. Each scan records its route, which
//! `EXPLAIN` output can show ([`RouteLog`]).

mod error;
mod merge;
mod scan;
mod source;

pub use error::ScanError;
pub use scan::OmenScanExec;
pub use source::{SnapshotFile, SnapshotSource};

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

/// Which keys a scan needs, as far as its key filters tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyLookup {
    /// Exactly these keys (sorted, distinct).
    Points(Vec<i64>),
    /// The keys in this range.
    Range(Bound<i64>, Bound<i64>),
}

/// An error of an [`OmenTable`], kept whole so that its caller can downcast it (it reaches
/// DataFusion as `DataFusionError::External`).
pub type TableError = Box<dyn std::error::Error + Send + Sync>;

/// A table at a snapshot, as the SQL layer needs it.
pub trait OmenTable: Send + Sync + Debug {
    /// The Arrow schema of the rows the table returns (the key non-null, other columns
    /// nullable).
    fn schema(&self) -> SchemaRef;

    /// The primary-key column's index.
    fn key_column(&self) -> usize;

    /// The rows matching `lookup` from the index, if the index can serve this snapshot
    /// (`None`: a write landed after the snapshot; use [`OmenTable::snapshot_rows`]).
    fn lookup(&self, lookup: &KeyLookup) -> Result<Option<RecordBatch>, TableError>;

    /// The table's Parquet files and unflushed rows at the snapshot, for a scan that
    /// resolves versions itself and keeps only the rows of `lookup` (if given): rows outside
    /// it may be left out.
    fn snapshot_source(&self, lookup: Option<&KeyLookup>) -> Result<SnapshotSource, TableError>;
}

/// Which path served a table scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKind {
    /// The learned index, for a set of keys (`pk = c`, `pk IN (...)`).
    IndexPoint,
    /// The learned index, for a key range (`pk BETWEEN a AND b`, `<`, `>`).
    IndexRange,
    /// The table's Parquet files plus the replicator's unflushed rows, merged at the snapshot.
    ParquetDelta,
}

impl RouteKind {
    /// Every kind, in the order of their discriminants.
    pub const ALL: [RouteKind; 3] = [
        RouteKind::IndexPoint,
        RouteKind::IndexRange,
        RouteKind::ParquetDelta,
    ];

    /// A stable snake_case name (metric labels).
    pub fn label(self) -> &'static str {
        match self {
            RouteKind::IndexPoint => "index_point",
            RouteKind::IndexRange => "index_range",
            RouteKind::ParquetDelta => "parquet_delta",
        }
    }

    /// The kind in words, as `EXPLAIN` shows it.
    pub fn describe(self) -> &'static str {
        match self {
            RouteKind::IndexPoint => "index point lookup",
            RouteKind::IndexRange => "index range scan",
            RouteKind::ParquetDelta => "Parquet + delta snapshot scan",
        }
    }
}

/// How one table scan of a query was served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The table scanned.
    pub table: String,
    /// The path that served it.
    pub kind: RouteKind,
    /// What the scan did: keys and rows found, or files read and skipped and the snapshot LSN.
    pub detail: String,
}

impl Route {
    /// A lookup of `keys` keys in the index that found `rows` rows.
    pub fn index_point(table: &str, keys: usize, rows: usize) -> Self {
        Route {
            table: table.to_string(),
            kind: RouteKind::IndexPoint,
            detail: format!("of {keys} key(s), {rows} row(s)"),
        }
    }

    /// A scan of the index from `low` to `high` that found `rows` rows.
    pub fn index_range(table: &str, low: Bound<i64>, high: Bound<i64>, rows: usize) -> Self {
        Route {
            table: table.to_string(),
            kind: RouteKind::IndexRange,
            detail: format!("{low:?}..{high:?}, {rows} row(s)"),
        }
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} {}",
            self.table,
            self.kind.describe(),
            self.detail
        )
    }
}

/// The routes the scans of one query took, in order.
#[derive(Clone, Debug, Default)]
pub struct RouteLog(Arc<Mutex<Vec<Route>>>);

impl RouteLog {
    /// Records a route taken.
    pub fn push(&self, route: Route) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(route);
    }

    /// The routes so far.
    pub fn routes(&self) -> Vec<Route> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A DataFusion table over an [`OmenTable`].
#[derive(Debug)]
pub struct OmenTableProvider {
    name: String,
    table: Arc<dyn OmenTable>,
    routes: RouteLog,
}

impl OmenTableProvider {
    /// A provider for the table `name`, recording its routes in `routes`.
    pub fn new(name: &str, table: Arc<dyn OmenTable>, routes: RouteLog) -> Self {
        Self {
            name: name.to_string(),
            table,
            routes,
        }
    }

    fn key_name(&self) -> String {
        self.table
            .schema()
            .field(self.table.key_column())
            .name()
            .clone()
    }
}

fn as_i64(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::Int64(Some(v)) => Some(*v),
        ScalarValue::Int32(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int16(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int8(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt32(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt16(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt8(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok(),
        _ => None,
    }
}

fn literal(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Literal(value, _) => as_i64(value),
        Expr::Cast(cast) => literal(&cast.expr),
        Expr::TryCast(cast) => literal(&cast.expr),
        _ => None,
    }
}

fn is_key(expr: &Expr, key: &str) -> bool {
    match expr {
        Expr::Column(column) => column.name == key,
        Expr::Cast(cast) => is_key(&cast.expr, key),
        _ => false,
    }
}

/// What one filter says about the key: a set of points, a range, or nothing.
#[derive(Debug)]
enum KeyFilter {
    Points(BTreeSet<i64>),
    Range(Bound<i64>, Bound<i64>),
}

fn key_filter(expr: &Expr, key: &str) -> Option<KeyFilter> {
    match expr {
        // DataFusion rewrites a short `IN` list into `=` joined by `OR`.
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => match (key_filter(left, key)?, key_filter(right, key)?) {
            (KeyFilter::Points(mut a), KeyFilter::Points(b)) => {
                a.extend(b);
                Some(KeyFilter::Points(a))
            }
            _ => None,
        },
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (value, op) = if is_key(left, key) {
                (literal(right)?, *op)
            } else if is_key(right, key) {
                (literal(left)?, op.swap()?)
            } else {
                return None;
            };
            Some(match op {
                Operator::Eq => KeyFilter::Points(BTreeSet::from([value])),
                Operator::Lt => KeyFilter::Range(Bound::Unbounded, Bound::Excluded(value)),
                Operator::LtEq => KeyFilter::Range(Bound::Unbounded, Bound::Included(value)),
                Operator::Gt => KeyFilter::Range(Bound::Excluded(value), Bound::Unbounded),
                Operator::GtEq => KeyFilter::Range(Bound::Included(value), Bound::Unbounded),
                _ => return None,
            })
        }
        Expr::InList(list) if !list.negated && is_key(&list.expr, key) => list
            .list
            .iter()
            .map(literal)
            .collect::<Option<BTreeSet<i64>>>()
            .map(KeyFilter::Points),
        Expr::Between(between) if !between.negated && is_key(&between.expr, key) => {
            Some(KeyFilter::Range(
                Bound::Included(literal(&between.low)?),
                Bound::Included(literal(&between.high)?),
            ))
        }
        _ => None,
    }
}

fn tighter_low(a: Bound<i64>, b: Bound<i64>) -> Bound<i64> {
    use Bound::{Excluded, Included, Unbounded};
    match (a, b) {
        (Unbounded, x) | (x, Unbounded) => x,
        (Included(x), Included(y)) => Included(x.max(y)),
        (Excluded(x), Excluded(y)) => Excluded(x.max(y)),
        (Included(i), Excluded(e)) | (Excluded(e), Included(i)) => {
            if i > e {
                Included(i)
            } else {
                Excluded(e)
            }
        }
    }
}

fn tighter_high(a: Bound<i64>, b: Bound<i64>) -> Bound<i64> {
    use Bound::{Excluded, Included, Unbounded};
    match (a, b) {
        (Unbounded, x) | (x, Unbounded) => x,
        (Included(x), Included(y)) => Included(x.min(y)),
        (Excluded(x), Excluded(y)) => Excluded(x.min(y)),
        (Included(i), Excluded(e)) | (Excluded(e), Included(i)) => {
            if i < e {
                Included(i)
            } else {
                Excluded(e)
            }
        }
    }
}

fn in_range(key: i64, low: Bound<i64>, high: Bound<i64>) -> bool {
    (low, high).contains(&key)
}

/// Combines the key filters of a conjunction into one lookup, if they constrain the key.
pub fn key_lookup(filters: &[Expr], key: &str) -> Option<KeyLookup> {
    let mut points: Option<BTreeSet<i64>> = None;
    let (mut low, mut high) = (Bound::Unbounded, Bound::Unbounded);
    for filter in filters {
        match key_filter(filter, key) {
            Some(KeyFilter::Points(set)) => {
                points = Some(match points {
                    Some(existing) => existing.intersection(&set).copied().collect(),
                    None => set,
                });
            }
            Some(KeyFilter::Range(l, h)) => {
                low = tighter_low(low, l);
                high = tighter_high(high, h);
            }
            None => {}
        }
    }
    match points {
        Some(points) => Some(KeyLookup::Points(
            points
                .into_iter()
                .filter(|&k| in_range(k, low, high))
                .collect(),
        )),
        None if (low, high) != (Bound::Unbounded, Bound::Unbounded) => {
            Some(KeyLookup::Range(low, high))
        }
        None => None,
    }
}

/// The next batch of a query's stream (`None` at its end), for callers without `futures`.
pub async fn next_batch(
    stream: &mut datafusion::execution::SendableRecordBatchStream,
) -> Option<Result<RecordBatch>> {
    futures::StreamExt::next(stream).await
}

fn external(error: TableError) -> DataFusionError {
    DataFusionError::External(error)
}

#[async_trait]
impl TableProvider for OmenTableProvider {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let key = self.key_name();
        Ok(filters
            .iter()
            .map(|f| match key_filter(f, &key) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let lookup = key_lookup(filters, &self.key_name());
        let indexed = match &lookup {
            Some(lookup) => self.table.lookup(lookup).map_err(external)?,
            None => None,
        };
        let batch = match (indexed, &lookup) {
            (Some(batch), Some(KeyLookup::Points(keys))) => {
                self.routes
                    .push(Route::index_point(&self.name, keys.len(), batch.num_rows()));
                batch
            }
            (Some(batch), Some(KeyLookup::Range(low, high))) => {
                self.routes.push(Route::index_range(
                    &self.name,
                    *low,
                    *high,
                    batch.num_rows(),
                ));
                batch
            }
            _ => {
                let source = self
                    .table
                    .snapshot_source(lookup.as_ref())
                    .map_err(external)?;
                let config = state.config();
                let scan = OmenScanExec::try_new(
                    source,
                    self.table.schema(),
                    projection,
                    lookup,
                    config.target_partitions(),
                    config.batch_size(),
                )?;
                self.routes.push(Route {
                    table: self.name.clone(),
                    kind: RouteKind::ParquetDelta,
                    detail: format!("({})", scan.describe()),
                });
                return Ok(Arc::new(scan));
            }
        };
        let plan = MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.table.schema(),
            projection.cloned(),
        )?;
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    #[test]
    fn key_filters_combine_into_lookups() {
        let points = key_lookup(&[col("id").eq(lit(5i64))], "id");
        assert_eq!(points, Some(KeyLookup::Points(vec![5])));
        let either = col("id").eq(lit(7i64)).or(col("id").eq(lit(2i64)));
        assert_eq!(
            key_lookup(&[either], "id"),
            Some(KeyLookup::Points(vec![2, 7]))
        );
        let not_only_keys = col("id").eq(lit(7i64)).or(col("v").eq(lit(2i64)));
        assert_eq!(key_lookup(&[not_only_keys], "id"), None);
        let in_list = key_lookup(
            &[
                col("id").in_list(vec![lit(3i64), lit(1i64), lit(9i64)], false),
                col("id").lt(lit(9i64)),
            ],
            "id",
        );
        assert_eq!(in_list, Some(KeyLookup::Points(vec![1, 3])));
        let range = key_lookup(
            &[
                col("id").gt_eq(lit(10i64)),
                col("id").lt(lit(20i64)),
                col("x").eq(lit(1i64)),
            ],
            "id",
        );
        assert_eq!(
            range,
            Some(KeyLookup::Range(Bound::Included(10), Bound::Excluded(20)))
        );
        let between = key_lookup(&[col("id").between(lit(1i64), lit(4i64))], "id");
        assert_eq!(
            between,
            Some(KeyLookup::Range(Bound::Included(1), Bound::Included(4)))
        );
        assert_eq!(key_lookup(&[col("x").eq(lit(1i64))], "id"), None);
        let reversed = key_lookup(&[lit(7i64).lt(col("id"))], "id");
        assert_eq!(
            reversed,
            Some(KeyLookup::Range(Bound::Excluded(7), Bound::Unbounded))
        );
    }
}
