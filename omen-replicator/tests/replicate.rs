//! End to end: WAL records in, Parquet files and zero-staleness snapshots out, checked against
//! a model of the table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use omen_replicator::change::{ChangeEncoder, ColumnDef, DataType, TableSchema, Value};
use omen_replicator::{ManualClock, ReplicatorError, ReplicatorOptions, WalReplicator};
use omen_wal::{Lsn, SyncMode, Wal, WalOptions};

#[path = "../../tests/cli_support/watchdog.rs"]
mod watchdog;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        watchdog::watchdog();
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "omen-repl-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }

    fn wal(&self) -> PathBuf {
        self.0.join("wal")
    }

    fn parquet(&self) -> PathBuf {
        self.0.join("parquet")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn schema() -> TableSchema {
    TableSchema {
        columns: vec![
            ColumnDef::new("id", DataType::Int64, false),
            ColumnDef::new("qty", DataType::Int64, true),
            ColumnDef::new("price", DataType::Float64, true),
            ColumnDef::new("name", DataType::Utf8, true),
            ColumnDef::new("at", DataType::TimestampMicros, true),
        ],
        key: 0,
    }
}

fn row(id: i64, version: i64) -> Vec<Value> {
    vec![
        Value::Int64(id),
        Value::Int64(version),
        Value::Float64(id as f64 * 0.5),
        Value::Utf8(format!("item-{id}")),
        Value::TimestampMicros(1_700_000_000_000_000 + id),
    ]
}

fn open_wal(dir: &Path) -> Arc<Wal> {
    // Buffered: the replicator reads durable records, which a 5 ms background sync makes of
    // every append soon enough, without an fsync per append.
    let options = WalOptions {
        sync_mode: SyncMode::Buffered {
            interval: Duration::from_millis(5),
        },
        ..WalOptions::default()
    };
    Arc::new(Wal::open(dir, options).expect("wal"))
}

fn create(wal: &Wal, table: &str) -> Lsn {
    let mut encoder = ChangeEncoder::new();
    encoder.create_table(table, &schema());
    wal.append(&encoder.finish()).expect("append")
}

/// The model: key -> qty of live rows.
type Model = BTreeMap<i64, i64>;

/// Writes `batches` batches of upserts and deletes, applying them to the model too; returns
/// the (key, LSN) of every change.
fn write_workload(
    wal: &Wal,
    table: &str,
    model: &mut Model,
    seed: u64,
    batches: u64,
) -> Vec<(i64, u64)> {
    let mut x = seed;
    let mut changes = Vec::new();
    for _ in 0..batches {
        let mut encoder = ChangeEncoder::new();
        let mut keys = Vec::new();
        for _ in 0..10 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let id = (x >> 33) as i64 % 500;
            keys.push(id);
            if (x >> 20).is_multiple_of(5) {
                encoder.delete(table, id);
                model.remove(&id);
            } else {
                let version = (x >> 40) as i64;
                encoder.upsert(table, &row(id, version));
                model.insert(id, version);
            }
        }
        let lsn = wal.append(&encoder.finish()).expect("append");
        changes.extend(keys.into_iter().map(|k| (k, lsn.0)));
    }
    changes
}

fn live_rows(batch: &RecordBatch) -> Model {
    let ids = batch.column(0).as_primitive::<Int64Type>();
    let qty = batch.column(1).as_primitive::<Int64Type>();
    (0..batch.num_rows())
        .map(|i| (ids.value(i), qty.value(i)))
        .collect()
}

fn small_batches() -> ReplicatorOptions {
    ReplicatorOptions {
        max_batch_rows: 100,
        compaction_trigger_files: 1000,
        ..ReplicatorOptions::default()
    }
}

