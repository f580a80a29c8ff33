//! Point reads find tables through per-thread cached handles that skip the catalog's lock;
//! these tests check that DDL, several databases and concurrent readers never see a stale or
//! foreign table through them.

mod common;

use common::TempDir;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use omendb::replicator::change::{ColumnDef, DataType, TableSchema};
use omendb::wal::{SyncMode, WalOptions};
use omendb::{Db, DbOptions, Error, Value, ValueRef, WriteBatch};

fn options() -> DbOptions {
    DbOptions {
        wal: WalOptions {
            sync_mode: SyncMode::None,
            ..WalOptions::default()
        },
        ..DbOptions::default()
    }
}

fn schema() -> TableSchema {
    TableSchema {
        columns: vec![
            ColumnDef::new("id", DataType::Int64, false),
            ColumnDef::new("v", DataType::Int64, true),
        ],
        key: 0,
    }
}

fn put(db: &Db, key: i64, v: i64) {
    let mut batch = WriteBatch::new();
    batch.upsert("t", vec![Value::Int64(key), Value::Int64(v)]);
    db.write(&batch).expect("write");
}

fn value(db: &Db, key: i64) -> Result<Option<i64>, Error> {
    Ok(db.get("t", key)?.map(|row| match row.value(1) {
        Some(ValueRef::Int64(v)) => v,
        other => panic!("v is {other:?}"),
    }))
}

#[test]
fn drop_and_recreate_are_seen_by_the_reading_thread() {
    let dir = TempDir::new("handles-ddl");
    let db = Db::open(&dir.0, options()).expect("open");
    db.create_table("t", schema()).expect("create");
    put(&db, 1, 10);
    assert_eq!(value(&db, 1).expect("get"), Some(10));
    assert_eq!(db.multi_get("t", &[1, 2]).expect("multi_get").len(), 2);
    db.drop_table("t").expect("drop");
    assert!(matches!(value(&db, 1), Err(Error::NoSuchTable(_))));
    db.create_table("t", schema()).expect("create again");
    assert_eq!(
        value(&db, 1).expect("get"),
        None,
        "the old table's row is gone"
    );
    put(&db, 1, 11);
    assert_eq!(value(&db, 1).expect("get"), Some(11));
    db.alter_table_add_column("t", ColumnDef::new("w", DataType::Int64, true))
        .expect("alter");
    let row = db.get("t", 1).expect("get").expect("row");
    assert_eq!(
        row.columns(),
        3,
        "the altered table is read, not the cached old one"
    );
}

#[test]
fn two_databases_in_one_thread_keep_their_own_tables() {
    let (a_dir, b_dir) = (TempDir::new("handles-a"), TempDir::new("handles-b"));
    let a = Db::open(&a_dir.0, options()).expect("open a");
    let b = Db::open(&b_dir.0, options()).expect("open b");
    for (db, v) in [(&a, 1), (&b, 2)] {
        db.create_table("t", schema()).expect("create");
        put(db, 7, v);
    }
    for _ in 0..3 {
        assert_eq!(value(&a, 7).expect("a"), Some(1));
        assert_eq!(value(&b, 7).expect("b"), Some(2));
    }
    drop(a);
    // A database opened after another closed never reads the closed one's handle.
    let c_dir = TempDir::new("handles-c");
    let c = Db::open(&c_dir.0, options()).expect("open c");
    c.create_table("t", schema()).expect("create");
    assert_eq!(value(&c, 7).expect("c"), None);
    assert_eq!(value(&b, 7).expect("b"), Some(2));
}

/// Readers loop over `get` while the writer drops and recreates the table, each generation
/// writing its number. A reader must never go back to an older generation than one it saw,
/// and once the writer is done every reader must see the last generation (a cache that
/// ignored the catalog's version would keep reading a dropped table).
#[test]
fn concurrent_readers_follow_drop_and_recreate() {
    const GENERATIONS: i64 = 60;
    let dir = TempDir::new("handles-concurrent");
    let db = Arc::new(Db::open(&dir.0, options()).expect("open"));
    db.create_table("t", schema()).expect("create");
    put(&db, 1, 0);
    let done = Arc::new(AtomicBool::new(false));
    let seen_max = Arc::new(AtomicI64::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (db, done, seen_max) = (Arc::clone(&db), Arc::clone(&done), Arc::clone(&seen_max));
            std::thread::spawn(move || {
                let mut newest = 0;
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) {
                    match value(&db, 1) {
                        Ok(Some(generation)) => {
                            assert!(
                                generation >= newest,
                                "read generation {generation} after {newest}"
                            );
                            newest = generation;
                        }
                        // Between a drop and the next write the table is missing or empty.
                        Ok(None) | Err(Error::NoSuchTable(_)) => {}
                        Err(e) => panic!("get failed: {e}"),
                    }
                    reads += 1;
                }
                seen_max.fetch_max(newest, Ordering::Relaxed);
                assert_eq!(
                    value(&db, 1).expect("final get"),
                    Some(GENERATIONS),
                    "after the last generation"
                );
                reads
            })
        })
        .collect();
    for generation in 1..=GENERATIONS {
        db.drop_table("t").expect("drop");
        db.create_table("t", schema()).expect("create");
        put(&db, 1, generation);
        std::thread::sleep(Duration::from_millis(1));
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        let reads = reader.join().expect("reader panicked");
        assert!(reads > 0);
    }
    assert!(
        seen_max.load(Ordering::Relaxed) > 0,
        "readers saw the writes"
    );
}
