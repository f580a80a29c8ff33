//! A join's output batch can repeat one input row up to a batch's worth of times (a cross
//! join of a 1.5 MB value with 8,192 rows built 12 GB in one uninterruptible step, which ran
//! on for 20 s after the query had failed). The wrapper below each join input
//! (`crate::interruptible`) checks, for each batch the join takes in, that its widest row
//! times the batch size fits the query's meter (`crate::query_meter`), and so fails the
//! query with `ResourcesExhausted` before the join builds such a batch.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec, SymmetricHashJoinExec,
};

/// Whether `node` is a join, whose output rows copy its inputs' rows.
pub(crate) fn is_join(node: &dyn ExecutionPlan) -> bool {
    node.is::<HashJoinExec>()
        || node.is::<NestedLoopJoinExec>()
        || node.is::<CrossJoinExec>()
        || node.is::<SortMergeJoinExec>()
        || node.is::<SymmetricHashJoinExec>()
}

/// Fails when `batch_size` copies of `batch`'s widest row would take the query past its
/// meter.
pub(crate) fn check(batch: &RecordBatch, batch_size: usize) -> Result<()> {
    if batch.num_rows() == 0 {
        return Ok(());
    }
    let width: usize = batch.columns().iter().map(widest_value).sum();
    crate::interrupt::check_current_growth(width.saturating_mul(batch_size))
}

/// An upper bound of the bytes of the column's largest value (its average for types whose
/// values have one size).
fn widest_value(column: &ArrayRef) -> usize {
    let rows = column.len().max(1);
    let average = column.to_data().get_slice_memory_size().unwrap_or(0) / rows;
    let longest = match column.data_type() {
        DataType::Utf8 => offsets_max(column.as_string::<i32>().offsets()),
        DataType::LargeUtf8 => offsets_max(column.as_string::<i64>().offsets()),
        DataType::Binary => offsets_max(column.as_binary::<i32>().offsets()),
        DataType::LargeBinary => offsets_max(column.as_binary::<i64>().offsets()),
        DataType::Utf8View => view_max(column.as_string_view().views()),
        DataType::BinaryView => view_max(column.as_binary_view().views()),
        DataType::List(_) => list_max(column.as_list::<i32>()),
        DataType::LargeList(_) => list_max(column.as_list::<i64>()),
        _ => 0,
    };
    average.max(longest)
}

fn offsets_max<O: arrow::array::OffsetSizeTrait>(offsets: &[O]) -> usize {
    offsets
        .windows(2)
        .map(|w| (w[1] - w[0]).as_usize())
        .max()
        .unwrap_or(0)
}

fn view_max(views: &[u128]) -> usize {
    // A view's low 32 bits are its value's length.
    views
        .iter()
        .map(|view| (*view as u32) as usize)
        .max()
        .unwrap_or(0)
}

fn list_max<O: arrow::array::OffsetSizeTrait>(list: &arrow::array::GenericListArray<O>) -> usize {
    let elements = list.values();
    let element = elements.to_data().get_slice_memory_size().unwrap_or(0) / elements.len().max(1);
    offsets_max(list.value_offsets()).saturating_mul(element.max(1))
}
