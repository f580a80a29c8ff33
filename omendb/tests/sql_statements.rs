//! SQL statements that change the database: DDL and DML through `Db::sql`, checked against
//! the Rust API, across reopening, and for bad input.

mod common;

use common::{TempDir, rows_text};

use omendb::replicator::change::DataType;
use omendb::{Db, DbOptions, Error, Value};

fn open(dir: &TempDir) -> Db {
    Db::open(&dir.0, DbOptions::default()).expect("open")
}

fn run(db: &Db, sql: &str) -> Vec<Vec<String>> {
    match db.sql(sql) {
        Ok(result) => rows_text(&result.batches),
        Err(e) => panic!("{sql}: {e}"),
    }
}

fn count(db: &Db, sql: &str) -> String {
    let rows = run(db, sql);
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0][0].clone()
}

#[test]
fn create_insert_update_delete_round_trip_and_replay() {
    let dir = TempDir::new("sql-dml");
    {
        let db = open(&dir);
        run(
            &db,
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner VARCHAR NOT NULL, \
             balance DOUBLE, opened DATE, vip BOOLEAN, n INT, at TIMESTAMP)",
        );
        let schema = db.schema("accounts").expect("schema");
        let types: Vec<DataType> = schema.columns.iter().map(|c| c.data_type).collect();
        assert_eq!(
            types,
            [
                DataType::Int64,
                DataType::Utf8,
                DataType::Float64,
                DataType::Date32,
                DataType::Boolean,
                DataType::Int32,
                DataType::TimestampMicros
            ]
        );
        assert_eq!(schema.key, 0);
        assert!(!schema.columns[1].nullable);
        assert!(schema.columns[2].nullable);

        let inserted = count(
            &db,
            "INSERT INTO accounts VALUES \
             (1, 'ada', 100, '2024-01-02', true, 7, '2024-01-02 03:04:05'), \
             (2, 'bob', 50.5, NULL, false, NULL, NULL), \
             (3, 'cy', NULL, NULL, NULL, 3, NULL)",
        );
        assert_eq!(inserted, "3");
        // A column list: the others are NULL.
        assert_eq!(
            count(&db, "INSERT INTO accounts (owner, id) VALUES ('dee', 4)"),
            "1"
        );
        assert_eq!(
            db.get("accounts", 4).expect("get").expect("row").to_row()[1],
            Value::Utf8("dee".into())
        );
        assert_eq!(
            count(
                &db,
                "UPDATE accounts SET balance = COALESCE(balance, 0) + 10 WHERE id >= 2"
            ),
            "3"
        );
        assert_eq!(count(&db, "DELETE FROM accounts WHERE owner = 'cy'"), "1");
        assert_eq!(
            run(&db, "SELECT id, owner, balance FROM accounts ORDER BY id"),
            [
                ["1", "ada", "100.0"],
                ["2", "bob", "60.5"],
                ["4", "dee", "10.0"]
            ]
        );
        // INSERT ... SELECT, and the index sees SQL's writes.
        run(
            &db,
            "CREATE TABLE copy (id BIGINT PRIMARY KEY, owner TEXT, balance DOUBLE)",
        );
        assert_eq!(
            count(
                &db,
                "INSERT INTO copy SELECT id + 100, owner, balance * 2 FROM accounts"
            ),
            "3"
        );
        assert_eq!(
            db.get("copy", 102).expect("get").expect("row").to_row()[2],
            Value::Float64(121.0)
        );
        run(&db, "ALTER TABLE copy ADD COLUMN note TEXT");
        run(&db, "UPDATE copy SET note = 'x' WHERE id = 101");
        db.close().expect("close");
    }
    let db = open(&dir);
    assert_eq!(
        run(&db, "SELECT id, owner, balance, note FROM copy ORDER BY id"),
        [
            ["101", "ada", "200.0", "x"],
            ["102", "bob", "121.0", "NULL"],
            ["104", "dee", "20.0", "NULL"]
        ]
    );
    assert_eq!(
        run(
            &db,
            "SELECT opened, vip, n, CAST(at AS VARCHAR) FROM accounts WHERE id = 1"
        ),
        [["2024-01-02", "true", "7", "2024-01-02 03:04:05"]]
    );
    run(&db, "DROP TABLE copy");
    run(&db, "DROP TABLE IF EXISTS copy");
    assert!(matches!(
        db.sql("SELECT * FROM copy"),
        Err(Error::NoSuchTable(_))
    ));
    assert_eq!(db.tables().len(), 1);
}

