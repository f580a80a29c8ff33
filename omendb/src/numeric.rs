//! `NUMERIC` division as PostgreSQL's (sums, differences and products of `NUMERIC`s are
//! `crate::checked`'s).
//!
//! Arrow divides decimals at the dividend's scale plus 4 (MySQL's rule): `1 / 3.0` was
//! `0.3333`, coarser than the DOUBLE it replaced. PostgreSQL keeps at least 16 significant
//! digits (`0.33333333333333333333`, `2.5000000000000000`). A `DECIMAL` has one scale for
//! every row where PostgreSQL picks one per value, so the scale here is chosen from the
//! operands' types ([`quotient_type`]): at least 16 places, more where the quotient may be
//! small, fewer only where its whole digits leave no room in 38.
//!
//! Invariants:
//! - The quotient is exact to its last digit, rounded half away from zero (PostgreSQL's
//!   rule): it is computed in 256 bits from the exact operands.
//! - A zero divisor is `22012`; a quotient beyond 38 digits is `22003`, never a wrapped or
//!   truncated value.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Builder};
use arrow::datatypes::{DataType, Decimal128Type, i256};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::{DataErrorKind, Error};

/// Significant digits a quotient keeps at least (PostgreSQL's `NUMERIC_MIN_SIG_DIGITS`).
const MIN_SIGNIFICANT_DIGITS: u8 = 16;

/// Digits of a `DECIMAL(38, s)`.
const MAX_PRECISION: u8 = 38;

/// The type of `a / b` for `a: DECIMAL(p1, s1)` and `b: DECIMAL(p2, s2)`: 16 significant
/// digits at least, so more places the smaller the quotient can be (a dividend's places and
/// a divisor's whole digits each add leading zeros), as far as its whole digits leave room.
pub(crate) fn quotient_type(p1: u8, s1: i8, p2: u8, s2: i8) -> DataType {
    let (p1, s1, p2, s2) = (
        i16::from(p1),
        i16::from(s1.max(0)),
        i16::from(p2),
        i16::from(s2.max(0)),
    );
    // The quotient's whole digits: the dividend's, and one more for each of the divisor's
    // decimal places (dividing by 0.01 multiplies by 100).
    let whole = p1 - s1 + s2;
    let room = i16::from(MAX_PRECISION) - whole;
    let wanted = i16::from(MIN_SIGNIFICANT_DIGITS) + s1 + (p2 - s2).max(0);
    let scale = wanted
        .min(room)
        .max(s1)
        .max(s2)
        .clamp(0, i16::from(MAX_PRECISION));
    DataType::Decimal128(MAX_PRECISION, i8::try_from(scale).unwrap_or(0))
}

/// The plan function `numeric_divide(a, b)` the analyzer puts in place of `a / b` on two
/// `DECIMAL` operands.
pub(crate) fn division_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(NumericDivide {
        signature: Signature::any(2, Volatility::Immutable),
    })
}

/// Whether `data_type` is a `NUMERIC` operand of this division or of `crate::checked`'s
/// `+`, `-` and `*`.
pub(crate) fn is_operand(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Decimal128(_, _))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct NumericDivide {
    signature: Signature,
}

impl ScalarUDFImpl for NumericDivide {
    fn name(&self) -> &str {
        "numeric_divide"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [DataType::Decimal128(p1, s1), DataType::Decimal128(p2, s2)] => {
                Ok(quotient_type(*p1, *s1, *p2, *s2))
            }
            other => datafusion::common::plan_err!("numeric_divide of {other:?}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        crate::interrupt::check_current_in_plan()?;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [left, right] = arrays.as_slice() else {
            return datafusion::common::exec_err!("numeric_divide takes two arguments");
        };
        let quotient = divide(left, right)?;
        crate::checked::answer(quotient, scalar)
    }
}

/// `left / right`, row by row, of two `DECIMAL` arrays of one length.
fn divide(left: &ArrayRef, right: &ArrayRef) -> Result<ArrayRef> {
    let (DataType::Decimal128(p1, s1), DataType::Decimal128(p2, s2)) =
        (left.data_type(), right.data_type())
    else {
        return datafusion::common::exec_err!("numeric_divide of non-decimals");
    };
    let DataType::Decimal128(_, scale) = quotient_type(*p1, *s1, *p2, *s2) else {
        unreachable!("quotient_type is a Decimal128");
    };
    // q = a * 10^(scale - s1 + s2) / b; the exponent is at most 38 + 38 (scale >= s1).
    let shift = i16::from(scale) - i16::from(*s1) + i16::from(*s2);
    let (a, b) = (
        left.as_primitive::<Decimal128Type>(),
        right.as_primitive::<Decimal128Type>(),
    );
    let mut out = Decimal128Builder::with_capacity(a.len());
    for i in 0..a.len() {
        if a.is_null(i) || b.is_null(i) {
            out.append_null();
            continue;
        }
        out.append_value(quotient(a.value(i), b.value(i), shift)?);
    }
    let array = out
        .finish()
        .with_precision_and_scale(MAX_PRECISION, scale)?;
    Ok(Arc::new(array))
}

