//! `x [NOT] IN (subquery)` only where DataFusion gives SQL's answer.
//!
//! DataFusion turns an `IN (subquery)` into a semi or anti join. As a conjunct of a `WHERE`
//! or `HAVING` that is exact, but elsewhere its NULL is lost: with a NULL in the subquery,
//! `i NOT IN (SELECT k ...) OR id = 100` was true for rows where SQL says NULL, and a DELETE
//! with it removed rows PostgreSQL keeps; `(i IN (...)) IS NULL` was never true.
//!
//! Likewise `EXISTS` over an aggregate without `GROUP BY`, and `IN` over a correlated one:
//! such a subquery returns one row even for no input, which DataFusion's decorrelation
//! loses (the "count bug").
//!
//! Invariant: a statement is refused (`0A000`) unless each `IN (subquery)` is reached from
//! a `WHERE` or `HAVING` through `AND`, `OR` and parentheses only, and each `NOT IN
//! (subquery)` through `AND` and parentheses only (there, NULL and false reject alike).

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, Query, Select, SelectItem, SetExpr, Statement, TableFactor,
    Visit, Visitor,
};

use crate::error::{Error, Result};

/// Checks `statement` (see the module docs).
pub(crate) fn check(statement: &Statement) -> Result<()> {
    let mut allowed = Allowed(HashSet::new());
    let _ = statement.visit(&mut allowed);
    let mut placed = Placed {
        allowed: allowed.0,
        refused: false,
        aggregate: false,
    };
    let _ = statement.visit(&mut placed);
    if placed.aggregate {
        return Err(Error::Unsupported(
            "EXISTS (SELECT aggregate ...) or IN over a correlated aggregate without GROUP BY: \
             such a subquery returns one row even when no row matches, which DataFusion loses; \
             compare a scalar subquery instead, e.g. (SELECT count(*) ...) = 0"
                .into(),
        ));
    }
    if placed.refused {
        return Err(Error::Unsupported(
            "IN (subquery) or NOT IN (subquery) under NOT, CASE, IS NULL, a comparison or a \
             select list (and NOT IN under OR): its NULL would be lost; use it as a condition \
             of WHERE joined by AND, or EXISTS"
                .into(),
        ));
    }
    Ok(())
}

/// The `IN (subquery)` expressions in allowed positions, by address.
struct Allowed(HashSet<*const Expr>);

impl Allowed {
    /// `top`: reached through `AND` and parentheses only.
    fn walk(&mut self, expr: &Expr, top: bool) {
        match expr {
            Expr::BinaryOp {
                left,
                op: op @ (BinaryOperator::And | BinaryOperator::Or),
                right,
            } => {
                let top = top && *op == BinaryOperator::And;
                self.walk(left, top);
                self.walk(right, top);
            }
            Expr::Nested(inner) => self.walk(inner, top),
            Expr::InSubquery { negated, .. } if !negated || top => {
                self.0.insert(expr as *const Expr);
            }
            _ => {}
        }
    }
}

impl Visitor for Allowed {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        let selection = match statement {
            Statement::Update(update) => update.selection.as_ref(),
            Statement::Delete(delete) => delete.selection.as_ref(),
            _ => None,
        };
        if let Some(selection) = selection {
            self.walk(selection, true);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let mut bodies = vec![query.body.as_ref()];
        while let Some(body) = bodies.pop() {
            match body {
                SetExpr::Select(select) => {
                    for root in [&select.selection, &select.having].into_iter().flatten() {
                        self.walk(root, true);
                    }
                }
                SetExpr::SetOperation { left, right, .. } => {
                    bodies.push(left);
                    bodies.push(right);
                }
                _ => {}
            }
        }
        ControlFlow::Continue(())
    }
}

/// Finds an `IN (subquery)` outside the allowed positions, and an aggregate subquery that
/// DataFusion decorrelates wrongly.
struct Placed {
    allowed: HashSet<*const Expr>,
    refused: bool,
    aggregate: bool,
}

/// Aggregates whose subquery returns a row for no input.
const AGGREGATES: [&str; 9] = [
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "bool_and",
    "bool_or",
    "string_agg",
    "array_agg",
];

/// A `SELECT` of aggregates without `GROUP BY`: one row, even for no input (the "count bug"
/// of decorrelation: `EXISTS (SELECT count(*) ... WHERE t2.k = t1.i)` was false where no
/// row matched).
fn one_row_aggregate(query: &Query) -> Option<&Select> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(keys, _) if keys.is_empty());
    let aggregates = select.projection.iter().any(|item| {
        let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item else {
            return false;
        };
        matches!(expr, Expr::Function(f) if f.over.is_none()
            && AGGREGATES.iter().any(|a| f.name.to_string().eq_ignore_ascii_case(a)))
    });
    (!grouped && aggregates).then_some(select.as_ref())
}

/// Whether `select`'s condition names a table its own FROM does not (an outer query's).
fn correlated(select: &Select) -> bool {
    let mut own = HashSet::new();
    for from in &select.from {
        for factor in std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation))
        {
            if let TableFactor::Table { name, alias, .. } = factor {
                let local = match alias {
                    Some(alias) => alias.name.value.clone(),
                    None => name.0.last().map(|p| p.to_string()).unwrap_or_default(),
                };
                own.insert(local.to_lowercase());
            }
        }
    }
    let mut outer = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(&select.selection, |expr| {
        if let Expr::CompoundIdentifier(parts) = expr
            && let [.., table, _] = parts.as_slice()
            && !own.contains(&table.value.to_lowercase())
        {
            outer = true;
        }
        ControlFlow::<()>::Continue(())
    });
    outer
}

impl Visitor for Placed {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        let aggregate = match expr {
            Expr::Exists { subquery, .. } => one_row_aggregate(subquery).is_some(),
            Expr::InSubquery { subquery, .. } => {
                one_row_aggregate(subquery).is_some_and(correlated)
            }
            _ => false,
        };
        if aggregate {
            self.aggregate = true;
            return ControlFlow::Break(());
        }
        if matches!(expr, Expr::InSubquery { .. }) && !self.allowed.contains(&(expr as *const Expr))
        {
            self.refused = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}
