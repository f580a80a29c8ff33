//! The facade: tables, atomic validated batches, point reads, recovery, concurrency, and the
//! replicator's snapshot agreeing with the learned index.

mod common;

use common::TempDir;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use omendb::replicator::change::{ColumnDef, DataType, TableSchema};
use omendb::wal::{SyncMode, WalOptions};
use omendb::{Db, DbOptions, Error, Value, ValueRef, WriteBatch};

fn options() -> DbOptions {
    DbOptions {
        wal: WalOptions {
            sync_mode: SyncMode::Buffered {
                interval: Duration::from_millis(5),
            },
            ..WalOptions::default()
        },
        ..DbOptions::default()
    }
}

fn accounts() -> TableSchema {
    TableSchema {
        columns: vec![
            ColumnDef::new("id", DataType::Int64, false),
            ColumnDef::new("owner", DataType::Utf8, false),
            ColumnDef::new("balance", DataType::Int64, true),
        ],
        key: 0,
    }
}

fn account(id: i64, balance: i64) -> Vec<Value> {
    vec![
        Value::Int64(id),
        Value::Utf8(format!("owner-{id}")),
        Value::Int64(balance),
    ]
}

fn balance(db: &Db, id: i64) -> Option<i64> {
    db.get("accounts", id)
        .expect("get")
        .map(|row| match row.value(2) {
            Some(ValueRef::Int64(b)) => b,
            other => panic!("balance is {other:?}"),
        })
}

#[test]
fn writes_are_read_back_and_survive_reopening() {
    let dir = TempDir::new("reopen");
    {
        let db = Db::open(&dir.0, options()).expect("open");
        db.create_table("accounts", accounts()).expect("create");
        let mut batch = WriteBatch::new();
        for id in 0..1000 {
            batch.insert("accounts", account(id, id * 10));
        }
        db.write(&batch).expect("write");
        let mut batch = WriteBatch::new();
        batch
            .upsert("accounts", account(5, -1))
            .delete("accounts", 6)
            .delete("accounts", 5000);
        db.write(&batch).expect("write");
        assert_eq!(balance(&db, 5), Some(-1));
        assert_eq!(balance(&db, 6), None);
        db.close().expect("close");
    }
    let db = Db::open(&dir.0, options()).expect("reopen");
    assert_eq!(db.len("accounts").expect("len"), 999);
    assert_eq!(balance(&db, 5), Some(-1));
    assert_eq!(balance(&db, 6), None);
    assert_eq!(balance(&db, 999), Some(9990));
    let rows = db.multi_get("accounts", &[1, 6, 2]).expect("multi_get");
    assert_eq!(
        rows.iter().map(|r| r.is_some()).collect::<Vec<_>>(),
        [true, false, true]
    );
    let scanned: Vec<i64> = db
        .scan("accounts", 3..=8)
        .expect("scan")
        .into_iter()
        .map(|row| row.key())
        .collect();
    assert_eq!(scanned, [3, 4, 5, 7, 8]);
}

