//! Integer arithmetic that fails on overflow instead of wrapping.
//!
//! DataFusion evaluates `+`, `-` and `*` on integers with wrapping kernels and sums `BIGINT`
//! columns in a wrapping `i64`, so `i64::MAX + 1` would silently become `i64::MIN` and be
//! stored. [`CheckedArithmetic`], an analyzer rule that runs after type coercion, rewrites:
//! - `a + b`, `a - b`, `a * b` on integer operands into [`CheckedOp`] calls, whose kernels
//!   (arrow's `numeric::{add, sub, mul}`) fail with `ArithmeticOverflow`; on two `DECIMAL`s
//!   too, where a result beyond 38 digits fails with `22003` (Arrow keeps it as a value
//!   beyond its type's precision, which printed a digit short:
//!   `99999999999999999999999999999999999999 + 1` printed 10^37), and `a / b` of two
//!   `DECIMAL`s into `crate::numeric`'s division;
//! - `+ - * / %` on `DOUBLE` operands and every function returning a `DOUBLE` into the
//!   forms of `crate::float`, which raise PostgreSQL's errors instead of returning
//!   infinities;
//! - aggregates that build values (`string_agg`, `array_agg`), also over windows, into the
//!   bounded forms of `crate::bounded_aggregate`;
//! - a cast of a `DOUBLE` or `DECIMAL` to an integer type into a cast of the value rounded
//!   half away from zero (`crate::rounding`), where Arrow would truncate;
//! - `sum(x)` and `avg(x)` of a `DOUBLE` into checked forms (`crate::float_aggregate`);
//! - `sum(x)` of a `BIGINT` into `sum(CAST(x AS DECIMAL(38, 0)))`, cast back to `BIGINT` by a
//!   projection just above the aggregate; the cast fails when the sum does not fit (like
//!   PostgreSQL's, whose `sum(bigint)` is exact).
//!
//! Invariant: an overflow is an error of the statement (SQLSTATE 22003), so nothing of a
//! write whose values overflow is applied.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Datum, Decimal128Array, Int64Array, new_empty_array};
use arrow::compute::kernels::numeric;
use arrow::datatypes::{DataType, Decimal128Type};
use arrow::error::ArrowError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::{AggregateFunction, Cast, ScalarFunction, TryCast};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, Projection,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, WindowFunctionDefinition,
    cast,
};
use datafusion::optimizer::AnalyzerRule;

use crate::float::FloatOp;

/// `result`, computed from a function's arguments, as its answer: a scalar when the
/// arguments all were (the result then has one row), an array otherwise.
pub(crate) fn answer(result: ArrayRef, scalar: bool) -> Result<ColumnarValue> {
    if scalar {
        let value = datafusion::common::ScalarValue::try_from_array(&result, 0)?;
        return Ok(ColumnarValue::Scalar(value));
    }
    Ok(ColumnarValue::Array(result))
}

/// The checked integer operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Sub,
    Mul,
}

/// `a + b`, `a - b` or `a * b` on integers or on two `DECIMAL`s, failing on overflow.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CheckedOp {
    op: Op,
    signature: Signature,
}

