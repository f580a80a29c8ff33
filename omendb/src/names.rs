//! Result column names as PostgreSQL gives them.
//!
//! DataFusion names an unnamed result column by its expression (`Int64(1) + Int64(1)`,
//! `length(Utf8("a"))`) and refuses a query whose columns share a name (`SELECT id, id`),
//! where PostgreSQL answers `?column?`, `length`, and two columns named `id`. Clients show
//! these names and some read columns by them.
//!
//! [`name_columns`] runs on each parsed statement: every unnamed item of the outermost
//! `SELECT` list (the leftmost of a `UNION`) is given PostgreSQL's name as an alias, and an
//! item whose name an earlier item already has is given a marked alias
//! (`name` + [`DUPLICATE`] + its position), which DataFusion accepts. [`display_schema`]
//! takes the marks off the result's columns, so the client sees the names it asked for.
//!
//! Invariants: a statement names its columns as PostgreSQL does for column references,
//! function calls, casts and expressions (`?column?`); renaming never changes a value, a
//! type or the order of the columns.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    DataType, Expr, Ident, Query, SelectItem, SetExpr, Statement, TimezoneInfo, Value,
};

/// Marks the alias of a column whose name an earlier column has; taken off the result.
pub(crate) const DUPLICATE: &str = "\u{1}omendb_duplicate_";

/// Gives the outermost `SELECT` list of `statement` PostgreSQL's column names.
pub(crate) fn name_columns(statement: &mut DfStatement) {
    match statement {
        DfStatement::Statement(statement) => {
            if let Statement::Query(query) = statement.as_mut() {
                name_query(query);
            }
        }
        DfStatement::Explain(_) => {}
        _ => {}
    }
}

fn name_query(query: &mut Query) {
    let mut body = query.body.as_mut();
    let select = loop {
        match body {
            SetExpr::Select(select) => break select,
            SetExpr::SetOperation { left, .. } => body = left.as_mut(),
            SetExpr::Query(inner) => body = inner.body.as_mut(),
            _ => return,
        }
    };
    let mut seen: Vec<String> = Vec::new();
    for (position, item) in select.projection.iter_mut().enumerate() {
        let taken = |name: &str, seen: &[String]| seen.iter().any(|s| s == name);
        match item {
            SelectItem::UnnamedExpr(expr) => {
                let name = column_name(expr);
                let plain = matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
                if taken(&name, &seen) {
                    let alias = format!("{name}{DUPLICATE}{position}");
                    *item = aliased(expr.clone(), alias);
                } else if !plain {
                    *item = aliased(expr.clone(), name.clone());
                }
                seen.push(name);
            }
            SelectItem::ExprWithAlias { alias, .. } => {
                // Unquoted aliases fold to lower case, as the planner will fold them.
                let name = folded(alias);
                if taken(&name, &seen) {
                    *alias = Ident::with_quote('"', format!("{name}{DUPLICATE}{position}"));
                }
                seen.push(name);
            }
            _ => {}
        }
    }
}

fn aliased(expr: Expr, alias: String) -> SelectItem {
    SelectItem::ExprWithAlias {
        expr,
        alias: Ident::with_quote('"', alias),
    }
}

