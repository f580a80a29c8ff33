//! Integer literals typed as PostgreSQL types them: `INTEGER` when the value fits 32 bits,
//! `BIGINT` otherwise. DataFusion types every integer literal `BIGINT`, so `i + 1` of an
//! `INT` column was a `BIGINT` and never overflowed where PostgreSQL raises `22003`
//! (`SELECT 2147483647 + 1`), and `SELECT 1` was described as `int8`, not `int4`.
//!
//! [`IntegerLiterals`] is the first analyzer rule, so type coercion then widens a literal
//! compared with or stored in a `BIGINT` as before. `LIMIT`/`OFFSET` and `VALUES` keep
//! their literals (their types are fixed when they are planned), and so do statements with
//! a recursive CTE.

use datafusion::common::Result;
use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule (see the module docs).
#[derive(Debug)]
pub(crate) struct IntegerLiterals;

impl AnalyzerRule for IntegerLiterals {
    fn name(&self) -> &str {
        "omendb_integer_literals"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        // A recursive CTE's work table has the types its planned terms had: left alone.
        if crate::planning::has_recursive_query(&plan)? {
            return Ok(plan);
        }
        plan.transform_up_with_subqueries(|plan| {
            if matches!(plan, LogicalPlan::Limit(_) | LogicalPlan::Values(_)) {
                return Ok(Transformed::no(plan));
            }
            crate::planning::retype_expressions(plan, |expr| match expr {
                Expr::Literal(ScalarValue::Int64(Some(v)), metadata)
                    if i32::try_from(v).is_ok() =>
                {
                    let v = i32::try_from(v).unwrap_or_default();
                    Ok(Transformed::yes(Expr::Literal(
                        ScalarValue::Int32(Some(v)),
                        metadata,
                    )))
                }
                other => Ok(Transformed::no(other)),
            })
        })
        .map(|t| t.data)
    }
}