impl CheckedOp {
    fn udf(op: Op) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            op,
            signature: Signature::any(2, Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for CheckedOp {
    fn name(&self) -> &str {
        match self.op {
            Op::Add => "checked_add",
            Op::Sub => "checked_sub",
            Op::Mul => "checked_mul",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if let [left, right] = arg_types
            && crate::numeric::is_operand(left)
            && crate::numeric::is_operand(right)
        {
            // The type Arrow's kernel gives two DECIMALs, read off an empty computation.
            let (left, right) = (new_empty_array(left), new_empty_array(right));
            return Ok(self.compute(&left, &right)?.data_type().clone());
        }
        Ok(arg_types.first().cloned().unwrap_or(DataType::Int64))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // A join's filter runs this many times inside one poll: a cancel stops it here.
        crate::interrupt::check_current_in_plan()?;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [left, right] = arrays.as_slice() else {
            return datafusion::common::exec_err!("{} takes two arguments", self.name());
        };
        if !crate::numeric::is_operand(left.data_type()) {
            return answer(self.compute(left, right)?, scalar);
        }
        // A NUMERIC result must fit the precision Arrow gives its type.
        let overflow = || crate::float::out_of_range("numeric field overflow");
        let result = self.compute(left, right).map_err(|_| overflow())?;
        if let DataType::Decimal128(precision, _) = result.data_type() {
            result
                .as_primitive::<Decimal128Type>()
                .validate_decimal_precision(*precision)
                .map_err(|_| overflow())?;
        }
        answer(result, scalar)
    }
}

impl CheckedOp {
    fn compute(&self, left: &dyn Datum, right: &dyn Datum) -> Result<ArrayRef> {
        Ok(match self.op {
            Op::Add => numeric::add(left, right)?,
            Op::Sub => numeric::sub(left, right)?,
            Op::Mul => numeric::mul(left, right)?,
        })
    }
}

/// An exact `sum` (a `DECIMAL(38, 0)`) back to `BIGINT`, failing when it does not fit.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SumToBigint {
    signature: Signature,
}

impl ScalarUDFImpl for SumToBigint {
    fn name(&self) -> &str {
        "checked_bigint"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args.as_slice(), [ColumnarValue::Scalar(_)]);
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(sums) = arrays
            .first()
            .and_then(|a| a.as_any().downcast_ref::<Decimal128Array>())
        else {
            return datafusion::common::exec_err!("checked_bigint takes a DECIMAL(38, 0)");
        };
        let narrowed: Int64Array = arrow::compute::try_unary(sums, |sum| {
            i64::try_from(sum).map_err(|_| {
                ArrowError::ArithmeticOverflow(format!("sum {sum} is out of range of BIGINT"))
            })
        })?;
        answer(Arc::new(narrowed), scalar)
    }
}

/// The analyzer rule described in the module docs; it also makes `||` of strings the
/// size-checked [`crate::bounded::concat_operator`].
#[derive(Debug)]
pub struct CheckedArithmetic {
    /// The largest string `||` may build.
    pub value_limit: usize,
}

impl AnalyzerRule for CheckedArithmetic {
    fn name(&self) -> &str {
        "omendb_checked_arithmetic"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let add = Arc::new(CheckedOp::udf(Op::Add));
        let sub = Arc::new(CheckedOp::udf(Op::Sub));
        let mul = Arc::new(CheckedOp::udf(Op::Mul));
        let concat = Arc::new(crate::bounded::concat_operator(self.value_limit));
        let round = Arc::new(crate::rounding::udf());
        let divide = Arc::new(crate::numeric::division_udf());
        plan.transform_up_with_subqueries(|plan| {
            let schema = input_schema(&plan)?;
            let names = NamePreserver::new(&plan);
            let plan = plan.map_expressions(|expr| {
                let saved = names.save(&expr);
                // Top down, so that the operand types are read from subtrees not yet
                // rewritten: the type of a UDF call is derived through its display name,
                // which made a chain of n additions cost n^3 (400 terms: 8 s).
                let rewritten = expr.transform_down(|expr| {
                    // `concat` and `concat_ws` print their arguments as PostgreSQL's output
                    // functions do: a boolean as `t`/`f`, an interval, timestamp or date in
                    // its text cast's style (Arrow printed `true` and `1 days`).
                    // Type coercion cast the arguments to text already: a boolean is
                    // found under its cast (so `concat(true::text)` prints `t` too).
                    let boolean_under_cast = |arg: &Expr| match arg {
                        Expr::Cast(Cast { expr: inner, field }) if is_string(field.data_type()) => {
                            inner
                                .get_type(&schema)
                                .is_ok_and(|t| t == DataType::Boolean)
                        }
                        _ => false,
                    };
                    if let Expr::ScalarFunction(call) = &expr
                        && matches!(call.func.name(), "concat" | "concat_ws")
                        && call.args.iter().any(|arg| {
                            boolean_under_cast(arg)
                                || arg.get_type(&schema).is_ok_and(|t| printed_by_pg_text(&t))
                        })
                    {
                        let mut call = call.clone();
                        for arg in &mut call.args {
                            if boolean_under_cast(arg)
                                && let Expr::Cast(Cast { expr: inner, .. }) = arg
                            {
                                *arg = boolean_text(inner.as_ref().clone())?;
                                continue;
                            }
                            match arg.get_type(&schema) {
                                Ok(DataType::Boolean) => *arg = boolean_text(arg.clone())?,
                                Ok(t) if printed_by_pg_text(&t) => {
                                    *arg = Expr::Cast(Cast::new(
                                        Box::new(arg.clone()),
                                        DataType::Utf8,
                                    ));
                                }
                                _ => {}
                            }
                        }
                        // Bounded here: the node is not visited again.
                        if !call.func.inner().is::<crate::bounded::Bounded>()
                            && let Some(bounded) =
                                crate::bounded::bound(&call.func, self.value_limit)
                        {
                            call.func = Arc::new(bounded);
                        }
                        return Ok(Transformed::yes(Expr::ScalarFunction(call)));
                    }
                    // A built-in that builds large values, planned without the registry
                    // (`overlay(... placing ...)` is): its bounded form.
                    if let Expr::ScalarFunction(call) = &expr
                        && !call.func.inner().is::<crate::bounded::Bounded>()
                        && let Some(bounded) = crate::bounded::bound(&call.func, self.value_limit)
                    {
                        return Ok(Transformed::yes(Expr::ScalarFunction(
                            ScalarFunction::new_udf(Arc::new(bounded), call.args.clone()),
                        )));
                    }
                    // `~` and its kin: the bounded `regexp_like`.
                    if let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr
                        && let Some(call) =
                            crate::bounded::regex_operator(left, *op, right, self.value_limit)
                    {
                        return Ok(Transformed::yes(call));
                    }
                    // An aggregate that builds a value: its accumulators are bounded.
                    if let Expr::AggregateFunction(AggregateFunction { func, params }) = &expr
                        && let Ok(returns) = expr.get_type(&schema)
                        && let Some(bounded) =
                            crate::bounded_aggregate::bound(func, &returns, self.value_limit)
                    {
                        return Ok(Transformed::yes(Expr::AggregateFunction(
                            AggregateFunction {
                                func: Arc::new(bounded),
                                params: params.clone(),
                            },
                        )));
                    }
                    if let Expr::WindowFunction(window) = &expr
                        && let WindowFunctionDefinition::AggregateUDF(func) = &window.fun
                        && let Ok(returns) = expr.get_type(&schema)
                        && let Some(bounded) =
                            crate::bounded_aggregate::bound(func, &returns, self.value_limit)
                    {
                        let mut window = window.as_ref().clone();
                        window.fun = WindowFunctionDefinition::AggregateUDF(Arc::new(bounded));
                        return Ok(Transformed::yes(Expr::WindowFunction(Box::new(window))));
                    }
                    // Text, DOUBLE and REAL cast into NUMERIC, and text cast into DOUBLE,
                    // read their input as PostgreSQL does (crate::numeric_input).
                    if let Expr::Cast(Cast { expr: inner, field }) = &expr
                        && let Ok(from) = inner.get_type(&schema)
                        && crate::numeric_input::replaces_cast(&from, field.data_type())
                    {
                        let udf = match field.data_type() {
                            DataType::Decimal128(precision, scale) => {
                                crate::numeric_input::to_numeric(*precision, *scale)
                            }
                            _ => crate::numeric_input::text_to_double(),
                        };
                        return Ok(Transformed::yes(Expr::ScalarFunction(
                            ScalarFunction::new_udf(Arc::new(udf), vec![inner.as_ref().clone()]),
                        )));
                    }
                    // Text cast to a TIMESTAMP ignores a zone, as in PostgreSQL.
                    if let Expr::Cast(Cast { expr: inner, field })
                    | Expr::TryCast(TryCast { expr: inner, field }) = &expr
                        && matches!(field.data_type(), DataType::Timestamp(_, None))
                        && !matches!(inner.as_ref(), Expr::ScalarFunction(f)
                            if f.func.name() == crate::timestamp_input::TIMESTAMP_INPUT)
                        && inner.get_type(&schema).is_ok_and(|t| {
                            matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
                        })
                    {
                        let text = Box::new(Expr::ScalarFunction(ScalarFunction::new_udf(
                            Arc::new(crate::timestamp_input::timestamp_input_udf()),
                            vec![inner.as_ref().clone()],
                        )));
                        let field = Arc::clone(field);
                        return Ok(Transformed::yes(match expr {
                            Expr::TryCast(_) => Expr::TryCast(TryCast::new_from_field(text, field)),
                            _ => Expr::Cast(Cast::new_from_field(text, field)),
                        }));
                    }
                    // A float, timestamp, date or interval cast to text prints as PostgreSQL prints it.
                    if let Expr::Cast(Cast { expr: inner, field }) = &expr
                        && matches!(
                            field.data_type(),
                            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                        )
                        && inner.get_type(&schema).is_ok_and(|t| {
                            matches!(
                                t,
                                DataType::Float64
                                    | DataType::Float32
                                    | DataType::Timestamp(_, None)
                                    | DataType::Date32
                                    | DataType::Interval(_)
                            )
                        })
                    {
                        let text = Expr::ScalarFunction(ScalarFunction::new_udf(
                            Arc::new(crate::float::pg_text_udf()),
                            vec![inner.as_ref().clone()],
                        ));
                        return Ok(Transformed::yes(Expr::Cast(Cast::new_from_field(
                            Box::new(text),
                            Arc::clone(field),
                        ))));
                    }
                    // A fraction cast to an integer rounds, as in PostgreSQL.
                    if let Expr::Cast(Cast { expr: inner, field })
                    | Expr::TryCast(TryCast { expr: inner, field }) = &expr
                        && field.data_type().is_integer()
                        && inner
                            .get_type(&schema)
                            .is_ok_and(|t| crate::rounding::is_fractional(&t))
                    {
                        let rounded = Box::new(Expr::ScalarFunction(ScalarFunction::new_udf(
                            Arc::clone(&round),
                            vec![inner.as_ref().clone()],
                        )));
                        let field = Arc::clone(field);
                        return Ok(Transformed::yes(match expr {
                            Expr::TryCast(_) => {
                                Expr::TryCast(TryCast::new_from_field(rounded, field))
                            }
                            _ => Expr::Cast(Cast::new_from_field(rounded, field)),
                        }));
                    }
                    // `ceil`, `floor` and `trunc` of a NUMERIC are whole NUMERICs, as in
                    // PostgreSQL: one more whole digit, no places (`ceil(0.1)` overflowed
                    // its DECIMAL(1, 1)).
                    if let Expr::ScalarFunction(call) = &expr
                        && matches!(call.func.name(), "ceil" | "floor" | "trunc")
                        && let [arg] = call.args.as_slice()
                        && let Ok(DataType::Decimal128(precision, scale)) = arg.get_type(&schema)
                        && scale > 0
                        && !widened_for_rounding(arg, &schema)
                    {
                        let whole = precision.saturating_sub(scale.unsigned_abs());
                        let widened = Expr::Cast(Cast::new(
                            Box::new(arg.clone()),
                            DataType::Decimal128((precision + 1).min(38), scale),
                        ));
                        let call = Expr::ScalarFunction(ScalarFunction::new_udf(
                            Arc::clone(&call.func),
                            vec![widened],
                        ));
                        return Ok(Transformed::yes(Expr::Cast(Cast::new(
                            Box::new(call),
                            DataType::Decimal128((whole + 1).clamp(1, 38), 0),
                        ))));
                    }
                    // `log` of a NUMERIC is computed in doubles, with their checks (its
                    // DECIMAL form failed an internal assertion on `log(2.5)`).
                    if let Expr::ScalarFunction(call) = &expr
                        && call.func.name() == "log"
                        && call.args.iter().any(|arg| {
                            arg.get_type(&schema)
                                .is_ok_and(|t| matches!(t, DataType::Decimal128(..)))
                        })
                    {
                        let args = call
                            .args
                            .iter()
                            .map(|arg| {
                                Expr::Cast(Cast::new(Box::new(arg.clone()), DataType::Float64))
                            })
                            .collect();
                        let checked = crate::float::finite(&call.func);
                        return Ok(Transformed::yes(Expr::ScalarFunction(
                            ScalarFunction::new_udf(Arc::new(checked), args),
                        )));
                    }
                    // `round` of a DOUBLE rounds halves to even, as PostgreSQL's (`rint`).
                    if let Expr::ScalarFunction(call) = &expr
                        && call.func.name() == "round"
                        && let [arg] = call.args.as_slice()
                        && arg
                            .get_type(&schema)
                            .is_ok_and(|t| matches!(t, DataType::Float64 | DataType::Float32))
                    {
                        return Ok(Transformed::yes(Expr::ScalarFunction(
                            ScalarFunction::new_udf(Arc::clone(&round), vec![arg.clone()]),
                        )));
                    }
                    // A function returning DOUBLE: PostgreSQL's errors, not infinities.
                    if let Expr::ScalarFunction(call) = &expr
                        && !crate::float::is_checked(&call.func)
                        && !call.func.inner().is::<CheckedOp>()
                        && !call.func.inner().is::<crate::rounding::RoundForInteger>()
                        && expr.get_type(&schema).is_ok_and(|t| t == DataType::Float64)
                    {
                        let checked = crate::float::finite(&call.func);
                        return Ok(Transformed::yes(Expr::ScalarFunction(
                            ScalarFunction::new_udf(Arc::new(checked), call.args.clone()),
                        )));
                    }
                    // `-x` of an integer: `0 - x`, which fails on the minimum.
                    if let Expr::Negative(inner) = &expr
                        && let Ok(data_type) = inner.get_type(&schema)
                        && data_type.is_integer()
                    {
                        let zero = datafusion::common::ScalarValue::new_zero(&data_type)?;
                        return Ok(Transformed::yes(Expr::ScalarFunction(
                            ScalarFunction::new_udf(
                                Arc::clone(&sub),
                                vec![Expr::Literal(zero, None), inner.as_ref().clone()],
                            ),
                        )));
                    }
                    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else {
                        return Ok(Transformed::no(expr));
                    };
                    // Intervals compare by their spans, as in PostgreSQL.
                    if crate::interval_order::is_comparison(*op)
                        && left
                            .get_type(&schema)
                            .is_ok_and(|t| crate::interval_order::is_interval(&t))
                        && right
                            .get_type(&schema)
                            .is_ok_and(|t| crate::interval_order::is_interval(&t))
                    {
                        return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                            Box::new(crate::interval_order::span(left.as_ref().clone())),
                            *op,
                            Box::new(crate::interval_order::span(right.as_ref().clone())),
                        ))));
                    }
                    // NUMERIC sums, differences and products that pass 38 digits fail;
                    // quotients keep PostgreSQL's precision.
                    let numeric = match op {
                        Operator::Plus => Some(&add),
                        Operator::Minus => Some(&sub),
                        Operator::Multiply => Some(&mul),
                        Operator::Divide => Some(&divide),
                        _ => None,
                    };
                    if let Some(udf) = numeric
                        && left
                            .get_type(&schema)
                            .is_ok_and(|t| crate::numeric::is_operand(&t))
                        && right
                            .get_type(&schema)
                            .is_ok_and(|t| crate::numeric::is_operand(&t))
                    {
                        return Ok(Transformed::yes(Expr::ScalarFunction(
                            ScalarFunction::new_udf(
                                Arc::clone(udf),
                                vec![left.as_ref().clone(), right.as_ref().clone()],
                            ),
                        )));
                    }
                    let is_double: fn(&DataType) -> bool = |t| *t == DataType::Float64;
                    let floats = |op| (Arc::new(crate::float::float_operator(op)), is_double);
                    let (udf, operands): (_, fn(&DataType) -> bool) = match op {
                        Operator::Plus | Operator::Minus | Operator::Multiply
                            if left.get_type(&schema).is_ok_and(|t| is_double(&t)) =>
                        {
                            let op = match op {
                                Operator::Plus => FloatOp::Add,
                                Operator::Minus => FloatOp::Sub,
                                _ => FloatOp::Mul,
                            };
                            floats(op)
                        }
                        Operator::Divide => floats(FloatOp::Div),
                        Operator::Modulo => floats(FloatOp::Rem),
                        Operator::Plus => (Arc::clone(&add), DataType::is_integer),
                        Operator::Minus => (Arc::clone(&sub), DataType::is_integer),
                        Operator::Multiply => (Arc::clone(&mul), DataType::is_integer),
                        Operator::StringConcat => (Arc::clone(&concat), is_string),
                        _ => return Ok(Transformed::no(expr)),
                    };
                    let fits = left.get_type(&schema).is_ok_and(|t| operands(&t))
                        && right.get_type(&schema).is_ok_and(|t| operands(&t));
                    if !fits {
                        return Ok(Transformed::no(expr));
                    }
                    Ok(Transformed::yes(Expr::ScalarFunction(
                        ScalarFunction::new_udf(
                            udf,
                            vec![left.as_ref().clone(), right.as_ref().clone()],
                        ),
                    )))
                })?;
                // Output columns keep the names they had (`a + b`), so references resolve.
                Ok(rewritten.update_data(|expr| saved.restore(expr)))
            })?;
            plan.transform_data(|plan| match plan {
                // Intervals sort by their spans, as in PostgreSQL.
                LogicalPlan::Sort(mut sort) => {
                    let schema = sort.input.schema().clone();
                    let mut changed = false;
                    for key in &mut sort.expr {
                        if key
                            .expr
                            .get_type(&schema)
                            .is_ok_and(|t| crate::interval_order::is_interval(&t))
                        {
                            let taken = std::mem::replace(
                                &mut key.expr,
                                Expr::Literal(datafusion::common::ScalarValue::Null, None),
                            );
                            key.expr = crate::interval_order::span(taken);
                            changed = true;
                        }
                    }
                    Ok(Transformed::new_transformed(
                        LogicalPlan::Sort(sort),
                        changed,
                    ))
                }
                LogicalPlan::Aggregate(aggregate) => {
                    match crate::float_aggregate::finite_sums(&aggregate)? {
                        // Float sums checked above the aggregate, BIGINT sums below.
                        Some(LogicalPlan::Projection(projection)) => {
                            let input = Arc::unwrap_or_clone(projection.input);
                            let input = checked_sums(input)?.data;
                            let checked = Projection::try_new(projection.expr, Arc::new(input))?;
                            Ok(Transformed::yes(LogicalPlan::Projection(checked)))
                        }
                        _ => checked_sums(LogicalPlan::Aggregate(aggregate)),
                    }
                }
                other => Ok(Transformed::no(other)),
            })
        })
        .map(|t| t.data)
    }
}

