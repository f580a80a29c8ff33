//! Transactions: writes invisible to others until commit and seen by the transaction's own
//! reads on every path; all or nothing (rollback, drop, a failed statement, a conflict);
//! first committer wins; durable as one record; a random interleaving checked against a
//! serial model.

mod common;

use common::{TempDir, rows_text};

use omendb::{Db, DbOptions, Error, Transaction, Value};

fn open(dir: &TempDir) -> Db {
    Db::open(&dir.0, DbOptions::default()).expect("open")
}

fn run(db: &Db, sql: &str) -> Vec<Vec<String>> {
    match db.sql(sql) {
        Ok(result) => rows_text(&result.batches),
        Err(e) => panic!("{sql}: {e}"),
    }
}

fn run_in(tx: &mut Transaction<'_>, sql: &str) -> Vec<Vec<String>> {
    match tx.sql(sql) {
        Ok(result) => rows_text(&result.batches),
        Err(e) => panic!("{sql}: {e}"),
    }
}

fn one(rows: Vec<Vec<String>>) -> String {
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0][0].clone()
}

fn accounts(db: &Db, rows: i64) {
    run(
        db,
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT, note TEXT)",
    );
    let values: Vec<String> = (1..=rows).map(|i| format!("({i}, 100, 'a')")).collect();
    run(
        db,
        &format!("INSERT INTO accounts VALUES {}", values.join(", ")),
    );
}

fn balance(db: &Db, id: i64) -> Option<i64> {
    db.get("accounts", id)
        .expect("get")
        .map(|row| match row.to_row()[1] {
            Value::Int64(b) => b,
            ref other => panic!("{other:?}"),
        })
}

#[test]
fn writes_are_seen_inside_and_nowhere_else_until_commit() {
    let dir = TempDir::new("tx-visibility");
    let db = open(&dir);
    accounts(&db, 10);
    // Some rows in Parquet files, some not: both the files and the delta are read over.
    db.replicator().flush_now().expect("flush");
    run(&db, "UPDATE accounts SET balance = 200 WHERE id = 10");

    let mut tx = db.begin();
    run_in(
        &mut tx,
        "UPDATE accounts SET balance = balance - 30 WHERE id = 1",
    );
    run_in(
        &mut tx,
        "UPDATE accounts SET balance = balance + 30 WHERE id = 2",
    );
    run_in(&mut tx, "DELETE FROM accounts WHERE id IN (3, 10)");
    run_in(&mut tx, "INSERT INTO accounts VALUES (11, 5, 'new')");
    tx.upsert(
        "accounts",
        vec![Value::Int64(12), Value::Int64(7), Value::Utf8("api".into())],
    )
    .expect("upsert");

    // Inside: the key fast path, an index range, a DataFusion aggregate, the Rust API.
    assert_eq!(
        one(run_in(&mut tx, "SELECT balance FROM accounts WHERE id = 1")),
        "70"
    );
    assert_eq!(
        run_in(
            &mut tx,
            "SELECT id FROM accounts WHERE id BETWEEN 9 AND 12 ORDER BY id"
        ),
        [["9"], ["11"], ["12"]]
    );
    assert_eq!(
        run_in(
            &mut tx,
            "SELECT count(*), sum(balance) FROM accounts WHERE note <> 'x'"
        ),
        [["10", "812"]]
    );
    assert_eq!(
        one(run_in(
            &mut tx,
            "SELECT count(*) FROM accounts WHERE id = 3"
        )),
        "0"
    );
    assert!(tx.get("accounts", 3).expect("get").is_none());
    assert_eq!(
        tx.get("accounts", 2).expect("get").expect("row")[1],
        Value::Int64(130)
    );
    let keys: Vec<Value> = tx
        .scan("accounts", 8..)
        .expect("scan")
        .iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(keys, [8, 9, 11, 12].map(Value::Int64));

    // Outside: nothing yet.
    assert_eq!(balance(&db, 1), Some(100));
    assert_eq!(one(run(&db, "SELECT sum(balance) FROM accounts")), "1100");
    assert!(db.get("accounts", 11).expect("get").is_none());

    tx.commit().expect("commit");
    assert_eq!(balance(&db, 1), Some(70));
    assert_eq!(balance(&db, 3), None);
    assert_eq!(
        run(&db, "SELECT count(*), sum(balance) FROM accounts"),
        [["10", "812"]]
    );

    // One record: after reopening, all of it.
    drop(db);
    let db = open(&dir);
    assert_eq!(
        run(&db, "SELECT count(*), sum(balance) FROM accounts"),
        [["10", "812"]]
    );
    assert_eq!(balance(&db, 12), Some(7));
}

