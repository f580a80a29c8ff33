//! The DataFusion session state of one statement: its rules, and planning that stops when
//! the statement is cancelled.
//!
//! DataFusion plans a statement in one long call that nothing outside can preempt: a
//! statement timeout, a cancel request or a disconnect would wait until planning ends.
//! [`session_state`] puts an [`InterruptCheck`] before and after every analyzer, optimizer
//! and physical optimizer rule, so planning stops within one rule of the signal
//! (`Interrupt::run` makes the statement's signal visible to the thread that plans).
//!
//! Invariants: the rules and their order are DataFusion's defaults plus ours
//! (`crate::checked::CheckedArithmetic` after type coercion); a check never changes a plan.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::Result;
use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::registry::FunctionRegistry;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::AnalyzerRule;
use datafusion::optimizer::analyzer::Analyzer;
use datafusion::optimizer::optimizer::{Optimizer, OptimizerConfig, OptimizerRule};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::Expr;
use datafusion::prelude::SessionConfig;

/// Fails planning once the statement's signal was given; changes nothing otherwise.
#[derive(Debug)]
pub(crate) struct InterruptCheck;

impl InterruptCheck {
    fn check() -> Result<()> {
        crate::interrupt::check_current_in_plan()
    }
}

impl AnalyzerRule for InterruptCheck {
    fn name(&self) -> &str {
        "omendb_interrupt_check"
    }
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        Self::check()?;
        Ok(plan)
    }
}

impl OptimizerRule for InterruptCheck {
    fn name(&self) -> &str {
        "omendb_interrupt_check"
    }
    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        Self::check()?;
        Ok(Transformed::no(plan))
    }
}

impl PhysicalOptimizerRule for InterruptCheck {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Self::check()?;
        Ok(plan)
    }
    fn name(&self) -> &str {
        "omendb_interrupt_check"
    }
    fn schema_check(&self) -> bool {
        true
    }
}

thread_local! {
    /// Whether this thread is folding constants (DataFusion's `simplify_expressions`).
    static FOLDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `work` with the thread-local `flag` set, restoring it on return, error or panic.
pub(crate) fn with_flag<T>(
    flag: &'static std::thread::LocalKey<std::cell::Cell<bool>>,
    work: impl FnOnce() -> T,
) -> T {
    struct Reset(&'static std::thread::LocalKey<std::cell::Cell<bool>>, bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            self.0.set(self.1);
        }
    }
    let _reset = Reset(flag, flag.replace(true));
    work()
}

