//! Prepared statements: parameter type inference and safe parameter substitution.
//!
//! Types: DataFusion plans the statement against empty tables of the database's schemas and
//! reports the type each placeholder needs (`LogicalPlan::get_parameter_types`); what it
//! cannot infer, a placeholder assigned to a column (`UPDATE ... SET c = $1`, `INSERT ...
//! VALUES ($1)`) gets from that column; anything else is `text`.
//!
//! Values: each bound value becomes a SQL literal of its type, parsed on its own into a
//! syntax tree node (so a string can never become SQL), which replaces the placeholder in the
//! statement's tree, which is run as it is (`Db::sql_parsed_with`): a value is never printed
//! into statement text, so the statement-length limit applies to the client's text alone.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use chrono::{NaiveDate, NaiveDateTime};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    CastKind, DataType as SqlDataType, Expr, SetExpr, Statement as SqlStatement, Value,
    visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use omendb::Db;
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::error::PgWireResult;

use super::encode;
use super::sqlstate;
use crate::cli::statements::{Kind, Statement};

/// A parsed statement with what the extended protocol needs to describe it.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The statement (none for an empty query).
    pub statement: Statement,
    /// The inferred type of `$1`, `$2`, ...
    pub parameter_types: Vec<Type>,
    /// The result columns (empty for statements that return no rows).
    pub schema: SchemaRef,
    /// A key read the index answers when its parameters are keys
    /// ([`Db::prepared_key_read`]): each execution is a lookup, no SQL is printed or parsed.
    pub key_read: bool,
}

/// The number a placeholder such as `$3` stands for (1-based).
fn placeholder_index(name: &str) -> Option<usize> {
    name.strip_prefix('$')?.parse().ok().filter(|&n| n > 0)
}

fn placeholder(expr: &Expr) -> Option<usize> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Placeholder(name) => placeholder_index(name),
            _ => None,
        },
        _ => None,
    }
}

/// Puts a cast to its declared type around each placeholder the client declared a floating
/// type for, so that the statement is planned (and described) with it: `$1 + 1` with a
/// `float8` `$1` is a DOUBLE, not the BIGINT its `1` suggests (whose described column then
/// could not carry 1.5). Integers are left bare, so that key reads keep their fast path.
pub fn declare_types(statement: &mut DfStatement, declared: &[Option<Type>]) {
    visit(statement, &mut |expr| {
        let Some(index) = placeholder(expr) else {
            return;
        };
        let data_type = match declared.get(index.wrapping_sub(1)).cloned().flatten() {
            Some(Type::FLOAT8) => SqlDataType::DoublePrecision,
            Some(Type::FLOAT4) => SqlDataType::Real,
            _ => return,
        };
        *expr = Expr::Cast {
            kind: CastKind::Cast,
            expr: Box::new(expr.clone()),
            data_type,
            array: false,
            format: None,
        };
    });
}

/// Puts a cast to its declared SQL type around each placeholder `PREPARE name (types)`
/// declared one for, so that `EXECUTE` converts its values as PostgreSQL does: `PREPARE
/// q(int) AS SELECT $1 + 1; EXECUTE q(1.5)` is 3 (it was 2.5), a BIGINT beyond its range is
/// `22003`, and text a type cannot read `22P02`.
pub fn declare_sql_types(statement: &mut DfStatement, declared: &[SqlDataType]) {
    visit(statement, &mut |expr| {
        let Some(index) = placeholder(expr) else {
            return;
        };
        let Some(data_type) = declared.get(index.wrapping_sub(1)).cloned() else {
            return;
        };
        *expr = Expr::Cast {
            kind: CastKind::Cast,
            expr: Box::new(expr.clone()),
            data_type,
            array: false,
            format: None,
        };
    });
}

/// The placeholders of a statement: the highest index.
fn placeholder_count(statement: &mut DfStatement) -> usize {
    let mut count = 0;
    visit(statement, &mut |expr| {
        if let Some(index) = placeholder(expr) {
            count = count.max(index);
        }
    });
    count
}

fn visit(statement: &mut DfStatement, f: &mut dyn FnMut(&mut Expr)) {
    match statement {
        DfStatement::Statement(s) => {
            let _ = visit_expressions_mut(s.as_mut(), |expr| {
                f(expr);
                ControlFlow::<()>::Continue(())
            });
        }
        DfStatement::Explain(explain) => visit(&mut explain.statement, f),
        _ => {}
    }
}