#[test]
fn snapshots_see_every_write_before_and_after_flushes() {
    let dir = TempDir::new("snapshot");
    let wal = open_wal(&dir.wal());
    let replicator =
        WalReplicator::start(Arc::clone(&wal), dir.parquet(), small_batches()).expect("start");
    create(&wal, "orders");
    let mut model = Model::new();
    write_workload(&wal, "orders", &mut model, 1, 50);
    // Zero staleness: the snapshot at the last LSN has every write, flushed or not.
    let snapshot = replicator
        .snapshot("orders", wal.last_lsn())
        .expect("snapshot");
    assert!(
        live_rows(&snapshot.read().expect("read")) == model,
        "snapshot differs from the model"
    );

    replicator.flush_now().expect("flush");
    let stats = replicator.stats();
    assert!(stats.files >= 1, "{stats:?}");
    assert_eq!(stats.checkpoint_lsn, wal.last_lsn().0);
    let snapshot = replicator
        .snapshot("orders", wal.last_lsn())
        .expect("snapshot");
    assert!(
        snapshot.delta.iter().all(|b| b.num_rows() == 0),
        "all flushed"
    );
    assert!(
        live_rows(&snapshot.read().expect("read")) == model,
        "snapshot differs from the model"
    );

    // An older snapshot LSN sees the older state.
    let mut old_model = Model::new();
    let wal2_dir = TempDir::new("snapshot-model");
    let wal2 = open_wal(&wal2_dir.wal());
    create(&wal2, "orders");
    write_workload(&wal2, "orders", &mut old_model, 1, 20);
    let at = Lsn(1 + 20);
    let snapshot = replicator.snapshot("orders", at).expect("old snapshot");
    assert!(
        live_rows(&snapshot.read().expect("read")) == old_model,
        "old snapshot differs"
    );
    replicator.shutdown().expect("shutdown");
}

#[test]
fn a_restart_resumes_exactly_once() {
    let dir = TempDir::new("restart");
    let mut model = Model::new();
    let mut expected = Vec::new();
    {
        let wal = open_wal(&dir.wal());
        let replicator =
            WalReplicator::start(Arc::clone(&wal), dir.parquet(), small_batches()).expect("start");
        create(&wal, "t");
        expected.extend(write_workload(&wal, "t", &mut model, 7, 40));
        replicator.flush_now().expect("flush");
        expected.extend(write_workload(&wal, "t", &mut model, 8, 13));
        // Dropped without a flush: the last rows are only in the WAL.
        drop(replicator);
    }
    let wal = open_wal(&dir.wal());
    let replicator =
        WalReplicator::start(Arc::clone(&wal), dir.parquet(), small_batches()).expect("restart");
    replicator.flush_now().expect("flush");
    // Every row version is in the files exactly once: count versions by (key, lsn).
    let snapshot = replicator.snapshot("t", wal.last_lsn()).expect("snapshot");
    let mut versions = Vec::new();
    let mut total = 0;
    for (path, meta) in &snapshot.files {
        let file = std::fs::File::open(path).expect("open");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader");
        let mut rows = 0;
        for batch in reader {
            let batch = batch.expect("batch");
            let ids = batch.column(0).as_primitive::<Int64Type>();
            let lsns = batch
                .column(batch.num_columns() - 2)
                .as_primitive::<arrow::datatypes::UInt64Type>();
            versions.extend((0..batch.num_rows()).map(|i| (ids.value(i), lsns.value(i))));
            rows += batch.num_rows() as u64;
        }
        assert_eq!(rows, meta.rows);
        total += rows;
    }
    assert_eq!(total, 530, "53 batches of 10 row changes, each once");
    versions.sort_unstable();
    expected.sort_unstable();
    assert!(
        versions == expected,
        "the files hold each change exactly once"
    );
    assert!(
        live_rows(&snapshot.read().expect("read")) == model,
        "snapshot differs from the model"
    );
}

