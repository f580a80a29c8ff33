//! Transactions larger than memory and than one log record: the write set spills to disk past
//! `DbOptions::transaction_memory`, and the commit is a group of records ended by a commit
//! record. Checked against a model on every path (the transaction's own reads, the index,
//! DataFusion over Parquet and the delta, replay after reopening), with conflicts, failed
//! savepoints and a group a crash cut short.

mod common;

use std::collections::BTreeMap;

use common::{TempDir, rows_text};
use omendb::replicator::change::{ChangeEncoder, Value};
use omendb::wal::{Wal, WalOptions};
use omendb::{Db, DbOptions, Error};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Small limits, so that a few thousand rows spill many times and need many records.
fn options() -> DbOptions {
    DbOptions {
        wal: WalOptions {
            max_record_size: 32 << 10,
            ..WalOptions::default()
        },
        transaction_memory: 16 << 10,
        ..DbOptions::default()
    }
}

fn open(dir: &TempDir) -> Db {
    Db::open(&dir.0, options()).expect("open")
}

fn one(db: &Db, sql: &str) -> String {
    match db.sql_planned(sql) {
        Ok(result) => rows_text(&result.batches)[0].join(" "),
        Err(e) => panic!("{sql}: {e}"),
    }
}

fn row(key: i64, text: &str) -> Vec<Value> {
    vec![Value::Int64(key), Value::Utf8(text.into())]
}

/// The committed rows as the index, DataFusion (before and after a flush to Parquet) and
/// replay see them all equal `model`.
fn check_everywhere(db: &Db, model: &BTreeMap<i64, String>) {
    for key in -10..1100 {
        let found = db
            .get("t", key)
            .expect("get")
            .map(|r| match &r.to_row()[1] {
                Value::Utf8(text) => text.clone(),
                other => panic!("{other:?}"),
            });
        assert_eq!(found.as_ref(), model.get(&key), "key {key}");
    }
    let count = model.len().to_string();
    let bytes: usize = model.values().map(String::len).sum();
    let expected = format!("{count} {bytes}");
    let sql = "SELECT count(*), coalesce(sum(length(v)), 0) FROM t";
    assert_eq!(one(db, sql), expected, "DataFusion over the delta");
    db.replicator().flush_now().expect("flush");
    assert_eq!(one(db, sql), expected, "DataFusion over Parquet");
}

#[test]
fn a_transaction_larger_than_memory_and_a_record_commits_whole_on_every_path() {
    let dir = TempDir::new("large-tx-model");
    let mut model: BTreeMap<i64, String> = BTreeMap::new();
    let mut rng = StdRng::seed_from_u64(29);
    {
        let db = open(&dir);
        db.sql("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)")
            .expect("create");
        for round in 0..4 {
            let mut tx = db.begin();
            let mut mine = model.clone();
            for i in 0..3000 {
                let key = rng.random_range(0..1000);
                match rng.random_range(0..10) {
                    0..=5 => {
                        let text = format!("r{round}-{i}-{}", "x".repeat(rng.random_range(0..60)));
                        tx.upsert("t", row(key, &text)).expect("upsert");
                        mine.insert(key, text);
                    }
                    6 => {
                        let text = format!("i{round}-{i}");
                        let inserted = tx.insert("t", row(key, &text));
                        match mine.entry(key) {
                            std::collections::btree_map::Entry::Occupied(_) => {
                                assert!(matches!(inserted, Err(Error::DuplicateKey { .. })));
                            }
                            std::collections::btree_map::Entry::Vacant(slot) => {
                                inserted.expect("insert");
                                slot.insert(text);
                            }
                        }
                    }
                    7 => {
                        tx.delete("t", key).expect("delete");
                        mine.remove(&key);
                    }
                    _ => {
                        let seen = tx.get("t", key).expect("get").map(|r| match &r[1] {
                            Value::Utf8(text) => text.clone(),
                            other => panic!("{other:?}"),
                        });
                        assert_eq!(seen.as_ref(), mine.get(&key), "own read of {key}");
                    }
                }
            }
            // The transaction's range reads and SQL see its spilled writes too.
            let scanned: Vec<i64> = tx
                .scan("t", 100..200)
                .expect("scan")
                .iter()
                .map(|r| match r[0] {
                    Value::Int64(k) => k,
                    ref other => panic!("{other:?}"),
                })
                .collect();
            let expected: Vec<i64> = mine.range(100..200).map(|(k, _)| *k).collect();
            assert_eq!(scanned, expected);
            let counted = tx.sql("SELECT count(*) FROM t").expect("count");
            assert_eq!(
                rows_text(&counted.batches)[0][0],
                mine.len().to_string(),
                "count in the transaction"
            );
            // Others see none of it before the commit.
            assert_eq!(db.len("t").expect("len"), model.len());
            if round == 2 {
                tx.rollback();
                continue;
            }
            tx.commit().expect("commit");
            model = mine;
            check_everywhere(&db, &model);
        }
        db.close().expect("close");
    }
    let db = open(&dir);
    check_everywhere(&db, &model);
}