/// Plans `statement` against empty copies of the database's tables, giving the parameter
/// types and the result schema.
pub async fn prepare(db: &Arc<Db>, statement: Statement) -> PgWireResult<Prepared> {
    if statement.kind == Kind::Local {
        // Answered by the server itself: no parameters; SHOW returns one text column.
        let schema = match super::commands::classify(&statement.ast, "")? {
            Some(local) => super::handler::local_schema(&local),
            None => Arc::new(Schema::empty()),
        };
        return Ok(Prepared {
            statement,
            parameter_types: Vec::new(),
            schema,
            key_read: false,
        });
    }
    if let Some(local) = super::commands::classify(&statement.ast, "")? {
        // `SELECT version()`, catalog probes and the like: parameters are text.
        let mut ast = statement.ast.clone();
        let count = placeholder_count(&mut ast);
        return Ok(Prepared {
            schema: super::handler::local_schema(&local),
            statement,
            parameter_types: vec![Type::TEXT; count],
            key_read: false,
        });
    }
    let mut ast = statement.ast.clone();
    let count = placeholder_count(&mut ast);
    // Bad SQL (an unknown table or column, a type error) is reported at Parse, as PostgreSQL
    // does. Schema changes are planned by the database itself (DataFusion does not plan
    // ALTER TABLE): for them a failed plan only means text parameters.
    let described = {
        let (db, ast) = (Arc::clone(db), statement.ast.clone());
        tokio::task::spawn_blocking(move || db.describe_sql(ast))
            .await
            .map_err(|e| sqlstate::error(sqlstate::INTERNAL_ERROR, e.to_string()))?
    };
    let plan = match described {
        Ok(described) => Some(described),
        Err(error) if !matches!(statement.kind, Kind::Done(_)) => {
            return Err(sqlstate::from_db(&error));
        }
        Err(_) => None,
    };
    let inferred: HashMap<String, Option<arrow::datatypes::DataType>> = plan
        .as_ref()
        .map(|p| p.parameters.clone())
        .unwrap_or_default();
    let by_column = column_types(db, &statement.ast);
    let by_cast = cast_types(&statement.ast);
    let parameter_types = (1..=count)
        .map(|i| {
            inferred
                .get(&format!("${i}"))
                .cloned()
                .flatten()
                .map(|t| encode::pg_type(&t))
                .or_else(|| by_cast.get(&i).cloned())
                .or_else(|| by_column.get(&i).cloned())
                .unwrap_or(Type::TEXT)
        })
        .collect();
    let key_read = plan.as_ref().is_some_and(|p| p.key_read);
    let schema = match (statement.kind, plan) {
        (Kind::Rows, Some(plan)) => plan.schema,
        _ => Arc::new(Schema::empty()),
    };
    Ok(Prepared {
        statement,
        parameter_types,
        schema,
        key_read,
    })
}

/// Types of placeholders cast to a type (`$1::bigint`, `CAST($1 AS DATE)`), as PostgreSQL
/// infers them: DataFusion leaves a placeholder under a cast untyped, and a driver told
/// `text` refuses to send an integer for it.
fn cast_types(statement: &DfStatement) -> HashMap<usize, Type> {
    use datafusion::sql::sqlparser::ast::DataType as SqlType;
    let mut types = HashMap::new();
    let mut statement = statement.clone();
    visit(&mut statement, &mut |expr| {
        let Expr::Cast {
            expr, data_type, ..
        } = expr
        else {
            return;
        };
        let Some(index) = placeholder(expr) else {
            return;
        };
        let pg = match data_type {
            SqlType::SmallInt(_) | SqlType::Int2(_) => Type::INT2,
            SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) => Type::INT4,
            SqlType::BigInt(_) | SqlType::Int8(_) => Type::INT8,
            SqlType::Real | SqlType::Float4 => Type::FLOAT4,
            SqlType::Double(_) | SqlType::DoublePrecision | SqlType::Float8 | SqlType::Float(_) => {
                Type::FLOAT8
            }
            SqlType::Bool | SqlType::Boolean => Type::BOOL,
            SqlType::Text | SqlType::Varchar(_) | SqlType::CharacterVarying(_) => Type::TEXT,
            SqlType::Date => Type::DATE,
            SqlType::Timestamp(..) => Type::TIMESTAMP,
            _ => return,
        };
        types.entry(index).or_insert(pg);
    });
    types
}