#[test]
fn a_failing_statement_applies_nothing_and_says_why() {
    let dir = TempDir::new("sql-bad");
    let db = open(&dir);
    run(
        &db,
        "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT NOT NULL, n INT)",
    );
    run(&db, "INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2)");
    let cases: &[(&str, &str)] = &[
        // A duplicate key anywhere in the statement fails all of it.
        (
            "INSERT INTO t VALUES (3, 'c', 3), (1, 'again', 1)",
            "duplicate primary key 1",
        ),
        (
            "INSERT INTO t VALUES (5, 'e', 5), (5, 'e', 5)",
            "duplicate primary key 5",
        ),
        ("INSERT INTO t VALUES (6, NULL, 1)", "name"),
        ("INSERT INTO t VALUES (7, 'g', 'not a number')", "n"),
        ("INSERT INTO t (id) VALUES (8)", "name"),
        ("UPDATE t SET id = 10 WHERE id = 1", "primary key"),
        ("UPDATE t SET name = NULL", "name"),
        ("UPDATE t SET nope = 1", "nope"),
        ("DELETE FROM missing", "missing"),
        ("CREATE TABLE t (id BIGINT PRIMARY KEY)", "already exists"),
        ("CREATE TABLE u (id BIGINT, x INT)", "PRIMARY KEY"),
        ("CREATE TABLE u (id INT PRIMARY KEY)", "BIGINT"),
        (
            "CREATE TABLE u (id BIGINT PRIMARY KEY, b BYTEA)",
            "does not store",
        ),
        ("CREATE TABLE u AS SELECT 1 AS id", "PRIMARY KEY"),
        ("ALTER TABLE t ADD COLUMN m INT NOT NULL", "nullable"),
        ("ALTER TABLE t DROP COLUMN n", "ADD COLUMN"),
        ("CREATE VIEW v AS SELECT * FROM t", "not supported"),
        ("BEGIN", "Unsupported SQL statement: BEGIN"),
        ("", "empty"),
        ("SELEC 1", "SQL error"),
    ];
    for (sql, expected) in cases {
        match db.sql(sql) {
            Ok(result) => panic!("{sql:?} succeeded: {:?}", rows_text(&result.batches)),
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.contains(expected),
                    "{sql:?}: {message:?} does not mention {expected:?}"
                );
            }
        }
        assert_eq!(
            run(&db, "SELECT id, name, n FROM t ORDER BY id"),
            [["1", "a", "1"], ["2", "b", "2"]],
            "after {sql:?}"
        );
    }
    assert_eq!(db.tables().len(), 1);
}

#[test]
fn several_statements_run_in_order_as_one_transaction_and_if_exists_forms_are_quiet() {
    let dir = TempDir::new("sql-multi");
    let db = open(&dir);
    let result = db
        .sql(
            "CREATE TABLE IF NOT EXISTS k (id BIGINT PRIMARY KEY, v DOUBLE); \
             CREATE TABLE IF NOT EXISTS k (id BIGINT PRIMARY KEY, v DOUBLE); \
             INSERT INTO k VALUES (1, 1.5), (2, 2.5); \
             ALTER TABLE k ADD COLUMN IF NOT EXISTS w INT; \
             ALTER TABLE k ADD COLUMN IF NOT EXISTS w INT; \
             SELECT SUM(v) FROM k",
        )
        .expect("statements");
    assert_eq!(rows_text(&result.batches), [["4.0"]]);
    assert_eq!(db.schema("k").expect("schema").columns.len(), 3);
    // Several statements are one transaction: a failure applies none of them.
    assert!(
        db.sql("INSERT INTO k VALUES (3, 3, NULL); INSERT INTO k VALUES (1, 0, NULL); INSERT INTO k VALUES (4, 4, NULL)")
            .is_err()
    );
    assert_eq!(run(&db, "SELECT id FROM k ORDER BY id"), [["1"], ["2"]]);
}

#[test]
fn replace_upserts_and_narrow_types_widen() {
    let dir = TempDir::new("sql-replace");
    let db = open(&dir);
    run(
        &db,
        "CREATE TABLE r (id BIGINT PRIMARY KEY, f FLOAT, s SMALLINT, t TINYINT, c CHAR(3), x STRING)",
    );
    let types: Vec<DataType> = db
        .schema("r")
        .expect("schema")
        .columns
        .iter()
        .map(|c| c.data_type)
        .collect();
    assert_eq!(
        types,
        [
            DataType::Int64,
            DataType::Float64,
            DataType::Int32,
            DataType::Int32,
            DataType::Utf8,
            DataType::Utf8
        ]
    );
    run(&db, "INSERT INTO r VALUES (1, 1.5, 2, 3, 'abc', 'x')");
    assert_eq!(
        count(
            &db,
            "REPLACE INTO r VALUES (1, 2.5, 2, 3, 'abc', 'y'), (2, 0, 0, 0, 'd', 'z')"
        ),
        "2"
    );
    assert_eq!(
        count(
            &db,
            "INSERT OR REPLACE INTO r VALUES (2, 9, 9, 9, 'e', 'w')"
        ),
        "1"
    );
    assert_eq!(
        run(&db, "SELECT id, f, x FROM r ORDER BY id"),
        [["1", "2.5", "y"], ["2", "9.0", "w"]]
    );
}