#[test]
fn a_statement_larger_than_a_record_runs_as_one_transaction() {
    let dir = TempDir::new("large-tx-statement");
    let db = open(&dir);
    db.sql("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)")
        .expect("create");
    let insert =
        "INSERT INTO t SELECT value, repeat('y', 50) FROM generate_series(0, 1099) AS s(value)";
    db.sql(insert).expect("a large INSERT ... SELECT");
    assert_eq!(one(&db, "SELECT count(*) FROM t"), "1100");
    db.sql("UPDATE t SET v = 'z' || v WHERE id % 2 = 0")
        .expect("a large UPDATE");
    db.sql("DELETE FROM t WHERE id >= 1000").expect("delete");
    let mut model = BTreeMap::new();
    for key in 0..1000 {
        let prefix = if key % 2 == 0 { "z" } else { "" };
        model.insert(key, format!("{prefix}{}", "y".repeat(50)));
    }
    check_everywhere(&db, &model);
    // A duplicate key fails the whole statement.
    let again = db.sql("INSERT INTO t SELECT value + 999, repeat('y', 50) FROM generate_series(0, 1000) AS s(value)");
    assert!(
        matches!(again, Err(Error::DuplicateKey { .. })),
        "{again:?}"
    );
    check_everywhere(&db, &model);
    db.close().expect("close");
    let db = open(&dir);
    check_everywhere(&db, &model);
}

#[test]
fn a_conflict_found_while_the_group_is_written_applies_nothing() {
    let dir = TempDir::new("large-tx-conflict");
    let mut model = BTreeMap::new();
    {
        let db = open(&dir);
        db.sql("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)")
            .expect("create");
        let mut tx = db.begin();
        for key in 0..1000 {
            tx.upsert("t", row(key, &"a".repeat(40))).expect("upsert");
        }
        // Another commit writes the last key the group will write.
        db.sql("INSERT INTO t VALUES (999, 'other')")
            .expect("other");
        model.insert(999, "other".to_string());
        let failed = tx.commit();
        assert!(
            matches!(failed, Err(Error::SerializationFailure(_))),
            "{failed:?}"
        );
        check_everywhere(&db, &model);
        db.sql("INSERT INTO t VALUES (5, 'after')").expect("after");
        model.insert(5, "after".to_string());
        check_everywhere(&db, &model);
        db.close().expect("close");
    }
    let db = open(&dir);
    check_everywhere(&db, &model);
}

