//! Casts into `NUMERIC` and `DOUBLE` that read their input as PostgreSQL's `numeric_in`,
//! `float8_numeric` and `float8in` do.
//!
//! Arrow's casts differ where a client notices: a `DOUBLE` became a `DECIMAL` through its
//! binary value (`1e15::float8::numeric` was `1000000000000000.0905969664`; PostgreSQL keeps
//! the double's 15 significant digits), text with an exponent was refused (`'1e5'::numeric`),
//! a value too wide for its `NUMERIC(p, s)` was `22000`, and `'1e400'::float8` was
//! `Infinity` where PostgreSQL refuses it. The analyzer rule of `crate::checked` puts
//! [`to_numeric`] and [`text_to_double`] in place of those casts.
//!
//! Invariants:
//! - A value cast into `NUMERIC(p, s)` is rounded half away from zero to `s` places and has
//!   at most `p` digits, or the statement fails with `22003`: never a wrapped, truncated or
//!   invented digit.
//! - Text is read as PostgreSQL reads it: blanks around, a sign, digits with at most one
//!   point, an exponent. Anything else is `22P02` naming the text.
//! - A `DOUBLE` becomes a `NUMERIC` through its 15 significant digits (a `REAL` through 6),
//!   PostgreSQL's `DBL_DIG` and `FLT_DIG`.
//! - Text read as a `DOUBLE` that overflows to an infinity or underflows to zero is `22003`;
//!   `'Infinity'` and `'NaN'` themselves are read as such.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Decimal128Builder, Float64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::{DataErrorKind, Error};

/// Digits of a `DECIMAL128`.
const MAX_PRECISION: usize = 38;

