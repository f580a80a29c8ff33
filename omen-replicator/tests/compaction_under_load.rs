//! Compaction keeps up while writes continue: with `compaction_trigger_files` 4, a table that
//! receives a steady stream of small flushes must not pile up hundreds of small files.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

/// Sealed batches arriving every few milliseconds keep the writer thread from ever idling;
/// compaction must still run (it once ran only after 50 ms without a message, and files piled
/// up for as long as the writes went on). A loaded machine only leaves more idle gaps, so the
/// test can pass by luck under load, never fail by it.
#[test]
fn compaction_keeps_up_while_writes_continue() {
    watchdog::watchdog();
    let dir = TempDir(
        std::env::temp_dir().join(format!("omen-repl-compaction-load-{}", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&dir.0);
    let wal_options = WalOptions {
        sync_mode: SyncMode::GroupCommit,
        ..WalOptions::default()
    };
    let wal = Arc::new(Wal::open(dir.0.join("wal"), wal_options).expect("WAL"));
    let options = ReplicatorOptions {
        max_batch_rows: 10,
        // A file per sealed batch: the stream of small flushes this test is about.
        file_linger: Duration::ZERO,
        compaction_trigger_files: 4,
        compaction_target_rows: 100_000,
        ..ReplicatorOptions::default()
    };
    let replicator =
        WalReplicator::start(Arc::clone(&wal), dir.0.join("parquet"), options).expect("start");
    let schema = TableSchema {
        columns: vec![
            ColumnDef::new("id", DataType::Int64, false),
            ColumnDef::new("v", DataType::Int64, true),
        ],
        key: 0,
    };
    let mut encoder = ChangeEncoder::new();
    encoder.create_table("t", &schema);
    wal.append(&encoder.finish()).expect("append CREATE");
    let mut most_files = 0;
    for record in 0..400 {
        let mut encoder = ChangeEncoder::new();
        for key in 0..10 {
            encoder.upsert("t", &[Value::Int64(key), Value::Int64(record)]);
        }
        wal.append(&encoder.finish()).expect("append");
        std::thread::sleep(Duration::from_millis(5));
        most_files = most_files.max(replicator.stats().files);
    }
    assert!(
        most_files <= 50,
        "{most_files} files at once with compaction_trigger_files 4: compaction did not run \
         while writes went on"
    );
}
