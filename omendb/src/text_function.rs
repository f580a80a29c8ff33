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
