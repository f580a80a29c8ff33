//! Statements the server answers itself, without the database: session settings,
//! transaction control, SQL-level prepared statements, and the handful of catalog functions
//! drivers call on connect (`version()`, `current_schema()`, ...).

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    ContextModifier, DiscardObject, Expr, FunctionArguments, ObjectName, Reset, SelectItem, Set,
    SetExpr, Statement as SqlStatement, TransactionAccessMode, TransactionIsolationLevel,
    TransactionMode, Value,
};
use pgwire::error::PgWireResult;

use super::sqlstate;

/// A statement the server answers itself.
#[derive(Debug)]
pub enum Local {
    /// `SET [LOCAL] name = value` (`local`: until the end of the transaction block).
    Set {
        name: String,
        value: String,
        local: bool,
    },
    /// `SET TRANSACTION` (`session`: `SET SESSION CHARACTERISTICS AS TRANSACTION`) with its
    /// access mode, if given (`Some(true)`: `READ ONLY`).
    SetTransaction {
        read_only: Option<bool>,
        session: bool,
    },
    /// A `SET` form that changes nothing OmenDB has (e.g. `SET NAMES 'UTF8'`).
    SetNothing,
    /// `SHOW name` (`None`: `SHOW ALL`).
    Show(Option<String>),
    /// `RESET name` (`None`: `RESET ALL`).
    Reset(Option<String>),
    /// `BEGIN` / `START TRANSACTION` (its command tag), with its access mode if given
    /// (`Some(true)`: `READ ONLY`).
    Begin {
        read_only: Option<bool>,
        tag: &'static str,
    },
    /// `COMMIT` / `END`.
    Commit,
    /// `ROLLBACK` / `ABORT`.
    Rollback,
    /// `PREPARE name AS statement`.
    Prepare {
        name: String,
        statement: Box<DfStatement>,
    },
    /// `EXECUTE name (parameters)`.
    Execute { name: String, parameters: Vec<Expr> },
    /// `DEALLOCATE [PREPARE] name` (`None`: `ALL`).
    Deallocate(Option<String>),
    /// `DISCARD ALL`.
    Discard,
    /// `SELECT version(), current_schema(), ...` without `FROM`: (column, value) pairs.
    Functions(Vec<(String, Option<String>)>),
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] name`.
    Release(String),
    /// `ROLLBACK TO [SAVEPOINT] name`.
    RollbackTo(String),
    /// A query of PostgreSQL's system catalogs (`pg_type`, `pg_namespace`, ...), which OmenDB
    /// does not have yet: answered with no rows, in text columns of these names, so that
    /// drivers probing for optional types (psycopg's `TypeInfo.fetch`) find none.
    EmptyCatalog(Vec<String>),
}

/// PostgreSQL system catalogs that drivers query on connect.
const CATALOGS: &[&str] = &[
    "pg_type",
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_index",
    "pg_constraint",
    "pg_description",
    "pg_enum",
    "pg_range",
    "pg_proc",
    "pg_attrdef",
    "pg_database",
    "pg_roles",
    "pg_extension",
];

/// The statement as a [`Local`] one, if the server answers it itself.
pub fn classify(statement: &DfStatement, user: &str) -> PgWireResult<Option<Local>> {
    let statement = match statement {
        DfStatement::Reset(datafusion::sql::parser::ResetStatement::Variable(name)) => {
            return Ok(Some(Local::Reset(reset_name(name))));
        }
        DfStatement::Statement(statement) => statement.as_ref(),
        _ => return Ok(None),
    };
    Ok(Some(match statement {
        SqlStatement::Set(set) => set_command(set)?,
        SqlStatement::ShowVariable { variable } => {
            let words: Vec<String> = variable
                .iter()
                .map(|i| i.value.to_ascii_lowercase())
                .collect();
            // The parser drops the dot of `SHOW app.x`: words are a setting's parts unless
            // they are one of PostgreSQL's few multi-word SHOW forms.
            let spaced = words.join(" ");
            let name = match spaced.as_str() {
                "transaction isolation level" | "time zone" | "session authorization" => spaced,
                _ => words.join("."),
            };
            Local::Show((name != "all").then_some(name))
        }
        SqlStatement::Reset(reset) => Local::Reset(match &reset.reset {
            Reset::ALL => None,
            Reset::ConfigurationParameter(name) => reset_name(name),
        }),
        SqlStatement::StartTransaction { modes, begin, .. } => {
            check_isolation(modes)?;
            Local::Begin {
                read_only: access_mode(modes),
                tag: if *begin { "BEGIN" } else { "START TRANSACTION" },
            }
        }
        SqlStatement::Commit { chain, .. } | SqlStatement::Rollback { chain, .. } if *chain => {
            return Err(sqlstate::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "AND CHAIN is not supported: end the block, then BEGIN again",
            ));
        }
        SqlStatement::Commit { .. } => Local::Commit,
        SqlStatement::Rollback {
            savepoint: Some(name),
            ..
        } => Local::RollbackTo(name.value.clone()),
        SqlStatement::Savepoint { name } => Local::Savepoint(name.value.clone()),
        SqlStatement::ReleaseSavepoint { name } => Local::Release(name.value.clone()),
        SqlStatement::Rollback { .. } => Local::Rollback,
        SqlStatement::Prepare {
            name, statement, ..
        } if !matches!(
            statement.as_ref(),
            SqlStatement::Query(_)
                | SqlStatement::Insert(_)
                | SqlStatement::Update(_)
                | SqlStatement::Delete(_)
        ) =>
        {
            // As PostgreSQL: only these can be prepared, so EXECUTE never runs an EXECUTE
            // (`PREPARE p AS EXECUTE p` recursed without end) or a PREPARE.
            return Err(sqlstate::error(
                sqlstate::SYNTAX_ERROR,
                "PREPARE takes a SELECT, VALUES, INSERT, UPDATE or DELETE statement",
            ));
        }
        SqlStatement::Prepare {
            name,
            statement,
            data_types,
        } => {
            let mut statement = DfStatement::Statement(statement.clone());
            super::params::declare_sql_types(&mut statement, data_types);
            Local::Prepare {
                name: name.value.clone(),
                statement: Box::new(statement),
            }
        }
        SqlStatement::Execute {
            name: Some(name),
            parameters,
            immediate: false,
            ..
        } => Local::Execute {
            name: object_name(name),
            parameters: parameters.clone(),
        },
        SqlStatement::Deallocate { name, .. } => Local::Deallocate(
            (!name.value.eq_ignore_ascii_case("all") || name.quote_style.is_some())
                .then(|| name.value.clone()),
        ),
        SqlStatement::Discard { object_type } => match object_type {
            DiscardObject::ALL | DiscardObject::PLANS => Local::Discard,
            _ => Local::SetNothing,
        },
        SqlStatement::Query(query) => match functions(query, user) {
            Some(values) => Local::Functions(values),
            None => match catalog_query(query) {
                Some(columns) => Local::EmptyCatalog(columns),
                None => return Ok(None),
            },
        },
        _ => return Ok(None),
    }))
}

fn reset_name(name: &ObjectName) -> Option<String> {
    let name = object_name(name);
    (!name.eq_ignore_ascii_case("all")).then_some(name)
}

fn object_name(name: &ObjectName) -> String {
    name.to_string().trim_matches('"').to_string()
}

fn set_command(set: &Set) -> PgWireResult<Local> {
    Ok(match set {
        Set::SingleAssignment {
            variable,
            values,
            scope,
            ..
        } => Local::Set {
            name: object_name(variable).to_ascii_lowercase(),
            value: values.iter().map(value_text).collect::<Vec<_>>().join(", "),
            local: matches!(scope, Some(ContextModifier::Local)),
        },
        Set::SetTimeZone { value, local } => Local::Set {
            name: "timezone".into(),
            value: value_text(value),
            local: *local,
        },
        Set::SetTransaction { modes, session, .. } => {
            check_isolation(modes)?;
            Local::SetTransaction {
                read_only: access_mode(modes),
                session: *session,
            }
        }
        Set::SetNames { .. } | Set::SetNamesDefault {} => Local::SetNothing,
        other => {
            return Err(sqlstate::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("{other} is not supported"),
            ));
        }
    })
}

/// OmenDB runs every transaction under snapshot isolation (PostgreSQL's REPEATABLE READ),
/// which is at least what READ COMMITTED and READ UNCOMMITTED ask. SERIALIZABLE is refused
/// rather than claimed: write skew remains possible.
fn check_isolation(modes: &[TransactionMode]) -> PgWireResult<()> {
    for mode in modes {
        if let TransactionMode::IsolationLevel(TransactionIsolationLevel::Serializable) = mode {
            return Err(sqlstate::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "isolation level SERIALIZABLE is not supported: OmenDB runs transactions under \
                 snapshot isolation (REPEATABLE READ), where write skew is possible",
            ));
        }
    }
    Ok(())
}

/// The access mode among `modes`: `Some(true)` for `READ ONLY`, `Some(false)` for `READ
/// WRITE`.
fn access_mode(modes: &[TransactionMode]) -> Option<bool> {
    modes.iter().rev().find_map(|mode| match mode {
        TransactionMode::AccessMode(TransactionAccessMode::ReadOnly) => Some(true),
        TransactionMode::AccessMode(TransactionAccessMode::ReadWrite) => Some(false),
        _ => None,
    })
}