#[test]
fn nothing_is_applied_by_rollback_drop_or_a_failed_statement() {
    let dir = TempDir::new("tx-rollback");
    let db = open(&dir);
    accounts(&db, 3);

    let mut tx = db.begin();
    run_in(&mut tx, "UPDATE accounts SET balance = 0");
    tx.rollback();
    {
        let mut tx = db.begin();
        run_in(&mut tx, "DELETE FROM accounts");
    }
    assert_eq!(one(run(&db, "SELECT sum(balance) FROM accounts")), "300");

    // A failing statement changes nothing of the transaction; the rest commits.
    let mut tx = db.begin();
    run_in(&mut tx, "INSERT INTO accounts VALUES (4, 1, 'x')");
    let duplicate = tx.sql("INSERT INTO accounts VALUES (5, 1, 'x'), (4, 2, 'y')");
    assert!(
        matches!(duplicate, Err(Error::DuplicateKey { key: 4, .. })),
        "{duplicate:?}"
    );
    let division = tx.sql("UPDATE accounts SET balance = balance / (id - 2)");
    assert!(division.is_err());
    assert!(tx.get("accounts", 5).expect("get").is_none());
    // A schema change is applied at once; the transaction may write to the new table.
    run_in(&mut tx, "CREATE TABLE other (id BIGINT PRIMARY KEY)");
    run_in(&mut tx, "INSERT INTO other VALUES (1)");
    assert!(db.get("other", 1).expect("get").is_none());
    tx.commit().expect("commit");
    assert!(db.get("other", 1).expect("get").is_some());
    assert_eq!(
        run(&db, "SELECT id, balance FROM accounts ORDER BY id"),
        [["1", "100"], ["2", "100"], ["3", "100"], ["4", "1"]]
    );

    // Several statements in one call are one transaction: an error applies none of them.
    let script = db.sql(
        "INSERT INTO accounts VALUES (6, 1, 'x'); UPDATE accounts SET balance = 0 WHERE id = 1; \
         INSERT INTO accounts VALUES (6, 2, 'y')",
    );
    assert!(
        matches!(script, Err(Error::DuplicateKey { key: 6, .. })),
        "{script:?}"
    );
    assert_eq!(balance(&db, 1), Some(100));
    assert_eq!(balance(&db, 6), None);
    run(
        &db,
        "INSERT INTO accounts VALUES (6, 1, 'x'); UPDATE accounts SET balance = balance + 1 \
         WHERE id = 6; SELECT 1",
    );
    assert_eq!(balance(&db, 6), Some(2));
}

#[test]
fn savepoints_undo_what_came_after_them() {
    let dir = TempDir::new("tx-savepoints");
    let db = open(&dir);
    accounts(&db, 2);
    let mut tx = db.begin();
    run_in(&mut tx, "UPDATE accounts SET balance = 1 WHERE id = 1");
    let first = tx.savepoint();
    run_in(&mut tx, "UPDATE accounts SET balance = 2 WHERE id = 1");
    run_in(&mut tx, "INSERT INTO accounts VALUES (3, 3, 'c')");
    let second = tx.savepoint();
    run_in(&mut tx, "DELETE FROM accounts WHERE id = 2");
    tx.rollback_to(second).expect("rollback to");
    assert_eq!(
        tx.get("accounts", 2).expect("get").expect("row")[1],
        Value::Int64(100)
    );
    tx.rollback_to(first).expect("rollback to");
    assert!(tx.get("accounts", 3).expect("get").is_none());
    assert_eq!(
        tx.get("accounts", 1).expect("get").expect("row")[1],
        Value::Int64(1)
    );
    tx.commit().expect("commit");
    assert_eq!(
        run(&db, "SELECT id, balance FROM accounts ORDER BY id"),
        [["1", "1"], ["2", "100"]]
    );
}