/// Types of placeholders that are assigned directly to a column.
fn column_types(db: &Db, statement: &DfStatement) -> HashMap<usize, Type> {
    let mut types = HashMap::new();
    let DfStatement::Statement(statement) = statement else {
        return types;
    };
    let column_type = |table: &str, column: &str| {
        let schema = db.schema(table).ok()?;
        let def = schema.columns.iter().find(|c| c.name == column)?;
        Some(encode::pg_type(&def.data_type.to_arrow()))
    };
    match statement.as_ref() {
        SqlStatement::Update(update) => {
            let table = update.table.relation.to_string();
            for assignment in &update.assignments {
                if let Some(index) = placeholder(&assignment.value) {
                    let column = assignment.target.to_string();
                    if let Some(t) = column_type(&table, &column) {
                        types.insert(index, t);
                    }
                }
            }
        }
        SqlStatement::Insert(insert) => {
            let table = insert.table.to_string();
            let columns: Vec<String> = if insert.columns.is_empty() {
                db.schema(&table)
                    .map(|s| s.columns.into_iter().map(|c| c.name).collect())
                    .unwrap_or_default()
            } else {
                insert.columns.iter().map(|c| c.to_string()).collect()
            };
            if let Some(source) = &insert.source
                && let SetExpr::Values(values) = source.body.as_ref()
            {
                for row in &values.rows {
                    for (expr, column) in row.iter().zip(&columns) {
                        if let Some(index) = placeholder(expr)
                            && let Some(t) = column_type(&table, column)
                        {
                            types.insert(index, t);
                        }
                    }
                }
            }
        }
        _ => {}
    }
    types
}

/// A bound value as SQL literal text.
fn literal(portal: &Portal<Prepared>, index: usize, pg: &Type) -> PgWireResult<String> {
    fn quote(text: &str) -> String {
        format!("'{}'", text.replace('\'', "''"))
    }
    macro_rules! value {
        ($t:ty) => {
            match portal.parameter::<$t>(index, pg)? {
                None => return Ok("NULL".to_string()),
                Some(v) => v,
            }
        };
    }
    Ok(match *pg {
        Type::BOOL => if value!(bool) { "TRUE" } else { "FALSE" }.to_string(),
        Type::INT2 => value!(i16).to_string(),
        Type::INT4 => value!(i32).to_string(),
        Type::INT8 => value!(i64).to_string(),
        Type::FLOAT4 | Type::FLOAT8 => {
            let v = if *pg == Type::FLOAT4 {
                f64::from(value!(f32))
            } else {
                value!(f64)
            };
            if v.is_finite() {
                format!("CAST({v:?} AS DOUBLE)")
            } else {
                format!("CAST({} AS DOUBLE)", quote(&v.to_string()))
            }
        }
        // Microseconds, as stored: `TIMESTAMP` is nanoseconds here, which end in 2262.
        Type::TIMESTAMP => format!(
            "CAST({} AS TIMESTAMP(6))",
            quote(
                &value!(NaiveDateTime)
                    .format("%Y-%m-%d %H:%M:%S%.f")
                    .to_string()
            )
        ),
        Type::DATE => format!("CAST({} AS DATE)", quote(&value!(NaiveDate).to_string())),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            let text = value!(String);
            // PostgreSQL's text holds no NUL byte: it refuses such a value on input.
            if text.contains('\0') {
                return Err(sqlstate::error(
                    sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
                    format!(
                        "invalid byte sequence for encoding \"UTF8\": 0x00 (parameter ${})",
                        index + 1
                    ),
                ));
            }
            quote(&text)
        }
        ref other => {
            return Err(sqlstate::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "parameter ${} has type {other}, which OmenDB does not accept; send it as \
                     int8, int4, float8, text, bool, timestamp or date",
                    index + 1
                ),
            ));
        }
    })
}

