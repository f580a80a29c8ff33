//! `x [NOT] IN (subquery)` only where DataFusion gives SQL's answer.
//!
//! DataFusion turns an `IN (subquery)` into a semi or anti join. As a conjunct of a `WHERE`
//! or `HAVING` that is exact, but elsewhere its NULL is lost: with a NULL in the subquery,
//! `i NOT IN (SELECT k ...) OR id = 100` was true for rows where SQL says NULL, and a DELETE
//! with it removed rows PostgreSQL keeps; `(i IN (...)) IS NULL` was never true.
//!
//! Invariant: a statement is refused (`0A000`) unless each `IN (subquery)` is reached from
//! a `WHERE` or `HAVING` through `AND`, `OR` and parentheses only, and each `NOT IN
//! (subquery)` through `AND` and parentheses only (there, NULL and false reject alike).

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Query, SetExpr, Statement, Visit, Visitor,
};

use crate::error::{Error, Result};

/// Checks `statement` (see the module docs).
pub(crate) fn check(statement: &Statement) -> Result<()> {
    let mut allowed = Allowed(HashSet::new());
    let _ = statement.visit(&mut allowed);
    let mut placed = Placed {
        allowed: allowed.0,
        refused: false,
    };
    let _ = statement.visit(&mut placed);
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
                op: BinaryOperator::And,
                right,
            } => {
                self.walk(left, top);
                self.walk(right, top);
            }
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Or,
                right,
            } => {
                self.walk(left, false);
                self.walk(right, false);
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

/// Finds an `IN (subquery)` outside the allowed positions.
struct Placed {
    allowed: HashSet<*const Expr>,
    refused: bool,
}

impl Visitor for Placed {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if matches!(expr, Expr::InSubquery { .. }) && !self.allowed.contains(&(expr as *const Expr))
        {
            self.refused = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}
