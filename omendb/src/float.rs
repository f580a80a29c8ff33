//! Floating-point arithmetic with PostgreSQL's errors instead of IEEE infinities.
//!
//! DataFusion follows IEEE 754: `1.0 / 0` is `Infinity`, `ln(0)` is `-Infinity`, `ln(-1)`
//! and `sqrt(-1)` are `NaN`, `exp(1000)` is `Infinity`, and such values would be returned
//! and stored. PostgreSQL raises an error for each. The analyzer rule of `crate::checked`
//! puts [`float_operator`] in place of `+ - * / %` on `DOUBLE` operands and wraps every
//! function that returns a `DOUBLE` in [`finite`].
//!
//! Invariants:
//! - A result computed from finite inputs is finite: otherwise the statement fails with
//!   `22003` (overflow; also a product or quotient of non-zero finite values that underflows
//!   to zero), or with PostgreSQL's more precise code where it has one — a zero divisor
//!   `22012`, the logarithm of zero or of a negative number `2201E`, the square root of a
//!   negative number and an undefined power `2201F`.
//! - Infinite and NaN inputs (`'Infinity'::float8`) propagate as in PostgreSQL.
//! - A wrapped function answers exactly as the original otherwise: the wrapper delegates
//!   everything (types, coercion, simplification) to it.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use arrow::compute::cast;
use arrow::compute::kernels::numeric;
use arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility, simplify::ExprSimplifyResult, simplify::SimplifyContext,
};
use datafusion::prelude::Expr;

use crate::error::{DataErrorKind, Error};

/// The operators checked on `DOUBLE` operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum FloatOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// `a <op> b` on `DOUBLE`s with PostgreSQL's errors (see the module docs).
#[derive(Debug, PartialEq, Eq, Hash)]
struct FloatOperator {
    op: FloatOp,
    signature: Signature,
}

/// The checked form of `op` on two `DOUBLE`s.
pub(crate) fn float_operator(op: FloatOp) -> ScalarUDF {
    ScalarUDF::new_from_impl(FloatOperator {
        op,
        signature: Signature::exact(
            vec![DataType::Float64, DataType::Float64],
            Volatility::Immutable,
        ),
    })
}

fn data_error(kind: DataErrorKind, message: &str) -> DataFusionError {
    DataFusionError::External(Box::new(Error::Data {
        kind,
        message: message.to_string(),
    }))
}

pub(crate) fn out_of_range(what: &str) -> DataFusionError {
    DataFusionError::External(Box::new(Error::OutOfRange(what.to_string())))
}

impl ScalarUDFImpl for FloatOperator {
    fn name(&self) -> &str {
        match self.op {
            FloatOp::Add => "float_add",
            FloatOp::Sub => "float_sub",
            FloatOp::Mul => "float_mul",
            FloatOp::Div => "float_div",
            FloatOp::Rem => "float_mod",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
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
        let (a, b) = (
            left.as_primitive::<Float64Type>(),
            right.as_primitive::<Float64Type>(),
        );
        // NaN divided by zero is NaN, as in PostgreSQL.
        if matches!(self.op, FloatOp::Div | FloatOp::Rem)
            && (0..b.len()).any(|i| {
                b.is_valid(i) && a.is_valid(i) && b.value(i) == 0.0 && !a.value(i).is_nan()
            })
        {
            return Err(data_error(
                DataErrorKind::DivisionByZero,
                "division by zero",
            ));
        }
        let result = match self.op {
            FloatOp::Add => numeric::add(left, right)?,
            FloatOp::Sub => numeric::sub(left, right)?,
            FloatOp::Mul => numeric::mul(left, right)?,
            FloatOp::Div => numeric::div(left, right)?,
            FloatOp::Rem => numeric::rem(left, right)?,
        };
        let values = result.as_primitive::<Float64Type>();
        for i in (0..values.len()).filter(|&i| values.is_valid(i)) {
            let (x, y, r) = (a.value(i), b.value(i), values.value(i));
            let finite = x.is_finite() && y.is_finite();
            if finite && !r.is_finite() {
                return Err(out_of_range("overflow"));
            }
            let underflow = match self.op {
                FloatOp::Mul => r == 0.0 && x != 0.0 && y != 0.0,
                FloatOp::Div => r == 0.0 && x != 0.0 && y.is_finite(),
                _ => false,
            };
            if finite && underflow {
                return Err(out_of_range("underflow"));
            }
        }
        crate::checked::answer(result, scalar)
    }
}

/// Whether `function` is already one of this module's checked forms.
pub(crate) fn is_checked(function: &ScalarUDF) -> bool {
    function.inner().is::<Finite>() || function.inner().is::<FloatOperator>()
}

/// A function returning `DOUBLE` whose results from finite inputs must be finite.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Finite {
    inner: Arc<ScalarUDF>,
}