/// `a * 10^shift / b` rounded half away from zero, as a value of at most 38 digits.
fn quotient(a: i128, b: i128, shift: i16) -> Result<i128> {
    if b == 0 {
        return Err(DataFusionError::External(Box::new(Error::Data {
            kind: DataErrorKind::DivisionByZero,
            message: "division by zero".to_string(),
        })));
    }
    let overflow = || crate::float::out_of_range("numeric field overflow");
    let (mut a, mut b) = (i256::from_i128(a), i256::from_i128(b));
    let ten = i256::from_i128(10);
    match u32::try_from(shift) {
        Ok(up) => {
            // Scaled in steps that fit 256 bits (10^76 would not).
            let mut up = up;
            while up > 0 {
                let step = up.min(38);
                let factor = ten.checked_pow(step).ok_or_else(overflow)?;
                a = a.checked_mul(factor).ok_or_else(overflow)?;
                up -= step;
            }
        }
        Err(_) => {
            let down = u32::from(shift.unsigned_abs());
            b = b
                .checked_mul(ten.checked_pow(down).ok_or_else(overflow)?)
                .ok_or_else(overflow)?;
        }
    }
    let whole = a.checked_div(b).ok_or_else(overflow)?;
    let rest = a.checked_rem(b).ok_or_else(overflow)?;
    // Half away from zero: |2 * rest| >= |b|.
    let twice = rest.checked_mul(i256::from_i128(2)).ok_or_else(overflow)?;
    let away = twice.wrapping_abs() >= b.wrapping_abs();
    let rounded = if away {
        let sign = if a.is_negative() != b.is_negative() {
            i256::MINUS_ONE
        } else {
            i256::ONE
        };
        whole.checked_add(sign).ok_or_else(overflow)?
    } else {
        whole
    };
    let limit = i256::from_i128(10_i128.pow(u32::from(MAX_PRECISION)));
    if rounded >= limit || rounded <= limit.wrapping_neg() {
        return Err(overflow());
    }
    rounded.to_i128().ok_or_else(overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Decimal128Array;

    fn decimals(values: &[Option<i128>], p: u8, s: i8) -> ArrayRef {
        Arc::new(
            values
                .iter()
                .copied()
                .collect::<Decimal128Array>()
                .with_precision_and_scale(p, s)
                .expect("valid"),
        )
    }

    fn text(array: &ArrayRef) -> Vec<String> {
        let array = array.as_primitive::<Decimal128Type>();
        (0..array.len())
            .map(|i| {
                if array.is_null(i) {
                    "NULL".to_string()
                } else {
                    array.value_as_string(i)
                }
            })
            .collect()
    }

    #[test]
    fn quotients_keep_sixteen_places_rounded_half_away_from_zero() {
        // 1 / 3.0, 10 / 4.0, -2 / 3.0, NULL / 1.0
        let a = decimals(&[Some(1), Some(10), Some(-2), None], 20, 0);
        let b = decimals(&[Some(30), Some(40), Some(30), Some(10)], 2, 1);
        let q = divide(&a, &b).expect("divides");
        assert_eq!(q.data_type(), &DataType::Decimal128(38, 17));
        assert_eq!(
            text(&q),
            [
                "0.33333333333333333",
                "2.50000000000000000",
                "-0.66666666666666667",
                "NULL"
            ]
        );
        // 1.5 / i64::MAX keeps 16 significant digits.
        assert_eq!(quotient_type(2, 1, 20, 0), DataType::Decimal128(38, 37));
    }

    #[test]
    fn large_operands_keep_their_digits_or_fail_with_overflow() {
        // DECIMAL(38, 10) / DECIMAL(38, 10): whole digits leave 10 places.
        assert_eq!(quotient_type(38, 10, 38, 10), DataType::Decimal128(38, 10));
        let big = 10_i128.pow(37);
        let a = decimals(&[Some(big)], 38, 10);
        let b = decimals(&[Some(10_i128.pow(10))], 38, 10);
        let q = divide(&a, &b).expect("fits");
        assert_eq!(text(&q), ["1000000000000000000000000000.0000000000"]);
        // 10^27 / 0.0000000001 has 38 whole digits: no room left.
        let tiny = decimals(&[Some(1)], 38, 10);
        assert!(divide(&a, &tiny).is_err(), "overflow is an error");
    }

    #[test]
    fn a_zero_divisor_is_division_by_zero() {
        let a = decimals(&[Some(1)], 20, 0);
        let zero = decimals(&[Some(0)], 2, 1);
        let error = divide(&a, &zero).expect_err("refused");
        assert!(error.to_string().contains("division by zero"), "{error}");
    }
}
