//! A backlog drains into full-size files: the writer writes every batch waiting, waits for
//! the tail to seal a full file's worth while it is still reading, and so never writes the
//! small files that compaction would then rewrite. A file ends with the batch that reaches
//! `max_file_rows`, so that it is never smaller than the compaction target by a fraction of a
//! batch (a backlog once drained into files of 131,000 rows that the 131,072-row target then
//! rewrote, a third of the writer's CPU).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use omen_replicator::change::{ChangeEncoder, ColumnDef, DataType, TableSchema, Value};
use omen_replicator::{ReplicatorOptions, WalReplicator};
use omen_wal::{SyncMode, Wal, WalOptions};

#[path = "../../tests/cli_support/watchdog.rs"]
mod watchdog;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const RECORDS: i64 = 100;
const RECORD_ROWS: i64 = 1000;
/// Not a multiple of `RECORD_ROWS`, and the compaction target as well.
const FILE_ROWS: u64 = 10_500;

#[test]
fn a_backlog_drains_into_files_of_max_file_rows() {
    watchdog::watchdog();
    let dir =
        TempDir(std::env::temp_dir().join(format!("omen-repl-backlog-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let wal_options = WalOptions {
        sync_mode: SyncMode::None,
        ..WalOptions::default()
    };
    let wal = Arc::new(Wal::open(dir.0.join("wal"), wal_options).expect("WAL"));
    let schema = TableSchema {
        columns: vec![
            ColumnDef::new("id", DataType::Int64, false),
            ColumnDef::new("v", DataType::Int64, true),
            ColumnDef::new("name", DataType::Utf8, true),
        ],
        key: 0,
    };
    let mut encoder = ChangeEncoder::new();
    encoder.create_table("t", &schema);
    wal.append(&encoder.finish()).expect("append CREATE");
    // The whole backlog is durable before the replicator starts.
    for record in 0..RECORDS {
        let mut encoder = ChangeEncoder::new();
        for i in 0..RECORD_ROWS {
            let id = record * RECORD_ROWS + i;
            encoder.upsert(
                "t",
                &[
                    Value::Int64(id),
                    Value::Int64(-id),
                    Value::Utf8(format!("n{}", id % 13)),
                ],
            );
        }
        wal.append(&encoder.finish()).expect("append");
    }
    let last = wal.sync().expect("sync");
    let options = ReplicatorOptions {
        max_batch_rows: RECORD_ROWS as usize,
        max_file_rows: FILE_ROWS as usize,
        queue_rows: 2 * FILE_ROWS as usize,
        compaction_target_rows: FILE_ROWS as usize,
        compaction_trigger_files: 4,
        low_priority: false,
        ..ReplicatorOptions::default()
    };
    let replicator =
        WalReplicator::start(Arc::clone(&wal), dir.0.join("parquet"), options).expect("start");
    // Let the writer drain the backlog on its own (`flush_now` would cut the last file short
    // wherever the tail happens to be).
    let deadline = Instant::now() + Duration::from_secs(120);
    while replicator.stats().rows_replicated < (RECORDS * RECORD_ROWS) as u64 - FILE_ROWS {
        assert!(Instant::now() < deadline, "{:?}", replicator.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    replicator.flush_now().expect("flush");
    assert_eq!(replicator.stats().checkpoint_lsn, last.0);
    let manifest = replicator.manifest();
    let rows: Vec<u64> = manifest.tables["t"].files.iter().map(|f| f.rows).collect();
    assert_eq!(rows.iter().sum::<u64>(), (RECORDS * RECORD_ROWS) as u64);
    let (last_file, full) = rows.split_last().expect("files");
    let batch_rows = RECORD_ROWS as u64;
    assert!(
        full.iter()
            .all(|&r| (FILE_ROWS..FILE_ROWS + batch_rows).contains(&r))
            && *last_file < FILE_ROWS + batch_rows,
        "file sizes {rows:?}: all but the last should hold max_file_rows ({FILE_ROWS}) and \
         less than a batch more"
    );
    assert_eq!(
        rows.len() as u64,
        replicator.stats().files_written,
        "no flushed file was compacted: {rows:?}"
    );
    replicator.shutdown().expect("shutdown");
}