#[test]
fn the_first_committer_wins_and_the_loser_applies_nothing() {
    let dir = TempDir::new("tx-conflicts");
    let db = open(&dir);
    accounts(&db, 3);

    let mut a = db.begin();
    let mut b = db.begin();
    run_in(
        &mut a,
        "UPDATE accounts SET balance = balance - 10 WHERE id = 1",
    );
    run_in(
        &mut b,
        "UPDATE accounts SET balance = balance - 20 WHERE id = 1",
    );
    run_in(
        &mut b,
        "UPDATE accounts SET balance = balance + 20 WHERE id = 2",
    );
    a.commit().expect("first committer");
    let lost = b.commit();
    assert!(
        matches!(lost, Err(Error::SerializationFailure(_))),
        "{lost:?}"
    );
    assert_eq!((balance(&db, 1), balance(&db, 2)), (Some(90), Some(100)));

    // An autocommit write counts as a committer too; an insert of the same new key as well.
    let mut c = db.begin();
    run_in(&mut c, "UPDATE accounts SET balance = 0 WHERE id = 3");
    run(&db, "UPDATE accounts SET balance = 1 WHERE id = 3");
    assert!(matches!(c.commit(), Err(Error::SerializationFailure(_))));
    let mut d = db.begin();
    run_in(&mut d, "INSERT INTO accounts VALUES (9, 9, 'd')");
    run(&db, "INSERT INTO accounts VALUES (9, 1, 'other')");
    assert!(matches!(d.commit(), Err(Error::SerializationFailure(_))));
    assert_eq!(balance(&db, 9), Some(1));

    // Disjoint keys both commit; a transaction begun after a commit does not conflict with it.
    let mut e = db.begin();
    let mut f = db.begin();
    run_in(&mut e, "UPDATE accounts SET balance = 5 WHERE id = 1");
    run_in(&mut f, "UPDATE accounts SET balance = 6 WHERE id = 2");
    e.commit().expect("disjoint");
    f.commit().expect("disjoint");
    let mut g = db.begin();
    run_in(&mut g, "UPDATE accounts SET balance = 7 WHERE id = 1");
    g.commit().expect("after");
    assert_eq!((balance(&db, 1), balance(&db, 2)), (Some(7), Some(6)));

    // A table changed under a transaction's writes fails its commit.
    let mut h = db.begin();
    run_in(&mut h, "UPDATE accounts SET balance = 8 WHERE id = 1");
    run(&db, "ALTER TABLE accounts ADD COLUMN extra INT");
    assert!(matches!(h.commit(), Err(Error::SerializationFailure(_))));
    assert_eq!(balance(&db, 1), Some(7));
}

