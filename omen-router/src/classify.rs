//! Reads a parsed statement's shape, and recognises the key reads the index can answer alone.

use std::collections::BTreeSet;
use std::ops::Bound;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, Ident, ObjectNamePart, Query, Select, SelectFlavor,
    SelectItem, SetExpr, Statement, TableFactor, UnaryOperator, Value, WildcardAdditionalOptions,
};

/// What kind of statement it is, for routing and the query log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// A read of one key.
    Point,
    /// A read of a list of keys.
    MultiPoint,
    /// A read of a key range of at most [`SHORT_RANGE_KEYS`] keys.
    ShortRange,
    /// A read of a wider key range.
    LongRange,
    /// A query with aggregates or grouping.
    Aggregate,
    /// A query over more than one relation.
    Join,
    /// `INSERT`, `UPDATE`, `DELETE`.
    Write,
    /// Anything else (other queries, DDL, session statements).
    Other,
}

impl Shape {
    /// A stable snake_case name (metric labels, the query log).
    pub fn label(self) -> &'static str {
        match self {
            Shape::Point => "point",
            Shape::MultiPoint => "multi_point",
            Shape::ShortRange => "short_range",
            Shape::LongRange => "long_range",
            Shape::Aggregate => "aggregate",
            Shape::Join => "join",
            Shape::Write => "write",
            Shape::Other => "other",
        }
    }
}

/// The widest key range that is a short range.
pub const SHORT_RANGE_KEYS: u64 = 10_000;

/// The keys a [`KeyRead`] asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keys {
    /// These keys, ascending, each once.
    Points(Vec<i64>),
    /// The keys within these bounds (possibly none: the bounds may cross).
    Range(Bound<i64>, Bound<i64>),
}

impl Keys {
    /// How many keys the range spans at most (`u64::MAX` when unbounded).
    pub fn width(&self) -> u64 {
        match self {
            Keys::Points(keys) => keys.len() as u64,
            Keys::Range(low, high) => {
                let low = match *low {
                    Bound::Included(k) => i128::from(k),
                    Bound::Excluded(k) => i128::from(k) + 1,
                    Bound::Unbounded => return u64::MAX,
                };
                let high = match *high {
                    Bound::Included(k) => i128::from(k),
                    Bound::Excluded(k) => i128::from(k) - 1,
                    Bound::Unbounded => return u64::MAX,
                };
                u64::try_from((high - low + 1).max(0)).unwrap_or(u64::MAX)
            }
        }
    }
}

/// One output column of a [`KeyRead`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputColumn {
    /// The table column it reads (normalised as DataFusion does: unquoted names lowercased).
    pub column: String,
    /// Its name in the result (the alias, else the column).
    pub name: String,
}

/// A read the index can answer without a query engine:
/// `SELECT cols FROM table WHERE column = k | IN (k, ...) | BETWEEN a AND b | > a AND <= b ...`
/// with integer literals and plain (optionally aliased) columns or `*`.
///
/// Whether `column` is the table's key, and the columns exist, is for the caller to check
/// against its catalog; when they do not, the statement goes to the query engine, which
/// reports the error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRead {
    /// The table (normalised).
    pub table: String,
    /// The output columns, `None` for `*`.
    pub columns: Option<Vec<OutputColumn>>,
    /// The column the predicate constrains (normalised).
    pub column: String,
    /// The keys asked for.
    pub keys: Keys,
}

impl KeyRead {
    /// The shape of this read.
    pub fn shape(&self) -> Shape {
        match &self.keys {
            Keys::Points(keys) if keys.len() == 1 => Shape::Point,
            Keys::Points(_) => Shape::MultiPoint,
            range if range.width() <= SHORT_RANGE_KEYS => Shape::ShortRange,
            Keys::Range(..) => Shape::LongRange,
        }
    }
}

/// The shape of `statement`, and the key read it is, if it is one.
pub fn classify(statement: &DfStatement) -> (Shape, Option<KeyRead>) {
    classify_bound(statement, &|_| None)
}

/// [`classify`] for a prepared statement: a placeholder `$n` where a key may stand is the
/// key `parameter(n)` (1-based); `None` (the parameter is NULL, not an integer, or unknown)
/// makes the statement no key read.
pub fn classify_bound(
    statement: &DfStatement,
    parameter: &dyn Fn(usize) -> Option<i64>,
) -> (Shape, Option<KeyRead>) {
    let DfStatement::Statement(statement) = statement else {
        return (Shape::Other, None);
    };
    match statement.as_ref() {
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => (Shape::Write, None),
        Statement::Query(query) => match key_read(query, parameter) {
            Some(read) => (read.shape(), Some(read)),
            None => (query_shape(query), None),
        },
        _ => (Shape::Other, None),
    }
}

