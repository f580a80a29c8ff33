//! `sum` and `avg` of `DOUBLE`s fail on overflow, as PostgreSQL's (`22003`), instead of
//! returning an infinity: `sum(x)` over finite values that overflows is an error, over
//! values among which is an infinity or NaN is what IEEE arithmetic gives.
//!
//! [`finite_sums`] (called by `crate::checked`'s analyzer rule on each aggregate) adds
//! `max(abs(x))` beside each such aggregate and a projection above that checks the two:
//! a sum that is not finite while the largest magnitude is finite overflowed (`max` of
//! floats takes NaN as the largest, so a NaN input passes too).
//!
//! Invariant: the plan's columns keep their names and types; only overflow becomes an error.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Column, Result};
use datafusion::functions::math::expr_fn::abs;
use datafusion::functions_aggregate::min_max::max_udaf;
use datafusion::logical_expr::expr::{AggregateFunction, ScalarFunction};
use datafusion::logical_expr::{
    Aggregate, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Projection, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// `aggregate` with its `sum`s and `avg`s of floats checked (see the module docs), or
/// `None` when it has none.
pub(crate) fn finite_sums(aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
    let input_schema = aggregate.input.schema();
    let mut aggr_expr = aggregate.aggr_expr.clone();
    // (position among the aggregates, position of its bound)
    let mut checked = Vec::new();
    for (position, expr) in aggregate.aggr_expr.iter().enumerate() {
        let inner = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let Expr::AggregateFunction(AggregateFunction { func, params }) = inner else {
            continue;
        };
        let [argument] = params.args.as_slice() else {
            continue;
        };
        let float = matches!(
            argument.get_type(input_schema)?,
            DataType::Float64 | DataType::Float32
        );
        if !float || !matches!(func.name(), "sum" | "avg") {
            continue;
        }
        let mut bound_params = params.clone();
        bound_params.args = vec![abs(argument.clone())];
        bound_params.order_by = Vec::new();
        let bound = Expr::AggregateFunction(AggregateFunction {
            func: max_udaf(),
            params: bound_params,
        })
        .alias(format!("__omendb_bound_{position}"));
        checked.push((position, aggr_expr.len()));
        aggr_expr.push(bound);
    }
    if checked.is_empty() {
        return Ok(None);
    }
    let groups = aggregate.group_expr.len();
    let original = Arc::clone(&aggregate.schema);
    let bounded = Aggregate::try_new(
        Arc::clone(&aggregate.input),
        aggregate.group_expr.clone(),
        aggr_expr,
    )?;
    let bounded = LogicalPlan::Aggregate(bounded);
    let column = |index: usize| {
        let (qualifier, field) = bounded.schema().qualified_field(index);
        Expr::Column(Column::new(qualifier.cloned(), field.name()))
    };
    let check = Arc::new(ScalarUDF::new_from_impl(FiniteSum {
        signature: Signature::any(2, Volatility::Immutable),
    }));
    let columns = original
        .iter()
        .enumerate()
        .map(|(index, (qualifier, field))| {
            let value = column(index);
            let bound = index
                .checked_sub(groups)
                .and_then(|position| checked.iter().find(|(p, _)| *p == position))
                .map(|(_, bound)| column(groups + bound));
            let value = match bound {
                Some(bound) => Expr::ScalarFunction(ScalarFunction::new_udf(
                    Arc::clone(&check),
                    vec![value, bound],
                )),
                None => value,
            };
            value.alias_qualified(qualifier.cloned(), field.name())
        })
        .collect::<Vec<_>>();
    let projection = Projection::try_new(columns, Arc::new(bounded))?;
    Ok(Some(LogicalPlan::Projection(projection)))
}

/// `finite_sum(sum, bound)`: `sum`, or `22003` when it is not finite and `bound` is.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FiniteSum {
    signature: Signature,
}

impl ScalarUDFImpl for FiniteSum {
    fn name(&self) -> &str {
        "finite_sum"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Float64))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [sum, bound] = args.args.as_slice() else {
            return datafusion::common::exec_err!("finite_sum takes two arguments");
        };
        let scalar = matches!(sum, ColumnarValue::Scalar(_));
        let rows = if scalar { 1 } else { args.number_rows };
        let sums: ArrayRef = sum.to_array(rows)?;
        let doubles = |array: &ArrayRef| cast(array, &DataType::Float64);
        let (sum_values, bounds) = (doubles(&sums)?, doubles(&bound.to_array(rows)?)?);
        let (sum_values, bounds) = (
            sum_values.as_primitive::<Float64Type>(),
            bounds.as_primitive::<Float64Type>(),
        );
        for row in 0..sum_values.len() {
            let overflowed = sum_values.is_valid(row)
                && !sum_values.value(row).is_finite()
                && bounds.is_valid(row)
                && bounds.value(row).is_finite();
            if overflowed {
                return Err(crate::float::out_of_range("overflow"));
            }
        }
        crate::checked::answer(sums, scalar)
    }
}
