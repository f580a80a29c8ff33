//! PostgreSQL's result types for date and time expressions where DataFusion's differ:
//!
//! - `date ± interval` is a `TIMESTAMP` (DataFusion kept a `DATE` and dropped the time part:
//!   `DATE '2024-01-01' + INTERVAL '90 minutes'` was `2024-01-01`);
//! - `EXTRACT(SECOND ...)` and `EXTRACT(MILLISECONDS ...)` keep the fraction, as `NUMERIC`
//!   with 6 and 3 decimals, and `date_part` of them as `DOUBLE` (DataFusion truncated them
//!   to integers: `59.999999` seconds was `59`).
//!
//! [`DatetimeTypes`] runs before type coercion (as `IntegerLiterals`), so coercion then types
//! the rewritten expressions and the plan's schema follows.

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    BinaryExpr, Cast, Expr, ExprSchemable, LogicalPlan, Operator, Projection,
};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule (see the module docs).
#[derive(Debug)]
pub(crate) struct DatetimeTypes;

impl AnalyzerRule for DatetimeTypes {
    fn name(&self) -> &str {
        "omendb_datetime_types"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        if crate::planning::has_recursive_query(&plan)? {
            return Ok(plan);
        }
        // A write's input keeps the types its casts to the table's columns were planned for:
        // the rewritten values are cast back (a timestamp stored in a DATE column is its
        // date, as PostgreSQL's assignment cast).
        if let LogicalPlan::Dml(mut dml) = plan {
            let planned = Arc::clone(dml.input.schema());
            let input = retype(Arc::unwrap_or_clone(dml.input))?;
            dml.input = Arc::new(if input.schema().as_ref() == planned.as_ref() {
                input
            } else {
                let casts = planned
                    .iter()
                    .zip(input.schema().columns())
                    .map(|((_, field), column)| {
                        Expr::Cast(Cast::new(
                            Box::new(Expr::Column(column)),
                            field.data_type().clone(),
                        ))
                        .alias(field.name())
                    })
                    .collect::<Vec<_>>();
                LogicalPlan::Projection(Projection::try_new(casts, Arc::new(input))?)
            });
            return Ok(LogicalPlan::Dml(dml));
        }
        retype(plan)
    }
}

/// The plan with its date and time expressions rewritten (see the module docs).
fn retype(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|plan| {
        // Values' types are fixed when they are planned. A node without a candidate is left
        // as it is before its input schema is built: most of every plan.
        if matches!(plan, LogicalPlan::Values(_)) || !has_candidate(&plan)? {
            return Ok(Transformed::no(plan));
        }
        let schema = crate::checked::input_schema(&plan)?;
        crate::planning::retype_expressions(plan, |expr| rewrite(expr, &schema))
    })
    .map(|t| t.data)
}

/// Whether an expression of `node` is one [`rewrite`] may change: a sum or difference, or a
/// `date_part`.
fn has_candidate(node: &LogicalPlan) -> Result<bool> {
    let mut found = false;
    node.apply_expressions(|expr| {
        found = expr.exists(|e| {
            Ok(match e {
                Expr::BinaryExpr(b) => matches!(b.op, Operator::Plus | Operator::Minus),
                Expr::ScalarFunction(call) => call.func.name() == "date_part",
                _ => false,
            })
        })?;
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(found)
}

fn rewrite(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let type_of = |e: &Expr| e.get_type(schema).ok();
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(op, Operator::Plus | Operator::Minus) =>
        {
            let (left_type, right_type) = (type_of(&left), type_of(&right));
            let is_date =
                |t: &Option<DataType>| matches!(t, Some(DataType::Date32 | DataType::Date64));
            let is_interval = |t: &Option<DataType>| matches!(t, Some(DataType::Interval(_)));
            let timestamp = |e: Box<Expr>| {
                Box::new(Expr::Cast(Cast::new(
                    e,
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                )))
            };
            if is_date(&left_type) && is_interval(&right_type) {
                Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                    timestamp(left),
                    op,
                    right,
                ))))
            } else if op == Operator::Plus && is_interval(&left_type) && is_date(&right_type) {
                Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                    left,
                    op,
                    timestamp(right),
                ))))
            } else {
                Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                    left,
                    op,
                    right,
                })))
            }
        }
        Expr::ScalarFunction(call) if call.func.name() == "date_part" && call.args.len() == 2 => {
            let Expr::Literal(ScalarValue::Utf8(Some(part)), _) = &call.args[0] else {
                return Ok(Transformed::no(Expr::ScalarFunction(call)));
            };
            // Microseconds per unit, and the unit's decimals in PostgreSQL's NUMERIC answer.
            let (per_unit, scale) = match part.to_ascii_lowercase().as_str() {
                "second" | "seconds" => (1_000_000, 6),
                "millisecond" | "milliseconds" => (1_000, 3),
                _ => return Ok(Transformed::no(Expr::ScalarFunction(call))),
            };
            // Only where the value has a time part (PostgreSQL refuses SECOND of a DATE).
            let has_time = matches!(
                type_of(&call.args[1]),
                Some(
                    DataType::Timestamp(..)
                        | DataType::Time32(_)
                        | DataType::Time64(_)
                        | DataType::Interval(_)
                )
            );
            if !has_time {
                return Ok(Transformed::no(Expr::ScalarFunction(call)));
            }
            // DataFusion's planner writes EXTRACT's field in capitals; a call of `date_part`
            // keeps the text it was given.
            let extract = part.chars().all(|c| c.is_ascii_uppercase());
            let micros = Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::clone(&call.func),
                vec![
                    Expr::Literal(ScalarValue::Utf8(Some("microsecond".into())), None),
                    call.args[1].clone(),
                ],
            ));
            let value = if extract {
                // Microseconds times 10^-scale: exact, `scale` decimals.
                let unit = ScalarValue::Decimal128(Some(1), 7, scale);
                let whole = Expr::Cast(Cast::new(Box::new(micros), DataType::Decimal128(12, 0)));
                Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(whole),
                    Operator::Multiply,
                    Box::new(Expr::Literal(unit, None)),
                ))
            } else {
                let whole = Expr::Cast(Cast::new(Box::new(micros), DataType::Float64));
                Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(whole),
                    Operator::Divide,
                    Box::new(Expr::Literal(
                        ScalarValue::Float64(Some(per_unit as f64)),
                        None,
                    )),
                ))
            };
            Ok(Transformed::yes(value))
        }
        other => Ok(Transformed::no(other)),
    }
}