#[test]
fn a_savepoint_before_a_spill_is_rolled_back_to_and_a_released_one_breaks_the_transaction() {
    let dir = TempDir::new("large-tx-savepoint");
    let db = open(&dir);
    db.sql("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)")
        .expect("create");
    let mut tx = db.begin();
    tx.upsert("t", row(1, "one")).expect("upsert");
    let before = tx.savepoint();
    tx.upsert("t", row(1, "uno")).expect("upsert");
    let middle = tx.savepoint();
    for key in 2..1000 {
        tx.upsert("t", row(key, &"b".repeat(40))).expect("upsert");
    }
    let after = tx.savepoint();
    tx.upsert("t", row(2, "two")).expect("upsert");
    tx.rollback_to(after).expect("a savepoint after the spill");
    tx.rollback_to(middle)
        .expect("an older one, before the spill");
    assert_eq!(tx.scan("t", ..).expect("scan").len(), 1);
    assert!(tx.get("t", 2).expect("get").is_none());
    tx.rollback_to(before).expect("the oldest");
    let text = |tx: &omendb::Transaction<'_>| match tx.get("t", 1).expect("get") {
        Some(r) => r[1].clone(),
        None => panic!("row 1 is gone"),
    };
    assert_eq!(text(&tx), Value::Utf8("one".into()));
    // Released, then spilled past: only a rollback of the whole remains.
    let released = tx.savepoint();
    tx.release(released);
    for key in 2..1000 {
        tx.upsert("t", row(key, &"c".repeat(40))).expect("upsert");
    }
    assert!(tx.rollback_to(released).is_err());
    assert!(
        tx.upsert("t", row(3, "x")).is_err(),
        "broken: no more writes"
    );
    assert!(tx.commit().is_err(), "broken: no commit");
    assert_eq!(db.len("t").expect("len"), 0);
}

/// Savepoints taken, rolled back to and released at random while the writes spill many times,
/// checked against a model that keeps the rows as they were at each savepoint.
#[test]
fn savepoints_roll_back_exactly_across_spills_as_a_model() {
    let dir = TempDir::new("large-tx-savepoint-model");
    let db = open(&dir);
    db.sql("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)")
        .expect("create");
    let mut committed = BTreeMap::new();
    for seed in 0..6u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut tx = db.begin();
        let mut model = committed.clone();
        // The live savepoints, oldest first, each with the model as it was there.
        let mut stack: Vec<(omendb::Savepoint, BTreeMap<i64, String>)> = Vec::new();
        for step in 0..3000 {
            match rng.random_range(0..100) {
                0..60 => {
                    let key = rng.random_range(0..400);
                    let text = format!("{seed}-{step}-{}", "x".repeat(rng.random_range(0..60)));
                    tx.upsert("t", row(key, &text)).expect("upsert");
                    model.insert(key, text);
                }
                60..75 => {
                    let key = rng.random_range(0..400);
                    tx.delete("t", key).expect("delete");
                    model.remove(&key);
                }
                75..87 => stack.push((tx.savepoint(), model.clone())),
                87..89 if !stack.is_empty() => {
                    let at = rng.random_range(0..stack.len());
                    stack.truncate(at + 1);
                    tx.rollback_to(stack[at].0)
                        .unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
                    model = stack[at].1.clone();
                }
                89..100 if !stack.is_empty() => {
                    let at = rng.random_range(0..stack.len());
                    for (point, _) in stack.split_off(at) {
                        tx.release(point);
                    }
                }
                _ => {}
            }
            if step % 500 == 499 {
                let scanned: BTreeMap<i64, String> = tx
                    .scan("t", ..)
                    .expect("scan")
                    .iter()
                    .map(|r| match r.as_ref() {
                        [Value::Int64(k), Value::Utf8(v)] => (*k, v.clone()),
                        other => panic!("{other:?}"),
                    })
                    .collect();
                assert_eq!(scanned, model, "seed {seed} step {step}");
            }
        }
        for key in 0..400 {
            let found = tx.get("t", key).expect("get").map(|r| r[1].clone());
            assert_eq!(
                found,
                model.get(&key).map(|v| Value::Utf8(v.clone())),
                "seed {seed} key {key}"
            );
        }
        tx.commit().expect("commit");
        committed = model;
    }
    check_everywhere(&db, &committed);
}

