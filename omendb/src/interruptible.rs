//! Every operator of a running query stops at its next batch once the statement is
//! cancelled.
//!
//! Dropping a query's stream aborts DataFusion's tasks, but an abort takes effect only when
//! a task yields, and an operator that consumes a fast input (a cross join feeding a top-k
//! or an aggregate) can run for minutes without yielding: a statement stopped by its
//! timeout, a cancel request or a disconnect kept the SQL threads busy, and every later
//! aggregate waited for them. [`InterruptAtBatches`], the last physical optimizer rule,
//! puts an [`InterruptibleExec`] above every operator of the plan; it passes batches
//! through unchanged and fails the stream with `Error::Cancelled` once the statement's
//! signal is given, so each consumer loop ends at its next batch. While it polls its input
//! it makes the signal this thread's current one (`crate::interrupt::enter`), so that our
//! functions evaluated inside one long step of an operator (a join's filter over a batch of
//! pairs, which yields no batch) stop at their next call.
//!
//! It also checks the query's meter at each batch (`crate::query_meter`): past its limit
//! the query fails with `ResourcesExhausted`, whatever operator holds the memory.
//!
//! Invariants: the wrapper changes no batch, schema, ordering or partitioning; a plan is
//! wrapped only when a statement's signal is known while it is planned.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::array::{ArrayData, MutableArrayData, make_array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::work_table::WorkTableExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::Stream;

use crate::error::Error;
use crate::interrupt::Interrupt;
use crate::query_meter::MeterLimits;

/// The physical optimizer rule described in the module docs.
#[derive(Debug)]
pub(crate) struct InterruptAtBatches {
    /// What a query may hold by its meter.
    pub(crate) limits: MeterLimits,
}

impl PhysicalOptimizerRule for InterruptAtBatches {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(interrupt) = crate::interrupt::current() else {
            return Ok(plan);
        };
        interrupt.meter().limit(self.limits);
        plan.transform_up(|node| {
            if node.is::<InterruptibleExec>() {
                return Ok(Transformed::no(node));
            }
            let mut node = crate::large_literal::guard(&node)?.unwrap_or(node);
            if crate::join_rows::is_join(node.as_ref()) {
                // Its inputs' wrappers check the rows it may repeat (`crate::join_rows`).
                let inputs = node
                    .children()
                    .into_iter()
                    .map(|input| match input.downcast_ref::<InterruptibleExec>() {
                        Some(wrapper) => {
                            let mut joined = InterruptibleExec::new(
                                Arc::clone(&wrapper.input),
                                wrapper.interrupt.clone(),
                            );
                            joined.joined = true;
                            Arc::new(joined) as Arc<dyn ExecutionPlan>
                        }
                        None => Arc::clone(input),
                    })
                    .collect();
                // The wrappers keep their inputs' properties.
                let same = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep);
                node = node.replace_children(inputs, same)?;
            }
            let wrapped: Arc<dyn ExecutionPlan> =
                Arc::new(InterruptibleExec::new(node, interrupt.clone()));
            Ok(Transformed::yes(wrapped))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "omendb_interrupt_at_batches"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes its input's batches through until the statement's signal is given.
#[derive(Debug)]
pub(crate) struct InterruptibleExec {
    input: Arc<dyn ExecutionPlan>,
    interrupt: Interrupt,
    /// Whether a join takes its batches (`crate::join_rows`).
    joined: bool,
    properties: Arc<PlanProperties>,
}

impl InterruptibleExec {
    fn new(input: Arc<dyn ExecutionPlan>, interrupt: Interrupt) -> Self {
        let properties = Arc::clone(input.properties());
        Self {
            input,
            interrupt,
            joined: false,
            properties,
        }
    }
}

impl DisplayAs for InterruptibleExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "InterruptibleExec")
    }
}

impl ExecutionPlan for InterruptibleExec {
    fn name(&self) -> &str {
        "InterruptibleExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children).map_err(|_| {
            DataFusionError::Internal("InterruptibleExec has one input".to_string())
        })?;
        let mut wrapper = InterruptibleExec::new(input, self.interrupt.clone());
        wrapper.joined = self.joined;
        Ok(Arc::new(wrapper))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let joined = self.joined.then(|| context.session_config().batch_size());
        let input = self.input.execute(partition, context)?;
        Ok(Box::pin(InterruptibleStream {
            joined,
            input: Some(input),
            schema: self.input.schema(),
            interrupt: self.interrupt.clone(),
            copies: self.input.is::<WorkTableExec>(),
        }))
    }
}

/// The stream of [`InterruptibleExec`]: `None` once it ended or failed.
struct InterruptibleStream {
    input: Option<SendableRecordBatchStream>,
    schema: SchemaRef,
    interrupt: Interrupt,
    /// Whether batches are copied on their way up (a recursive CTE's work table).
    ///
    /// Each step of a recursive CTE passes on the values of the step before, so its rows
    /// can all share one buffer: 2,000 rows of one 1 MB value hold 1 MB until a coalescer
    /// concatenates them into 2 GB in one allocation. Copied, each step holds what it
    /// passes on, and the query's meter sees it grow step by step.
    copies: bool,
    /// The batch size of the join that takes the batches, if one does.
    joined: Option<usize>,
}

/// `batch` with buffers of its own, charged to this thread's query as it is built.
fn copied(batch: &RecordBatch) -> Result<RecordBatch> {
    let data: Vec<_> = batch.columns().iter().map(|c| c.to_data()).collect();
    let bytes = data
        .iter()
        .map(ArrayData::get_slice_memory_size)
        .sum::<Result<usize, _>>()?;
    crate::interrupt::check_current_growth(bytes)?;
    let columns = data
        .iter()
        .map(|column| {
            let mut copy = MutableArrayData::new(vec![column], false, column.len());
            copy.try_extend(0, 0, column.len())?;
            Ok(make_array(copy.freeze()))
        })
        .collect::<Result<Vec<_>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &options,
    )?)
}

impl Stream for InterruptibleStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(reason) = self.interrupt.reason() {
            // Dropping the input ends whatever it runs.
            if self.input.take().is_some() {
                let error = Error::Cancelled(reason);
                return Poll::Ready(Some(Err(DataFusionError::External(Box::new(error)))));
            }
            return Poll::Ready(None);
        }
        let this = self.get_mut();
        let meter = this.interrupt.meter();
        // Left set after the poll: what this thread does next with the batch (a coalescer
        // copying it) is this query's too.
        meter.make_current();
        if let Some(exceeded) = meter.exceeded() {
            if this.input.take().is_some() {
                return Poll::Ready(Some(Err(DataFusionError::ResourcesExhausted(exceeded))));
            }
            return Poll::Ready(None);
        }
        match this.input.as_mut() {
            Some(input) => {
                let _current = crate::interrupt::enter(&this.interrupt);
                match input.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(batch))) if this.copies => {
                        Poll::Ready(Some(copied(&batch)))
                    }
                    Poll::Ready(Some(Ok(batch))) if this.joined.is_some() => {
                        let batch_size = this.joined.unwrap_or(0);
                        Poll::Ready(Some(
                            crate::join_rows::check(&batch, batch_size).map(|()| batch),
                        ))
                    }
                    polled => polled,
                }
            }
            None => Poll::Ready(None),
        }
    }
}

impl RecordBatchStream for InterruptibleStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}