/// Whether `plan` holds a recursive CTE, whose work table keeps the types its terms were
/// planned with (so rules that retype expressions leave such a plan alone).
pub(crate) fn has_recursive_query(plan: &LogicalPlan) -> Result<bool> {
    let mut recursive = false;
    plan.apply_with_subqueries(|node| {
        recursive = matches!(node, LogicalPlan::RecursiveQuery(_));
        Ok(if recursive {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(recursive)
}

/// `node` with `rewrite` applied to each of its expressions, bottom up, for an analyzer rule
/// that retypes expressions before type coercion: output columns keep the names they had
/// (so references to them resolve), and the node's schema is computed again if anything
/// changed.
pub(crate) fn retype_expressions(
    node: LogicalPlan,
    mut rewrite: impl FnMut(Expr) -> Result<Transformed<Expr>>,
) -> Result<Transformed<LogicalPlan>> {
    let names = NamePreserver::new(&node);
    let rewritten = node.map_expressions(|expr| {
        let saved = names.save(&expr);
        let rewritten = expr.transform_up(&mut rewrite)?;
        Ok(rewritten.update_data(|expr| saved.restore(expr)))
    })?;
    if rewritten.transformed {
        rewritten.map_data(|node| node.recompute_schema())
    } else {
        Ok(rewritten)
    }
}

/// Whether this thread is folding constants: a function that would build a large value
/// fails then, and DataFusion keeps the call for execution, where the statement's timeout,
/// cancel and memory checks apply (a 1 GB `repeat` folded at plan time ran 7 s past a
/// 500 ms timeout and took 4 GB in copies of the folded literal).
pub(crate) fn folding() -> bool {
    FOLDING.with(std::cell::Cell::get)
}

/// DataFusion's expression simplifier, run with [`folding`] set (reset on return, error or
/// panic). The simplifier is synchronous, so no other statement's work runs on this thread
/// meanwhile.
#[derive(Debug)]
struct Folding(Arc<dyn OptimizerRule + Send + Sync>);

impl OptimizerRule for Folding {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn apply_order(&self) -> Option<datafusion::optimizer::ApplyOrder> {
        self.0.apply_order()
    }
    #[allow(deprecated)]
    fn supports_rewrite(&self) -> bool {
        self.0.supports_rewrite()
    }
    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        with_flag(&FOLDING, || self.0.rewrite(plan, config))
    }
}

/// A table function called with its arguments folded to literals, integers as `BIGINT`:
/// DataFusion's `generate_series` and `range` take literals only, and a statement's bound
/// parameters (`generate_series($1, $2)`) reach them as casts of literals.
#[derive(Debug)]
struct FoldedArguments(Arc<dyn TableFunctionImpl>);

impl TableFunctionImpl for FoldedArguments {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        with_flag(&FOLDING, || self.call_folded(&args))
    }
}

impl FoldedArguments {
    fn call_folded(&self, args: &TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let simplifier = ExprSimplifier::new(SimplifyContext::default());
        // Described before its parameters are bound, a statement plans with a value of each
        // parameter's type in its place: its columns are the same.
        let fold = |expr: &Expr| -> Result<Expr> {
            let mut unbound = false;
            let expr = expr
                .clone()
                .transform(|e| match e {
                    Expr::Placeholder(_) => {
                        unbound = true;
                        Ok(Transformed::yes(Expr::Literal(ScalarValue::Null, None)))
                    }
                    e => Ok(Transformed::no(e)),
                })?
                .data;
            Ok(match simplifier.simplify(expr)? {
                Expr::Literal(value, metadata) if unbound && value.is_null() => {
                    Expr::Literal(stand_in(&value.data_type()), metadata)
                }
                folded => folded,
            })
        };
        let folded = args
            .exprs()
            .iter()
            .map(|expr| match fold(expr)? {
                Expr::Literal(value, metadata) if value.data_type().is_integer() => {
                    Ok(Expr::Literal(value.cast_to(&DataType::Int64)?, metadata))
                }
                folded => Ok(folded),
            })
            .collect::<Result<Vec<_>>>()?;
        self.0
            .call_with_args(TableFunctionArgs::new(&folded, args.session()))
    }
}

/// A value of `data_type` standing in for an unbound parameter: one (a series' step must
/// not be zero), a day for an interval, zero where there is no one.
fn stand_in(data_type: &DataType) -> ScalarValue {
    match data_type {
        DataType::Interval(_) => ScalarValue::new_interval_mdn(0, 1, 0),
        DataType::Null => ScalarValue::Int64(Some(1)),
        other => ScalarValue::new_one(other)
            .or_else(|_| ScalarValue::new_zero(other))
            .unwrap_or(ScalarValue::Int64(Some(1))),
    }
}

/// `rules` with a check before the first and after each.
fn interleaved<R: ?Sized>(rules: Vec<Arc<R>>, check: &Arc<R>) -> Vec<Arc<R>> {
    let mut checked = Vec::with_capacity(rules.len() * 2 + 1);
    checked.push(Arc::clone(check));
    for rule in rules {
        checked.push(rule);
        checked.push(Arc::clone(check));
    }
    checked
}

/// The state of a statement's session: DataFusion's default features and rules, our
/// analyzer rule after theirs, and interrupt checks between all of them.
pub(crate) fn session_state(
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
    value_limit: usize,
    meter_limits: crate::query_meter::MeterLimits,
) -> SessionState {
    let check = Arc::new(InterruptCheck);
    let mut analyzer = Analyzer::new().rules;
    // First: literals typed as PostgreSQL's before type coercion reads them.
    analyzer.insert(0, Arc::new(crate::integer_literals::IntegerLiterals));
    analyzer.insert(1, Arc::new(crate::datetime_types::DatetimeTypes));
    // The rule also bounds the functions that build large values (crate::bounded).
    analyzer.push(Arc::new(crate::checked::CheckedArithmetic { value_limit }));
    let analyzer_check: Arc<dyn AnalyzerRule + Send + Sync> = check.clone();
    let optimizer_check: Arc<dyn OptimizerRule + Send + Sync> = check.clone();
    let physical_check: Arc<dyn PhysicalOptimizerRule + Send + Sync> = check;
    let optimizer = Optimizer::new()
        .rules
        .into_iter()
        .map(|rule| -> Arc<dyn OptimizerRule + Send + Sync> {
            if rule.name() == "simplify_expressions" {
                Arc::new(Folding(rule))
            } else {
                rule
            }
        })
        .collect();
    let mut physical = interleaved(PhysicalOptimizer::new().rules, &physical_check);
    // Last: every operator of the final plan stops at its next batch once cancelled.
    physical.push(Arc::new(crate::interruptible::InterruptAtBatches {
        limits: meter_limits,
    }));
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_analyzer_rules(interleaved(analyzer, &analyzer_check))
        .with_optimizer_rules(interleaved(optimizer, &optimizer_check))
        .with_physical_optimizer_rules(physical)
        .build();
    // Table functions fold their arguments: a bound parameter arrives as a cast literal.
    let table_functions: Vec<(String, Arc<dyn TableFunctionImpl>)> = state
        .table_functions()
        .iter()
        .map(|(name, f)| (name.clone(), Arc::clone(f.function())))
        .collect();
    for (name, function) in table_functions {
        state.register_udtf(&name, Arc::new(FoldedArguments(function)));
    }
    let _ = state.register_udf(Arc::new(crate::text_function::pg_typeof()));
    let _ = state.register_udf(Arc::new(crate::text_function::case_mapping(true)));
    let _ = state.register_udf(Arc::new(crate::text_function::case_mapping(false)));
    // PostgreSQL's template patterns (DataFusion's `to_char` reads strftime's).
    if let Some(to_char) = state.scalar_functions().get("to_char").cloned() {
        let _ = state.register_udf(Arc::new(crate::to_char::udf(to_char)));
    }
    // PostgreSQL's name for `signum`.
    if let Some(signum) = state.scalar_functions().get("signum").cloned() {
        let sign = signum.as_ref().clone().with_aliases(["sign"]);
        // Registering adds the alias; the names it had stay.
        let _ = state.register_udf(Arc::new(sign));
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CancelReason;
    use crate::interrupt::Interrupt;

    #[test]
    fn planning_stops_once_the_signal_is_given() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let state = session_state(
            SessionConfig::new(),
            Arc::new(RuntimeEnv::default()),
            crate::DEFAULT_MAX_VALUE_BYTES,
            crate::query_meter::MeterLimits::from_pools(1 << 30, 1 << 30),
        );
        let plan = |interrupt: &Interrupt| {
            let state = state.clone();
            runtime.block_on(interrupt.run(async move {
                let plan = state.create_logical_plan("SELECT 1 + 1").await?;
                state.create_physical_plan(&plan).await
            }))
        };
        assert!(plan(&Interrupt::new()).is_ok());
        let given = Interrupt::new();
        // Given before planning: the first check refuses (`run` would too; a check inside
        // planning is what stops a statement given its signal while it plans).
        given.interrupt(CancelReason::StatementTimeout);
        let _current = crate::interrupt::tests_enter(&given);
        let analyzed = state.create_logical_plan("SELECT 1 + 1");
        let plan = runtime.block_on(analyzed).expect("parses and plans");
        let error = runtime
            .block_on(state.create_physical_plan(&plan))
            .expect_err("the check refuses");
        assert!(
            matches!(
                crate::Error::from(error),
                crate::Error::Cancelled(CancelReason::StatementTimeout)
            ),
            "cancelled"
        );
    }
}
