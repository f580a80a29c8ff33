//! Printing results as tables, and the `\d` descriptions of tables.

use std::fmt::Write as _;

use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use omendb::Db;
use omendb::replicator::change::DataType;

use super::statements::{self, Kind};

/// A result as the shell prints it: a table and a row count for rows, a tag such as
/// `INSERT 3` for writes.
pub fn result(kind: Kind, batches: &[RecordBatch]) -> Result<String, omendb::Error> {
    match kind {
        Kind::Rows | Kind::Local => {
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            let mut out = String::new();
            if !batches.is_empty() {
                let table =
                    pretty_format_batches(batches).map_err(|e| omendb::Error::Sql(e.into()))?;
                let _ = writeln!(out, "{table}");
            }
            let _ = write!(out, "({rows} row{})", if rows == 1 { "" } else { "s" });
            Ok(out)
        }
        Kind::Count(tag) => Ok(format!("{tag} {}", statements::count(batches))),
        Kind::Done(tag) => Ok(tag.to_string()),
    }
}

/// The SQL name of a column type.
pub fn type_name(data_type: DataType) -> &'static str {
    match data_type {
        DataType::Boolean => "BOOLEAN",
        DataType::Int32 => "INT",
        DataType::Int64 => "BIGINT",
        DataType::Float64 => "DOUBLE",
        DataType::Utf8 => "TEXT",
        DataType::TimestampMicros => "TIMESTAMP",
        DataType::Date32 => "DATE",
    }
}

/// `\d`: the tables, their column and row counts.
pub fn list_tables(db: &Db) -> String {
    let mut tables = db.tables();
    if tables.is_empty() {
        return "No tables.".to_string();
    }
    tables.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rows = vec![[
        "table".to_string(),
        "columns".to_string(),
        "rows".to_string(),
    ]];
    for (name, schema) in &tables {
        let len = db
            .len(name)
            .map_or_else(|_| "?".to_string(), |n| n.to_string());
        rows.push([name.clone(), schema.columns.len().to_string(), len]);
    }
    grid(&rows)
}

/// `\d table`: its columns, types, nullability and key.
pub fn describe(db: &Db, table: &str) -> Result<String, omendb::Error> {
    let schema = db.schema(table)?;
    let mut rows = vec![[
        "column".to_string(),
        "type".to_string(),
        "nullable".to_string(),
        "key".to_string(),
    ]];
    for (i, column) in schema.columns.iter().enumerate() {
        rows.push([
            column.name.clone(),
            type_name(column.data_type).to_string(),
            if column.nullable { "yes" } else { "no" }.to_string(),
            if i == schema.key { "PRIMARY KEY" } else { "" }.to_string(),
        ]);
    }
    Ok(format!("Table \"{table}\"\n{}", grid(&rows)))
}

/// A plain text grid, the first row as header.
fn grid<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |row: &[String; N]| {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!(" {cell:<width$} "))
            .collect();
        cells.join("|").trim_end().to_string()
    };
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let _ = writeln!(out, "{}", line(row));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
            let _ = writeln!(out, "{}", rule.join("+"));
        }
    }
    out.trim_end().to_string()
}