/// `function` checked as the module docs say.
pub(crate) fn finite(function: &Arc<ScalarUDF>) -> ScalarUDF {
    ScalarUDF::new_from_impl(Finite {
        inner: Arc::clone(function),
    })
}

impl ScalarUDFImpl for Finite {
    crate::bounded::delegate_to_inner!();
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            1
        } else {
            args.number_rows
        };
        let inputs = numeric_inputs(&args.args, rows)?;
        check_domain(self.inner.name(), &inputs)?;
        let output = self.inner.invoke_with_args(args)?;
        // PostgreSQL's `cot(0)` is Infinity, not an error.
        if self.inner.name() == "cot" {
            return Ok(output);
        }
        let values = output.to_array(rows)?;
        if let Some(values) = values.as_primitive_opt::<Float64Type>() {
            for i in (0..values.len()).filter(|&i| values.is_valid(i)) {
                let finite_inputs = inputs
                    .iter()
                    .all(|input| input.is_null(i) || input.value(i).is_finite());
                if finite_inputs && !values.value(i).is_finite() {
                    return Err(out_of_range("overflow"));
                }
            }
        }
        Ok(output)
    }
}

/// The numeric arguments as `DOUBLE`s, row by row.
fn numeric_inputs(args: &[ColumnarValue], rows: usize) -> Result<Vec<Float64Array>> {
    let mut inputs = Vec::new();
    for arg in args {
        let array: ArrayRef = arg.to_array(rows)?;
        let data_type = array.data_type();
        if data_type.is_numeric() {
            let doubles = cast(&array, &DataType::Float64)?;
            inputs.push(doubles.as_primitive::<Float64Type>().clone());
        }
    }
    Ok(inputs)
}

