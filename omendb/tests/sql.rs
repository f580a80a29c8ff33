//! SQL queries: routes (index vs Parquet + delta), zero staleness, results against the Rust
//! API, bad SQL.

mod common;

use common::TempDir;

use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use omendb::replicator::ReplicatorOptions;
use omendb::replicator::change::{ColumnDef, DataType, TableSchema};
use omendb::wal::{SyncMode, WalOptions};
use omendb::{Db, DbOptions, Error, RouteKind, Value, WriteBatch};

fn open(dir: &TempDir, max_batch_rows: usize) -> Db {
    let options = DbOptions {
        wal: WalOptions {
            sync_mode: SyncMode::Buffered {
                interval: Duration::from_millis(5),
            },
            ..WalOptions::default()
        },
        replicator: ReplicatorOptions {
            max_batch_rows,
            ..ReplicatorOptions::default()
        },
        ..DbOptions::default()
    };
    Db::open(&dir.0, options).expect("open")
}

fn orders(db: &Db, count: i64) {
    db.create_table(
        "orders",
        TableSchema {
            columns: vec![
                ColumnDef::new("id", DataType::Int64, false),
                ColumnDef::new("customer", DataType::Int64, false),
                ColumnDef::new("amount", DataType::Float64, true),
                ColumnDef::new("item", DataType::Utf8, true),
            ],
            key: 0,
        },
    )
    .expect("create");
    let mut batch = WriteBatch::new();
    for id in 0..count {
        batch.insert(
            "orders",
            vec![
                Value::Int64(id),
                Value::Int64(id % 10),
                if id % 7 == 0 {
                    Value::Null
                } else {
                    Value::Float64(id as f64)
                },
                Value::Utf8(format!("item-{}", id % 3)),
            ],
        );
    }
    db.write(&batch).expect("write");
}

fn single_i64(batches: &[RecordBatch]) -> i64 {
    let column = batches[0].column(0);
    column.as_primitive::<Int64Type>().value(0)
}

#[test]
fn key_filters_take_the_index_and_the_rest_takes_parquet_plus_delta() {
    let dir = TempDir::new("routes");
    let db = open(&dir, 100);
    orders(&db, 1000);

    let result = db
        .sql("SELECT id, item FROM orders WHERE id = 42")
        .expect("point");
    assert_eq!(
        result.batches.iter().map(|b| b.num_rows()).sum::<usize>(),
        1
    );
    assert!(
        result.routes[0].kind == RouteKind::IndexPoint
            && result.routes[0].to_string().contains("index point lookup"),
        "{:?}",
        result.routes
    );

    let result = db
        .sql("SELECT count(*) FROM orders WHERE id BETWEEN 10 AND 19 AND customer = 3")
        .expect("range");
    assert_eq!(single_i64(&result.batches), 1);
    assert!(
        result.routes[0].kind == RouteKind::IndexRange
            && result.routes[0].to_string().contains("index range scan"),
        "{:?}",
        result.routes
    );

    let result = db
        .sql("SELECT count(*) FROM orders WHERE id IN (1, 2, 3, 5000)")
        .expect("in list");
    assert_eq!(single_i64(&result.batches), 3);

    let result = db
        .sql("SELECT customer, count(*) AS n, sum(amount) FROM orders GROUP BY customer ORDER BY customer")
        .expect("aggregate");
    assert!(
        result.routes[0].kind == RouteKind::ParquetDelta
            && result.routes[0].to_string().contains("Parquet + delta"),
        "{:?}",
        result.routes
    );
    let n = result.batches[0].column(1).as_primitive::<Int64Type>();
    assert_eq!(n.len(), 10);
    assert!(n.iter().all(|c| c == Some(100)));
}