#[test]
fn a_bad_batch_applies_nothing_and_says_why() {
    let dir = TempDir::new("bad");
    let db = Db::open(&dir.0, options()).expect("open");
    db.create_table("accounts", accounts()).expect("create");
    let mut batch = WriteBatch::new();
    batch.insert("accounts", account(1, 100));
    db.write(&batch).expect("write");
    let last = db.wal().last_lsn();

    let mut duplicate = WriteBatch::new();
    duplicate
        .insert("accounts", account(2, 1))
        .insert("accounts", account(1, 1));
    let error = db.write(&duplicate).expect_err("duplicate");
    assert!(
        matches!(error, Error::DuplicateKey { key: 1, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("upsert"), "{error}");

    let mut wrong_type = WriteBatch::new();
    wrong_type.insert(
        "accounts",
        vec![Value::Int64(3), Value::Int64(7), Value::Null],
    );
    let error = db.write(&wrong_type).expect_err("type");
    assert!(
        matches!(&error, Error::BadRow { column, .. } if column == "owner"),
        "{error}"
    );
    let mut null = WriteBatch::new();
    null.insert("accounts", vec![Value::Int64(3), Value::Null, Value::Null]);
    let error = db.write(&null).expect_err("null");
    assert!(
        matches!(&error, Error::NullValue { column, .. } if column == "owner"),
        "{error}"
    );
    assert!(error.to_string().contains("NOT NULL"), "{error}");
    let mut short = WriteBatch::new();
    short.insert("accounts", vec![Value::Int64(3)]);
    assert!(matches!(db.write(&short), Err(Error::BadRow { .. })));
    let mut unknown = WriteBatch::new();
    unknown.insert("nope", account(1, 1));
    assert!(matches!(db.write(&unknown), Err(Error::NoSuchTable(_))));

    assert_eq!(db.wal().last_lsn(), last, "nothing reached the log");
    assert_eq!(balance(&db, 2), None, "nothing of the batch applied");
    assert_eq!(db.len("accounts").expect("len"), 1);

    // Delete then insert of the same key in one batch is fine.
    let mut reinsert = WriteBatch::new();
    reinsert
        .delete("accounts", 1)
        .insert("accounts", account(1, 5));
    db.write(&reinsert).expect("delete then insert");
    assert_eq!(balance(&db, 1), Some(5));
}

/// A column of at most n characters refuses longer text on every write path; characters,
/// not bytes, are counted.
#[test]
fn text_longer_than_its_column_is_refused() {
    let dir = TempDir::new("lengths");
    let db = Db::open(&dir.0, options()).expect("open");
    let schema = TableSchema {
        columns: vec![
            ColumnDef::new("id", DataType::Int64, false),
            ColumnDef::new("code", DataType::Utf8, true).with_max_chars(Some(3)),
        ],
        key: 0,
    };
    db.create_table("codes", schema).expect("create");
    let mut fits = WriteBatch::new();
    fits.insert("codes", vec![Value::Int64(1), Value::Utf8("éèê".into())])
        .insert("codes", vec![Value::Int64(2), Value::Null]);
    db.write(&fits).expect("three characters of six bytes fit");
    let mut long = WriteBatch::new();
    long.insert("codes", vec![Value::Int64(3), Value::Utf8("ok".into())])
        .upsert("codes", vec![Value::Int64(1), Value::Utf8("abcd".into())]);
    let error = db.write(&long).expect_err("too long");
    assert!(
        matches!(&error, Error::ValueTooLong { column, chars: 4, max_chars: 3, .. } if column == "code"),
        "{error}"
    );
    assert_eq!(
        db.len("codes").expect("len"),
        2,
        "nothing of the batch applied"
    );
}

#[test]
fn schema_changes_apply_and_replay() {
    let dir = TempDir::new("ddl");
    {
        let db = Db::open(&dir.0, options()).expect("open");
        db.create_table("accounts", accounts()).expect("create");
        assert!(matches!(
            db.create_table("accounts", accounts()),
            Err(Error::TableExists(_))
        ));
        assert!(matches!(
            db.create_table("bad name", accounts()),
            Err(Error::InvalidSchema { .. })
        ));
        let mut batch = WriteBatch::new();
        batch.insert("accounts", account(1, 1));
        db.write(&batch).expect("write");
        db.alter_table_add_column("accounts", ColumnDef::new("note", DataType::Utf8, true))
            .expect("add column");
        assert!(
            db.alter_table_add_column("accounts", ColumnDef::new("x", DataType::Int64, false))
                .is_err(),
            "a NOT NULL column cannot be added to existing rows"
        );
        let row = db.get("accounts", 1).expect("get").expect("row");
        assert_eq!(row.columns(), 4);
        assert_eq!(row.value(3), Some(ValueRef::Null));
        db.create_table("gone", accounts()).expect("create");
        db.drop_table("gone").expect("drop");
        db.close().expect("close");
    }
    let db = Db::open(&dir.0, options()).expect("reopen");
    let names: Vec<String> = db.tables().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["accounts"]);
    assert_eq!(db.schema("accounts").expect("schema").columns.len(), 4);
    assert_eq!(
        db.get("accounts", 1).expect("get").expect("row").value(3),
        Some(ValueRef::Null)
    );
}

#[test]
fn transfers_keep_the_total_for_concurrent_readers_and_in_parquet() {
    let dir = TempDir::new("transfers");
    let db = Arc::new(Db::open(&dir.0, options()).expect("open"));
    db.create_table("accounts", accounts()).expect("create");
    let mut batch = WriteBatch::new();
    for id in 0..100 {
        batch.insert("accounts", account(id, 1000));
    }
    db.write(&batch).expect("seed");
    let reading = Arc::new(std::sync::Barrier::new(2));
    let writer = {
        let (db, reading) = (Arc::clone(&db), Arc::clone(&reading));
        std::thread::spawn(move || {
            // Start once the reader is about to take its first snapshot.
            reading.wait();
            let mut x = 1u64;
            for _ in 0..300 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                let (from, to) = ((x >> 33) as i64 % 100, (x >> 17) as i64 % 100);
                if from == to {
                    continue;
                }
                let amount = (x >> 50) as i64 % 50;
                let (a, b) = (balance(&db, from).expect("a"), balance(&db, to).expect("b"));
                let mut batch = WriteBatch::new();
                batch
                    .upsert("accounts", account(from, a - amount))
                    .upsert("accounts", account(to, b + amount));
                db.write(&batch).expect("transfer");
            }
        })
    };
    // Each snapshot of the Parquet tier plus the unflushed rows sums to the total.
    let mut snapshots = 0;
    reading.wait();
    // At least one snapshot, however fast the writer finishes.
    while snapshots == 0 || !writer.is_finished() {
        let snapshot = db
            .replicator()
            .snapshot("accounts", db.wal().last_lsn())
            .expect("snapshot");
        let rows = snapshot.read().expect("read");
        let balances = rows.column(2).as_primitive::<Int64Type>();
        let total: i64 = balances.iter().map(|b| b.unwrap_or(0)).sum();
        assert_eq!(total, 100_000, "a snapshot saw half a transfer");
        snapshots += 1;
    }
    writer.join().expect("writer");
    assert!(snapshots > 0);
    let total: i64 = (0..100).map(|id| balance(&db, id).expect("row")).sum();
    assert_eq!(total, 100_000);
    // The Parquet tier agrees with the learned index row by row.
    db.replicator().flush_now().expect("flush");
    let rows = db
        .replicator()
        .snapshot("accounts", db.wal().last_lsn())
        .expect("snapshot")
        .read()
        .expect("read");
    let ids = rows.column(0).as_primitive::<Int64Type>();
    let balances = rows.column(2).as_primitive::<Int64Type>();
    let parquet: BTreeMap<i64, i64> = (0..rows.num_rows())
        .map(|i| (ids.value(i), balances.value(i)))
        .collect();
    let index: BTreeMap<i64, i64> = (0..100)
        .map(|id| (id, balance(&db, id).expect("row")))
        .collect();
    assert!(parquet == index, "Parquet and the learned index disagree");
}