/// `statement` with `$1`, `$2`, ... replaced by `values` (`EXECUTE name (values)`).
pub fn substitute(mut statement: DfStatement, values: &[Expr]) -> PgWireResult<Statement> {
    let needed = placeholder_count(&mut statement);
    if needed != values.len() {
        return Err(sqlstate::error(
            "42P02",
            format!(
                "wrong number of parameters for prepared statement: it needs {needed}, {} given",
                values.len()
            ),
        ));
    }
    visit(&mut statement, &mut |expr| {
        if let Some(index) = placeholder(expr)
            && let Some(value) = values.get(index - 1)
        {
            *expr = value.clone();
        }
    });
    Ok(Statement {
        kind: crate::cli::statements::kind(&statement),
        ast: statement,
    })
}

/// The parameters of `portal` as keys, for [`Db::prepared_key_read`]: `None` when one is
/// not of an integer type (the statement then runs with its parameters bound into it).
/// Checks a portal's format codes as PostgreSQL does: one per parameter (or one or none
/// for all), one per result column (likewise), each 0 (text) or 1 (binary). pgwire takes
/// a short list as given and indexes past its end when it encodes (a panic).
pub fn check_formats(portal: &Portal<Prepared>, columns: usize) -> PgWireResult<()> {
    use pgwire::api::portal::Format;
    let check = |format: &Format, count: usize, what: &str| {
        let Format::Individual(codes) = format else {
            return Ok(());
        };
        if let Some(code) = codes.iter().find(|c| !matches!(c, 0 | 1)) {
            return Err(sqlstate::error(
                "22023",
                format!("unsupported format code: {code}"),
            ));
        }
        if codes.len() != count {
            return Err(sqlstate::error(
                "08P01",
                format!(
                    "bind message has {} {what} formats but {count} {what}s",
                    codes.len()
                ),
            ));
        }
        Ok(())
    };
    check(
        &portal.parameter_format,
        portal.parameters.len(),
        "parameter",
    )?;
    if columns > 0 {
        check(&portal.result_column_format, columns, "result column")?;
    }
    Ok(())
}

pub fn keys(portal: &Portal<Prepared>) -> PgWireResult<Option<Vec<Option<i64>>>> {
    let prepared = &portal.statement.statement;
    if portal.parameter_len() != prepared.parameter_types.len() {
        return Ok(None);
    }
    let mut keys = Vec::with_capacity(prepared.parameter_types.len());
    for (i, inferred) in prepared.parameter_types.iter().enumerate() {
        let declared = portal.statement.parameter_types.get(i).cloned().flatten();
        let pg = declared.as_ref().unwrap_or(inferred);
        keys.push(match *pg {
            Type::INT2 => portal.parameter::<i16>(i, pg)?.map(i64::from),
            Type::INT4 => portal.parameter::<i32>(i, pg)?.map(i64::from),
            Type::INT8 => portal.parameter::<i64>(i, pg)?,
            _ => return Ok(None),
        });
    }
    Ok(Some(keys))
}

/// The statement of `portal` with its parameters substituted.
pub fn bind(portal: &Portal<Prepared>) -> PgWireResult<Statement> {
    let prepared = &portal.statement.statement;
    let expected = prepared.parameter_types.len();
    if portal.parameter_len() != expected {
        return Err(sqlstate::error(
            "08P01",
            format!(
                "bind message supplies {} parameters, but the statement needs {expected}",
                portal.parameter_len()
            ),
        ));
    }
    if expected == 0 {
        return Ok(prepared.statement.clone());
    }
    let mut values = Vec::with_capacity(expected);
    for (i, inferred) in prepared.parameter_types.iter().enumerate() {
        // The client's declared type wins over ours (it encoded the value with it).
        let pg = portal
            .statement
            .parameter_types
            .get(i)
            .cloned()
            .flatten()
            .unwrap_or_else(|| inferred.clone());
        let text = literal(portal, i, &pg)?;
        let expr = Parser::new(&GenericDialect {})
            .try_with_sql(&text)
            .and_then(|mut p| p.parse_expr())
            .map_err(|e| {
                sqlstate::error(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!("parameter ${}: {e}", i + 1),
                )
            })?;
        values.push(expr);
    }
    substitute(prepared.statement.ast.clone(), &values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::statements;

    #[test]
    fn counts_placeholders_in_queries_and_explain() {
        let mut statement = statements::split("EXPLAIN SELECT * FROM t WHERE a = $2 AND b = $1")
            .expect("valid SQL")
            .remove(0)
            .ast;
        assert_eq!(placeholder_count(&mut statement), 2);
    }
}