#[test]
fn a_transaction_reads_its_snapshot_on_every_path_across_compaction() {
    let dir = TempDir::new("tx-snapshot");
    let options = DbOptions {
        replicator: omendb::replicator::ReplicatorOptions {
            compaction_trigger_files: 2,
            compaction_target_rows: 1000,
            ..Default::default()
        },
        ..DbOptions::default()
    };
    let db = Db::open(&dir.0, options).expect("open");
    accounts(&db, 5);
    db.replicator().flush_now().expect("flush");
    let mut tx = db.begin();
    let before = one(run_in(&mut tx, "SELECT balance FROM accounts WHERE id = 1"));
    assert_eq!(before, "100");
    // Others commit, flush and compact many times over the row.
    for round in 0..20 {
        run(
            &db,
            &format!("UPDATE accounts SET balance = {round} WHERE id IN (1, 2)"),
        );
        db.replicator().flush_now().expect("flush");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    db.replicator().flush_now().expect("flush");
    assert_eq!(balance(&db, 1), Some(19));
    // The transaction still reads its snapshot: key fast path, range, aggregate, Rust API.
    assert_eq!(
        one(run_in(&mut tx, "SELECT balance FROM accounts WHERE id = 1")),
        "100"
    );
    assert_eq!(
        run_in(
            &mut tx,
            "SELECT balance FROM accounts WHERE id BETWEEN 1 AND 2"
        ),
        [["100"], ["100"]]
    );
    assert_eq!(
        one(run_in(&mut tx, "SELECT sum(balance) FROM accounts")),
        "500"
    );
    assert_eq!(
        tx.get("accounts", 2).expect("get").expect("row")[1],
        Value::Int64(100)
    );
    assert_eq!(tx.scan("accounts", ..).expect("scan").len(), 5);
    assert_eq!(
        tx.multi_get("accounts", &[2, 9, 1]).expect("multi_get")[2]
            .as_ref()
            .map(|r| r[1].clone()),
        Some(Value::Int64(100))
    );
    // Its own write shows over the snapshot; its commit conflicts with the later ones.
    run_in(
        &mut tx,
        "UPDATE accounts SET balance = balance + 1 WHERE id = 3",
    );
    assert_eq!(
        one(run_in(&mut tx, "SELECT sum(balance) FROM accounts")),
        "501"
    );
    tx.commit().expect("row 3 was not written by others");
    let mut late = db.begin();
    assert_eq!(
        one(run_in(
            &mut late,
            "SELECT balance FROM accounts WHERE id = 1"
        )),
        "19"
    );
    run(&db, "UPDATE accounts SET balance = 0 WHERE id = 4");
    run_in(
        &mut late,
        "UPDATE accounts SET balance = balance + 1 WHERE id = 4",
    );
    assert!(matches!(late.commit(), Err(Error::SerializationFailure(_))));
}

#[test]
fn transfers_between_threads_keep_the_total() {
    let dir = TempDir::new("tx-bank");
    let db = open(&dir);
    let accounts_n = 20i64;
    accounts(&db, accounts_n);
    let (committed, conflicts) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                let db = &db;
                scope.spawn(move || {
                    let (mut committed, mut conflicts) = (0, 0);
                    for i in 0..60i64 {
                        let from = (worker * 7 + i * 3) % accounts_n + 1;
                        let to = (worker * 5 + i * 11 + 1) % accounts_n + 1;
                        if from == to {
                            continue;
                        }
                        let mut tx = db.begin();
                        run_in(
                            &mut tx,
                            &format!("UPDATE accounts SET balance = balance - 1 WHERE id = {from}"),
                        );
                        run_in(
                            &mut tx,
                            &format!("UPDATE accounts SET balance = balance + 1 WHERE id = {to}"),
                        );
                        match tx.commit() {
                            Ok(_) => committed += 1,
                            Err(Error::SerializationFailure(_)) => conflicts += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    (committed, conflicts)
                })
            })
            .collect();
        let reader = scope.spawn(|| {
            for _ in 0..30 {
                let total = one(run(&db, "SELECT sum(balance) FROM accounts"));
                assert_eq!(total, (100 * accounts_n).to_string());
                // One snapshot across statements: point reads and an aggregate agree.
                let mut tx = db.begin();
                let mut by_key = 0i64;
                for id in 1..=accounts_n {
                    let rows = run_in(
                        &mut tx,
                        &format!("SELECT balance FROM accounts WHERE id = {id}"),
                    );
                    by_key += one(rows).parse::<i64>().expect("balance");
                }
                let aggregate = one(run_in(&mut tx, "SELECT sum(balance) FROM accounts"));
                assert_eq!(by_key, 100 * accounts_n);
                assert_eq!(aggregate, (100 * accounts_n).to_string());
            }
        });
        reader.join().expect("reader");
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    });
    assert!(
        committed > 0,
        "{committed} committed, {conflicts} conflicts"
    );
    let total: i64 = (1..=accounts_n)
        .map(|id| balance(&db, id).expect("row"))
        .sum();
    assert_eq!(total, 100 * accounts_n);
    drop(db);
    let db = open(&dir);
    assert_eq!(
        one(run(&db, "SELECT sum(balance) FROM accounts")),
        (100 * accounts_n).to_string()
    );
}

