//! The index fast path of SQL against DataFusion: generated key reads (points, `IN` lists,
//! ranges, aliases, `*`, quoted names, keys that are missing, deleted or out of range) over
//! rows with NULLs, deletes, rows flushed to Parquet and rows not yet flushed give the same
//! columns and rows through `Db::sql`, `Db::sql_stream` and DataFusion's plan
//! (`Db::sql_planned`) at the same snapshot, and the keys they return are the ones a
//! `BTreeMap` model of the writes holds for the predicate (an oracle that shares no code with
//! the index or the scans); look-alikes that are not key reads, and errors, are DataFusion's.

#![allow(clippy::unwrap_used)]

mod common;

use common::{TempDir, rows_text};

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use omendb::replicator::change::{ColumnDef, DataType, TableSchema};
use omendb::{Db, DbOptions, QueryResult, RouteKind, Value, WriteBatch};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn table(db: &Db) {
    db.create_table(
        "t",
        TableSchema {
            columns: vec![
                ColumnDef::new("v", DataType::Int64, true),
                ColumnDef::new("id", DataType::Int64, false),
                ColumnDef::new("Name", DataType::Utf8, true),
                ColumnDef::new("x", DataType::Float64, true),
                ColumnDef::new("ok", DataType::Boolean, true),
                ColumnDef::new("day", DataType::Date32, true),
                ColumnDef::new("at", DataType::TimestampMicros, true),
                ColumnDef::new("small", DataType::Int32, true),
            ],
            key: 1,
        },
    )
    .unwrap();
}

fn row(rng: &mut StdRng, id: i64) -> Vec<Value> {
    let values = vec![
        Value::Int64(rng.random_range(-5..5)),
        Value::Int64(id),
        Value::Utf8(format!("n{}", rng.random_range(0..9))),
        Value::Float64(rng.random_range(-1.0..1.0)),
        Value::Boolean(rng.random()),
        Value::Date32(rng.random_range(0..20_000)),
        Value::TimestampMicros(rng.random_range(0..1 << 50)),
        Value::Int32(rng.random()),
    ];
    // Every column but the key is NULL a fifth of the time.
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            if i != 1 && rng.random_bool(0.2) {
                Value::Null
            } else {
                v
            }
        })
        .collect()
}

/// Keys -60..60 written, a third deleted, some flushed to Parquet and some only in memory.
/// Returns the rows the table holds, by key: the oracle the reads are checked against.
fn load(db: &Db, rng: &mut StdRng) -> BTreeMap<i64, Vec<Value>> {
    let mut model = BTreeMap::new();
    for round in 0..3 {
        let mut batch = WriteBatch::new();
        for id in -60..60 {
            if rng.random_bool(0.5) {
                let row = row(rng, id);
                model.insert(id, row.clone());
                batch.upsert("t", row);
            } else if rng.random_bool(0.3) {
                model.remove(&id);
                batch.delete("t", id);
            }
        }
        db.write(&batch).unwrap();
        if round < 2 {
            db.replicator().flush_now().unwrap();
        }
    }
    for id in [i64::MAX, i64::MIN] {
        let row = row(rng, id);
        model.insert(id, row.clone());
        db.write(WriteBatch::new().upsert("t", row)).unwrap();
    }
    model
}

/// A generated predicate on one integer column, evaluated on the model.
struct Predicate {
    /// The column's position in the table (`id` or `v`).
    column: usize,
    test: Box<dyn Fn(i64) -> bool>,
}

impl Predicate {
    /// The keys of the model's rows that satisfy it (a NULL satisfies nothing).
    fn keys(&self, model: &BTreeMap<i64, Vec<Value>>) -> Vec<i64> {
        model
            .iter()
            .filter(|(_, row)| match row[self.column] {
                Value::Int64(v) => (self.test)(v),
                _ => false,
            })
            .map(|(&id, _)| id)
            .collect()
    }
}