#[test]
fn a_group_cut_short_by_a_crash_is_ended_and_never_counts() {
    let dir = TempDir::new("large-tx-cut");
    let mut model = BTreeMap::new();
    {
        let db = open(&dir);
        db.sql("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)")
            .expect("create");
        db.sql("INSERT INTO t VALUES (1, 'kept')").expect("insert");
        model.insert(1, "kept".to_string());
        db.close().expect("close");
    }
    {
        // What a crash in the middle of a group commit leaves: parts, no end.
        let wal = Wal::open(dir.0.join("wal"), WalOptions::default()).expect("wal");
        for part in 0..3 {
            let mut encoder = ChangeEncoder::part();
            for key in 0..100 {
                encoder.upsert("t", &row(part * 100 + key, "lost"));
            }
            wal.append(&encoder.finish()).expect("part");
        }
        wal.close().expect("close");
    }
    for _ in 0..2 {
        let db = open(&dir);
        check_everywhere(&db, &model);
        db.sql("INSERT INTO t VALUES (2, 'new')").expect("insert");
        model.insert(2, "new".to_string());
        check_everywhere(&db, &model);
        db.sql("DELETE FROM t WHERE id = 2").expect("delete");
        model.remove(&2);
        db.close().expect("close");
    }
}

#[test]
fn a_spilled_transaction_reads_back_only_the_tables_a_statement_reads() {
    let dir = TempDir::new("large-tx-reads");
    let db = Db::open(
        &dir.0,
        DbOptions {
            sql_memory_limit: 256 << 10,
            ..options()
        },
    )
    .expect("open");
    db.sql(
        "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT); CREATE TABLE u (id BIGINT PRIMARY KEY)",
    )
    .expect("create");
    db.sql("INSERT INTO u VALUES (1), (2)").expect("u");
    let mut tx = db.begin();
    let fill =
        "INSERT INTO t SELECT value, repeat('w', 200) FROM generate_series(0, 1999) AS s(value)";
    tx.sql(fill).expect("spills");
    // Writing more to the spilled table, and reading another one, need none of it back.
    tx.sql("INSERT INTO t SELECT value + 2000, 'x' FROM generate_series(0, 1999) AS s(value)")
        .expect("a second INSERT ... SELECT");
    let counted = tx.sql("SELECT count(*) FROM u").expect("another table");
    assert_eq!(rows_text(&counted.batches)[0][0], "2");
    // Key reads look the runs up, through the API and through SQL (whose plan reads the
    // table: its spilled rows are not read back for a key).
    let row = tx.get("t", 1999).expect("get").expect("row");
    assert_eq!(row[1], Value::Utf8("w".repeat(200)));
    let by_key = tx
        .sql("SELECT length(v) FROM t WHERE id IN (1999, 2001)")
        .expect("a key read in SQL");
    assert_eq!(rows_text(&by_key.batches), [["200"], ["1"]]);
    tx.sql("UPDATE t SET v = 'u' WHERE id = 7")
        .expect("an UPDATE by key");
    let short = tx
        .sql("SELECT id, v FROM t WHERE id BETWEEN 6 AND 8")
        .expect("a short range");
    assert_eq!(
        rows_text(&short.batches),
        [
            ["6".to_string(), "w".repeat(200)],
            ["7".into(), "u".into()],
            ["8".into(), "w".repeat(200)]
        ]
    );
    // A scan of it reads it all back: more than the query memory limit here.
    let scan = tx.sql("SELECT count(*) FROM t");
    assert!(
        matches!(
            scan,
            Err(Error::Limit {
                kind: omendb::LimitKind::SpilledReadBytes,
                ..
            })
        ),
        "{scan:?}"
    );
    tx.commit().expect("commit");
    assert_eq!(one(&db, "SELECT count(*) FROM t"), "4000");
    assert_eq!(one(&db, "SELECT v FROM t WHERE id = 7"), "u");
}