/// Random interleavings of two transactions and autocommit writes over a few keys, with
/// flushes and compactions, checked against a model: each transaction reads the committed
/// state at its first operation plus its own writes (snapshot isolation), and a commit
/// succeeds exactly when no key it wrote was committed by another after that.
#[test]
fn random_interleavings_match_the_model() {
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;
    let dir = TempDir::new("tx-model");
    // Small files compacted often: snapshots must survive compaction.
    let options = DbOptions {
        replicator: omendb::replicator::ReplicatorOptions {
            max_batch_rows: 5,
            max_batch_age: std::time::Duration::from_millis(1),
            file_linger: std::time::Duration::ZERO,
            compaction_trigger_files: 2,
            compaction_target_rows: 50,
            ..Default::default()
        },
        ..DbOptions::default()
    };
    let db = Db::open(&dir.0, options).expect("open");
    run(&db, "CREATE TABLE kv (id BIGINT PRIMARY KEY, v BIGINT)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // The model: committed rows, and per open transaction its writes, start and written keys.
    let mut committed: BTreeMap<i64, i64> = BTreeMap::new();
    let mut commit_seq = 0u64;
    let mut last_commit: BTreeMap<i64, u64> = BTreeMap::new();
    struct Open<'db> {
        tx: Transaction<'db>,
        writes: BTreeMap<i64, Option<i64>>,
        start: u64,
        /// The committed rows at its snapshot (its first operation).
        seen: BTreeMap<i64, i64>,
    }
    let mut open_txs: [Option<Open<'_>>; 2] = [None, None];
    let mut outcomes = [0usize; 2];
    for _ in 0..3000 {
        let slot = rng.random_range(0..2);
        let key = rng.random_range(0..6i64);
        let value = rng.random_range(0..1000i64);
        match rng.random_range(0..10) {
            0 => {
                // An autocommit write.
                let mut batch = omendb::WriteBatch::new();
                batch.upsert("kv", vec![Value::Int64(key), Value::Int64(value)]);
                db.write(&batch).expect("write");
                committed.insert(key, value);
                commit_seq += 1;
                last_commit.insert(key, commit_seq);
            }
            1..=5 => {
                let open = open_txs[slot].get_or_insert_with(|| Open {
                    tx: db.begin(),
                    writes: BTreeMap::new(),
                    start: commit_seq,
                    seen: committed.clone(),
                });
                if rng.random_bool(0.3) {
                    open.tx.delete("kv", key).expect("delete");
                    open.writes.insert(key, None);
                } else {
                    open.tx
                        .upsert("kv", vec![Value::Int64(key), Value::Int64(value)])
                        .expect("upsert");
                    open.writes.insert(key, Some(value));
                }
            }
            6 | 7 => {
                if let Some(open) = &mut open_txs[slot] {
                    // Snapshot isolation: the snapshot, with the transaction's writes.
                    let expected = match open.writes.get(&key) {
                        Some(written) => *written,
                        None => open.seen.get(&key).copied(),
                    };
                    let sql = format!("SELECT v FROM kv WHERE id <= {key} AND id >= {key}");
                    let by_sql = run_in(&mut open.tx, &sql);
                    let expected_rows: Vec<Vec<String>> =
                        expected.iter().map(|v| vec![v.to_string()]).collect();
                    assert_eq!(by_sql, expected_rows, "{sql}");
                    let got = open.tx.get("kv", key).expect("get").map(|r| match r[1] {
                        Value::Int64(v) => v,
                        ref other => panic!("{other:?}"),
                    });
                    assert_eq!(got, expected, "{sql}");
                }
            }
            _ => {
                if let Some(open) = open_txs[slot].take() {
                    let conflict = open
                        .writes
                        .keys()
                        .any(|k| last_commit.get(k).is_some_and(|&at| at > open.start));
                    let result = open.tx.commit();
                    if conflict {
                        assert!(
                            matches!(result, Err(Error::SerializationFailure(_))),
                            "{result:?}"
                        );
                        outcomes[0] += 1;
                    } else {
                        result.expect("commit without conflict");
                        outcomes[1] += 1;
                        if !open.writes.is_empty() {
                            commit_seq += 1;
                        }
                        for (k, v) in open.writes {
                            match v {
                                Some(v) => committed.insert(k, v),
                                None => committed.remove(&k),
                            };
                            last_commit.insert(k, commit_seq);
                        }
                    }
                }
            }
        }
        if rng.random_bool(0.02) {
            db.replicator().flush_now().expect("flush");
        }
        // The committed state is the model's, by the index and by SQL.
        if rng.random_bool(0.05) {
            let rows = run(&db, "SELECT id, v FROM kv ORDER BY id");
            let expected: Vec<Vec<String>> = committed
                .iter()
                .map(|(k, v)| vec![k.to_string(), v.to_string()])
                .collect();
            assert_eq!(rows, expected);
        }
    }
    assert!(outcomes[0] > 10 && outcomes[1] > 10, "{outcomes:?}");
}

#[test]
fn a_transaction_older_than_its_limit_fails_and_applies_nothing() {
    let dir = TempDir::new("tx-age");
    let options = DbOptions {
        max_transaction_age: std::time::Duration::from_millis(200),
        ..DbOptions::default()
    };
    let db = Db::open(&dir.0, options).expect("open");
    accounts(&db, 2);
    let mut tx = db.begin();
    run_in(&mut tx, "UPDATE accounts SET balance = 0 WHERE id = 1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(matches!(
        tx.sql("SELECT balance FROM accounts WHERE id = 2"),
        Err(Error::SerializationFailure(_))
    ));
    assert!(matches!(tx.commit(), Err(Error::SerializationFailure(_))));
    assert_eq!(balance(&db, 1), Some(100));
    // A young one is not affected.
    let mut young = db.begin();
    run_in(&mut young, "UPDATE accounts SET balance = 1 WHERE id = 1");
    young.commit().expect("commit");
    assert_eq!(balance(&db, 1), Some(1));
}