/// An identifier as DataFusion resolves it: quoted as written, unquoted lowercased.
pub(crate) fn folded(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// PostgreSQL's name for an unnamed result column (its `FigureColname`).
fn column_name(expr: &Expr) -> String {
    name_of(expr).unwrap_or_else(|| "?column?".to_string())
}

fn name_of(expr: &Expr) -> Option<String> {
    named(expr).map(|(name, _)| name)
}

/// The name of `expr` and whether it comes from a type (a cast of something unnamed,
/// `DATE '…'`), which an outer cast's type replaces: `'1'::float8::text` is `text`,
/// `length('a')::text` is `length` (PostgreSQL's FigureColname). One pass: casts nest deep.
fn named(expr: &Expr) -> Option<(String, bool)> {
    let by_name = |name: String| Some((name, false));
    match expr {
        Expr::Identifier(ident) => by_name(folded(ident)),
        Expr::CompoundIdentifier(idents) => by_name(folded(idents.last()?)),
        Expr::Function(function) => by_name(folded(function.name.0.last()?.as_ident()?)),
        Expr::Cast {
            expr, data_type, ..
        } => match named(expr) {
            Some((name, false)) => by_name(name),
            _ => Some((type_name(data_type), true)),
        },
        Expr::Nested(inner) => named(inner),
        Expr::Case { .. } => by_name("case".into()),
        Expr::Exists { .. } => by_name("exists".into()),
        Expr::Array(_) => by_name("array".into()),
        Expr::Substring { .. } => by_name("substring".into()),
        Expr::Trim { .. } => by_name("btrim".into()),
        Expr::Position { .. } => by_name("position".into()),
        Expr::Extract { .. } => by_name("extract".into()),
        Expr::Ceil { .. } => by_name("ceil".into()),
        Expr::Floor { .. } => by_name("floor".into()),
        Expr::Overlay { .. } => by_name("overlay".into()),
        Expr::TypedString(typed) => Some((type_name(&typed.data_type), true)),
        Expr::Interval(_) => by_name("interval".into()),
        Expr::Value(value) if matches!(value.value, Value::Boolean(_)) => by_name("bool".into()),
        Expr::Subquery(query) => {
            let SetExpr::Select(select) = query.body.as_ref() else {
                return None;
            };
            match select.projection.first()? {
                SelectItem::UnnamedExpr(expr) => named(expr),
                SelectItem::ExprWithAlias { alias, .. } => by_name(folded(alias)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// PostgreSQL's internal name of a type, which names a cast's column.
fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::SmallInt(_) | DataType::Int2(_) => "int2",
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => "int4",
        DataType::BigInt(_) | DataType::Int8(_) => "int8",
        DataType::Real | DataType::Float4 => "float4",
        DataType::Float(_)
        | DataType::Float8
        | DataType::Float64
        | DataType::Double(_)
        | DataType::DoublePrecision => "float8",
        DataType::Numeric(_) | DataType::Decimal(_) => "numeric",
        DataType::Bool | DataType::Boolean => "bool",
        DataType::Text | DataType::String(_) => "text",
        DataType::Varchar(_) | DataType::CharacterVarying(_) => "varchar",
        DataType::Char(_) | DataType::Character(_) => "bpchar",
        DataType::Date => "date",
        DataType::Time(..) => "time",
        DataType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timestamptz",
        DataType::Timestamp(..) => "timestamp",
        DataType::Interval { .. } => "interval",
        DataType::Bytea => "bytea",
        DataType::JSON => "json",
        DataType::Uuid => "uuid",
        other => return other.to_string().to_lowercase(),
    }
    .to_string()
}

/// `schema` with the duplicate marks of [`name_columns`] taken off its columns' names (the
/// same schema when it has none).
pub(crate) fn display_schema(schema: &SchemaRef) -> SchemaRef {
    if !schema.fields().iter().any(|f| f.name().contains(DUPLICATE)) {
        return Arc::clone(schema);
    }
    let fields = schema
        .fields()
        .iter()
        .map(|field| match field.name().split_once(DUPLICATE) {
            Some((name, _)) => Arc::new(Field::clone(field).with_name(name)),
            None => Arc::clone(field),
        })
        .collect::<Vec<_>>();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` under its [`display_schema`].
pub(crate) fn display_batch(batch: RecordBatch) -> RecordBatch {
    let schema = display_schema(&batch.schema());
    if Arc::ptr_eq(&schema, &batch.schema()) {
        return batch;
    }
    // Same columns, same types: only the names differ.
    RecordBatch::try_new(schema, batch.columns().to_vec()).unwrap_or(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> Vec<String> {
        let mut statements =
            crate::limits::parse_sql(sql, &crate::SqlLimits::default()).expect("parses");
        let mut statement = statements.pop_front().expect("one");
        name_columns(&mut statement);
        let DfStatement::Statement(statement) = statement else {
            panic!("a statement")
        };
        let Statement::Query(query) = *statement else {
            panic!("a query")
        };
        let SetExpr::Select(select) = *query.body else {
            panic!("a select")
        };
        select
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::UnnamedExpr(expr) => format!("= {expr}"),
                SelectItem::ExprWithAlias { alias, .. } => alias.value.replace(DUPLICATE, "#"),
                other => other.to_string(),
            })
            .collect()
    }

    #[test]
    fn columns_are_named_as_postgresql_names_them() {
        assert_eq!(
            names(
                "SELECT 1 + 1, length('a'), 1::int, id, t.v, CAST(v AS TEXT), 'x', true, \
                   CASE WHEN true THEN 1 END, x AS \"Y\", y AS Z, '1'::float8::text, length('a')::int::text"
            ),
            [
                "?column?",
                "length",
                "int4",
                "= id",
                "= t.v",
                "v#5",
                "?column?#6",
                "bool",
                "case",
                "Y",
                "Z",
                "text",
                "length#12"
            ]
        );
    }

    #[test]
    fn repeated_names_are_marked_and_the_marks_come_off() {
        assert_eq!(
            names("SELECT id, id, 1 AS a, 2 AS a, 3, 4"),
            ["= id", "id#1", "a", "a#3", "?column?", "?column?#5"]
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", arrow::datatypes::DataType::Int64, false),
            Field::new(
                format!("id{DUPLICATE}1"),
                arrow::datatypes::DataType::Int64,
                false,
            ),
        ]));
        let shown = display_schema(&schema);
        assert_eq!(shown.field(0).name(), "id");
        assert_eq!(shown.field(1).name(), "id");
    }
}