/// Whether `arg` is already the widened argument of a `ceil`, `floor` or `trunc` of a
/// NUMERIC (a cast to one more digit at the same scale), which must not be widened again.
fn widened_for_rounding(arg: &Expr, schema: &DFSchema) -> bool {
    let Expr::Cast(Cast { expr: inner, field }) = arg else {
        return false;
    };
    let DataType::Decimal128(to_precision, to_scale) = field.data_type() else {
        return false;
    };
    matches!(
        inner.get_type(schema),
        Ok(DataType::Decimal128(from_precision, from_scale))
            if from_scale == *to_scale && (from_precision + 1).min(38) == *to_precision
    )
}

/// A boolean as PostgreSQL's output function prints it: `t`, `f` or NULL.
fn boolean_text(value: Expr) -> Result<Expr> {
    use datafusion::prelude::{lit, not, when};
    when(value.clone(), lit("t"))
        .when(not(value), lit("f"))
        .end()
}

/// Whether a value of `data_type` prints differently in `concat` than in PostgreSQL (a
/// boolean) or than our cast to text (`crate::float::pg_text_udf`).
fn printed_by_pg_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Boolean
            | DataType::Interval(_)
            | DataType::Timestamp(_, None)
            | DataType::Date32
            | DataType::Float32
    )
}

