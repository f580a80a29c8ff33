//! The Parquet snapshot scan (`OmenScanExec`) returns exactly what the slow resolver
//! `TableSnapshot::read` returns, over random histories of upserts, deletes, flushes and
//! compactions, at random snapshot LSNs, in several partitions.

mod common;

use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use common::{TempDir, rows_text};
use omendb::replicator::ReplicatorOptions;
use omendb::replicator::change::{ColumnDef, DataType, TableSchema};
use omendb::wal::{Lsn, SyncMode, WalOptions};
use omendb::{Db, DbOptions, Value, WriteBatch};

/// A small deterministic generator (xorshift64*), so failures replay by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn open(dir: &TempDir, rng: &mut Rng) -> Db {
    let options = DbOptions {
        wal: WalOptions {
            sync_mode: SyncMode::Buffered {
                interval: Duration::from_millis(2),
            },
            ..WalOptions::default()
        },
        replicator: ReplicatorOptions {
            max_batch_rows: 3 + rng.below(12) as usize,
            max_file_rows: 8 + rng.below(40) as usize,
            compaction_trigger_files: 2 + rng.below(3) as usize,
            compaction_target_rows: 10 + rng.below(60) as usize,
            ..ReplicatorOptions::default()
        },
        sql_threads: 3,
        ..DbOptions::default()
    };
    Db::open(&dir.0, options).expect("open")
}

fn schema() -> TableSchema {
    TableSchema {
        columns: vec![
            ColumnDef::new("id", DataType::Int64, false),
            ColumnDef::new("v", DataType::Int64, true),
            ColumnDef::new("s", DataType::Utf8, true),
        ],
        key: 0,
    }
}

/// The oracle's rows at `lsn`, and the scan's, from the same manifest (a flush or
/// compaction between the two reads changes what an old snapshot can see; then retry).
fn both(db: &Db, query: &str, lsn: Lsn) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    loop {
        let before = db.replicator().manifest();
        let oracle = db
            .replicator()
            .snapshot("t", lsn)
            .expect("snapshot")
            .read()
            .expect("read");
        let scanned: Vec<RecordBatch> = db.sql_at_snapshot(query, lsn).expect("scan");
        if Arc::ptr_eq(&before, &db.replicator().manifest()) {
            return (rows_text(&[oracle]), rows_text(&scanned));
        }
    }
}

fn check(db: &Db, rng: &mut Rng, lsns: &[Lsn], seed: u64) {
    let lsn = lsns[rng.below(lsns.len() as u64) as usize];
    let (oracle, scanned) = both(db, "SELECT id, v, s FROM t ORDER BY id", lsn);
    assert_eq!(scanned, oracle, "seed {seed}, snapshot {lsn:?}: all rows");
    // Projections without the key, counts and key ranges take the other paths.
    let low = rng.below(60) as i64;
    let high = low + rng.below(30) as i64;
    let query = format!("SELECT s, v FROM t WHERE id >= {low} AND id < {high} ORDER BY id");
    let (oracle, scanned) = both(db, &query, lsn);
    let expected: Vec<Vec<String>> = oracle
        .into_iter()
        .filter(|row| {
            let id: i64 = row[0].parse().expect("id");
            (low..high).contains(&id)
        })
        .map(|row| vec![row[2].clone(), row[1].clone()])
        .collect();
    assert_eq!(scanned, expected, "seed {seed}, snapshot {lsn:?}: {query}");
    let (oracle, scanned) = both(db, "SELECT COUNT(*) FROM t", lsn);
    assert_eq!(
        scanned,
        vec![vec![oracle.len().to_string()]],
        "seed {seed}, snapshot {lsn:?}: count"
    );
}

#[test]
fn scan_matches_the_resolver_over_random_histories() {
    for seed in 1..=12u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let dir = TempDir::new("sql-scan-model");
        let db = open(&dir, &mut rng);
        let mut lsns = vec![db.create_table("t", schema()).expect("create")];
        // Dense keys in some histories (the scan's distinct-key shortcut), sparse in others.
        let spread = if seed % 2 == 0 { 1 } else { 7 };
        for step in 0..120 {
            match rng.below(10) {
                0 => db.replicator().flush_now().expect("flush"),
                _ => {
                    let mut batch = WriteBatch::new();
                    for _ in 0..1 + rng.below(6) {
                        let key = rng.below(60) as i64 * spread;
                        if rng.below(4) == 0 {
                            batch.delete("t", key);
                        } else {
                            let s = match rng.below(3) {
                                0 => Value::Null,
                                _ => Value::Utf8(format!("s{}", rng.below(1000))),
                            };
                            batch.upsert("t", vec![Value::Int64(key), Value::Int64(step), s]);
                        }
                    }
                    lsns.push(db.write(&batch).expect("write"));
                }
            }
            if step % 15 == 14 {
                check(&db, &mut rng, &lsns, seed);
            }
        }
        db.replicator().flush_now().expect("flush");
        let last = *lsns.last().expect("lsn");
        check(&db, &mut rng, &[last], seed);
        // At the latest snapshot the scan also agrees with the learned index.
        let indexed = db.scan("t", ..).expect("index scan").len();
        let counted = db.sql("SELECT COUNT(*) FROM t").expect("count");
        assert_eq!(rows_text(&counted.batches), vec![vec![indexed.to_string()]]);
        db.close().expect("close");
    }
}
