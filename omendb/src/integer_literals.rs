//! Integer literals typed as PostgreSQL types them: `INTEGER` when the value fits 32 bits,
//! `BIGINT` otherwise. DataFusion types every integer literal `BIGINT`, so `i + 1` of an
//! `INT` column was a `BIGINT` and never overflowed where PostgreSQL raises `22003`
//! (`SELECT 2147483647 + 1`), and `SELECT 1` was described as `int8`, not `int4`. A query's
//! `VALUES` column of such literals is an `INTEGER` column ([`integers_in_values`]).
//!
//! A `NUMERIC` met by a `DOUBLE` in a comparison, arithmetic or one list of branches becomes
//! a `DOUBLE` (see [`doubles_against_doubles`]).
//!
//! `avg` of integers is computed exactly, in `DECIMAL`s (see [`AVG_INPUT`]).
//!
//! [`IntegerLiterals`] is the first analyzer rule, so type coercion then widens a literal
//! compared with or stored in a `BIGINT` as before. `LIMIT`/`OFFSET` and a write's `VALUES`
//! keep their literals (their types are fixed when they are planned), and so do statements
//! with a recursive CTE.

use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::logical_expr::{
    BinaryExpr, Cast, Expr, ExprSchemable, LogicalPlan, Operator, Projection, Union, Values,
};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule (see the module docs).
#[derive(Debug)]
pub(crate) struct IntegerLiterals;

impl AnalyzerRule for IntegerLiterals {
    fn name(&self) -> &str {
        "omendb_integer_literals"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        // A recursive CTE's work table has the types its planned terms had: left alone.
        if crate::planning::has_recursive_query(&plan)? {
            return Ok(plan);
        }
        // A write's VALUES are typed by its table.
        let writes = matches!(plan, LogicalPlan::Dml(_));
        plan.transform_up_with_subqueries(|plan| {
            if let LogicalPlan::Values(values) = plan {
                let doubled = doubles_in_values(values)?;
                if writes {
                    return Ok(doubled);
                }
                let LogicalPlan::Values(values) = doubled.data else {
                    return Ok(doubled);
                };
                let mut typed = integers_in_values(values)?;
                typed.transformed |= doubled.transformed;
                return Ok(typed);
            }
            if let LogicalPlan::Union(union) = plan {
                return doubles_in_union(union);
            }
            if matches!(plan, LogicalPlan::Limit(_)) {
                return Ok(Transformed::no(plan));
            }
            let plan = doubles_against_doubles(plan)?;
            plan.transform_data(|plan| {
                // Only an aggregation's averages need the input's types.
                let avg_schema = match &plan {
                    LogicalPlan::Aggregate(aggregate) => Some(aggregate.input.schema().clone()),
                    _ => None,
                };
                crate::planning::retype_expressions(plan, |expr| match expr {
                    Expr::AggregateFunction(mut call)
                        if call.func.name() == "avg" && call.params.args.len() == 1 =>
                    {
                        // `avg` of integers is exact, as PostgreSQL's NUMERIC average:
                        // DataFusion's sums them in doubles (large values absorb small ones).
                        let arg = &mut call.params.args[0];
                        if !arg_is_integer(arg, &avg_schema) {
                            return Ok(Transformed::no(Expr::AggregateFunction(call)));
                        }
                        let taken = std::mem::replace(arg, Expr::Literal(ScalarValue::Null, None));
                        *arg = Expr::Cast(Cast::new(Box::new(taken), AVG_INPUT));
                        Ok(Transformed::yes(Expr::AggregateFunction(call)))
                    }
                    Expr::Literal(ScalarValue::Int64(Some(v)), metadata)
                        if i32::try_from(v).is_ok() =>
                    {
                        let v = i32::try_from(v).unwrap_or_default();
                        Ok(Transformed::yes(Expr::Literal(
                            ScalarValue::Int32(Some(v)),
                            metadata,
                        )))
                    }
                    other => Ok(Transformed::no(other)),
                })
            })
        })
        .map(|t| t.data)
    }
}