fn is_string(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// The schema a node's expressions are evaluated against: its inputs' columns together.
pub(crate) fn input_schema(plan: &LogicalPlan) -> Result<DFSchema> {
    let mut schema = DFSchema::empty();
    for input in plan.inputs() {
        schema.merge(input.schema());
    }
    Ok(schema)
}

/// An aggregate whose `sum`s of `BIGINT` are exact (see the module docs).
fn checked_sums(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Aggregate(aggregate) = plan else {
        return Ok(Transformed::no(plan));
    };
    let input_schema = aggregate.input.schema();
    let mut changed = false;
    let aggr_expr = aggregate
        .aggr_expr
        .iter()
        .map(|expr| {
            let (inner, alias) = match expr {
                Expr::Alias(alias) => (alias.expr.as_ref(), Some(alias.name.clone())),
                other => (other, None),
            };
            let Expr::AggregateFunction(AggregateFunction { func, params }) = inner else {
                return Ok(expr.clone());
            };
            let [argument] = params.args.as_slice() else {
                return Ok(expr.clone());
            };
            if func.name() != "sum"
                || !matches!(
                    argument.get_type(input_schema)?,
                    DataType::Int64 | DataType::UInt64
                )
            {
                return Ok(expr.clone());
            }
            changed = true;
            let mut params = params.clone();
            params.args = vec![cast(argument.clone(), DataType::Decimal128(38, 0))];
            let name = alias.unwrap_or_else(|| inner.schema_name().to_string());
            Ok(Expr::AggregateFunction(AggregateFunction {
                func: Arc::clone(func),
                params,
            })
            .alias(name))
        })
        .collect::<Result<Vec<_>>>()?;
    if !changed {
        return Ok(Transformed::no(LogicalPlan::Aggregate(aggregate)));
    }
    let original = Arc::clone(&aggregate.schema);
    let exact = Aggregate::try_new(aggregate.input, aggregate.group_expr, aggr_expr)?;
    let exact = LogicalPlan::Aggregate(exact);
    // The same columns, names and types as before: the sums cast back to BIGINT.
    let columns = original
        .iter()
        .zip(exact.schema().iter())
        .map(|((qualifier, field), (exact_qualifier, exact_field))| {
            let value = Expr::Column(datafusion::common::Column::new(
                exact_qualifier.cloned(),
                exact_field.name(),
            ));
            let value = if field.data_type() != exact_field.data_type() {
                let narrow = Expr::ScalarFunction(ScalarFunction::new_udf(
                    Arc::new(ScalarUDF::new_from_impl(SumToBigint {
                        signature: Signature::any(1, Volatility::Immutable),
                    })),
                    vec![value],
                ));
                cast(narrow, field.data_type().clone())
            } else {
                value
            };
            value.alias_qualified(qualifier.cloned(), field.name())
        })
        .collect::<Vec<_>>();
    let projection = Projection::try_new(columns, Arc::new(exact))?;
    Ok(Transformed::yes(LogicalPlan::Projection(projection)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(value: i128, p: u8, s: i8) -> ArrayRef {
        Arc::new(
            Decimal128Array::from(vec![value])
                .with_precision_and_scale(p, s)
                .expect("valid"),
        )
    }

    fn op(op: Op) -> CheckedOp {
        CheckedOp {
            op,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }

    #[test]
    fn decimal_sums_keep_the_wider_scale_and_fail_past_thirty_eight_digits() {
        let sum = op(Op::Add)
            .compute(&decimal(15, 2, 1), &decimal(225, 3, 2))
            .expect("adds");
        assert_eq!(
            sum.as_primitive::<Decimal128Type>().value_as_string(0),
            "3.75"
        );
        // 10^38 - 1 + 1 does not fit 38 digits (Arrow computes it; the precision check
        // that `invoke_with_args` runs after it refuses it).
        let nines = decimal(10_i128.pow(38) - 1, 38, 0);
        let fits = op(Op::Add)
            .compute(&nines, &decimal(1, 1, 0))
            .is_ok_and(|sum| {
                let sum = sum.as_primitive::<Decimal128Type>();
                sum.validate_decimal_precision(38).is_ok()
            });
        assert!(!fits, "past 38 digits");
        assert_eq!(
            op(Op::Mul)
                .return_type(&[DataType::Decimal128(2, 1), DataType::Decimal128(3, 2)])
                .expect("typed"),
            DataType::Decimal128(6, 3)
        );
        assert_eq!(
            op(Op::Add)
                .return_type(&[DataType::Int32, DataType::Int32])
                .expect("typed"),
            DataType::Int32
        );
    }
}