/// The shape of a query that is not a key read.
fn query_shape(query: &Query) -> Shape {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Shape::Other;
    };
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    let aggregate = grouped
        || select.projection.iter().any(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                has_function(e)
            }
            _ => false,
        });
    if select.from.len() > 1 || select.from.iter().any(|t| !t.joins.is_empty()) {
        Shape::Join
    } else if aggregate {
        Shape::Aggregate
    } else {
        Shape::Other
    }
}

/// Whether `expr` calls a function at its top (`count(*)`, `sum(v) + 1`): a rough aggregate
/// test, for the shape only (never for what a query returns).
fn has_function(expr: &Expr) -> bool {
    match expr {
        Expr::Function(_) => true,
        Expr::BinaryOp { left, right, .. } => has_function(left) || has_function(right),
        Expr::Nested(e) | Expr::Cast { expr: e, .. } => has_function(e),
        _ => false,
    }
}

/// The key read `query` is, if it is one and nothing else.
fn key_read(query: &Query, parameter: &dyn Fn(usize) -> Option<i64>) -> Option<KeyRead> {
    let plain_query = query.with.is_none()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
        && query.fetch.is_none()
        && query.locks.is_empty()
        && query.for_clause.is_none()
        && query.settings.is_none()
        && query.format_clause.is_none()
        && query.pipe_operators.is_empty();
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    if !plain_query || !plain_select(select) {
        return None;
    }
    let [from] = select.from.as_slice() else {
        return None;
    };
    let TableFactor::Table {
        name,
        alias: None,
        args: None,
        with_hints,
        version: None,
        with_ordinality: false,
        partitions,
        json_path: None,
        sample: None,
        index_hints,
    } = &from.relation
    else {
        return None;
    };
    if !from.joins.is_empty()
        || !with_hints.is_empty()
        || !partitions.is_empty()
        || !index_hints.is_empty()
    {
        return None;
    }
    let [ObjectNamePart::Identifier(table)] = name.0.as_slice() else {
        return None;
    };
    let columns = projection(&select.projection)?;
    let (column, keys) = predicate(select.selection.as_ref()?, parameter)?;
    Some(KeyRead {
        table: normalise(table),
        columns,
        column,
        keys,
    })
}

/// A `SELECT` with a projection, one `FROM` and a `WHERE`, and no other clause.
fn plain_select(select: &Select) -> bool {
    select.optimizer_hints.is_empty()
        && select.distinct.is_none()
        && select.select_modifiers.is_none()
        && select.top.is_none()
        && select.exclude.is_none()
        && select.into.is_none()
        && select.lateral_views.is_empty()
        && select.prewhere.is_none()
        && select.connect_by.is_empty()
        && matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
        && select.cluster_by.is_empty()
        && select.distribute_by.is_empty()
        && select.sort_by.is_empty()
        && select.having.is_none()
        && select.named_window.is_empty()
        && select.qualify.is_none()
        && select.value_table_mode.is_none()
        && matches!(select.flavor, SelectFlavor::Standard)
}

/// `*` (`None`), or plain columns, each at most once in the result.
fn projection(items: &[SelectItem]) -> Option<Option<Vec<OutputColumn>>> {
    if let [SelectItem::Wildcard(options)] = items {
        return (*options == WildcardAdditionalOptions::default()).then_some(None);
    }
    let mut columns = Vec::with_capacity(items.len());
    let mut names = BTreeSet::new();
    for item in items {
        let (column, alias) = match item {
            SelectItem::UnnamedExpr(Expr::Identifier(column)) => (column, None),
            SelectItem::ExprWithAlias {
                expr: Expr::Identifier(column),
                alias,
            } => (column, Some(alias)),
            _ => return None,
        };
        let column = normalise(column);
        let name = alias.map_or_else(|| column.clone(), normalise);
        // DataFusion refuses duplicate output names; let it say so.
        if !names.insert(name.clone()) {
            return None;
        }
        columns.push(OutputColumn { column, name });
    }
    Some(Some(columns))
}

/// A key operand: an integer literal or a bound placeholder.
type Parameter<'a> = &'a dyn Fn(usize) -> Option<i64>;