/// A statement that reads the table it writes: its writes wait aside while its read holds the
/// transaction's rows, and still count for its own duplicate checks and its rollback.
#[test]
fn a_statement_writing_the_table_it_reads_sees_its_own_duplicates_and_rolls_back_whole() {
    let dir = TempDir::new("large-tx-self");
    let db = Db::open(&dir.0, DbOptions::default()).expect("open");
    db.sql("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)")
        .expect("create");
    let mut tx = db.begin();
    tx.sql("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        .expect("insert");
    tx.sql("INSERT INTO t SELECT id + 10, v FROM t")
        .expect("copy");
    tx.sql("UPDATE t SET v = v || '!' WHERE id > 10")
        .expect("update");
    let twice = tx.sql("INSERT INTO t SELECT 100, v FROM t");
    assert!(
        matches!(twice, Err(Error::DuplicateKey { key: 100, .. })),
        "{twice:?}"
    );
    let failed = tx.sql("UPDATE t SET v = CAST(1 / (id - 12) AS TEXT)");
    assert!(failed.is_err());
    let seen = tx.sql("SELECT id, v FROM t ORDER BY id").expect("read");
    assert_eq!(
        rows_text(&seen.batches),
        [["1", "a"], ["2", "b"], ["11", "a!"], ["12", "b!"]]
    );
    tx.commit().expect("commit");
    let committed = db.sql("SELECT id, v FROM t ORDER BY id").expect("read");
    assert_eq!(rows_text(&committed.batches), rows_text(&seen.batches));
}

/// An autocommit `UPDATE` larger than a record is built without the writer lock and checked
/// at commit: a one-row update committed meanwhile to a row it changes makes it run again
/// under the lock, so no update is lost either way.
#[test]
fn a_large_update_built_beside_small_ones_loses_none_of_them() {
    let dir = TempDir::new("large-tx-update-race");
    let db = std::sync::Arc::new(open(&dir));
    db.sql("CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT, s TEXT)")
        .expect("create");
    db.sql(
        "INSERT INTO t SELECT value, 0, repeat('p', 40) FROM generate_series(0, 1999) AS s(value)",
    )
    .expect("fill");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let small = {
        let (db, stop) = (std::sync::Arc::clone(&db), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut updates = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let key = updates * 7 % 2000;
                db.sql(&format!("UPDATE t SET v = v + 1000 WHERE id = {key}"))
                    .expect("a one-row update");
                updates += 1;
            }
            updates
        })
    };
    for _ in 0..3 {
        db.sql("UPDATE t SET v = v + 1").expect("a large update");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let updates = small.join().expect("the small writer");
    assert!(updates > 0, "the small writer never ran");
    let expected = 3 * 2000 + 1000 * updates;
    assert_eq!(one(&db, "SELECT sum(v) FROM t"), expected.to_string());
}

/// A statement that fails after its writes spilled rolls back exactly and the transaction
/// goes on, and so does a rollback to a savepoint taken right before it (the first spill
/// after the latest savepoint writes the rows as they were there as a run of its own).
#[test]
fn a_statement_failing_after_it_spilled_and_its_savepoint_roll_back_exactly() {
    let dir = TempDir::new("large-tx-split");
    let db = open(&dir);
    db.sql("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)")
        .expect("create");
    let mut tx = db.begin();
    tx.sql("INSERT INTO t SELECT value, repeat('a', 40) FROM generate_series(0, 999) AS s(value)")
        .expect("spills");
    // Fails at its last row, long after it spilled: a duplicate of key 5.
    let failed = tx.sql(
        "INSERT INTO t SELECT value, repeat('b', 40) FROM generate_series(1000, 2999) AS s(value) \
         UNION ALL SELECT 5, 'dup'",
    );
    assert!(
        matches!(failed, Err(Error::DuplicateKey { key: 5, .. })),
        "{failed:?}"
    );
    assert_eq!(
        one_in(&mut tx, "SELECT count(*), max(id) FROM t"),
        "1000 999"
    );
    let before = tx.savepoint();
    tx.sql("UPDATE t SET v = 'u' WHERE id < 900")
        .expect("spills again");
    tx.rollback_to(before)
        .expect("the savepoint right before it");
    assert_eq!(
        one_in(&mut tx, "SELECT count(*), sum(length(v)) FROM t"),
        "1000 40000"
    );
    tx.upsert("t", row(1000, "last")).expect("usable");
    tx.commit().expect("commit");
    assert_eq!(
        one(&db, "SELECT count(*), sum(length(v)) FROM t"),
        "1001 40004"
    );
}

fn one_in(tx: &mut omendb::Transaction<'_>, sql: &str) -> String {
    match tx.sql(sql) {
        Ok(result) => rows_text(&result.batches)[0].join(" "),
        Err(e) => panic!("{sql}: {e}"),
    }
}
