//! Numbers with fractions become integers by rounding, as in PostgreSQL.
//!
//! Arrow's cast from a `DOUBLE` or `DECIMAL` to an integer truncates: `CAST(-1.5 AS BIGINT)`
//! would be -1 and `1.7` inserted into a `BIGINT` column 1, where PostgreSQL gives -2 and 2.
//! [`round_for_integer`] rounds as PostgreSQL does: a `DECIMAL` (`numeric`, which decimal
//! literals are) half away from zero, a `DOUBLE` or `REAL` half to even (`rint`). The
//! analyzer rule of `crate::checked` puts it under every cast from a fractional type to an
//! integer type and in place of `round(double)`, and the write path rounds a fractional
//! value before it casts it to an integer column.
//!
//! Invariant: a value cast to an integer type differs from the exact value by at most one
//! half; integral values pass unchanged.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Decimal128Type, Float32Type, Float64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Whether a cast from `from` to an integer type must round first.
pub(crate) fn is_fractional(from: &DataType) -> bool {
    matches!(
        from,
        DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(_, _)
            | DataType::Decimal256(_, _)
    )
}

/// `array` rounded to whole numbers (see the module docs), in its own type (a `DECIMAL` keeps
/// its scale). Other types come back as they are.
pub(crate) fn round_for_integer(array: &ArrayRef) -> Result<ArrayRef> {
    Ok(match array.data_type() {
        DataType::Float64 => Arc::new(
            array
                .as_primitive::<Float64Type>()
                .unary::<_, Float64Type>(f64::round_ties_even),
        ),
        DataType::Float32 => Arc::new(
            array
                .as_primitive::<Float32Type>()
                .unary::<_, Float32Type>(f32::round_ties_even),
        ),
        DataType::Decimal128(precision, scale) if *scale > 0 => {
            let unit = 10_i128.pow(u32::from(scale.unsigned_abs()));
            let rounded = array
                .as_primitive::<Decimal128Type>()
                .unary::<_, Decimal128Type>(|v| {
                    let (whole, rest) = (v / unit, v % unit);
                    let away = if rest.unsigned_abs() * 2 >= unit.unsigned_abs() {
                        v.signum()
                    } else {
                        0
                    };
                    // Within the precision: a whole part of p - s digits rounds to at most
                    // 10^(p-s), which fits when p < 38; saturate at the type's edge.
                    whole.saturating_add(away).saturating_mul(unit)
                })
                .with_precision_and_scale(*precision, *scale)?;
            Arc::new(rounded)
        }
        _ => Arc::clone(array),
    })
}

/// [`round_for_integer`] as a function for plans (`CAST(x AS BIGINT)` becomes
/// `CAST(round_for_integer(x) AS BIGINT)`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct RoundForInteger {
    signature: Signature,
}

/// The plan function of [`RoundForInteger`].
pub(crate) fn udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(RoundForInteger {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

impl ScalarUDFImpl for RoundForInteger {
    fn name(&self) -> &str {
        "round_for_integer"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Float64))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return datafusion::common::exec_err!("round_for_integer takes one argument");
        };
        let scalar = matches!(arg, ColumnarValue::Scalar(_));
        let rounded = round_for_integer(&arg.to_array(1)?)?;
        crate::checked::answer(rounded, scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Float64Array};

    #[test]
    fn decimal_halves_round_away_from_zero_double_halves_to_even() {
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![1.7, -1.5, 2.5, 2.4, -0.4, 3.0]));
        let rounded = round_for_integer(&floats).expect("rounds");
        assert_eq!(
            rounded.as_primitive::<Float64Type>().values().to_vec(),
            [2.0, -2.0, 2.0, 2.0, -0.0, 3.0]
        );
        // 1.50, -1.50, 12.49, -12.51 at scale 2.
        let decimals: ArrayRef = Arc::new(
            Decimal128Array::from(vec![150, -150, 1249, -1251])
                .with_precision_and_scale(10, 2)
                .expect("valid"),
        );
        let rounded = round_for_integer(&decimals).expect("rounds");
        assert_eq!(
            rounded.as_primitive::<Decimal128Type>().values().to_vec(),
            [200, -200, 1200, -1300]
        );
    }
}