#[test]
fn analytics_see_every_acknowledged_write_before_and_after_flushes() {
    let dir = TempDir::new("fresh");
    let db = open(&dir, 1_000_000);
    orders(&db, 500);
    // Nothing flushed yet (a million-row batch size): the rows come from the delta.
    assert_eq!(db.replicator().stats().files, 0);
    let count = |db: &Db| {
        single_i64(
            &db.sql("SELECT count(*) FROM orders")
                .expect("count")
                .batches,
        )
    };
    assert_eq!(count(&db), 500);
    let mut batch = WriteBatch::new();
    batch.delete("orders", 3).upsert(
        "orders",
        vec![
            Value::Int64(9999),
            Value::Int64(1),
            Value::Null,
            Value::Null,
        ],
    );
    db.write(&batch).expect("write");
    assert_eq!(count(&db), 500, "one deleted, one inserted");
    db.replicator().flush_now().expect("flush");
    assert!(db.replicator().stats().files >= 1);
    assert_eq!(count(&db), 500);
    let mut batch = WriteBatch::new();
    batch.delete("orders", 4);
    db.write(&batch).expect("write");
    assert_eq!(count(&db), 499, "files plus delta, right after the write");
    let nulls = db
        .sql("SELECT count(*) FROM orders WHERE amount IS NULL")
        .expect("nulls");
    // Multiples of 7 below 500 (72 of them, 0 included) minus none deleted, plus id 9999.
    assert_eq!(single_i64(&nulls.batches), 72 + 1);
}

#[test]
fn joins_windows_and_order_by_work_over_the_tables() {
    let dir = TempDir::new("joins");
    let db = open(&dir, 100);
    orders(&db, 200);
    db.create_table(
        "customers",
        TableSchema {
            columns: vec![
                ColumnDef::new("id", DataType::Int64, false),
                ColumnDef::new("name", DataType::Utf8, true),
            ],
            key: 0,
        },
    )
    .expect("create");
    let mut batch = WriteBatch::new();
    for id in 0..10 {
        batch.insert(
            "customers",
            vec![Value::Int64(id), Value::Utf8(format!("c{id}"))],
        );
    }
    db.write(&batch).expect("write");
    let result = db
        .sql(
            "SELECT c.name, count(*) AS n, rank() OVER (ORDER BY count(*) DESC, c.name) AS r \
             FROM orders o JOIN customers c ON o.customer = c.id \
             GROUP BY c.name ORDER BY r LIMIT 3",
        )
        .expect("join");
    let names = result.batches[0].column(0).as_string::<i32>();
    assert_eq!(names.value(0), "c0");
    assert_eq!(result.batches[0].num_rows(), 3);
    assert_eq!(result.routes.len(), 2);
}

#[test]
fn bad_sql_is_an_error_and_the_database_stays_usable() {
    let dir = TempDir::new("bad");
    let db = open(&dir, 100);
    orders(&db, 10);
    for query in [
        "SELEC * FROM orders",
        "SELECT * FROM nowhere",
        "SELECT nope FROM orders",
        "SELECT item + 1 FROM orders",
    ] {
        let error = db.sql(query).expect_err(query);
        if query.contains("nowhere") {
            assert!(
                matches!(&error, Error::NoSuchTable(t) if t == "nowhere"),
                "{error}"
            );
        } else {
            assert!(matches!(error, Error::Sql(_)), "{query}: {error}");
        }
        assert!(!error.to_string().is_empty());
    }
    let result = db.sql("SELECT count(*) FROM orders").expect("still usable");
    assert_eq!(single_i64(&result.batches), 10);
}

#[test]
fn explain_shows_the_route() {
    let dir = TempDir::new("explain");
    let db = open(&dir, 100);
    orders(&db, 50);
    let explain = |query: &str| -> String {
        let result = db.sql(query).expect("explain");
        result
            .batches
            .iter()
            .flat_map(|b| {
                let kinds = b.column(0).as_string::<i32>();
                let plans = b.column(1).as_string::<i32>();
                (0..b.num_rows())
                    .map(|i| format!("{}: {}", kinds.value(i), plans.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let point = explain("EXPLAIN SELECT * FROM orders WHERE id = 7");
    assert!(
        point.contains("omendb_route: orders: index point lookup"),
        "{point}"
    );
    let scan = explain("explain SELECT sum(amount) FROM orders");
    assert!(
        scan.contains("omendb_route: orders: Parquet + delta snapshot scan"),
        "{scan}"
    );
}