/// Whether a cast from `from` into `to` is one this module makes.
pub(crate) fn replaces_cast(from: &DataType, to: &DataType) -> bool {
    let text = matches!(
        from,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    match to {
        DataType::Decimal128(_, _) => text || matches!(from, DataType::Float64 | DataType::Float32),
        DataType::Float64 => text,
        _ => false,
    }
}

/// The cast of text, `DOUBLE` or `REAL` into `DECIMAL(precision, scale)`.
pub(crate) fn to_numeric(precision: u8, scale: i8) -> ScalarUDF {
    ScalarUDF::new_from_impl(ToNumeric {
        precision,
        scale,
        signature: Signature::any(1, Volatility::Immutable),
    })
}

/// The cast of text into `DOUBLE`.
pub(crate) fn text_to_double() -> ScalarUDF {
    ScalarUDF::new_from_impl(TextToDouble {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ToNumeric {
    precision: u8,
    scale: i8,
    signature: Signature,
}

impl ScalarUDFImpl for ToNumeric {
    fn name(&self) -> &str {
        "to_numeric"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Decimal128(self.precision, self.scale))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return datafusion::common::exec_err!("to_numeric takes one argument");
        };
        let scalar = matches!(arg, ColumnarValue::Scalar(_));
        let array = arg.to_array(if scalar { 1 } else { args.number_rows })?;
        let read = |text: &str| decimal_from_text(text, self.precision, self.scale);
        let mut built = Decimal128Builder::with_capacity(array.len());
        match array.data_type() {
            DataType::Float64 | DataType::Float32 => {
                let (values, digits) = match array.data_type() {
                    DataType::Float32 => (cast(&array, &DataType::Float64)?, 6),
                    _ => (Arc::clone(&array), 15),
                };
                for value in values.as_primitive::<Float64Type>() {
                    built.append_option(
                        value
                            .map(|v| read(&significant_digits(v, digits)))
                            .transpose()?,
                    );
                }
            }
            _ => {
                let texts = cast(&array, &DataType::Utf8)?;
                for text in texts.as_string::<i32>() {
                    built.append_option(text.map(read).transpose()?);
                }
            }
        }
        let built = built
            .finish()
            .with_precision_and_scale(self.precision, self.scale)?;
        crate::checked::answer(Arc::new(built), scalar)
    }
}

/// `value` with `digits` significant digits, as C's `%.*g` prints it (Infinity and NaN as
/// their names, which [`decimal_from_text`] refuses as PostgreSQL's typed `NUMERIC` does).
fn significant_digits(value: f64, digits: usize) -> String {
    if value.is_finite() {
        format!("{value:.*e}", digits - 1)
    } else {
        value.to_string()
    }
}

/// `text` read as a `DECIMAL(precision, scale)`'s unscaled value.
fn decimal_from_text(text: &str, precision: u8, scale: i8) -> Result<i128> {
    let syntax = || {
        DataFusionError::External(Box::new(Error::Data {
            kind: DataErrorKind::InvalidText,
            message: format!("invalid input syntax for type numeric: \"{text}\""),
        }))
    };
    let overflow = || crate::float::out_of_range("numeric field overflow");
    let trimmed = text.trim_matches(is_blank);
    let (negative, body) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    if ["nan", "infinity", "inf"]
        .iter()
        .any(|name| body.eq_ignore_ascii_case(name))
    {
        return Err(crate::float::out_of_range(
            "NUMERIC cannot hold NaN or Infinity here",
        ));
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], exponent(&body[at + 1..]).ok_or_else(syntax)?),
        None => (body, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err(syntax());
    }
    // value = digits * 10^(exponent - places); wanted: value * 10^scale.
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    let places = i64::try_from(fraction.len()).map_err(|_| syntax())?;
    let shift = exponent - places + i64::from(scale);
    let (kept, round_up) = if shift >= 0 {
        if digits.is_empty() {
            return Ok(0);
        }
        let shift = usize::try_from(shift).map_err(|_| overflow())?;
        if digits.len().saturating_add(shift) > usize::from(precision) {
            return Err(overflow());
        }
        (format!("{digits}{}", "0".repeat(shift)), false)
    } else {
        let dropped = usize::try_from(shift.unsigned_abs()).unwrap_or(usize::MAX);
        let kept_len = digits.len().saturating_sub(dropped);
        let first_dropped = if dropped <= digits.len() {
            digits.as_bytes().get(kept_len).copied().unwrap_or(b'0')
        } else {
            b'0'
        };
        (digits[..kept_len].to_string(), first_dropped >= b'5')
    };
    if kept.len() > usize::from(precision).min(MAX_PRECISION) {
        return Err(overflow());
    }
    let mut unscaled: i128 = if kept.is_empty() {
        0
    } else {
        kept.parse().map_err(|_| overflow())?
    };
    if round_up {
        unscaled += 1;
    }
    if unscaled >= 10_i128.pow(u32::from(precision)) {
        return Err(overflow());
    }
    Ok(if negative { -unscaled } else { unscaled })
}

/// An exponent's value, saturated far beyond any that leaves a `DECIMAL` representable.
fn exponent(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude = digits.bytes().fold(0_i64, |n, b| {
        (n * 10 + i64::from(b - b'0')).min(1_000_000_000)
    });
    Some(if negative { -magnitude } else { magnitude })
}

/// The blanks PostgreSQL's input functions skip around a value.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TextToDouble {
    signature: Signature,
}

impl ScalarUDFImpl for TextToDouble {
    fn name(&self) -> &str {
        "to_double"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return datafusion::common::exec_err!("to_double takes one argument");
        };
        let scalar = matches!(arg, ColumnarValue::Scalar(_));
        let array = arg.to_array(if scalar { 1 } else { args.number_rows })?;
        let texts = cast(&array, &DataType::Utf8)?;
        let doubles = texts
            .as_string::<i32>()
            .iter()
            .map(|text| text.map(double_from_text).transpose())
            .collect::<Result<Float64Array>>()?;
        crate::checked::answer(Arc::new(doubles), scalar)
    }
}

