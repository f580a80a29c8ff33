//! SQL under concurrency, with the replicator flushing and compacting all the time (tiny
//! batches, compaction after two files): every SQL snapshot is consistent and complete.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{TempDir, rows_text};
use omendb::replicator::ReplicatorOptions;
use omendb::{Db, DbOptions};

const ACCOUNTS: i64 = 200;
const START_BALANCE: i64 = 1000;

/// A database whose replicator seals every few rows and compacts after two small files.
fn busy_replicator(dir: &TempDir) -> Arc<Db> {
    let options = DbOptions {
        replicator: ReplicatorOptions {
            max_batch_rows: 16,
            max_batch_age: Duration::from_millis(2),
            compaction_trigger_files: 2,
            compaction_target_rows: 1_000,
            ..ReplicatorOptions::default()
        },
        ..DbOptions::default()
    };
    Arc::new(Db::open(&dir.0, options).expect("open"))
}

fn one_row(db: &Db, sql: &str) -> Vec<String> {
    let result = db.sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = rows_text(&result.batches);
    assert_eq!(rows.len(), 1, "{sql}");
    rows.remove(0)
}

/// Transfers through SQL `UPDATE`s from two threads; readers sum the balances over the
/// Parquet + delta route and over the index route. Every snapshot must hold the total, and at
/// the end no transfer may be lost (each one moves money and counts itself).
#[test]
fn transfers_keep_the_sum_in_every_sql_snapshot_while_flushing_and_compacting() {
    let dir = TempDir::new("sql-transfers");
    let db = busy_replicator(&dir);
    db.sql("CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL, moves BIGINT NOT NULL)")
        .expect("create");
    let values: Vec<String> = (0..ACCOUNTS)
        .map(|id| format!("({id}, {START_BALANCE}, 0)"))
        .collect();
    db.sql(&format!(
        "INSERT INTO accounts VALUES {}",
        values.join(", ")
    ))
    .expect("seed");
    let total = (ACCOUNTS * START_BALANCE).to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|thread| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ thread;
                let mut done = 0u64;
                for _ in 0..150 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let from = (x >> 33) as i64 % ACCOUNTS;
                    let to = (from + 1 + (x >> 20) as i64 % (ACCOUNTS - 1)) % ACCOUNTS;
                    let amount = 1 + (x >> 50) as i64 % 20;
                    // Read-modify-write in one statement: the writer lock makes it atomic.
                    let sql = format!(
                        "UPDATE accounts SET balance = balance + CASE WHEN id = {from} THEN \
                         -{amount} ELSE {amount} END, moves = moves + 1 \
                         WHERE id IN ({from}, {to})"
                    );
                    let updated = one_row(&db, &sql);
                    assert_eq!(updated, ["2"], "{sql}");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let readers: Vec<_> = [
        "SELECT SUM(balance), SUM(moves) % 2 FROM accounts",
        &format!(
            "SELECT SUM(balance), SUM(moves) % 2 FROM accounts WHERE id BETWEEN 0 AND {ACCOUNTS}"
        ),
        "SELECT SUM(b), COUNT(*) % 1 FROM (SELECT balance AS b FROM accounts WHERE moves >= 0)",
    ]
    .into_iter()
    .map(|sql| {
        let (db, stop, total, sql) = (
            Arc::clone(&db),
            Arc::clone(&stop),
            total.clone(),
            sql.to_string(),
        );
        std::thread::spawn(move || {
            let mut snapshots = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let row = one_row(&db, &sql);
                assert_eq!(
                    row,
                    [total.as_str(), "0"],
                    "{sql}: a snapshot saw half a transfer"
                );
                snapshots += 1;
            }
            snapshots
        })
    })
    .collect();
    let transfers: u64 = writers.into_iter().map(|w| w.join().expect("writer")).sum();
    stop.store(true, Ordering::Relaxed);
    let snapshots: u64 = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    assert!(snapshots >= 3, "readers ran {snapshots} queries");
    let stats = db.replicator().stats();
    assert!(stats.files_written > 2, "the replicator flushed: {stats:?}");
    // No lost update: every transfer counted its two rows.
    assert_eq!(
        one_row(&db, "SELECT SUM(balance), SUM(moves) FROM accounts"),
        [total.clone(), (2 * transfers).to_string()]
    );
    db.replicator().flush_now().expect("flush");
    assert_eq!(
        one_row(&db, "SELECT SUM(balance), SUM(moves) FROM accounts"),
        [total, (2 * transfers).to_string()]
    );
}

/// Each write is counted by the very next aggregate, from the writing thread, while the
/// replicator flushes and compacts underneath.
#[test]
fn an_aggregate_right_after_a_write_counts_it_while_flushing_and_compacting() {
    let dir = TempDir::new("sql-fresh");
    let db = busy_replicator(&dir);
    db.sql("CREATE TABLE events (id BIGINT PRIMARY KEY, v BIGINT)")
        .expect("create");
    let mut sum = 0i64;
    for id in 0..400i64 {
        if id % 10 == 9 {
            db.sql(&format!("DELETE FROM events WHERE id = {}", id - 5))
                .expect("delete");
            sum -= id - 5;
        } else {
            db.sql(&format!("INSERT INTO events VALUES ({id}, {id})"))
                .expect("insert");
            sum += id;
        }
        let row = one_row(&db, "SELECT COUNT(*), COALESCE(SUM(v), 0) FROM events");
        let expected_count = id + 1 - 2 * ((id + 1) / 10);
        assert_eq!(
            row,
            [expected_count.to_string(), sum.to_string()],
            "after write {id}"
        );
    }
    let stats = db.replicator().stats();
    assert!(stats.files_written > 5, "the replicator flushed: {stats:?}");
}