/// A `SET` value as PostgreSQL takes it: strings unquoted, identifiers and numbers as written.
fn value_text(expr: &Expr) -> String {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(ident) => ident.value.clone(),
        other => other.to_string(),
    }
}

/// The result columns of a `SELECT` over system catalogs only (see [`Local::EmptyCatalog`]).
fn catalog_query(query: &datafusion::sql::sqlparser::ast::Query) -> Option<Vec<String>> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    if select.from.is_empty() {
        return None;
    }
    let mut all_catalogs = true;
    let mut check = |relation: &datafusion::sql::sqlparser::ast::TableFactor| {
        let datafusion::sql::sqlparser::ast::TableFactor::Table { name, .. } = relation else {
            all_catalogs = false;
            return;
        };
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
            .collect();
        let catalog = match parts.as_slice() {
            [table] => CATALOGS.contains(&table.as_str()),
            [schema, table] => schema == "pg_catalog" && CATALOGS.contains(&table.as_str()),
            _ => false,
        };
        all_catalogs &= catalog;
    };
    for table in &select.from {
        check(&table.relation);
        for join in &table.joins {
            check(&join.relation);
        }
    }
    if !all_catalogs {
        return None;
    }
    Some(
        select
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
                SelectItem::UnnamedExpr(Expr::Identifier(ident)) => ident.value.clone(),
                SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts
                    .last()
                    .map_or_else(|| "?column?".to_string(), |i| i.value.clone()),
                _ => "?column?".to_string(),
            })
            .collect(),
    )
}

