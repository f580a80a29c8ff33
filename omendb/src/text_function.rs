//! The shape of the analyzer's text functions: one argument, a text result computed from
//! the argument's values (PostgreSQL's printing of floats and timestamps, its reading of
//! timestamp text).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// A function of one argument returning text: `apply` maps the argument's array to the
/// result's (row for row). Functions are told apart by name.
#[derive(Debug)]
pub(crate) struct TextFunction {
    name: &'static str,
    signature: Signature,
    apply: fn(&ArrayRef) -> Result<StringArray>,
}

impl TextFunction {
    /// The plan function `name`, computed by `apply`.
    pub(crate) fn udf(
        name: &'static str,
        apply: fn(&ArrayRef) -> Result<StringArray>,
    ) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            name,
            signature: Signature::any(1, Volatility::Immutable),
            apply,
        })
    }
}

impl PartialEq for TextFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for TextFunction {}

impl std::hash::Hash for TextFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for TextFunction {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return datafusion::common::exec_err!("{} takes one argument", self.name);
        };
        let scalar = matches!(arg, ColumnarValue::Scalar(_));
        let array = arg.to_array(if scalar { 1 } else { args.number_rows })?;
        let text = (self.apply)(&array)?;
        debug_assert_eq!(text.len(), array.len());
        crate::checked::answer(Arc::new(text), scalar)
    }
}

/// PostgreSQL's `pg_typeof`: the name of its argument's type, as PostgreSQL names the type
/// the value reaches a client as.
pub(crate) fn pg_typeof() -> ScalarUDF {
    TextFunction::udf("pg_typeof", |array| {
        let name = pg_type_name(array.data_type());
        Ok(StringArray::from(vec![name.as_str(); array.len()]))
    })
}

/// PostgreSQL's `upper` and `lower`: each character mapped on its own, as the C library's
/// `towupper` does, so a character whose uppercase is several characters stays as it is
/// (`upper('ß')` is `'ß'`; Rust's `to_uppercase` gives `"SS"`), and no final sigma. Long texts are mapped a
/// slice at a time with a check of the statement's signal between slices, so a 1 GB value
/// stops at its timeout.
pub(crate) fn case_mapping(upper: bool) -> ScalarUDF {
    if upper {
        TextFunction::udf("upper", |array| map_case(array, true))
    } else {
        TextFunction::udf("lower", |array| map_case(array, false))
    }
}

/// Bytes of text mapped between two checks of the statement's signal.
const CASE_SLICE_BYTES: usize = 1 << 20;

fn map_case(array: &ArrayRef, upper: bool) -> Result<StringArray> {
    use std::fmt::Write;
    let texts = arrow::compute::cast(array, &DataType::Utf8)?;
    let texts = texts.as_string::<i32>();
    let mut out = arrow::array::StringBuilder::with_capacity(texts.len(), texts.value_data().len());
    let mut since_check = 0;
    for text in texts.iter() {
        let Some(text) = text else {
            out.append_null();
            continue;
        };
        // Written into the builder's buffer, ended by the empty `append_value` below.
        for c in text.chars() {
            let mut one = |c: char| {
                let _ = out.write_char(c);
            };
            if c.is_ascii() {
                one(if upper {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                });
            } else {
                // Only `İ` lowers to two (`i` and a combining dot): `towlower` gives `i`.
                let changed = if upper {
                    single(c.to_uppercase())
                } else {
                    c.to_lowercase().next()
                };
                one(changed.unwrap_or(c));
            }
            since_check += c.len_utf8();
            if since_check >= CASE_SLICE_BYTES {
                since_check = 0;
                crate::interrupt::check_current_in_plan()?;
            }
        }
        out.append_value("");
    }
    Ok(out.finish())
}

/// The one character `chars` holds, or `None` if it holds more.
fn single(mut chars: impl Iterator<Item = char>) -> Option<char> {
    let first = chars.next()?;
    chars.next().is_none().then_some(first)
}

/// PostgreSQL's name of the type a column of `data_type` has.
fn pg_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Null => "unknown".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "numeric".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time without time zone".into(),
        DataType::Timestamp(_, None) => "timestamp without time zone".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Interval(_) | DataType::Duration(_) => "interval".into(),
        DataType::List(field) | DataType::LargeList(field) | DataType::FixedSizeList(field, _) => {
            format!("{}[]", pg_type_name(field.data_type()))
        }
        DataType::Dictionary(_, value) => pg_type_name(value),
        other => other.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_maps_character_by_character_as_postgresql() {
        let texts: ArrayRef = Arc::new(StringArray::from(vec![
            Some("straße ǅ Σίσυφος"),
            None,
            Some("ΣΑΣ İx"),
        ]));
        let upper = map_case(&texts, true).expect("maps");
        assert_eq!(upper.value(0), "STRAßE Ǆ ΣΊΣΥΦΟΣ");
        assert!(upper.is_null(1));
        let lower = map_case(&texts, false).expect("maps");
        // No final sigma (PostgreSQL's answers).
        assert_eq!(lower.value(2), "σασ ix");
    }

    #[test]
    fn types_are_named_as_postgresql_names_them() {
        assert_eq!(pg_type_name(&DataType::Int64), "bigint");
        assert_eq!(pg_type_name(&DataType::Float64), "double precision");
        let list = DataType::List(Arc::new(arrow::datatypes::Field::new(
            "item",
            DataType::Int32,
            true,
        )));
        assert_eq!(pg_type_name(&list), "integer[]");
    }
}