/// A key as written in the statement (a literal or a placeholder) and its value.
fn key(rng: &mut StdRng, parameters: &mut Option<Vec<String>>) -> (String, i64) {
    let (key, value) = match rng.random_range(0..12) {
        0 => (i64::MAX.to_string(), i64::MAX),
        1 => (i64::MIN.to_string(), i64::MIN),
        2 => ("-0".to_string(), 0),
        _ => {
            let k = rng.random_range(-70..70);
            (k.to_string(), k)
        }
    };
    match parameters {
        Some(values) => {
            values.push(key);
            (format!("${}", values.len()), value)
        }
        None => (key, value),
    }
}

/// A key read, or something that looks like one, and its predicate.
fn statement(rng: &mut StdRng) -> (String, Predicate) {
    statement_with(rng, &mut None)
}

/// A key read with `$n` placeholders for its keys, the values they stand for, and the
/// statement with the values written in.
fn prepared_statement(rng: &mut StdRng) -> (String, Vec<String>, String) {
    let mut values = Some(Vec::new());
    let (sql, _) = statement_with(rng, &mut values);
    let values = values.unwrap_or_default();
    let mut bound = sql.clone();
    for (i, value) in values.iter().enumerate().rev() {
        bound = bound.replace(&format!("${}", i + 1), value);
    }
    (sql, values, bound)
}