/// `text` read as a `DOUBLE`, as PostgreSQL's `float8in` reads it.
fn double_from_text(text: &str) -> Result<f64> {
    let trimmed = text.trim_matches(is_blank);
    let Ok(value) = trimmed.parse::<f64>() else {
        return Err(DataFusionError::External(Box::new(Error::Data {
            kind: DataErrorKind::InvalidText,
            message: format!("invalid input syntax for type double precision: \"{text}\""),
        })));
    };
    let spelled_infinite = trimmed
        .trim_start_matches(['+', '-'])
        .to_ascii_lowercase()
        .starts_with("inf");
    let mantissa = trimmed.split(['e', 'E']).next().unwrap_or("");
    let underflow = value == 0.0 && mantissa.bytes().any(|b| matches!(b, b'1'..=b'9'));
    if (value.is_infinite() && !spelled_infinite) || underflow {
        return Err(crate::float::out_of_range(&format!(
            "\"{text}\" is out of range for type double precision"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(text: &str, precision: u8, scale: i8) -> std::result::Result<i128, String> {
        decimal_from_text(text, precision, scale).map_err(|e| e.to_string())
    }

    #[test]
    fn text_is_read_as_postgresql_reads_numeric_input() {
        assert_eq!(decimal("1e5", 38, 10), Ok(100_000 * 10_i128.pow(10)));
        assert_eq!(decimal(" -1.25 ", 2, 1), Ok(-13));
        assert_eq!(decimal("1.24", 2, 1), Ok(12));
        assert_eq!(decimal(".5", 2, 0), Ok(1));
        assert_eq!(decimal("5.", 2, 0), Ok(5));
        assert_eq!(decimal("0.0000001", 5, 2), Ok(0));
        assert_eq!(decimal("2.5E-3", 10, 4), Ok(25));
        assert_eq!(decimal("1e-1000000000000", 10, 4), Ok(0));
        assert_eq!(decimal("0e1000000000000", 10, 4), Ok(0));
        for bad in ["", ".", "abc", "1e", "1.2.3", "--1", "1 2", "0x10", "1e+"] {
            let error = decimal(bad, 10, 2).expect_err(bad);
            assert!(error.contains("invalid input syntax"), "{bad}: {error}");
        }
        for wide in ["123.45", "1e3", "99.995", "-99.995"] {
            let error = decimal(wide, 4, 2).expect_err(wide);
            assert!(error.contains("numeric field overflow"), "{wide}: {error}");
        }
        assert!(decimal("NaN", 10, 2).is_err());
        assert!(decimal("-Infinity", 10, 2).is_err());
    }

    #[test]
    fn doubles_keep_fifteen_significant_digits() {
        let read = |v: f64, p, s| decimal_from_text(&significant_digits(v, 15), p, s).ok();
        assert_eq!(read(1e15, 38, 0), Some(10_i128.pow(15)));
        assert_eq!(read(0.1, 38, 20), Some(10_i128.pow(19)));
        assert_eq!(read(0.1 + 0.2, 38, 20), Some(3 * 10_i128.pow(19)));
        assert_eq!(read(1.35, 2, 1), Some(14));
        assert_eq!(read(-2.5, 2, 0), Some(-3));
        assert_eq!(read(f64::INFINITY, 38, 0), None);
        assert_eq!(read(f64::NAN, 38, 0), None);
    }

    #[test]
    fn text_is_read_as_postgresql_reads_double_input() {
        assert_eq!(double_from_text(" 1.5 ").ok(), Some(1.5));
        assert_eq!(double_from_text("-Infinity").ok(), Some(f64::NEG_INFINITY));
        assert_eq!(double_from_text("inf").ok(), Some(f64::INFINITY));
        assert!(double_from_text("NaN").is_ok_and(f64::is_nan));
        assert_eq!(double_from_text("0e5").ok(), Some(0.0));
        assert_eq!(double_from_text("4.9e-324").ok(), Some(4.9e-324));
        for far in ["1e400", "-1e400", "1e-400"] {
            let error = double_from_text(far).expect_err(far).to_string();
            assert!(error.contains("out of range"), "{far}: {error}");
        }
        let error = double_from_text("abc").expect_err("syntax").to_string();
        assert!(error.contains("invalid input syntax"), "{error}");
    }
}