/// The column and keys of a predicate over one column with integer literals.
fn predicate(expr: &Expr, parameter: Parameter) -> Option<(String, Keys)> {
    match expr {
        Expr::Nested(inner) => predicate(inner, parameter),
        Expr::InList {
            expr,
            list,
            negated: false,
        } => {
            let Expr::Identifier(column) = expr.as_ref() else {
                return None;
            };
            let keys: BTreeSet<i64> = list
                .iter()
                .map(|k| integer(k, parameter))
                .collect::<Option<_>>()?;
            Some((normalise(column), Keys::Points(keys.into_iter().collect())))
        }
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } => {
            let Expr::Identifier(column) = expr.as_ref() else {
                return None;
            };
            let range = Keys::Range(
                Bound::Included(integer(low, parameter)?),
                Bound::Included(integer(high, parameter)?),
            );
            Some((normalise(column), range))
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let (column, Keys::Range(low_a, high_a)) = predicate(left, parameter)? else {
                return None;
            };
            let (other, Keys::Range(low_b, high_b)) = predicate(right, parameter)? else {
                return None;
            };
            if column != other {
                return None;
            }
            let range = Keys::Range(tighter(low_a, low_b, true), tighter(high_a, high_b, false));
            Some((column, range))
        }
        Expr::BinaryOp { left, op, right } => comparison(left, op, right, parameter),
        _ => None,
    }
}

/// `column op k` or `k op column`.
fn comparison(
    left: &Expr,
    op: &BinaryOperator,
    right: &Expr,
    parameter: Parameter,
) -> Option<(String, Keys)> {
    let (column, k, op) = match (left, right) {
        (Expr::Identifier(c), k) => (c, integer(k, parameter)?, op.clone()),
        (k, Expr::Identifier(c)) => (c, integer(k, parameter)?, flipped(op)?),
        _ => return None,
    };
    let keys = match op {
        BinaryOperator::Eq => Keys::Points(vec![k]),
        BinaryOperator::Gt => Keys::Range(Bound::Excluded(k), Bound::Unbounded),
        BinaryOperator::GtEq => Keys::Range(Bound::Included(k), Bound::Unbounded),
        BinaryOperator::Lt => Keys::Range(Bound::Unbounded, Bound::Excluded(k)),
        BinaryOperator::LtEq => Keys::Range(Bound::Unbounded, Bound::Included(k)),
        _ => return None,
    };
    Some((normalise(column), keys))
}

/// The operator with its operands swapped (`5 < id` is `id > 5`).
fn flipped(op: &BinaryOperator) -> Option<BinaryOperator> {
    Some(match op {
        BinaryOperator::Eq => BinaryOperator::Eq,
        BinaryOperator::Gt => BinaryOperator::Lt,
        BinaryOperator::GtEq => BinaryOperator::LtEq,
        BinaryOperator::Lt => BinaryOperator::Gt,
        BinaryOperator::LtEq => BinaryOperator::GtEq,
        _ => return None,
    })
}

/// The tighter of two bounds on the same side (`low`: the larger).
fn tighter(a: Bound<i64>, b: Bound<i64>, low: bool) -> Bound<i64> {
    use Bound::{Excluded, Included, Unbounded};
    let key = |bound: &Bound<i64>| match *bound {
        // Order the bounds by the first (low) or last (high) key they admit.
        Included(k) => Some((i128::from(k), 0)),
        Excluded(k) if low => Some((i128::from(k), 1)),
        Excluded(k) => Some((i128::from(k), -1)),
        Unbounded => None,
    };
    match (key(&a), key(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some(x), Some(y)) if (x > y) == low => a,
        _ => b,
    }
}

/// An integer literal (`42`, `-7`) that fits in a key, or a placeholder bound to one.
fn integer(expr: &Expr, parameter: Parameter) -> Option<i64> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Number(text, false) => text.parse().ok(),
            Value::Placeholder(name) => {
                let n: usize = name.strip_prefix('$')?.parse().ok()?;
                (n > 0).then(|| parameter(n)).flatten()
            }
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(value) => match &value.value {
                Value::Number(text, false) => format!("-{text}").parse().ok(),
                _ => None,
            },
            _ => None,
        },
        Expr::Nested(inner) => integer(inner, parameter),
        _ => None,
    }
}

/// An identifier as DataFusion resolves it: unquoted ones lowercased.
fn normalise(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}
