//! Differential SQL test: the same statements run in OmenDB and in DuckDB (through
//! `scripts/sql_oracle.py`), and ~30 queries must give the same rows in both. The data is
//! changed by UPDATE, DELETE and INSERT ... SELECT before the queries, and the queries run
//! twice in OmenDB: with most rows not yet flushed (served from the replicator's delta and
//! the index) and after a flush (served from Parquet).
//!
//! Needs python3 with duckdb: `scripts/install-test-deps.sh` installs it.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType as ArrowType, Float64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use common::TempDir;
use omendb::replicator::ReplicatorOptions;
use omendb::{Db, DbOptions};
use serde_json::Value as Json;

const INSTALL_HINT: &str =
    "run scripts/install-test-deps.sh to install python3 with the duckdb module";

/// Statements run in both engines before the queries.
fn setup() -> Vec<String> {
    let mut statements = vec![
        "CREATE TABLE customers (id BIGINT PRIMARY KEY, name VARCHAR, region VARCHAR, \
         vip BOOLEAN)"
            .to_string(),
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer BIGINT, amount DOUBLE, \
         status VARCHAR, placed DATE)"
            .to_string(),
    ];
    let regions = ["north", "south", "east", "west"];
    let customers: Vec<String> = (1..=120)
        .map(|id| {
            let region = if id % 11 == 0 {
                "NULL".to_string()
            } else {
                format!("'{}'", regions[id % 4])
            };
            format!("({id}, 'c{id}', {region}, {})", id % 3 == 0)
        })
        .collect();
    statements.push(format!(
        "INSERT INTO customers VALUES {}",
        customers.join(", ")
    ));
    let statuses = ["pending", "shipped", "delivered", "returned"];
    for chunk in (0..2000i64).collect::<Vec<_>>().chunks(250) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|&id| {
                let amount = if id % 9 == 0 {
                    "NULL".to_string()
                } else {
                    format!("{}.25", (id * 37) % 1000)
                };
                format!(
                    "({id}, {}, {amount}, '{}', DATE '2024-01-01' + INTERVAL '{} days')",
                    1 + (id * 7) % 130,
                    statuses[(id % 4) as usize],
                    id % 200
                )
            })
            .collect();
        statements.push(format!("INSERT INTO orders VALUES {}", rows.join(", ")));
    }
    statements.extend(
        [
            "UPDATE orders SET amount = amount * 1.5 WHERE status = 'pending'",
            "DELETE FROM orders WHERE id % 17 = 0",
            "UPDATE customers SET region = NULL WHERE id % 13 = 0",
            "INSERT INTO orders SELECT id + 10000, customer, amount, 'copied', placed \
             FROM orders WHERE id < 100",
            "DELETE FROM customers WHERE id > 110",
            "UPDATE orders SET status = 'late', amount = NULL WHERE id BETWEEN 500 AND 520",
        ]
        .map(String::from),
    );
    statements
}

/// The queries compared; `true` when the row order is part of the answer.
const QUERIES: &[(&str, bool)] = &[
    ("SELECT COUNT(*) FROM orders", false),
    ("SELECT * FROM customers WHERE id = 17", false),
    (
        "SELECT id, name FROM customers WHERE id IN (1, 5, 42, 999999) ORDER BY id",
        true,
    ),
    (
        "SELECT COUNT(*), SUM(amount) FROM orders WHERE id BETWEEN 100 AND 300",
        false,
    ),
    (
        "SELECT id FROM orders WHERE id > 1950 AND id < 10000 ORDER BY id",
        true,
    ),
    ("SELECT id, status FROM orders WHERE id >= 10090", false),
    ("SELECT COUNT(*) FROM orders WHERE amount IS NULL", false),
    (
        "SELECT COUNT(amount), AVG(amount), MIN(amount), MAX(amount) FROM orders",
        false,
    ),
    (
        "SELECT customer, COUNT(*), SUM(amount) FROM orders GROUP BY customer",
        false,
    ),
    (
        "SELECT status, COUNT(*) FROM orders GROUP BY status HAVING COUNT(*) > 10",
        false,
    ),
    (
        "SELECT c.region, SUM(o.amount), COUNT(*) FROM orders o JOIN customers c \
         ON o.customer = c.id GROUP BY c.region",
        false,
    ),
    (
        "SELECT c.id, COUNT(o.id) FROM customers c LEFT JOIN orders o ON o.customer = c.id \
         GROUP BY c.id",
        false,
    ),
    (
        "SELECT id, amount FROM orders ORDER BY amount DESC NULLS LAST, id LIMIT 10",
        true,
    ),
    (
        "SELECT id, amount FROM orders ORDER BY amount ASC NULLS FIRST, id LIMIT 5 OFFSET 3",
        true,
    ),
    (
        "SELECT id, customer, ROW_NUMBER() OVER (PARTITION BY customer ORDER BY id) \
         FROM orders WHERE customer < 5",
        false,
    ),
    (
        "SELECT id, SUM(amount) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND \
         CURRENT ROW) FROM orders WHERE id < 60 ORDER BY id",
        true,
    ),
    ("SELECT DISTINCT status FROM orders", false),
    ("SELECT COUNT(DISTINCT customer) FROM orders", false),
    (
        "SELECT CASE WHEN amount > 500 THEN 'big' ELSE 'small' END AS size, COUNT(*) \
         FROM orders GROUP BY 1",
        false,
    ),
    (
        "SELECT UPPER(name), LENGTH(name) FROM customers WHERE name LIKE 'c1%'",
        false,
    ),
    ("SELECT SUM(COALESCE(amount, 0)) FROM orders", false),
    (
        "SELECT COUNT(*) FROM orders WHERE customer IN \
         (SELECT id FROM customers WHERE region = 'north')",
        false,
    ),
    (
        "SELECT COUNT(*) FROM customers c WHERE NOT EXISTS \
         (SELECT 1 FROM orders o WHERE o.customer = c.id)",
        false,
    ),
    (
        "WITH t AS (SELECT customer, SUM(amount) AS s FROM orders GROUP BY customer) \
         SELECT MAX(s), MIN(s), COUNT(*) FROM t",
        false,
    ),
    (
        "SELECT id FROM customers WHERE id < 5 UNION ALL SELECT id FROM orders WHERE id < 3",
        false,
    ),
    (
        "SELECT COUNT(*) FROM orders WHERE placed >= DATE '2024-03-01'",
        false,
    ),
    (
        "SELECT EXTRACT(MONTH FROM placed) AS m, COUNT(*) FROM orders GROUP BY m",
        false,
    ),
    ("SELECT vip, COUNT(*) FROM customers GROUP BY vip", false),
    ("SELECT id, amount * 2 + 1 FROM orders WHERE id < 10", false),
    (
        "SELECT COUNT(*) FROM orders WHERE id < 500 AND status = 'shipped'",
        false,
    ),
    (
        "SELECT COUNT(*) FROM orders a JOIN orders b ON a.id = b.id + 1",
        false,
    ),
    ("SELECT * FROM customers WHERE id = -1", false),
    (
        "SELECT region, vip, COUNT(*) FROM customers WHERE region IS NOT NULL GROUP BY region, vip",
        false,
    ),
];

