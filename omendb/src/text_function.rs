//! The shape of the analyzer's text functions: one argument, a text result computed from
//! the argument's values (PostgreSQL's printing of floats and timestamps, its reading of
//! timestamp text).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
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