/// The values of a `SELECT` of session functions only (no `FROM`, no arguments).
fn functions(
    query: &datafusion::sql::sqlparser::ast::Query,
    user: &str,
) -> Option<Vec<(String, Option<String>)>> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    if !select.from.is_empty() || select.selection.is_some() || select.projection.is_empty() {
        return None;
    }
    select
        .projection
        .iter()
        .map(|item| {
            let (expr, alias) = match item {
                SelectItem::UnnamedExpr(expr) => (expr, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
                _ => return None,
            };
            let Expr::Function(function) = expr else {
                return None;
            };
            let no_arguments = match &function.args {
                FunctionArguments::None => true,
                FunctionArguments::List(list) => list.args.is_empty(),
                FunctionArguments::Subquery(_) => false,
            };
            let parts = &function.name.0;
            let qualified_ok = parts.len() == 1
                || (parts.len() == 2
                    && parts[0]
                        .as_ident()
                        .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_catalog")));
            if !no_arguments || !qualified_ok {
                return None;
            }
            let name = parts.last()?.as_ident()?.value.to_ascii_lowercase();
            let value = match name.as_str() {
                "version" => Some(format!(
                    "PostgreSQL {} on {}-linux",
                    super::SERVER_VERSION,
                    std::env::consts::ARCH
                )),
                "current_schema" => Some("public".to_string()),
                "current_database" | "current_catalog" => Some("omendb".to_string()),
                "current_user" | "session_user" | "user" => Some(user.to_string()),
                _ => return None,
            };
            Some((alias.unwrap_or(name), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(sql: &str) -> Option<Local> {
        let statement = crate::cli::statements::split(sql)
            .expect("valid SQL")
            .remove(0)
            .ast;
        classify(&statement, "omen").expect("accepted")
    }

    #[test]
    fn drivers_connect_statements_are_answered_locally() {
        assert!(matches!(
            local("SET extra_float_digits = 3"),
            Some(Local::Set { name, value, .. }) if name == "extra_float_digits" && value == "3"
        ));
        assert!(matches!(
            local("SET application_name = 'PostgreSQL JDBC Driver'"),
            Some(Local::Set { value, .. }) if value == "PostgreSQL JDBC Driver"
        ));
        assert!(
            matches!(local("SHOW transaction isolation level"), Some(Local::Show(Some(n))) if n == "transaction isolation level")
        );
        assert!(matches!(
            local("BEGIN"),
            Some(Local::Begin {
                read_only: None,
                tag: "BEGIN"
            })
        ));
        assert!(matches!(
            local("START TRANSACTION READ ONLY"),
            Some(Local::Begin {
                read_only: Some(true),
                tag: "START TRANSACTION"
            })
        ));
        assert!(matches!(local("COMMIT"), Some(Local::Commit)));
        assert!(matches!(local("ROLLBACK"), Some(Local::Rollback)));
        assert!(matches!(
            local("DEALLOCATE ALL"),
            Some(Local::Deallocate(None))
        ));
        assert!(matches!(local("DEALLOCATE p1"), Some(Local::Deallocate(Some(n))) if n == "p1"));
        assert!(matches!(local("RESET ALL"), Some(Local::Reset(None))));
        match local("SELECT pg_catalog.version()") {
            Some(Local::Functions(values)) => {
                assert_eq!(values[0].0, "version");
                assert!(
                    values[0]
                        .1
                        .as_deref()
                        .is_some_and(|v| v.starts_with("PostgreSQL 16"))
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            local("SELECT current_schema()"),
            Some(Local::Functions(_))
        ));
        assert!(local("SELECT 1").is_none());
        assert!(matches!(
            local("SELECT typname AS name, oid FROM pg_catalog.pg_type t WHERE t.oid = 1"),
            Some(Local::EmptyCatalog(columns)) if columns == ["name", "oid"]
        ));
        assert!(local("SELECT * FROM pg_type JOIN t ON true").is_none());
        assert!(matches!(local("SAVEPOINT s1"), Some(Local::Savepoint(n)) if n == "s1"));
        assert!(
            matches!(local("ROLLBACK TO SAVEPOINT s1"), Some(Local::RollbackTo(n)) if n == "s1")
        );
        assert!(matches!(local("RELEASE SAVEPOINT s1"), Some(Local::Release(n)) if n == "s1"));
        assert!(local("SELECT version() FROM t").is_none());
    }
}