/// PostgreSQL's precise errors for arguments out of a function's domain.
fn check_domain(name: &str, inputs: &[Float64Array]) -> Result<()> {
    let value = |input: usize, row: usize| {
        inputs
            .get(input)
            .filter(|array| array.is_valid(row))
            .map(|array| array.value(row))
    };
    let rows = inputs.first().map_or(0, |a| a.len());
    for row in 0..rows {
        match name {
            "ln" | "log" | "log10" | "log2" => {
                // `log(b, x)`: both the base and the value.
                for input in 0..inputs.len() {
                    match value(input, row) {
                        Some(0.0) => {
                            return Err(data_error(
                                DataErrorKind::InvalidLogarithm,
                                "cannot take logarithm of zero",
                            ));
                        }
                        Some(x) if x < 0.0 => {
                            return Err(data_error(
                                DataErrorKind::InvalidLogarithm,
                                "cannot take logarithm of a negative number",
                            ));
                        }
                        _ => {}
                    }
                }
            }
            "sqrt" => {
                if value(0, row).is_some_and(|x| x < 0.0) {
                    return Err(data_error(
                        DataErrorKind::InvalidPower,
                        "cannot take square root of a negative number",
                    ));
                }
            }
            "power" | "pow" => {
                if let (Some(base), Some(exponent)) = (value(0, row), value(1, row)) {
                    if base == 0.0 && exponent < 0.0 {
                        return Err(data_error(
                            DataErrorKind::InvalidPower,
                            "zero raised to a negative power is undefined",
                        ));
                    }
                    if base < 0.0 && exponent.is_finite() && exponent.fract() != 0.0 {
                        return Err(data_error(
                            DataErrorKind::InvalidPower,
                            "a negative number raised to a non-integer power yields a complex \
                             result",
                        ));
                    }
                }
            }
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// A float as PostgreSQL prints it in text (its wire format and `CAST(x AS TEXT)`): the shortest digits that read back to the same
/// value, an exponent below 1e-4 and from 1e15 on (`1e+15`, `1e-05`), `NaN`, `Infinity`.
/// `shown` is the value at its own precision (so a `real` prints as `0.1`, not
/// `0.10000000149011612`).
pub fn pg_float_text<T: std::fmt::Display + std::fmt::LowerExp>(value: f64, shown: T) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let exponent = value.abs().log10().floor();
    if (-4.0..15.0).contains(&exponent) {
        return shown.to_string();
    }
    let scientific = format!("{shown:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.abs())
}

/// A `TIMESTAMP` (microseconds since the epoch) as PostgreSQL prints it,
/// `2024-01-02 03:04:05.5`, where Arrow prints `2024-01-02T03:04:05.500`; `None` beyond
/// chrono's range.
pub fn pg_timestamp_text(micros: i64) -> Option<String> {
    let at = chrono::DateTime::from_timestamp_micros(micros)?.naive_utc();
    let time = at.format("%H:%M:%S%.6f").to_string();
    let time = time.trim_end_matches('0').trim_end_matches('.');
    let (date, era) = pg_date_parts(at.date());
    Some(format!("{date} {time}{era}"))
}

/// A date as PostgreSQL prints it: `2024-02-29`, `10000-01-01`, `0044-03-15 BC` (chrono
/// prints `+10000-01-01` and `-0043-03-15`: its year 0 is 1 BC).
pub fn pg_date_text(date: chrono::NaiveDate) -> String {
    let (date, era) = pg_date_parts(date);
    format!("{date}{era}")
}

/// The date without its era, and the era's suffix (`" BC"` or nothing).
fn pg_date_parts(date: chrono::NaiveDate) -> (String, &'static str) {
    use chrono::Datelike;
    let (year, era) = match date.year() {
        year if year <= 0 => (1 - i64::from(year), " BC"),
        year => (i64::from(year), ""),
    };
    (
        format!("{year:04}-{:02}-{:02}", date.month(), date.day()),
        era,
    )
}

/// An interval as PostgreSQL prints it in its default (`postgres`) style: `1 year 2 mons
/// 3 days 04:05:06.5` (Arrow prints `1 years 2 mons 3 days 4 hours ...`).
pub fn pg_interval_text(months: i32, days: i32, micros: i64) -> String {
    let mut parts = Vec::new();
    let unit = |n: i64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let (years, months) = (i64::from(months) / 12, i64::from(months) % 12);
    if years != 0 {
        parts.push(unit(years, "year", "years"));
    }
    if months != 0 {
        parts.push(unit(months, "mon", "mons"));
    }
    if days != 0 {
        parts.push(unit(i64::from(days), "day", "days"));
    }
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 { "-" } else { "" };
        let total = micros.unsigned_abs();
        let (secs, frac) = (total / 1_000_000, total % 1_000_000);
        let mut time = format!(
            "{sign}{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        if frac != 0 {
            let digits = format!("{frac:06}");
            time.push('.');
            time.push_str(digits.trim_end_matches('0'));
        }
        parts.push(time);
    }
    parts.join(" ")
}

/// `CAST(x AS TEXT)` of a `DOUBLE`, `REAL`, `TIMESTAMP`, `DATE` or `INTERVAL`, printed as PostgreSQL prints it
/// ([`pg_float_text`], [`pg_timestamp_text`]), where Arrow prints `inf`, `-0.0`, `1000.0`
/// and `2024-01-02T03:04:05`.
pub(crate) fn pg_text_udf() -> ScalarUDF {
    crate::text_function::TextFunction::udf("pg_text", pg_texts)
}

/// The values of [`pg_text_udf`].
fn pg_texts(array: &ArrayRef) -> Result<arrow::array::StringArray> {
    Ok(match array.data_type() {
        DataType::Timestamp(_, None) => {
            let micros = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None);
            cast(&array, &micros)?
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .iter()
                .map(|v| v.and_then(pg_timestamp_text))
                .collect()
        }
        DataType::Date32 => array
            .as_primitive::<arrow::datatypes::Date32Type>()
            .iter()
            .map(|v| v.and_then(arrow::temporal_conversions::date32_to_datetime))
            .map(|v| v.map(|at| pg_date_text(at.date())))
            .collect(),
        DataType::Interval(_) => {
            let to = DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano);
            cast(&array, &to)?
                .as_primitive::<arrow::datatypes::IntervalMonthDayNanoType>()
                .iter()
                .map(|v| v.map(|v| pg_interval_text(v.months, v.days, v.nanoseconds / 1000)))
                .collect()
        }
        DataType::Float32 => array
            .as_primitive::<arrow::datatypes::Float32Type>()
            .iter()
            .map(|v| v.map(|v| pg_float_text(f64::from(v), v)))
            .collect(),
        _ => cast(&array, &DataType::Float64)?
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.map(|v| pg_float_text(v, v)))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;
    use datafusion::common::ScalarValue;
    use datafusion::config::ConfigOptions;

    fn call(udf: &ScalarUDF, args: Vec<f64>) -> std::result::Result<f64, Error> {
        let arg_fields = args
            .iter()
            .map(|_| Arc::new(Field::new("x", DataType::Float64, true)))
            .collect();
        let args = ScalarFunctionArgs {
            args: args
                .into_iter()
                .map(|v| ColumnarValue::Scalar(ScalarValue::Float64(Some(v))))
                .collect(),
            arg_fields,
            number_rows: 1,
            return_field: Arc::new(Field::new("r", DataType::Float64, true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        let result = udf.invoke_with_args(args).map_err(Error::from)?;
        let values = result.to_array(1).expect("an array");
        Ok(values.as_primitive::<Float64Type>().value(0))
    }

    fn code(result: std::result::Result<f64, Error>) -> &'static str {
        match result {
            Err(Error::Data { kind, .. }) => kind.sqlstate(),
            Err(Error::OutOfRange(_)) => "22003",
            Err(other) => panic!("unexpected error {other}"),
            Ok(v) => panic!("unexpected value {v}"),
        }
    }

    #[test]
    fn operators_fail_where_postgresql_does_and_pass_infinities_through() {
        let div = float_operator(FloatOp::Div);
        let mul = float_operator(FloatOp::Mul);
        let add = float_operator(FloatOp::Add);
        assert_eq!(code(call(&div, vec![1.0, 0.0])), "22012");
        assert_eq!(code(call(&div, vec![f64::INFINITY, 0.0])), "22012");
        assert_eq!(code(call(&mul, vec![1e308, 10.0])), "22003");
        assert_eq!(code(call(&mul, vec![1e-300, 1e-300])), "22003");
        assert_eq!(code(call(&add, vec![f64::MAX, f64::MAX])), "22003");
        assert_eq!(call(&div, vec![1.0, 4.0]).expect("a value"), 0.25);
        assert_eq!(
            call(&add, vec![f64::INFINITY, 1.0]).expect("a value"),
            f64::INFINITY
        );
        assert!(call(&mul, vec![f64::NAN, 2.0]).expect("a value").is_nan());
        assert_eq!(call(&mul, vec![0.0, 1e-300]).expect("a value"), 0.0);
    }

    #[test]
    fn functions_fail_outside_their_domain_and_on_overflow() {
        let state = datafusion::prelude::SessionContext::new().state();
        let function = |name: &str| {
            let udf = state.scalar_functions().get(name).expect("a built-in");
            finite(udf)
        };
        assert_eq!(code(call(&function("ln"), vec![0.0])), "2201E");
        assert_eq!(code(call(&function("ln"), vec![-1.0])), "2201E");
        assert_eq!(code(call(&function("log10"), vec![-1.0])), "2201E");
        assert_eq!(code(call(&function("sqrt"), vec![-1.0])), "2201F");
        assert_eq!(code(call(&function("power"), vec![0.0, -1.0])), "2201F");
        assert_eq!(code(call(&function("power"), vec![-8.0, 0.5])), "2201F");
        assert_eq!(code(call(&function("exp"), vec![1000.0])), "22003");
        assert_eq!(
            call(&function("power"), vec![-2.0, 3.0]).expect("a value"),
            -8.0
        );
        assert_eq!(call(&function("sqrt"), vec![4.0]).expect("a value"), 2.0);
        assert_eq!(
            call(&function("exp"), vec![f64::INFINITY]).expect("a value"),
            f64::INFINITY
        );
    }

    #[test]
    fn floats_print_as_postgres_prints_them() {
        for (value, text) in [
            (2.0, "2"),
            (0.75, "0.75"),
            (-1.5, "-1.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123_456_789_012_345.0, "123456789012345"),
            (1e15, "1e+15"),
            (1.5e300, "1.5e+300"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(pg_float_text(value, value), text);
        }
        assert_eq!(pg_float_text(f64::from(0.1f32), 0.1f32), "0.1");
    }
}
