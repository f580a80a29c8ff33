//! A large constant in a projection is repeated for every row of each batch: a 1 MB
//! literal over a batch of 2,000 rows is 2 GB, built in one step inside the projection,
//! before any operator checks its query's meter (`crate::query_meter`). [`LargeLiteral`]
//! checks the meter for the value's size times the batch's rows before the projection
//! repeats it, and fails the query with `ResourcesExhausted` past its limit.
//!
//! Invariant: a guarded literal evaluates to the same value as the literal it guards.

use std::sync::Arc;

use arrow::datatypes::{DataType, FieldRef, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};

/// Literals of at least this many bytes are guarded; smaller ones repeat to at most
/// 8,192 × 64 KiB = 512 MiB a column, which the next batch boundary checks.
const GUARDED_BYTES: usize = 64 << 10;

/// `node` with its large literals guarded, if it is a projection that has any.
pub(crate) fn guard(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(projection) = node.downcast_ref::<ProjectionExec>() else {
        return Ok(None);
    };
    let mut changed = false;
    let mut exprs = Vec::with_capacity(projection.expr().len());
    for projected in projection.expr() {
        let guarded = Arc::clone(&projected.expr).transform_up(|expr| {
            match expr.downcast_ref::<Literal>() {
                Some(literal) if literal.value().size() >= GUARDED_BYTES => {
                    let guarded: Arc<dyn PhysicalExpr> = Arc::new(LargeLiteral {
                        bytes: literal.value().size(),
                        literal: literal.clone(),
                    });
                    Ok(Transformed::yes(guarded))
                }
                _ => Ok(Transformed::no(expr)),
            }
        })?;
        changed |= guarded.transformed;
        exprs.push(ProjectionExpr {
            expr: guarded.data,
            alias: projected.alias.clone(),
        });
    }
    if !changed {
        return Ok(None);
    }
    let schema = projection.schema();
    let rebuilt = ProjectionExec::try_new_with_schema_metadata(
        exprs,
        Arc::clone(projection.input()),
        &schema,
    )?;
    Ok(Some(Arc::new(rebuilt)))
}

/// Repeating a value into an array takes up to twice the array while it is built (seen:
/// 3.8 GB of arrays peaked at 8.2 GB).
pub(crate) const EXPANSION_PEAK: usize = 2;

/// A literal that checks its query's meter before it is repeated (see the module docs).
#[derive(Debug, PartialEq, Eq, Hash)]
struct LargeLiteral {
    literal: Literal,
    bytes: usize,
}

impl std::fmt::Display for LargeLiteral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.literal, f)
    }
}

impl PhysicalExpr for LargeLiteral {
    fn data_type(&self, input_schema: &Schema) -> Result<DataType> {
        self.literal.data_type(input_schema)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.literal.nullable(input_schema)
    }

    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        self.literal.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let repeated = self.bytes.saturating_mul(batch.num_rows());
        crate::interrupt::check_current_growth(repeated.saturating_mul(EXPANSION_PEAK))?;
        self.literal.evaluate(batch)
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(self)
    }

    fn fmt_sql(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.literal.fmt_sql(f)
    }
}