/// A quoted name keeps its case, so `"Mixed"` and `mixed` are two tables, each written,
/// altered, read and dropped by its own name, also after reopening (two such tables once
/// made every statement fail, for good).
#[test]
fn quoted_table_names_keep_their_case() {
    let dir = TempDir::new("sql-case");
    {
        let db = open(&dir);
        run(
            &db,
            "CREATE TABLE \"Mixed\" (id BIGINT PRIMARY KEY, v INT); CREATE TABLE plain (id BIGINT PRIMARY KEY, v INT); INSERT INTO plain VALUES (1, 1); ALTER TABLE plain ADD COLUMN w TEXT; \
             CREATE TABLE mixed (id BIGINT PRIMARY KEY); \
             INSERT INTO \"Mixed\" VALUES (1, 10), (2, 20); \
             INSERT INTO MIXED VALUES (7); \
             ALTER TABLE \"Mixed\" ADD COLUMN w TEXT",
        );
        assert_eq!(count(&db, "SELECT 1"), "1");
    }
    let db = open(&dir);
    assert_eq!(count(&db, "SELECT count(*) FROM plain"), "1");
    assert_eq!(count(&db, "SELECT count(*) FROM \"Mixed\""), "2");
    assert_eq!(count(&db, "SELECT v FROM \"Mixed\" WHERE id = 2"), "20");
    assert_eq!(count(&db, "SELECT id FROM Mixed"), "7");
    assert_eq!(db.schema("Mixed").expect("schema").columns.len(), 3);
    run(&db, "DROP TABLE \"Mixed\"");
    assert_eq!(count(&db, "SELECT count(*) FROM mixed"), "1");
    assert!(db.sql("SELECT * FROM \"Mixed\"").is_err());
}

/// A column added after a Parquet file was written reads NULL from it, also when a query
/// needs no other column of the file (`count(*) ... WHERE b = 5` failed with "number of
/// columns(0) must match number of fields(1)").
#[test]
fn columns_added_after_a_flush_read_null_from_older_files() {
    let dir = TempDir::new("sql-added-column");
    let db = open(&dir);
    run(
        &db,
        "CREATE TABLE ac (id BIGINT PRIMARY KEY, a INT); INSERT INTO ac VALUES (1, 1)",
    );
    db.replicator().flush_now().expect("flush");
    run(
        &db,
        "ALTER TABLE ac ADD COLUMN b INT; INSERT INTO ac VALUES (5, 5, 5)",
    );
    db.replicator().flush_now().expect("flush");
    assert_eq!(count(&db, "SELECT count(*) FROM ac WHERE b = 5"), "1");
    assert_eq!(count(&db, "SELECT count(*) FROM ac WHERE b IS NULL"), "1");
    assert_eq!(count(&db, "SELECT count(1) FROM (SELECT b FROM ac) q"), "2");
}

/// PostgreSQL forms DataFusion refused: `INSERT ... SELECT` of repeated expressions (two
/// columns of one name), and the alias of `generate_series` naming its column.
#[test]
fn insert_select_of_repeated_values_and_function_aliases_work() {
    let dir = TempDir::new("sql-repeated");
    let db = open(&dir);
    run(
        &db,
        "CREATE TABLE cc (id BIGINT PRIMARY KEY, a INT, b INT); \
         INSERT INTO cc VALUES (1, 1, 1); \
         INSERT INTO cc SELECT id + 10, 0, 0 FROM cc; \
         INSERT INTO cc SELECT id + 100, a, a FROM cc",
    );
    assert_eq!(count(&db, "SELECT count(*) FROM cc WHERE a = b"), "4");
    assert_eq!(
        count(
            &db,
            "SELECT sum(g) FROM generate_series(1, 4) g WHERE g > 2"
        ),
        "7"
    );
}

#[test]
fn a_date_plus_an_interval_is_a_timestamp_and_writes_cast_it_to_the_column() {
    let dir = TempDir::new("sql-date-interval");
    let db = open(&dir);
    run(
        &db,
        "CREATE TABLE ev (id BIGINT PRIMARY KEY, d DATE, at TIMESTAMP)",
    );
    run(
        &db,
        "INSERT INTO ev VALUES (1, DATE '2024-02-29' + INTERVAL '90 minutes', \
         DATE '2024-02-29' + INTERVAL '90 minutes')",
    );
    run(
        &db,
        "INSERT INTO ev SELECT 2, d - INTERVAL '1 hour', d - INTERVAL '1 hour' FROM ev \
         WHERE id = 1",
    );
    run(
        &db,
        "UPDATE ev SET at = d + INTERVAL '1 second' WHERE id = 1",
    );
    assert_eq!(
        run(&db, "SELECT id, d, at FROM ev ORDER BY id"),
        [
            ["1", "2024-02-29", "2024-02-29T00:00:01"],
            ["2", "2024-02-28", "2024-02-28T23:00:00"],
        ]
    );
    assert_eq!(
        run(
            &db,
            "SELECT d + INTERVAL '90 minutes', extract(second FROM at) FROM ev WHERE id = 1"
        ),
        [["2024-02-29T01:30:00", "1.000000"]]
    );
}