#[test]
fn scans_cross_lock_chunks_without_losing_or_repeating_rows() {
    let dir = TempDir::new("scan-chunks");
    let db = Db::open(&dir.0, options()).expect("open");
    db.create_table("accounts", accounts()).expect("create");
    let rows = 3 * omendb::SCAN_CHUNK as i64 + 17;
    let mut batch = WriteBatch::new();
    for id in 0..rows {
        batch.insert("accounts", account(id * 2, id));
    }
    db.write(&batch).expect("write");
    let all: Vec<i64> = db
        .scan("accounts", ..)
        .expect("scan")
        .iter()
        .map(|r| r.key())
        .collect();
    assert_eq!(all, (0..rows).map(|id| id * 2).collect::<Vec<_>>());
    let chunk = omendb::SCAN_CHUNK as i64;
    for (low, high) in [(1, 2 * chunk), (2 * chunk - 2, 4 * chunk), (-5, 3)] {
        let got: Vec<i64> = db
            .scan("accounts", low..=high)
            .expect("scan")
            .iter()
            .map(|r| r.key())
            .collect();
        let want: Vec<i64> = (0..rows)
            .map(|id| id * 2)
            .filter(|k| (low..=high).contains(k))
            .collect();
        assert_eq!(got, want, "{low}..={high}");
    }
    let (high, low) = (5, 10);
    assert!(db.scan("accounts", low..high).expect("empty").is_empty());
}

/// `get_with` reads values in place: each agrees with the row `get` builds, whatever the key's
/// position; a column past the last is an error naming the table; after `ADD COLUMN` the new
/// column reads NULL; a missing key gives `None`.
#[test]
fn rows_read_in_place_agree_with_get() {
    let dir = TempDir::new("get-with");
    let db = Db::open(&dir.0, options()).expect("open");
    // The key in the middle, so that columns on both sides of it are read.
    let schema = TableSchema {
        columns: vec![
            ColumnDef::new("owner", DataType::Utf8, true),
            ColumnDef::new("id", DataType::Int64, false),
            ColumnDef::new("balance", DataType::Int64, true),
            ColumnDef::new("memo", DataType::Utf8, true),
        ],
        key: 1,
    };
    db.create_table("t", schema).expect("create");
    let mut batch = WriteBatch::new();
    batch.insert(
        "t",
        vec![
            Value::Utf8("ann".into()),
            Value::Int64(7),
            Value::Int64(-3),
            Value::Utf8("m".repeat(100)), // too wide for the inline slot
        ],
    );
    batch.insert(
        "t",
        vec![Value::Null, Value::Int64(8), Value::Null, Value::Null],
    );
    db.write(&batch).expect("write");
    for key in [7, 8] {
        let get = db.get("t", key).expect("get").expect("row");
        let read = db
            .get_with("t", key, |row| {
                let row = row.expect("in place");
                assert_eq!(row.key(), key);
                let values: Vec<Value> = (0..row.columns())
                    .map(|c| row.value(c).expect("value").to_owned())
                    .collect();
                assert!(matches!(row.value(4), Err(Error::BadRow { .. })));
                assert_eq!(row.to_row_buf(), get);
                (values, row.to_row().expect("row"))
            })
            .expect("get_with");
        // The row `get` returned reads the same values, one by one and built.
        let values: Vec<Value> = get.values().map(|v| v.to_owned()).collect();
        assert_eq!(get.values().len(), 4);
        assert_eq!(values, read.0);
        assert_eq!(get.to_row(), read.1);
        assert_eq!(get.key(), key);
        assert_eq!(get.value(4), None, "past the last column");
    }
    assert!(db.get_with("t", 9, |row| row.is_none()).expect("get_with"));
    db.alter_table_add_column("t", ColumnDef::new("extra", DataType::Int64, true))
        .expect("add column");
    let extra = db
        .get_with("t", 7, |row| row.map(|r| r.value(4).map(|v| v.to_owned())))
        .expect("get_with");
    assert!(matches!(extra, Some(Ok(Value::Null))), "{extra:?}");
    assert!(matches!(
        db.get_with("nope", 1, |_| ()),
        Err(Error::NoSuchTable(_))
    ));
}