#[test]
fn buffers_seal_by_age_with_an_injected_clock() {
    let dir = TempDir::new("age");
    let wal = open_wal(&dir.wal());
    let clock = Arc::new(ManualClock::default());
    let options = ReplicatorOptions {
        max_batch_rows: 1000,
        max_batch_age: Duration::from_secs(5),
        // Each sealed batch is written at once: the files count the seals.
        file_linger: Duration::ZERO,
        clock: clock.clone(),
        ..ReplicatorOptions::default()
    };
    let replicator = WalReplicator::start(Arc::clone(&wal), dir.parquet(), options).expect("start");
    create(&wal, "t");
    let mut model = Model::new();
    write_workload(&wal, "t", &mut model, 3, 5);
    // Read, but young: nothing is flushed however long we wait in real time.
    replicator.snapshot("t", wal.last_lsn()).expect("caught up");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        replicator.stats().files,
        0,
        "a 50-row buffer younger than 5 s stays"
    );
    assert_eq!(replicator.stats().oldest_unflushed_age, Duration::ZERO);
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        replicator.stats().oldest_unflushed_age,
        Duration::from_secs(5)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while replicator.stats().files == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the aged buffer was never flushed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // A burst seals every 1000 rows without any time passing.
    let mut encoder = ChangeEncoder::new();
    for id in 1000..3500 {
        encoder.upsert("t", &row(id, 1));
    }
    wal.append(&encoder.finish()).expect("append");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while replicator.stats().files < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "full buffers were never flushed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // 2500 rows arrived in one record: sealed once the record was applied (2500 >= 1000),
    // with no time passing on the clock.
    let stats = replicator.stats();
    assert_eq!(stats.rows_replicated, 2550, "{stats:?}");
}

