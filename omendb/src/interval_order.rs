//! Intervals compared and sorted as PostgreSQL compares them.
//!
//! Arrow orders an `INTERVAL` field by field (months, then days, then nanoseconds), so
//! `interval '1 day' = interval '24 hours'` was false and `interval '1 month' > interval
//! '40 days'` true. PostgreSQL compares the span with a month as 30 days and a day as 24
//! hours. The analyzer rule of `crate::checked` compares and sorts intervals by
//! [`span_udf`], that span in nanoseconds.
//!
//! Invariant: two intervals compare (`= <> < <= > >=`, `ORDER BY`) as their spans do; the
//! span is exact (128 bits hold any interval's).
//!
//! Still field by field: `min`/`max`, `GROUP BY` and `DISTINCT` of intervals.

use std::sync::Arc;

use arrow::array::{AsArray, Decimal128Array};
use arrow::datatypes::{DataType, IntervalMonthDayNanoType, IntervalUnit};
use datafusion::common::Result;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

const NANOS_PER_DAY: i128 = 86_400_000_000_000;

/// Whether `data_type` is the interval this module orders.
pub(crate) fn is_interval(data_type: &DataType) -> bool {
    *data_type == DataType::Interval(IntervalUnit::MonthDayNano)
}

/// Whether `op` compares.
pub(crate) fn is_comparison(op: Operator) -> bool {
    matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
    )
}

/// `interval_span(expr)`: what `expr`, an interval, is compared by.
pub(crate) fn span(expr: Expr) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(span_udf()), vec![expr]))
}

fn span_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(IntervalSpan {
        signature: Signature::exact(
            vec![DataType::Interval(IntervalUnit::MonthDayNano)],
            Volatility::Immutable,
        ),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct IntervalSpan {
    signature: Signature,
}

impl ScalarUDFImpl for IntervalSpan {
    fn name(&self) -> &str {
        "interval_span"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Decimal128(38, 0))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return datafusion::common::exec_err!("interval_span takes one argument");
        };
        let scalar = matches!(arg, ColumnarValue::Scalar(_));
        let array = arg.to_array(if scalar { 1 } else { args.number_rows })?;
        let spans: Decimal128Array = array
            .as_primitive::<IntervalMonthDayNanoType>()
            .iter()
            .map(|value| {
                value.map(|v| {
                    let days = i128::from(v.months) * 30 + i128::from(v.days);
                    days * NANOS_PER_DAY + i128::from(v.nanoseconds)
                })
            })
            .collect();
        let spans = spans.with_precision_and_scale(38, 0)?;
        crate::checked::answer(Arc::new(spans), scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, IntervalMonthDayNanoArray};
    use arrow::datatypes::{Field, IntervalMonthDayNano};
    use datafusion::config::ConfigOptions;

    #[test]
    fn spans_count_a_month_as_thirty_days_and_a_day_as_twenty_four_hours() {
        let hour = 3_600_000_000_000_i64;
        let values = IntervalMonthDayNanoArray::from(vec![
            Some(IntervalMonthDayNano::new(0, 1, 0)),
            Some(IntervalMonthDayNano::new(0, 0, 24 * hour)),
            Some(IntervalMonthDayNano::new(1, 0, 0)),
            Some(IntervalMonthDayNano::new(0, 40, 0)),
            Some(IntervalMonthDayNano::new(i32::MAX, i32::MAX, i64::MAX)),
            None,
        ]);
        let field = Arc::new(Field::new("i", values.data_type().clone(), true));
        let out = span_udf()
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Array(Arc::new(values))],
                arg_fields: vec![field],
                number_rows: 6,
                return_field: Arc::new(Field::new("s", DataType::Decimal128(38, 0), true)),
                config_options: Arc::new(ConfigOptions::default()),
            })
            .expect("spans");
        let ColumnarValue::Array(out) = out else {
            panic!("an array");
        };
        let out = out.as_primitive::<arrow::datatypes::Decimal128Type>();
        assert_eq!(out.value(0), out.value(1), "1 day = 24 hours");
        assert!(out.value(2) < out.value(3), "1 month < 40 days");
        assert!(out.value(4) > out.value(3), "no overflow");
        assert!(out.is_null(5));
    }
}
