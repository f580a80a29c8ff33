//! `omen-router`: decides, for each SQL statement, which path serves it.
//!
//! A key read (`SELECT cols FROM t WHERE id = $1`, `IN (...)`, a short `BETWEEN`) costs the
//! learned index a few hundred nanoseconds; planning it in DataFusion costs close to a
//! millisecond. The router reads the statement's parsed form ([`classify`]), and the rule
//! ([`RuleRouter`]) sends key reads the index answers alone down the [`Path::IndexPoint`] or
//! [`Path::IndexRange`] fast path, with no query engine; everything else goes to DataFusion.
//!
//! Invariants:
//! - Classification is syntactic and conservative: a statement is a [`KeyRead`] only if
//!   every clause it has is one the fast path implements (plain or aliased columns or `*`,
//!   one table, a predicate on one column with integer literals). Anything else, including
//!   what the fast path could answer with more work, goes to the query engine, so both
//!   paths give the same rows for every statement routed to the fast path.
//! - The router never reads data; the caller checks the read against its catalog (the
//!   column must be the key) and falls back to the query engine when it does not match.

mod classify;

pub use classify::{
    KeyRead, Keys, OutputColumn, SHORT_RANGE_KEYS, Shape, classify, classify_bound,
};

/// The path that serves a statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Path {
    /// The learned index, for a set of keys, without a query engine.
    IndexPoint,
    /// The learned index, for a key range, without a query engine.
    IndexRange,
    /// DataFusion, over the tables' providers (which may still use the index per scan).
    DataFusion,
}

impl Path {
    /// A stable snake_case name (metric labels, the query log).
    pub fn label(self) -> &'static str {
        match self {
            Path::IndexPoint => "index_point",
            Path::IndexRange => "index_range",
            Path::DataFusion => "datafusion",
        }
    }
}

/// What chose a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Chooser {
    /// The rule router.
    Rule,
}

/// A statement's route: its shape, the path chosen, and what chose it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// The statement's shape.
    pub shape: Shape,
    /// The path that serves it.
    pub path: Path,
    /// Who chose the path.
    pub chooser: Chooser,
}

/// The heuristic router: key reads of points and short ranges take the index fast path;
/// long ranges, aggregates, joins and the rest go to DataFusion.
#[derive(Clone, Copy, Debug)]
pub struct RuleRouter {
    /// The widest range the fast path serves, in keys.
    pub short_range_keys: u64,
}

impl Default for RuleRouter {
    fn default() -> Self {
        RuleRouter {
            short_range_keys: SHORT_RANGE_KEYS,
        }
    }
}

impl RuleRouter {
    /// The route for a statement of `shape`, and the key read it is, if it is one.
    pub fn route(&self, shape: Shape, read: Option<&KeyRead>) -> Route {
        let path = match (shape, read) {
            (Shape::Point | Shape::MultiPoint, Some(_)) => Path::IndexPoint,
            (Shape::ShortRange | Shape::LongRange, Some(read))
                if read.keys.width() <= self.short_range_keys =>
            {
                Path::IndexRange
            }
            _ => Path::DataFusion,
        };
        Route {
            shape,
            path,
            chooser: Chooser::Rule,
        }
    }
}

#[cfg(test)]
mod tests;