fn statement_with(rng: &mut StdRng, parameters: &mut Option<Vec<String>>) -> (String, Predicate) {
    const COLUMNS: &[&str] = &["v", "id", "\"Name\"", "x", "ok", "day", "at", "small"];
    let projection = if rng.random_bool(0.3) {
        "*".to_string()
    } else {
        let count = rng.random_range(1..4);
        (0..count)
            .map(|i| {
                let column = COLUMNS[rng.random_range(0..COLUMNS.len())];
                match rng.random_range(0..4) {
                    0 => format!("{column} AS a{i}"),
                    1 => column.to_uppercase().replace("\"NAME\"", "\"Name\""),
                    _ => column.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (column, position) = if rng.random_bool(0.85) {
        ("id", 1)
    } else {
        ("v", 0)
    };
    let column = if rng.random_bool(0.1) && position == 1 {
        "ID"
    } else {
        column
    };
    let mut key = |rng: &mut StdRng| key(rng, parameters);
    let (predicate, test): (String, Box<dyn Fn(i64) -> bool>) = match rng.random_range(0..7) {
        0 => {
            let (k, value) = key(rng);
            (format!("{column} = {k}"), Box::new(move |v| v == value))
        }
        1 => {
            let (k, value) = key(rng);
            (format!("{k} = {column}"), Box::new(move |v| v == value))
        }
        2 => {
            let keys: Vec<(String, i64)> = (0..rng.random_range(1..6)).map(|_| key(rng)).collect();
            let text: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
            let values: Vec<i64> = keys.iter().map(|(_, v)| *v).collect();
            (
                format!("{column} IN ({})", text.join(", ")),
                Box::new(move |v| values.contains(&v)),
            )
        }
        3 => {
            let ((low, lo), (high, hi)) = (key(rng), key(rng));
            (
                format!("{column} BETWEEN {low} AND {high}"),
                Box::new(move |v| lo <= v && v <= hi),
            )
        }
        4 => {
            let ((low, lo), (high, hi)) = (key(rng), key(rng));
            (
                format!("{column} > {low} AND {column} <= {high}"),
                Box::new(move |v| lo < v && v <= hi),
            )
        }
        5 => {
            let ((low, lo), (high, hi)) = (key(rng), key(rng));
            (
                format!("({column} >= {low}) AND {column} < {high}"),
                Box::new(move |v| lo <= v && v < hi),
            )
        }
        _ => {
            let (k, value) = key(rng);
            (format!("{column} < {k}"), Box::new(move |v| v < value))
        }
    };
    let sql = format!("SELECT {projection} FROM t WHERE {predicate}");
    let predicate = Predicate {
        column: position,
        test,
    };
    (sql, predicate)
}

fn fields(batches: &[RecordBatch]) -> Vec<(String, arrow::datatypes::DataType, bool)> {
    batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
                .collect()
        })
        .unwrap_or_default()
}

/// The rows, sorted: without ORDER BY, DataFusion's order is its own (it may repartition);
/// the fast path's is key order.
fn sorted_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut rows = rows_text(batches);
    rows.sort();
    rows
}

fn same(sql: &str, fast: &QueryResult, planned: &QueryResult) {
    assert_eq!(fast.snapshot_lsn, planned.snapshot_lsn, "{sql}");
    assert_eq!(
        sorted_rows(&fast.batches),
        sorted_rows(&planned.batches),
        "{sql}"
    );
    let planned_fields = fields(&planned.batches);
    if !planned_fields.is_empty() {
        assert_eq!(fields(&fast.batches), planned_fields, "{sql}");
    }
}

#[test]
fn key_reads_give_the_same_columns_and_rows_on_every_path() {
    let dir = TempDir::new("key-reads");
    let db = Db::open(&dir.0, DbOptions::default()).unwrap();
    table(&db);
    let mut rng = StdRng::seed_from_u64(17);
    let model = load(&db, &mut rng);
    let (mut fast_reads, mut errors) = (0, 0);
    for _ in 0..600 {
        let (sql, predicate) = statement(&mut rng);
        let (fast, planned) = (db.sql(&sql), db.sql_planned(&sql));
        match (&fast, &planned) {
            (Ok(fast), Ok(planned)) => {
                same(&sql, fast, planned);
                // The keys the model holds for the predicate, read through the same paths:
                // an oracle that shares no code with the index or the scans.
                let (_, filter) = sql.split_once(" WHERE ").unwrap();
                let keys_sql = format!("SELECT id FROM t WHERE {filter}");
                let expected: Vec<String> =
                    predicate.keys(&model).iter().map(i64::to_string).collect();
                for read in [db.sql(&keys_sql), db.sql_planned(&keys_sql)] {
                    let mut keys: Vec<String> = sorted_rows(&read.unwrap().batches)
                        .into_iter()
                        .flatten()
                        .collect();
                    keys.sort_by_key(|k| k.parse::<i64>().unwrap());
                    assert_eq!(keys, expected, "{keys_sql}");
                }
                let streamed = db.sql_stream(&sql).unwrap();
                let routes = streamed.routes();
                let batches: Vec<RecordBatch> = streamed.collect::<Result<_, _>>().unwrap();
                assert_eq!(sorted_rows(&batches), sorted_rows(&fast.batches), "{sql}");
                assert_eq!(routes, fast.routes, "{sql}");
                let indexed = fast
                    .routes
                    .iter()
                    .all(|r| matches!(r.kind, RouteKind::IndexPoint | RouteKind::IndexRange));
                fast_reads += usize::from(indexed);
            }
            (Err(fast), Err(planned)) => {
                assert_eq!(fast.to_string(), planned.to_string(), "{sql}");
                errors += 1;
            }
            _ => panic!("{sql}: the paths disagree: {fast:?} vs {planned:?}"),
        }
    }
    eprintln!("600 statements: {fast_reads} served by the index, {errors} errors on both paths");
    assert!(fast_reads > 300, "{fast_reads}");
    db.close().unwrap();
}

/// The one statement of `sql`, parsed.
fn parsed(sql: &str) -> omendb::datafusion::sql::parser::Statement {
    let dialect = omendb::datafusion::sql::sqlparser::dialect::GenericDialect {};
    let mut statements =
        omendb::datafusion::sql::parser::DFParser::parse_sql_with_dialect(sql, &dialect).unwrap();
    statements.pop_front().unwrap()
}

#[test]
fn prepared_key_reads_match_the_bound_statement_and_describe_as_datafusion_plans_them() {
    let dir = TempDir::new("prepared-key-reads");
    let db = Db::open(&dir.0, DbOptions::default()).unwrap();
    table(&db);
    let mut rng = StdRng::seed_from_u64(29);
    load(&db, &mut rng);
    let mut served = 0;
    for _ in 0..400 {
        let (sql, values, bound) = prepared_statement(&mut rng);
        let statement = parsed(&sql);
        let parameters: Vec<Option<i64>> = values.iter().map(|v| v.parse().ok()).collect();
        let planned = db.sql_planned(&bound);
        match db.prepared_key_read(&statement, &parameters).unwrap() {
            Some(fast) => {
                same(&sql, &fast, &planned.unwrap());
                served += 1;
            }
            // Not a key read: Db::sql of the bound statement is DataFusion's plan.
            None => match (db.sql(&bound), planned) {
                (Ok(text), Ok(planned)) => same(&bound, &text, &planned),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{bound}"),
                (a, b) => panic!("{bound}: {a:?} vs {b:?}"),
            },
        }
        // Describe: the same columns as DataFusion's plan, and every placeholder type
        // DataFusion infers.
        match (
            db.describe_sql(statement.clone()),
            db.describe_planned(statement),
        ) {
            (Ok(fast), Ok(planned)) => {
                assert_eq!(fast.schema, planned.schema, "{sql}");
                for (name, inferred) in &planned.parameters {
                    if inferred.is_some() {
                        assert_eq!(fast.parameters.get(name), Some(inferred), "{sql} {name}");
                    }
                }
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{sql}"),
            (a, b) => panic!("{sql}: describe disagrees: {a:?} vs {b:?}"),
        }
    }
    eprintln!("400 prepared statements: {served} served by the index");
    assert!(served > 200, "{served}");
    // A NULL parameter is no key: the statement goes to DataFusion (no rows there).
    let point = parsed("SELECT id FROM t WHERE id = $1");
    assert!(db.prepared_key_read(&point, &[None]).unwrap().is_none());
    db.close().unwrap();
}

#[test]
fn the_fast_path_answers_key_reads_and_leaves_the_rest_to_datafusion() {
    let dir = TempDir::new("key-read-routes");
    let db = Db::open(&dir.0, DbOptions::default()).unwrap();
    table(&db);
    let mut rng = StdRng::seed_from_u64(3);
    load(&db, &mut rng);
    let point = db.sql("SELECT id, v FROM t WHERE id = 5").unwrap();
    let planned = db.sql_planned("SELECT id, v FROM t WHERE id = 5").unwrap();
    same("point", &point, &planned);
    // A non-key predicate of the same shape is DataFusion's (a scan of Parquet + delta).
    let scan = db.sql("SELECT id FROM t WHERE v = 1").unwrap();
    assert_eq!(scan.routes[0].kind, RouteKind::ParquetDelta);
    // Errors come from DataFusion, whatever the shape.
    let unknown = db.sql("SELECT nope FROM t WHERE id = 1").unwrap_err();
    assert!(unknown.to_string().contains("nope"), "{unknown}");
    assert!(matches!(
        db.sql("SELECT * FROM missing WHERE id = 1"),
        Err(omendb::Error::NoSuchTable(_))
    ));
    // With the fast path off, the same read is planned (and still served by the index).
    let off = TempDir::new("key-read-off");
    let options = DbOptions {
        sql_fast_path: false,
        ..DbOptions::default()
    };
    let db2 = Db::open(&off.0, options).unwrap();
    table(&db2);
    db2.write(WriteBatch::new().upsert("t", row(&mut rng, 5)))
        .unwrap();
    let result = db2.sql("SELECT id FROM t WHERE id = 5").unwrap();
    assert_eq!(rows_text(&result.batches), [["5"]]);
    db2.close().unwrap();
    db.close().unwrap();
}
