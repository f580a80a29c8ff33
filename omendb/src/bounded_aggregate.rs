//! Aggregates that build values, held to the value limit as they grow.
//!
//! `string_agg` and `array_agg` (and any aggregate whose result is a string, a binary, a
//! list or a struct) keep every input in their state: one `string_agg` over a large table,
//! or over a running window frame, would build a value of gigabytes. [`bound`] wraps such
//! an aggregate so that its state is checked after each batch it takes in, and its results
//! are counted as it hands them out (a window's running frame evaluates once per row).
//!
//! Invariants:
//! - No accumulator of a wrapped aggregate holds more than the value limit, and the
//!   values one accumulator returns together are no larger: past it the statement fails
//!   with [`LimitKind::ValueBytes`](crate::LimitKind::ValueBytes) (SQLSTATE 54000) after at
//!   most one batch more than the limit was taken in.
//! - Wrapped aggregates run one accumulator per group (their group accumulators, which
//!   hold all groups in one state, are not used), so each group is checked on its own.
//! - A wrapped aggregate answers exactly as the original when its values fit.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::expr::{AggregateFunctionParams, WindowFunctionParams};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, ReversedUDAF, Signature,
};

use crate::error::{Error, LimitKind};

/// An aggregate whose accumulators are held to `limit` bytes.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct BoundedAggregate {
    inner: Arc<AggregateUDF>,
    limit: usize,
}

/// `function` held to `limit` bytes per accumulator, when its result of `return_type` can
/// grow without bound; `None`: it needs no bound (or is bounded already).
pub(crate) fn bound(
    function: &Arc<AggregateUDF>,
    return_type: &DataType,
    limit: usize,
) -> Option<AggregateUDF> {
    if function.inner().is::<BoundedAggregate>() || !grows(return_type) {
        return None;
    }
    Some(AggregateUDF::new_from_impl(BoundedAggregate {
        inner: Arc::clone(function),
        limit,
    }))
}

fn grows(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::FixedSizeList(..)
            | DataType::Struct(_)
            | DataType::Map(..)
    )
}

impl AggregateUDFImpl for BoundedAggregate {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn schema_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner.schema_name(params)
    }
    fn human_display(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner.human_display(params)
    }
    fn display_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner.display_name(params)
    }
    fn window_function_schema_name(&self, params: &WindowFunctionParams) -> Result<String> {
        self.inner.window_function_schema_name(params)
    }
    fn window_function_display_name(&self, params: &WindowFunctionParams) -> Result<String> {
        self.inner.window_function_display_name(params)
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        self.inner.return_field(arg_fields)
    }
    fn is_nullable(&self) -> bool {
        self.inner.is_nullable()
    }
    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(BoundedAccumulator {
            inner: self.inner.accumulator(acc_args)?,
            limit: self.limit,
            returned: 0,
        }))
    }
    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(BoundedAccumulator {
            inner: self.inner.create_sliding_accumulator(args)?,
            limit: self.limit,
            returned: 0,
        }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }
    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        false
    }
    fn with_beneficial_ordering(
        self: Arc<Self>,
        beneficial_ordering: bool,
    ) -> Result<Option<Arc<dyn AggregateUDFImpl>>> {
        let inner = Arc::clone(self.inner.inner()).with_beneficial_ordering(beneficial_ordering)?;
        Ok(inner.map(|inner| {
            Arc::new(BoundedAggregate {
                inner: Arc::new(AggregateUDF::new_from_shared_impl(inner)),
                limit: self.limit,
            }) as Arc<dyn AggregateUDFImpl>
        }))
    }
    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.inner().order_sensitivity()
    }
    fn reverse_expr(&self) -> ReversedUDAF {
        match self.inner.reverse_udf() {
            ReversedUDAF::Reversed(reversed) => {
                ReversedUDAF::Reversed(Arc::new(AggregateUDF::new_from_impl(BoundedAggregate {
                    inner: reversed,
                    limit: self.limit,
                })))
            }
            other => other,
        }
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn is_descending(&self) -> Option<bool> {
        self.inner.is_descending()
    }
    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        self.inner.default_value(data_type)
    }
    fn supports_null_handling_clause(&self) -> bool {
        self.inner.inner().supports_null_handling_clause()
    }
    fn supports_within_group_clause(&self) -> bool {
        self.inner.inner().supports_within_group_clause()
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// An accumulator checked against the value limit (see the module docs).
#[derive(Debug)]
struct BoundedAccumulator {
    inner: Box<dyn Accumulator>,
    limit: usize,
    /// Bytes of the values returned so far.
    returned: usize,
}

impl BoundedAccumulator {
    fn check(&self, found: usize) -> Result<()> {
        if found <= self.limit {
            return Ok(());
        }
        Err(datafusion::error::DataFusionError::External(Box::new(
            Error::Limit {
                kind: LimitKind::ValueBytes,
                found,
                limit: self.limit,
            },
        )))
    }
}

impl Accumulator for BoundedAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.update_batch(values)?;
        self.check(self.inner.size())
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        let value = self.inner.evaluate()?;
        self.returned = self.returned.saturating_add(value.size());
        self.check(self.returned)?;
        Ok(value)
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.state()
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.inner.merge_batch(states)?;
        self.check(self.inner.size())
    }
    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.retract_batch(values)
    }
    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }
}
