//! Splitting SQL text into statements and telling what each returns, so that the shell and
//! the server answer each statement of a script on its own (as psql and PostgreSQL do).

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

/// What a statement's result is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Rows (`SELECT`, `EXPLAIN`, ...).
    Rows,
    /// A write: its one `count` row is the number of rows written; the tag is `INSERT`,
    /// `UPDATE` or `DELETE`.
    Count(&'static str),
    /// A schema change with nothing to return; the tag is e.g. `CREATE TABLE`.
    Done(&'static str),
    /// A session or transaction statement (`SET`, `SHOW`, `BEGIN`, `PREPARE`, ...), which the
    /// server answers itself.
    Local,
}

/// One statement of a script.
#[derive(Clone, Debug)]
pub struct Statement {
    /// What it returns.
    pub kind: Kind,
    /// Its syntax tree.
    pub ast: DfStatement,
}

/// Parses `text` into statements, each run from its syntax tree (`Db::sql_parsed_with`).
pub fn split(text: &str) -> Result<Vec<Statement>, omendb::Error> {
    let statements = omendb::parse_sql(text, &omendb::SqlLimits::default())?;
    Ok(statements
        .into_iter()
        .map(|ast| Statement {
            kind: kind(&ast),
            ast,
        })
        .collect())
}

/// What `statement` returns.
pub fn kind(statement: &DfStatement) -> Kind {
    let statement = match statement {
        DfStatement::Statement(statement) => statement,
        DfStatement::Reset(_) => return Kind::Local,
        _ => return Kind::Rows,
    };
    match statement.as_ref() {
        SqlStatement::Insert(_) => Kind::Count("INSERT"),
        SqlStatement::Update(_) => Kind::Count("UPDATE"),
        SqlStatement::Delete(_) => Kind::Count("DELETE"),
        SqlStatement::CreateTable(_) => Kind::Done("CREATE TABLE"),
        SqlStatement::Drop { .. } => Kind::Done("DROP TABLE"),
        SqlStatement::AlterTable(_) => Kind::Done("ALTER TABLE"),
        SqlStatement::Set(_)
        | SqlStatement::ShowVariable { .. }
        | SqlStatement::Reset(_)
        | SqlStatement::StartTransaction { .. }
        | SqlStatement::Commit { .. }
        | SqlStatement::Rollback { .. }
        | SqlStatement::Prepare { .. }
        | SqlStatement::Execute { .. }
        | SqlStatement::Deallocate { .. }
        | SqlStatement::Discard { .. }
        | SqlStatement::Savepoint { .. }
        | SqlStatement::ReleaseSavepoint { .. } => Kind::Local,
        _ => Kind::Rows,
    }
}

/// The number in a write's one-row `count` result.
pub fn count(batches: &[arrow::record_batch::RecordBatch]) -> usize {
    use arrow::array::{Array, UInt64Array};
    batches
        .iter()
        .filter_map(|b| b.column(0).as_any().downcast_ref::<UInt64Array>())
        .filter(|a| !a.is_empty() && a.is_valid(0))
        .map(|a| usize::try_from(a.value(0)).unwrap_or(usize::MAX))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_script_and_classifies_each_statement() {
        let statements = split(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, s TEXT); INSERT INTO t VALUES (1, 'a;b'); \
             SELECT * FROM t; UPDATE t SET s = 'x'; DELETE FROM t; DROP TABLE t",
        )
        .expect("valid SQL");
        let kinds: Vec<Kind> = statements.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Done("CREATE TABLE"),
                Kind::Count("INSERT"),
                Kind::Rows,
                Kind::Count("UPDATE"),
                Kind::Count("DELETE"),
                Kind::Done("DROP TABLE"),
            ]
        );
        assert!(statements[1].ast.to_string().contains("'a;b'"));
        assert!(split("SELEC 1").is_err());
    }
}