/// A `NUMERIC` (a decimal literal, `1.5`, is planned as `CAST('1.5' AS DECIMAL(2, 1))` by
/// `crate::limits`) that meets a `DOUBLE` or `REAL` — compared with it, computed with it, or
/// a branch of the same `CASE`, `coalesce`, `nullif`, `greatest` or `least` — becomes a
/// `DOUBLE`, as PostgreSQL resolves `numeric` and `float8` to `float8`. Type coercion would
/// cast the double to a `DECIMAL` instead, which fails on NaN and ±Infinity and rounds.
fn doubles_against_doubles(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    // A DECIMAL comes from a cast (which decimal literals are), an input column or a
    // subquery.
    let is_decimal = |t: &DataType| matches!(t, DataType::Decimal128(_, _));
    let mut candidate = plan.inputs().iter().any(|input| {
        input
            .schema()
            .fields()
            .iter()
            .any(|f| is_decimal(f.data_type()))
    });
    plan.apply_expressions(|expr| {
        candidate |= expr.exists(|e| {
            Ok(match e {
                Expr::Cast(Cast { field, .. }) => is_decimal(field.data_type()),
                Expr::ScalarSubquery(subquery) => subquery
                    .subquery
                    .schema()
                    .fields()
                    .iter()
                    .any(|f| is_decimal(f.data_type())),
                _ => false,
            })
        })?;
        Ok(if candidate {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    if !candidate {
        return Ok(Transformed::no(plan));
    }
    let schema = crate::checked::input_schema(&plan)?;
    let is_float = |expr: &Expr| {
        expr.get_type(&schema)
            .is_ok_and(|t| matches!(t, DataType::Float64 | DataType::Float32))
    };
    crate::planning::retype_expressions(plan, |mut expr| {
        let mut changed_any = false;
        let operands: Vec<&mut Expr> = match &mut expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) if mixes_with_doubles(*op) => {
                vec![left.as_mut(), right.as_mut()]
            }
            Expr::Between(between) => {
                vec![
                    between.expr.as_mut(),
                    between.low.as_mut(),
                    between.high.as_mut(),
                ]
            }
            Expr::InList(in_list) => std::iter::once(in_list.expr.as_mut())
                .chain(in_list.list.iter_mut())
                .collect(),
            // The results of a CASE are one group; the operand of a simple CASE and the
            // values it is compared with another (handled on their own below).
            Expr::Case(case) => {
                if case.expr.is_some() {
                    let compared: Vec<&mut Expr> = case
                        .expr
                        .as_deref_mut()
                        .into_iter()
                        .chain(
                            case.when_then_expr
                                .iter_mut()
                                .map(|(when, _)| when.as_mut()),
                        )
                        .collect();
                    changed_any |= to_doubles(compared, &is_float, &schema);
                }
                case.when_then_expr
                    .iter_mut()
                    .map(|(_, then)| then.as_mut())
                    .chain(case.else_expr.as_deref_mut())
                    .collect()
            }
            Expr::ScalarFunction(call)
                if matches!(
                    call.func.name(),
                    "coalesce" | "nullif" | "greatest" | "least"
                ) =>
            {
                call.args.iter_mut().collect()
            }
            _ => Vec::new(),
        };
        let changed = changed_any | to_doubles(operands, &is_float, &schema);
        Ok(Transformed::new_transformed(expr, changed))
    })
}

/// `operands`, one group that PostgreSQL resolves to one type, as `DOUBLE`s where one of
/// them is and others are `NUMERIC`; whether any changed.
fn to_doubles(
    operands: Vec<&mut Expr>,
    is_float: &dyn Fn(&Expr) -> bool,
    schema: &DFSchema,
) -> bool {
    if !operands.iter().any(|operand| is_float(operand)) {
        return false;
    }
    let mut changed = false;
    for operand in operands {
        if let Some(double) = decimal_literal(operand) {
            *operand = double;
            changed = true;
        } else if operand
            .get_type(schema)
            .is_ok_and(|t| matches!(t, DataType::Decimal128(_, _)))
        {
            let taken = std::mem::replace(operand, Expr::Literal(ScalarValue::Null, None));
            *operand = Expr::Cast(Cast::new(Box::new(taken), DataType::Float64));
            changed = true;
        }
    }
    changed
}

/// A column of `VALUES` that holds both a `DOUBLE` and decimal literals: the literals become
/// `DOUBLE`s and so does the column, as in [`doubles_against_doubles`] (its type was
/// inferred as `DECIMAL(30, 15)`, to which `'NaN'::float8` cannot be cast). The other
/// columns keep the types they were planned with (a write's come from its table).
fn doubles_in_values(values: Values) -> Result<Transformed<LogicalPlan>> {
    let empty = DFSchema::empty();
    retype_columns(values, |column, planned, rows| {
        if !matches!(planned, DataType::Decimal128(_, _)) {
            return None;
        }
        // The planner cast each cell to the column's type: what was written is inside.
        let written = |cell: &Expr| match cell {
            Expr::Cast(Cast { expr, field }) if field.data_type() == planned => {
                expr.as_ref().clone()
            }
            other => other.clone(),
        };
        let cells = || rows.iter().filter_map(|row| row.get(column)).map(written);
        let has_double = cells().any(|cell| {
            cell.get_type(&empty)
                .is_ok_and(|t| matches!(t, DataType::Float64 | DataType::Float32))
        });
        if !has_double || !cells().any(|cell| decimal_literal(&cell).is_some()) {
            return None;
        }
        for row in rows.iter_mut() {
            if let Some(cell) = row.get_mut(column) {
                let original = written(cell);
                let double = decimal_literal(&original).unwrap_or(original);
                *cell = Expr::Cast(Cast::new(Box::new(double), DataType::Float64));
            }
        }
        Some(DataType::Float64)
    })
}

/// A column of a query's `VALUES` whose cells are all integer literals that fit 32 bits
/// (or NULL) is an `INTEGER` column, as PostgreSQL types it: `x + 1` of
/// `(VALUES (2147483647)) v(x)` fails with `22003` (DataFusion planned the column `BIGINT`).
fn integers_in_values(values: Values) -> Result<Transformed<LogicalPlan>> {
    let small = |cell: &Expr| match cell {
        Expr::Literal(ScalarValue::Int64(Some(v)), _) => i32::try_from(*v).is_ok(),
        Expr::Literal(value, _) => value.is_null(),
        _ => false,
    };
    retype_columns(values, |column, planned, rows| {
        let cells = || rows.iter().filter_map(|row| row.get(column));
        if *planned != DataType::Int64
            || !cells().all(small)
            || !cells().any(|cell| matches!(cell, Expr::Literal(ScalarValue::Int64(Some(_)), _)))
        {
            return None;
        }
        for row in rows.iter_mut() {
            if let Some(cell) = row.get_mut(column) {
                let value = match cell {
                    Expr::Literal(ScalarValue::Int64(Some(v)), _) => i32::try_from(*v).ok(),
                    _ => None,
                };
                *cell = Expr::Literal(ScalarValue::Int32(value), None);
            }
        }
        Some(DataType::Int32)
    })
}

/// `values` with each column `retype` gives a new type for (it has rewritten that column's
/// cells, given its index, planned type and the rows) retyped in the schema.
fn retype_columns(
    mut values: Values,
    mut retype: impl FnMut(usize, &DataType, &mut Vec<Vec<Expr>>) -> Option<DataType>,
) -> Result<Transformed<LogicalPlan>> {
    let mut fields: Vec<_> = values
        .schema
        .iter()
        .map(|(qualifier, field)| (qualifier.cloned(), Arc::clone(field)))
        .collect();
    let mut changed = false;
    for (column, (_, field)) in fields.iter_mut().enumerate() {
        if let Some(retyped) = retype(column, field.data_type(), &mut values.values) {
            *field = Arc::new(field.as_ref().clone().with_data_type(retyped));
            changed = true;
        }
    }
    if changed {
        let metadata = values.schema.metadata().clone();
        values.schema = Arc::new(DFSchema::new_with_metadata(fields, metadata)?);
    }
    Ok(Transformed::new_transformed(
        LogicalPlan::Values(values),
        changed,
    ))
}

/// The type integers are averaged in: a `BIGINT` fits its 26 whole digits (DataFusion sums
/// it in 256 bits), and the average keeps 16 places (DataFusion's `avg` adds 4 to its
/// input's scale), as PostgreSQL prints `avg(bigint)`.
const AVG_INPUT: DataType = DataType::Decimal128(38, 12);

/// Whether `arg`, an argument of an aggregate over `schema`, is an integer.
fn arg_is_integer(arg: &Expr, schema: &Option<datafusion::common::DFSchemaRef>) -> bool {
    schema.as_ref().is_some_and(|schema| {
        arg.get_type(schema).is_ok_and(|t| {
            matches!(
                t,
                DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64
            )
        })
    })
}

/// A column of a `UNION` that is a `DOUBLE` in one input and a `NUMERIC` in another is a
/// `DOUBLE`, as in [`doubles_against_doubles`]: the `NUMERIC` inputs are cast (type
/// coercion would cast the doubles to `DECIMAL(30, 15)`, which fails on NaN).
fn doubles_in_union(union: Union) -> Result<Transformed<LogicalPlan>> {
    let is_float = |t: &DataType| matches!(t, DataType::Float64 | DataType::Float32);
    let is_decimal = |t: &DataType| matches!(t, DataType::Decimal128(_, _));
    let width = union.schema.fields().len();
    let mixed: Vec<usize> = (0..width)
        .filter(|&i| {
            let types = || {
                union
                    .inputs
                    .iter()
                    .filter_map(move |input| input.schema().fields().get(i))
                    .map(|f| f.data_type().clone())
            };
            types().any(|t| is_float(&t)) && types().any(|t| is_decimal(&t))
        })
        .collect();
    if mixed.is_empty() {
        return Ok(Transformed::no(LogicalPlan::Union(union)));
    }
    let inputs = union
        .inputs
        .into_iter()
        .map(|input| {
            let schema = input.schema();
            if !mixed.iter().any(|&i| {
                schema
                    .fields()
                    .get(i)
                    .is_some_and(|f| is_decimal(f.data_type()))
            }) {
                return Ok(input);
            }
            let columns = schema
                .columns()
                .into_iter()
                .enumerate()
                .map(|(i, column)| {
                    let name = column.name.clone();
                    let expr = Expr::Column(column);
                    if mixed.contains(&i) && is_decimal(schema.field(i).data_type()) {
                        Expr::Cast(Cast::new(Box::new(expr), DataType::Float64)).alias(name)
                    } else {
                        expr
                    }
                })
                .collect::<Vec<_>>();
            Ok(Arc::new(LogicalPlan::Projection(Projection::try_new(
                columns, input,
            )?)))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Transformed::yes(LogicalPlan::Union(
        Union::try_new_with_loose_types(inputs)?,
    )))
}

/// Whether `op` on a `DOUBLE` and a `numeric` is PostgreSQL's `float8` operator.
fn mixes_with_doubles(op: Operator) -> bool {
    crate::interval_order::is_comparison(op)
        || matches!(
            op,
            Operator::Plus
                | Operator::Minus
                | Operator::Multiply
                | Operator::Divide
                | Operator::Modulo
        )
}

/// The `DOUBLE` literal of a decimal literal, if `expr` is one.
fn decimal_literal(expr: &Expr) -> Option<Expr> {
    if let Expr::Negative(operand) = expr {
        let Expr::Literal(ScalarValue::Float64(Some(value)), _) = decimal_literal(operand)? else {
            return None;
        };
        return Some(Expr::Literal(ScalarValue::Float64(Some(-value)), None));
    }
    let Expr::Cast(Cast { expr: inner, field }) = expr else {
        return None;
    };
    let Expr::Literal(ScalarValue::Utf8(Some(text)), _) = inner.as_ref() else {
        return None;
    };
    if !matches!(field.data_type(), DataType::Decimal128(_, _)) {
        return None;
    }
    let value = text.parse::<f64>().ok()?;
    Some(Expr::Literal(ScalarValue::Float64(Some(value)), None))
}