/// A number as both engines' results are compared: integral values as integers, others to
/// nine significant digits (sums may add in different orders).
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        format!("{}", value as i64)
    } else {
        format!("{value:.8e}")
    }
}

fn json_cell(value: &Json) -> String {
    match value {
        Json::Null => "NULL".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn arrow_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let mut columns: Vec<Vec<String>> = Vec::new();
        for column in batch.columns() {
            let cells = match column.data_type() {
                ArrowType::Float64 => {
                    let floats = column.as_primitive::<Float64Type>();
                    (0..floats.len())
                        .map(|i| {
                            if floats.is_null(i) {
                                "NULL".to_string()
                            } else {
                                number(floats.value(i))
                            }
                        })
                        .collect()
                }
                _ => {
                    let formatter =
                        ArrayFormatter::try_new(column.as_ref(), &options).expect("formatter");
                    (0..column.len())
                        .map(|i| formatter.value(i).to_string())
                        .collect()
                }
            };
            columns.push(cells);
        }
        for row in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c[row].clone()).collect());
        }
    }
    rows
}

/// DuckDB's answers to `QUERIES` after `setup`.
fn duckdb_answers(setup: &[String]) -> Vec<Vec<Vec<String>>> {
    let request = serde_json::json!({
        "setup": setup,
        "queries": QUERIES.iter().map(|(q, _)| *q).collect::<Vec<_>>(),
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/sql_oracle.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): {INSTALL_HINT}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write the request");
    let output = child.wait_with_output().expect("oracle output");
    assert!(
        output.status.success(),
        "sql_oracle.py failed: {}\n{INSTALL_HINT}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Json> = serde_json::from_slice(&output.stdout).expect("oracle JSON");
    results
        .iter()
        .zip(QUERIES)
        .map(|(result, (query, _))| {
            let rows = result
                .get("rows")
                .and_then(Json::as_array)
                .unwrap_or_else(|| panic!("DuckDB failed on {query}: {result}"));
            rows.iter()
                .map(|row| row.as_array().expect("row").iter().map(json_cell).collect())
                .collect()
        })
        .collect()
}

fn compare(db: &Db, expected: &[Vec<Vec<String>>], phase: &str) {
    let mut failures = Vec::new();
    for ((query, ordered), want) in QUERIES.iter().zip(expected) {
        let got = match db.sql(query) {
            Ok(result) => arrow_rows(&result.batches),
            Err(e) => {
                failures.push(format!("{query}\n  OmenDB error: {e}"));
                continue;
            }
        };
        let (mut got, mut want) = (got, want.clone());
        if !ordered {
            got.sort();
            want.sort();
        }
        if got != want {
            let show = |rows: &[Vec<String>]| {
                format!(
                    "{} rows, first {:?}",
                    rows.len(),
                    &rows[..rows.len().min(5)]
                )
            };
            failures.push(format!(
                "{query}\n  OmenDB: {}\n  DuckDB: {}",
                show(&got),
                show(&want)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{phase}: {} of {} queries differ from DuckDB:\n{}",
        failures.len(),
        QUERIES.len(),
        failures.join("\n")
    );
}

#[test]
fn queries_match_duckdb_before_and_after_flushing() {
    let setup = setup();
    let expected = duckdb_answers(&setup);
    assert!(
        expected.iter().any(|rows| rows.len() > 20),
        "the data set is too small"
    );
    let dir = TempDir::new("sql-differential");
    let options = DbOptions {
        replicator: ReplicatorOptions {
            max_batch_rows: 300,
            ..ReplicatorOptions::default()
        },
        ..DbOptions::default()
    };
    let db = Db::open(&dir.0, options).expect("open");
    for statement in &setup {
        db.sql(statement)
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    compare(&db, &expected, "before flushing");
    db.replicator().flush_now().expect("flush");
    compare(&db, &expected, "after flushing");
    db.close().expect("close");
}