/// Waits (in real time) until `replicator` has written `files` files.
fn wait_for_files(replicator: &WalReplicator, files: u64, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while replicator.stats().files_written < files {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Appends upserts of keys `ids` as one WAL record.
fn burst(wal: &Wal, ids: std::ops::Range<i64>) {
    let mut encoder = ChangeEncoder::new();
    for id in ids {
        encoder.upsert("t", &row(id, 1));
    }
    wal.append(&encoder.finish()).expect("append");
}

#[test]
fn sealed_batches_linger_and_are_written_as_one_file() {
    let dir = TempDir::new("linger");
    let wal = open_wal(&dir.wal());
    let clock = Arc::new(ManualClock::default());
    let options = ReplicatorOptions {
        max_batch_rows: 1000,
        max_batch_age: Duration::from_secs(5),
        file_linger: Duration::from_secs(1),
        max_file_rows: 4000,
        clock: clock.clone(),
        ..ReplicatorOptions::default()
    };
    let replicator = WalReplicator::start(Arc::clone(&wal), dir.parquet(), options).expect("start");
    create(&wal, "t");
    // Three full batches over 0.8 s of the clock: sealed, not yet written, but readable.
    for (i, start) in [0, 1000, 2000].into_iter().enumerate() {
        if i > 0 {
            clock.advance(Duration::from_millis(400));
        }
        burst(&wal, start..start + 1000);
        // Rows arrive when the tail reads them: let it, before the clock moves on.
        replicator.snapshot("t", wal.last_lsn()).expect("read");
    }
    let snapshot = replicator.snapshot("t", wal.last_lsn()).expect("snapshot");
    assert_eq!(snapshot.read().expect("read").num_rows(), 3000);
    std::thread::sleep(Duration::from_millis(200));
    let stats = replicator.stats();
    assert_eq!(stats.files_written, 0, "sealed batches wait: {stats:?}");
    assert_eq!(stats.oldest_unflushed_age, Duration::from_millis(800));
    // The oldest row has waited its second: one file takes all three batches.
    clock.advance(Duration::from_millis(200));
    wait_for_files(&replicator, 1, "lingering batches were never written");
    let stats = replicator.stats();
    assert_eq!((stats.files_written, stats.rows_replicated), (1, 3000));
    // A run that reaches `max_file_rows` is written without waiting (no time passes).
    burst(&wal, 3000..5000);
    burst(&wal, 5000..7000);
    wait_for_files(&replicator, 2, "a full run was never written");
    std::thread::sleep(Duration::from_millis(100));
    let stats = replicator.stats();
    assert_eq!((stats.files_written, stats.rows_replicated), (2, 7000));
    let snapshot = replicator.snapshot("t", wal.last_lsn()).expect("snapshot");
    assert_eq!(snapshot.read().expect("read").num_rows(), 7000);
}

/// Waits (in real time) until the stored checkpoint reaches the published one.
fn wait_for_store(replicator: &WalReplicator, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = replicator.stats();
        if stats.durable_checkpoint_lsn == stats.checkpoint_lsn {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {stats:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
fn the_manifest_is_stored_at_most_every_sync_interval_and_a_crash_resumes_from_it() {
    let dir = TempDir::new("sync-interval");
    let crashed = dir.0.join("crashed");
    let clock = Arc::new(ManualClock::default());
    let options = ReplicatorOptions {
        max_batch_rows: 1000,
        file_linger: Duration::ZERO,
        sync_interval: Duration::from_secs(1),
        compaction_trigger_files: 1000,
        clock: clock.clone(),
        ..ReplicatorOptions::default()
    };
    {
        let wal = open_wal(&dir.wal());
        let replicator =
            WalReplicator::start(Arc::clone(&wal), dir.parquet(), options.clone()).expect("start");
        create(&wal, "t");
        replicator.flush_now().expect("flush stores at once");
        let load = || omen_replicator::manifest::Manifest::load(&dir.parquet()).expect("load");
        assert!(load().tables["t"].files.is_empty());
        for (i, ids) in [0..1000, 1000..2000].into_iter().enumerate() {
            // Published (readers see the file) but not stored while the clock stands.
            burst(&wal, ids);
            wait_for_files(&replicator, i as u64 + 1, "a full batch was never written");
            std::thread::sleep(Duration::from_millis(200));
            let stats = replicator.stats();
            assert_eq!(
                (stats.files, stats.checkpoint_lsn),
                (i + 1, wal.last_lsn().0)
            );
            assert!(
                stats.durable_checkpoint_lsn < stats.checkpoint_lsn,
                "stored before its interval: {stats:?}"
            );
            assert_eq!(
                load().tables["t"].files.len(),
                i,
                "stored before its interval"
            );
            if i == 1 {
                // What a crash now would leave: the stored manifest and an unlisted file.
                copy_dir(&dir.parquet(), &crashed);
            }
            clock.advance(Duration::from_secs(1));
            wait_for_store(&replicator, "a published file was never stored");
            assert_eq!(load().tables["t"].files.len(), i + 1);
            assert_eq!(load().checkpoint_lsn, wal.last_lsn().0);
        }
    }
    // Restarted on the crashed copy: the unlisted file goes, its rows come again, once.
    let wal = open_wal(&dir.wal());
    let replicator = WalReplicator::start(Arc::clone(&wal), &crashed, options).expect("restart");
    replicator.flush_now().expect("flush");
    let snapshot = replicator.snapshot("t", wal.last_lsn()).expect("snapshot");
    let rows: u64 = snapshot.files.iter().map(|(_, meta)| meta.rows).sum();
    assert_eq!(rows, 2000, "each row once in the files");
    assert_eq!(snapshot.read().expect("read").num_rows(), 2000);
    let on_disk = std::fs::read_dir(crashed.join(&snapshot.manifest.tables["t"].dir))
        .expect("list")
        .count();
    assert_eq!(
        on_disk,
        snapshot.files.len(),
        "the unlisted file was removed"
    );
}

#[test]
fn adding_a_column_keeps_old_files_readable_as_null() {
    let dir = TempDir::new("schema");
    let wal = open_wal(&dir.wal());
    let replicator =
        WalReplicator::start(Arc::clone(&wal), dir.parquet(), small_batches()).expect("start");
    create(&wal, "t");
    let mut encoder = ChangeEncoder::new();
    for id in 0..150 {
        encoder.upsert("t", &row(id, 1));
    }
    wal.append(&encoder.finish()).expect("append");
    replicator.flush_now().expect("flush");
    let mut encoder = ChangeEncoder::new();
    encoder.add_column("t", &ColumnDef::new("note", DataType::Utf8, true));
    let mut new_row = row(1000, 2);
    new_row.push(Value::Utf8("new".into()));
    encoder.upsert("t", &new_row);
    wal.append(&encoder.finish()).expect("append");
    let snapshot = replicator.snapshot("t", wal.last_lsn()).expect("snapshot");
    let batch = snapshot.read().expect("read");
    assert_eq!(batch.num_columns(), 6);
    assert_eq!(batch.num_rows(), 151);
    let notes = batch.column(5).as_string::<i32>();
    assert_eq!(
        notes.null_count(),
        150,
        "old rows read as NULL in the new column"
    );
    replicator.flush_now().expect("flush");
    drop(replicator);
    let replicator =
        WalReplicator::start(Arc::clone(&wal), dir.parquet(), small_batches()).expect("restart");
    let batch = replicator
        .snapshot("t", wal.last_lsn())
        .expect("snapshot")
        .read()
        .expect("read");
    assert_eq!((batch.num_rows(), batch.num_columns()), (151, 6));
    let prices = batch.column(2).as_primitive::<Float64Type>();
    assert_eq!(prices.value(1), 0.5);
}

#[test]
fn compaction_keeps_the_latest_versions_and_drops_deletes() {
    // A trigger of 2 files: compaction (which also runs between flushes) always ends with
    // the table in one file, whatever the interleaving.
    let dir = TempDir::new("compact");
    let wal = open_wal(&dir.wal());
    let options = ReplicatorOptions {
        max_batch_rows: 50,
        compaction_trigger_files: 2,
        compaction_target_rows: 100_000,
        ..ReplicatorOptions::default()
    };
    let replicator = WalReplicator::start(Arc::clone(&wal), dir.parquet(), options).expect("start");
    create(&wal, "t");
    let mut model = Model::new();
    for round in 0..10 {
        write_workload(&wal, "t", &mut model, 100 + round, 10);
        replicator.flush_now().expect("flush");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let manifest = replicator.manifest();
        let files = &manifest.tables["t"].files;
        if files.len() == 1 {
            let live = model.len() as u64;
            assert_eq!(files[0].rows, live, "one version per live key, no deletes");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never compacted: {} files",
            files.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let batch = replicator
        .snapshot("t", wal.last_lsn())
        .expect("snapshot")
        .read()
        .expect("read");
    assert!(
        live_rows(&batch) == model,
        "compacted table differs from the model"
    );
    // The replaced files are deleted once no snapshot can read them.
    let manifest = replicator.manifest();
    let table_dir = dir.parquet().join(&manifest.tables["t"].dir);
    drop(manifest);
    let parquet_files = || {
        std::fs::read_dir(&table_dir)
            .expect("table dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "parquet"))
            })
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while parquet_files() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "replaced files never deleted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_damaged_file_is_reported_with_its_path() {
    let dir = TempDir::new("corrupt");
    let wal = open_wal(&dir.wal());
    let replicator =
        WalReplicator::start(Arc::clone(&wal), dir.parquet(), small_batches()).expect("start");
    create(&wal, "t");
    let mut model = Model::new();
    write_workload(&wal, "t", &mut model, 5, 30);
    replicator.flush_now().expect("flush");
    let snapshot = replicator.snapshot("t", wal.last_lsn()).expect("snapshot");
    let (path, _) = snapshot.files.first().expect("a file").clone();
    let mut bytes = std::fs::read(&path).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&path, &bytes).expect("write");
    match snapshot.read() {
        Err(ReplicatorError::FileCorrupt { path: reported, .. }) => assert_eq!(reported, path),
        other => panic!("expected FileCorrupt, got {other:?}"),
    }
    std::fs::write(&path, &bytes[..middle]).expect("truncate");
    assert!(matches!(
        snapshot.read(),
        Err(ReplicatorError::FileCorrupt { .. })
    ));

    // Repair: the WAL still holds the rows, so the file is set aside and rebuilt.
    drop(snapshot);
    let report = replicator.repair().expect("repair");
    assert_eq!(report.rebuilt, std::slice::from_ref(&path), "{report:?}");
    assert!(report.unrecoverable.is_empty());
    let mut aside = path.clone().into_os_string();
    aside.push(".corrupt");
    assert!(
        PathBuf::from(aside).exists(),
        "the damaged bytes are kept aside"
    );
    let snapshot = replicator.snapshot("t", wal.last_lsn()).expect("snapshot");
    assert!(live_rows(&snapshot.read().expect("read after repair")) == model);
    assert_eq!(replicator.repair().expect("second repair").rebuilt.len(), 0);
}

#[test]
fn rows_that_do_not_fit_the_schema_stop_replication_with_a_clear_error() {
    let dir = TempDir::new("mismatch");
    let wal = open_wal(&dir.wal());
    let replicator =
        WalReplicator::start(Arc::clone(&wal), dir.parquet(), small_batches()).expect("start");
    create(&wal, "t");
    let mut encoder = ChangeEncoder::new();
    encoder.upsert("t", &[Value::Int64(1), Value::Utf8("not a number".into())]);
    wal.append(&encoder.finish()).expect("append");
    let error = replicator.flush_now().expect_err("mismatch");
    let message = error.to_string();
    assert!(
        message.contains("\"t\"") && message.contains("2 values"),
        "{message}"
    );
}

#[test]
fn writers_are_refused_beyond_the_lag_budget_until_the_replicator_catches_up() {
    let dir = TempDir::new("throttle");
    let wal = open_wal(&dir.wal());
    create(&wal, "t");
    // A backlog of 20,000 records before the replicator starts.
    for id in 0..20_000 {
        let mut encoder = ChangeEncoder::new();
        encoder.upsert("t", &row(id, 1));
        wal.append(&encoder.finish()).expect("append");
    }
    let options = ReplicatorOptions {
        lag_budget: 10,
        ..ReplicatorOptions::default()
    };
    let replicator = WalReplicator::start(Arc::clone(&wal), dir.parquet(), options).expect("start");
    match replicator.throttle(Duration::ZERO) {
        Err(ReplicatorError::Behind { lag, budget }) => {
            assert!(lag > budget, "{lag} > {budget}");
            let message = ReplicatorError::Behind { lag, budget }.to_string();
            assert!(
                message.contains("behind") && message.contains("budget 10"),
                "{message}"
            );
        }
        other => panic!("a 20,000-record backlog is beyond a budget of 10: {other:?}"),
    }
    replicator
        .throttle(Duration::from_secs(60))
        .expect("caught up within a minute");
    assert!(replicator.stats().lag_records <= 10);
}

/// With `SyncMode::None` nobody fsyncs the log, and the replicator reads only durable
/// records: it must make them durable itself instead of waiting (and, past the lag budget,
/// refusing every writer).
#[test]
fn a_log_nobody_syncs_is_still_replicated() {
    let dir = TempDir::new("unsynced");
    let options = WalOptions {
        sync_mode: SyncMode::None,
        ..WalOptions::default()
    };
    let wal = Arc::new(Wal::open(dir.wal(), options).expect("wal"));
    create(&wal, "t");
    let replicator = WalReplicator::start(
        Arc::clone(&wal),
        dir.parquet(),
        ReplicatorOptions::default(),
    )
    .expect("start");
    for id in 0..500 {
        let mut encoder = ChangeEncoder::new();
        encoder.upsert("t", &row(id, 1));
        wal.append(&encoder.finish()).expect("append");
    }
    let last = wal.last_lsn();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while replicator.stats().read_lsn < last.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the replicator read {} of {} records of an unsynced log",
            replicator.stats().read_lsn,
            last.0
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(wal.durable_lsn() >= last, "what was replicated is durable");
}
