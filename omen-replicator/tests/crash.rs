//! Exactly once under SIGKILL, with real processes: a child (this test binary re-executed with
//! `OMEN_REPLICATOR_CRASH_CHILD` set) opens the WAL, starts a `WalReplicator` with tiny
//! batches (so flushes, multi-file flushes and compactions happen all the time), creates two
//! tables once, and appends records of row changes from two threads (upserts of new and
//! existing keys, deletes, both tables in one record at times), printing each acknowledged
//! LSN. The parent kills it with SIGKILL at a random moment, sometimes while it is still
//! recovering, then identifies every WAL record (each payload is a function of who wrote it,
//! so the parent recomputes it) and, after most kills, starts a replicator of its own on the
//! same directories, calls `flush_now()` and checks:
//!
//! - **the files, read with the `parquet` crate** (size and CRC32C checked against
//!   `MANIFEST.json`, parsed as plain JSON): no `(key, _lsn)` appears twice; every row is a
//!   change the child wrote at that LSN, values included; every change in the WAL
//!   (acknowledged or durable without its acknowledgement) is there, unless compaction
//!   replaced it by a later version of its key (or dropped a key whose last change was a
//!   delete); each file is sorted by key and `_lsn`, and the files are in LSN order;
//! - **the snapshot at the WAL's last LSN** equals the model: the latest change per key in LSN
//!   order, deletes removed, all columns compared; so does the state resolved from the files.
//!
//! Unchecked kills leave unflushed records behind, so the next child recovers from a real
//! crash (and may be killed again while doing so). The WAL is truncated below the checkpoint
//! after each check, as a database would.
//!
//! 80 cycles by default (about 40 s in a debug build on two cores);
//! `OMEN_REPLICATOR_CRASH_CYCLES=300` runs more (about 5 minutes: the files grow, and each
//! check reads them all). A failure keeps its directory (WAL, manifest, files) and says where.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType, UInt8Type, UInt64Type};
use omen_replicator::change::{ChangeEncoder, ColumnDef, DataType, TableSchema, Value};
use omen_replicator::{ReplicatorOptions, WalReplicator};
use omen_wal::{Lsn, SyncMode, Wal, WalOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "OMEN_REPLICATOR_CRASH_CHILD";
const CYCLES_ENV: &str = "OMEN_REPLICATOR_CRASH_CYCLES";
const CYCLES_DEFAULT: u32 = 80;
const WRITER_THREADS: u32 = 2;
/// A child's writers stop after this many records each and idle until killed, which bounds
/// the data (and gives compaction idle time).
const RECORDS_PER_THREAD_MAX: u64 = 500;
const CHANGES_PER_RECORD_MAX: u64 = 12;
/// Most changes go to keys below this, so they update existing rows.
const HOT_KEYS: i64 = 6000;
/// The tables; their CREATEs are the first two WAL records.
const TABLES: [&str; 2] = ["orders", "audit"];

#[path = "../../tests/cli_support/watchdog.rs"]
mod watchdog;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        watchdog::watchdog();
        let path =
            std::env::temp_dir().join(format!("omen-repl-crash-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Kept for a post-mortem: the WAL, the manifest and the files of the failure.
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn wal_dir(root: &Path) -> PathBuf {
    root.join("wal")
}

fn parquet_dir(root: &Path) -> PathBuf {
    root.join("parquet")
}

fn wal_options() -> WalOptions {
    WalOptions {
        // Small segments, so that truncation below the checkpoint frees some.
        segment_size: 256 << 10,
        sync_mode: SyncMode::GroupCommit,
        ..WalOptions::default()
    }
}

/// Small everything: a flush every 200 rows or 20 ms, files of at most 600 rows (so one flush
/// may commit several files), and a compaction whenever 4 files are below 3000 rows. The
/// target is below the number of hot keys, so compactions write files that stay (and later
/// compactions start after them, where they must keep deletes).
fn replicator_options() -> ReplicatorOptions {
    ReplicatorOptions {
        max_batch_rows: 200,
        max_batch_age: Duration::from_millis(20),
        queue_batches: 8,
        max_file_rows: 600,
        compaction_trigger_files: 4,
        compaction_target_rows: 3000,
        // Kills land both before and after a store: the stored manifest often lags the
        // published one, and the files after it are written again on restart.
        sync_interval: Duration::from_millis(50),
        ..ReplicatorOptions::default()
    }
}

/// The parent's replicator recovers and flushes but does not compact, so that the check sees
/// the files exactly as recovery left them (a compaction would merge away a duplicate).
fn parent_options() -> ReplicatorOptions {
    ReplicatorOptions {
        compaction_trigger_files: usize::MAX,
        ..replicator_options()
    }
}

fn schema() -> TableSchema {
    TableSchema {
        columns: vec![
            ColumnDef::new("id", DataType::Int64, false),
            ColumnDef::new("a", DataType::Int64, true),
            ColumnDef::new("b", DataType::Float64, true),
            ColumnDef::new("s", DataType::Utf8, true),
            ColumnDef::new("t", DataType::TimestampMicros, true),
        ],
        key: 0,
    }
}

/// The CREATE of each table, one record each, appended as one atomic group: the first two
/// records of the WAL. (One record creating both would hit the bug that
/// `tables_created_in_one_record_keep_their_files_across_a_restart` shows.)
fn create_payloads() -> Vec<Vec<u8>> {
    TABLES
        .into_iter()
        .map(|table| {
            let mut encoder = ChangeEncoder::new();
            encoder.create_table(table, &schema());
            encoder.finish()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The workload: every record, and every change in it, is a function of who wrote it.

/// Who wrote a record: the child of `cycle`, its writer `thread`, its `seq`-th record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RecordId {
    cycle: u32,
    thread: u32,
    seq: u64,
}

/// A change's id: its record's id and its index in the record, packed in 64 bits.
fn change_id(record: RecordId, index: u64) -> u64 {
    assert!(record.cycle < 1 << 19 && record.thread < 16 && record.seq < 1 << 32);
    debug_assert!(index < 256);
    (u64::from(record.cycle) << 44) | (u64::from(record.thread) << 40) | (record.seq << 8) | index
}

/// SplitMix64's finalizer.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The non-key columns of an upserted row.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    a: Option<i64>,
    b: Option<f64>,
    s: Option<String>,
    t: Option<i64>,
}

/// One row change: `row` is `None` for a delete.
#[derive(Clone, Debug, PartialEq)]
struct Change {
    table: usize,
    key: i64,
    row: Option<Row>,
}

/// The change with id `id`: a delete of a hot key (12%), an insert of a fresh key (2%) or an
/// upsert of a hot key; one in five goes to the second table; about one value in twenty is
/// NULL; text has multi-byte characters at times.
fn change_of(id: u64) -> Change {
    let mut state = id;
    let mut next = || {
        state = mix(state.wrapping_add(0x9E37_79B9_7F4A_7C15));
        state
    };
    let table = usize::from(next() % 5 == 0);
    let roll = next() % 100;
    let hot = (next() % HOT_KEYS as u64) as i64;
    if roll < 12 {
        return Change {
            table,
            key: hot,
            row: None,
        };
    }
    let key = if roll < 14 { HOT_KEYS + id as i64 } else { hot };
    // A random value, or NULL one time in twenty.
    let mut value = || {
        let v = next();
        (v % 20 != 0).then_some(v >> 8)
    };
    let a = value().map(|v| (v % 2_000_000) as i64 - 1_000_000);
    let b = value().map(|v| (v % 1_000_000) as f64 / 64.0 - 5000.0);
    let s = value().map(|v| {
        let pad = ["x", "é", "字"][(v % 3) as usize].repeat((v >> 8) as usize % 24);
        format!("{id:x}-{pad}")
    });
    let t = value().map(|v| 1_700_000_000_000_000 + (v % 1_000_000_000_000) as i64);
    Change {
        table,
        key,
        row: Some(Row { a, b, s, t }),
    }
}

/// The changes of a record, with their ids: up to 12, at most one per key and table (a change
/// whose key is already in the record is left out, so `(key, _lsn)` names a change).
fn record_changes(record: RecordId) -> Vec<(u64, Change)> {
    let count = 1 + mix(change_id(record, 0) ^ 0x5EED) % CHANGES_PER_RECORD_MAX;
    let mut seen = HashSet::new();
    (0..count)
        .map(|index| change_id(record, index))
        .map(|id| (id, change_of(id)))
        .filter(|(_, change)| seen.insert((change.table, change.key)))
        .collect()
}

fn encode(changes: &[(u64, Change)]) -> Vec<u8> {
    let mut encoder = ChangeEncoder::new();
    for (_, change) in changes {
        let table = TABLES[change.table];
        let Some(row) = &change.row else {
            encoder.delete(table, change.key);
            continue;
        };
        encoder.upsert(
            table,
            &[
                Value::Int64(change.key),
                row.a.map_or(Value::Null, Value::Int64),
                row.b.map_or(Value::Null, Value::Float64),
                row.s.clone().map_or(Value::Null, Value::Utf8),
                row.t.map_or(Value::Null, Value::TimestampMicros),
            ],
        );
    }
    encoder.finish()
}

fn payload(record: RecordId) -> Vec<u8> {
    encode(&record_changes(record))
}

// ---------------------------------------------------------------------------------------
// The child.

/// The child: creates the tables if the WAL is empty, then appends until killed, printing
/// `ack <lsn> <thread> <seq>` after each acknowledged append and `failed: <why>` if anything
/// goes wrong. Its main thread alternates busy and quiet phases (compaction runs only once the
/// replicator's writer has been idle for 50 ms; see `compaction_under_load.rs`), and another
/// thread reads snapshots meanwhile, which must never fail, even while compaction deletes the
/// files it replaced.
#[test]
fn crash_child() {
    let Ok(config) = std::env::var(CHILD_ENV) else {
        return; // not the child: nothing to do in the normal test run
    };
    let (root, cycle) = config.rsplit_once('|').expect("root|cycle");
    let root = PathBuf::from(root);
    let cycle: u32 = cycle.parse().expect("cycle number");
    let wal = match Wal::open(wal_dir(&root), wal_options()) {
        Ok(wal) => Arc::new(wal),
        Err(error) => fail("open the WAL", &error),
    };
    let replicator =
        match WalReplicator::start(Arc::clone(&wal), parquet_dir(&root), replicator_options()) {
            Ok(replicator) => replicator,
            Err(error) => fail("start the replicator", &error),
        };
    // The CREATEs are the first records ever: an empty WAL means they are not durable yet.
    if wal.last_lsn() == Lsn::ZERO
        && let Err(error) = wal.append_batch(&create_payloads())
    {
        fail("append the CREATEs", &error);
    }
    println!("ready");
    let quiet = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for thread in 0..WRITER_THREADS {
            let (wal, quiet) = (&wal, &quiet);
            scope.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(cycle * 16 + thread));
                for seq in 0..RECORDS_PER_THREAD_MAX {
                    while quiet.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    let record = RecordId { cycle, thread, seq };
                    match wal.append(&payload(record)) {
                        Ok(lsn) => {
                            let mut out = std::io::stdout().lock();
                            writeln!(out, "ack {lsn} {thread} {seq}").expect("print");
                        }
                        Err(error) => fail(&format!("append {record:?}"), &error),
                    }
                    // A steady pace, so that the kill usually comes while records arrive.
                    std::thread::sleep(Duration::from_micros(rng.random_range(0..2000)));
                }
            });
        }
        // Snapshots must never fail, even while compaction deletes the files it replaced.
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
                let snapshot = replicator.snapshot(TABLES[0], wal.written_lsn());
                if let Err(error) = snapshot.and_then(|s| s.read()) {
                    fail("snapshot", &error);
                }
            }
        });
        // Busy and quiet phases: compaction runs when the replicator's writer is idle.
        let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(cycle));
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            quiet.store(rng.random_bool(0.3), Ordering::Relaxed);
            let phase_end = Instant::now() + Duration::from_millis(rng.random_range(40..150));
            while Instant::now() < phase_end {
                std::thread::sleep(Duration::from_millis(5));
                if let Some(failure) = replicator.stats().failure {
                    fail("replicator", &failure);
                }
            }
        }
        // Never reached in a test run: the parent kills the child long before.
        quiet.store(false, Ordering::Relaxed);
        done.store(true, Ordering::Relaxed);
    });
}

/// Reports a failure of the child to the parent and exits.
fn fail(what: &str, error: &dyn std::fmt::Display) -> ! {
    println!("failed: {what}: {error}");
    std::process::exit(1);
}

/// What a child did before it was killed.
struct ChildRun {
    /// The acknowledged records: (LSN, writer thread, seq).
    acks: Vec<(u64, u32, u64)>,
    ready: bool,
}

/// Runs the child of `cycle` and kills it with SIGKILL after `kill_after` (counted from its
/// "ready" when `wait_for_ready`, from its start otherwise).
fn run_child(root: &Path, cycle: u32, kill_after: Duration, wait_for_ready: bool) -> ChildRun {
    let stderr_path = root.join("child-stderr.txt");
    let stderr = std::fs::File::create(&stderr_path).expect("child stderr file");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}|{cycle}", root.display()))
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        let mut ready = false;
        let mut failures = Vec::new();
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match stdout.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            // A line cut by the kill has no newline: it was not (fully) acknowledged.
            let Some(line) = line.strip_suffix('\n') else {
                break;
            };
            // libtest prints "test crash_child ... " on the first line first.
            let line = line.rsplit("... ").next().unwrap_or_default();
            if line == "ready" {
                ready = true;
                let _ = ready_tx.send(());
            } else if line.starts_with("failed") {
                failures.push(line.to_string());
            }
            let fields: Vec<&str> = line.split(' ').collect();
            if let ["ack", lsn, thread, seq] = fields[..] {
                let parsed = (lsn.parse(), thread.parse(), seq.parse());
                match parsed {
                    (Ok(lsn), Ok(thread), Ok(seq)) => acks.push((lsn, thread, seq)),
                    _ => failures.push(format!("unreadable line {line:?}")),
                }
            }
        }
        (acks, ready, failures)
    });
    if wait_for_ready {
        let _ = ready_rx.recv_timeout(Duration::from_secs(60));
    }
    std::thread::sleep(kill_after);
    let exited = child.try_wait().expect("child status");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let (acks, ready, failures) = reader.join().expect("stdout reader");
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        failures.is_empty() && exited.is_none(),
        "cycle {cycle}: the child failed ({exited:?}): {failures:?}\nits stderr:\n{stderr}"
    );
    ChildRun { acks, ready }
}

// ---------------------------------------------------------------------------------------
// The parent: what the WAL holds, and the checks.

/// Every row change in the WAL, identified.
#[derive(Default)]
struct History {
    /// How many of the CREATEs (the first records) are in the WAL.
    creates: usize,
    /// Every record up to this LSN has been identified.
    known_lsn: u64,
    /// Per (table, key), its changes in LSN order: (LSN, change id; see `change_id`).
    versions: BTreeMap<(usize, i64), Vec<(u64, u64)>>,
    acked_records: u64,
    /// Records durable in the WAL whose acknowledgement the kill prevented.
    unacked_records: u64,
    changes: u64,
}

impl History {
    /// Identifies the records the child of `cycle` left in the WAL: each must be a CREATE
    /// (the first ones), the record the child acknowledged at that LSN, or the one record per writer
    /// thread that was durable but not yet acknowledged when the kill came (the next of that
    /// thread's sequence).
    fn ingest(&mut self, cycle: u32, acks: &[(u64, u32, u64)], wal: &Wal) {
        let mut acked: HashMap<u64, RecordId> = HashMap::new();
        let mut next_seq = [0u64; WRITER_THREADS as usize];
        for &(lsn, thread, seq) in acks {
            let previous = acked.insert(lsn, RecordId { cycle, thread, seq });
            assert!(
                previous.is_none() && lsn > self.known_lsn,
                "cycle {cycle}: LSN {lsn} acknowledged twice"
            );
            let next = &mut next_seq[thread as usize];
            *next = (*next).max(seq + 1);
        }
        let mut unacked_seen = [false; WRITER_THREADS as usize];
        let mut found = 0;
        for record in wal.reader(Lsn(self.known_lsn + 1)).expect("WAL reader") {
            let record = record.expect("the recovered WAL reads back");
            let lsn = record.lsn.0;
            assert_eq!(lsn, self.known_lsn + 1, "cycle {cycle}: LSNs are dense");
            let id = if let Some(&id) = acked.get(&lsn) {
                assert!(
                    record.payload == payload(id),
                    "cycle {cycle}: acknowledged LSN {lsn} does not hold {id:?}"
                );
                found += 1;
                self.acked_records += 1;
                Some(id)
            } else if !self.created() {
                assert!(
                    record.payload == create_payloads()[self.creates],
                    "cycle {cycle}: LSN {lsn} is not the CREATE of {}",
                    TABLES[self.creates]
                );
                self.creates += 1;
                None
            } else {
                let unacked = (0..WRITER_THREADS)
                    .filter(|&thread| !unacked_seen[thread as usize])
                    .map(|thread| RecordId {
                        cycle,
                        thread,
                        seq: next_seq[thread as usize],
                    })
                    .find(|&id| record.payload == payload(id));
                let Some(id) = unacked else {
                    panic!("cycle {cycle}: LSN {lsn} holds a record the child did not write");
                };
                unacked_seen[id.thread as usize] = true;
                self.unacked_records += 1;
                Some(id)
            };
            if let Some(id) = id {
                assert!(
                    self.created(),
                    "cycle {cycle}: LSN {lsn}: rows before the CREATEs"
                );
                for (change, Change { table, key, .. }) in record_changes(id) {
                    let versions = self.versions.entry((table, key)).or_default();
                    versions.push((lsn, change));
                    self.changes += 1;
                }
            }
            self.known_lsn = lsn;
        }
        assert_eq!(
            found,
            acked.len(),
            "cycle {cycle}: acknowledged records are missing from the WAL"
        );
        assert_eq!(
            self.known_lsn,
            wal.last_lsn().0,
            "cycle {cycle}: WAL read to its end"
        );
        assert!(
            self.creates == 0 || self.created(),
            "cycle {cycle}: the CREATEs, an atomic group, survived in part"
        );
    }

    /// A key's changes as `LSN:upsert` or `LSN:delete`, for failure messages.
    fn describe(&self, table: usize, key: i64) -> String {
        let versions = self
            .versions
            .get(&(table, key))
            .map_or(&[][..], Vec::as_slice);
        let changes: Vec<String> = versions
            .iter()
            .map(|&(lsn, id)| {
                let op = if change_of(id).row.is_some() {
                    "upsert"
                } else {
                    "delete"
                };
                format!("{lsn}:{op}")
            })
            .collect();
        changes.join(" ")
    }

    fn created(&self) -> bool {
        self.creates == TABLES.len()
    }

    /// The changes of table `table`, by key.
    fn table(&self, table: usize) -> impl Iterator<Item = (i64, &[(u64, u64)])> {
        self.versions
            .range((table, i64::MIN)..=(table, i64::MAX))
            .map(|(&(_, key), versions)| (key, versions.as_slice()))
    }

    /// The model: the live rows of `table` after every change in the WAL, applied in LSN
    /// order: key -> (LSN, row).
    fn model(&self, table: usize) -> BTreeMap<i64, (u64, Row)> {
        self.table(table)
            .filter_map(|(key, versions)| {
                let &(lsn, id) = versions.last()?;
                change_of(id).row.map(|row| (key, (lsn, row)))
            })
            .collect()
    }
}

/// The user columns of a batch (stored form or not), found by name.
struct Columns<'a> {
    id: &'a arrow::array::Int64Array,
    a: &'a arrow::array::Int64Array,
    b: &'a arrow::array::Float64Array,
    s: &'a arrow::array::StringArray,
    t: &'a arrow::array::TimestampMicrosecondArray,
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a Arc<dyn Array> {
    let index = batch
        .schema()
        .index_of(name)
        .unwrap_or_else(|_| panic!("no column {name:?} in {:?}", batch.schema()));
    batch.column(index)
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Self {
        Self {
            id: column(batch, "id").as_primitive::<Int64Type>(),
            a: column(batch, "a").as_primitive::<Int64Type>(),
            b: column(batch, "b").as_primitive::<Float64Type>(),
            s: column(batch, "s").as_string::<i32>(),
            t: column(batch, "t").as_primitive::<TimestampMicrosecondType>(),
        }
    }

    fn row(&self, i: usize) -> Row {
        Row {
            a: self.a.is_valid(i).then(|| self.a.value(i)),
            b: self.b.is_valid(i).then(|| self.b.value(i)),
            s: self.s.is_valid(i).then(|| self.s.value(i).to_string()),
            t: self.t.is_valid(i).then(|| self.t.value(i)),
        }
    }
}

/// Compares the live rows of table `table` read back with the model; reports the first
/// difference with the key's history.
fn assert_live(cycle: u32, what: &str, seen: &BTreeMap<i64, Row>, history: &History, table: usize) {
    let model = history.model(table);
    let keys: HashSet<i64> = seen.keys().chain(model.keys()).copied().collect();
    let mut keys: Vec<i64> = keys.into_iter().collect();
    keys.sort_unstable();
    for key in keys {
        let expected = model.get(&key).map(|(_, row)| row);
        assert!(
            seen.get(&key) == expected,
            "cycle {cycle}: {what}: key {key} reads as {:?}, the model says {expected:?} ({} \
             rows read, {} in the model); the key's changes: {}",
            seen.get(&key),
            seen.len(),
            model.len(),
            history.describe(table, key)
        );
    }
}

/// What the checks counted.
#[derive(Default)]
struct Totals {
    checks: u32,
    killed_before_ready: u32,
    /// At the last check: changes found in the files, changes compaction replaced by a later
    /// version of their key, changes of keys compaction dropped after their delete, files
    /// and rows.
    present: u64,
    replaced: u64,
    dropped: u64,
    files: usize,
    rows_in_files: u64,
}

fn json_u64(value: &serde_json::Value, what: &str) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("MANIFEST.json: {what} is not a number: {value}"))
}

/// After a kill: restarts the replicator, flushes, checks the snapshots against the model,
/// stops it, then checks the files the manifest lists on disk. Returns the checkpoint.
fn check(cycle: u32, root: &Path, wal: &Arc<Wal>, history: &History, totals: &mut Totals) -> u64 {
    let last = wal.last_lsn().0;
    let replicator = WalReplicator::start(Arc::clone(wal), parquet_dir(root), parent_options())
        .unwrap_or_else(|e| panic!("cycle {cycle}: restart after SIGKILL: {e}"));
    replicator
        .flush_now()
        .unwrap_or_else(|e| panic!("cycle {cycle}: flush_now after SIGKILL: {e}"));
    let checkpoint = replicator.manifest().checkpoint_lsn;
    assert_eq!(
        checkpoint, last,
        "cycle {cycle}: flush_now left records unflushed"
    );
    // Read now, compared with the model after the file checks (which say more on failure).
    let mut snapshots = Vec::new();
    for table in TABLES {
        let batch = replicator
            .snapshot(table, Lsn(last))
            .and_then(|snapshot| snapshot.read())
            .unwrap_or_else(|e| panic!("cycle {cycle}: snapshot of {table}: {e}"));
        let columns = Columns::of(&batch);
        let seen: BTreeMap<i64, Row> = (0..batch.num_rows())
            .map(|i| (columns.id.value(i), columns.row(i)))
            .collect();
        assert_eq!(
            seen.len(),
            batch.num_rows(),
            "cycle {cycle}: the snapshot of {table} has a key twice"
        );
        snapshots.push(seen);
    }
    drop(replicator);

    // The files, as the manifest on disk lists them, read without the replicator's code.
    let manifest_path = parquet_dir(root).join("MANIFEST.json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("read MANIFEST.json"))
            .expect("MANIFEST.json is JSON");
    assert_eq!(
        json_u64(&manifest["checkpoint_lsn"], "checkpoint_lsn"),
        last,
        "cycle {cycle}: the stored checkpoint"
    );
    let checks = totals.checks;
    *totals = Totals {
        checks,
        killed_before_ready: totals.killed_before_ready,
        ..Totals::default()
    };
    for (index, table) in TABLES.into_iter().enumerate() {
        let entry = &manifest["tables"][table];
        assert!(
            entry.is_object(),
            "cycle {cycle}: MANIFEST.json lacks {table}"
        );
        let flushed = json_u64(&entry["flushed_lsn"], "flushed_lsn");
        assert!(
            flushed >= last,
            "cycle {cycle}: {table} flushed to {flushed} of {last}"
        );
        let dir = parquet_dir(root).join(entry["dir"].as_str().expect("table dir"));
        let files = entry["files"].as_array().expect("files");
        // key -> the LSNs of its versions in the files, and the file of each.
        let mut present: HashMap<i64, Vec<u64>> = HashMap::new();
        let mut file_of: HashMap<(i64, u64), usize> = HashMap::new();
        let mut previous_max_lsn = 0;
        for (file_index, file) in files.iter().enumerate() {
            let name = file["name"].as_str().expect("file name");
            let path = dir.join(name);
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cycle {cycle}: read {}: {e}", path.display()));
            assert_eq!(
                bytes.len() as u64,
                json_u64(&file["bytes"], "bytes"),
                "{name}: size"
            );
            assert_eq!(
                u64::from(crc32c::crc32c(&bytes)),
                json_u64(&file["crc32c"], "crc32c"),
                "cycle {cycle}: {name}: checksum"
            );
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .and_then(|builder| builder.build())
                .unwrap_or_else(|e| panic!("cycle {cycle}: {name} is not Parquet: {e}"));
            let mut rows = 0u64;
            let (mut min_key, mut max_key) = (i64::MAX, i64::MIN);
            let (mut min_lsn, mut max_lsn) = (u64::MAX, 0);
            let mut previous: Option<(i64, u64)> = None;
            for batch in reader {
                let batch = batch.expect("decode a Parquet batch");
                let columns = Columns::of(&batch);
                let lsns = column(&batch, "_lsn").as_primitive::<UInt64Type>();
                let ops = column(&batch, "_op").as_primitive::<UInt8Type>();
                for i in 0..batch.num_rows() {
                    let (key, lsn) = (columns.id.value(i), lsns.value(i));
                    assert!(
                        previous < Some((key, lsn)),
                        "cycle {cycle}: {name} is not sorted by key and LSN at ({key}, {lsn})"
                    );
                    previous = Some((key, lsn));
                    rows += 1;
                    (min_key, max_key) = (min_key.min(key), max_key.max(key));
                    (min_lsn, max_lsn) = (min_lsn.min(lsn), max_lsn.max(lsn));
                    // The row is the change the child wrote to this key at this LSN.
                    let version = history
                        .versions
                        .get(&(index, key))
                        .and_then(|v| v.binary_search_by_key(&lsn, |&(l, _)| l).ok().map(|i| v[i]));
                    let Some((_, id)) = version else {
                        panic!(
                            "cycle {cycle}: {table}/{name} holds key {key} at LSN {lsn}, a change nobody made"
                        );
                    };
                    let expected = change_of(id).row;
                    let op = ops.value(i);
                    let row = columns.row(i);
                    let matches = match &expected {
                        Some(expected) => op == 1 && row == *expected,
                        None => {
                            op == 2
                                && row
                                    == Row {
                                        a: None,
                                        b: None,
                                        s: None,
                                        t: None,
                                    }
                        }
                    };
                    assert!(
                        matches,
                        "cycle {cycle}: {table}/{name}: key {key} at LSN {lsn} reads as op {op} {row:?}, \
                         the child wrote {expected:?}"
                    );
                    if let Some(other) = file_of.insert((key, lsn), file_index) {
                        panic!(
                            "cycle {cycle}: {table}: the change to key {key} at LSN {lsn} is in the \
                             files twice ({} and {name})",
                            files[other]["name"]
                        );
                    }
                    present.entry(key).or_default().push(lsn);
                }
            }
            let meta = |field: &str| json_u64(&file[field], field);
            assert_eq!(rows, meta("rows"), "cycle {cycle}: {name}: rows");
            assert!(rows > 0, "cycle {cycle}: {name} is empty");
            let meta_keys = (file["min_key"].as_i64(), file["max_key"].as_i64());
            assert_eq!(meta_keys, (Some(min_key), Some(max_key)), "{name}: keys");
            assert_eq!(
                (meta("min_lsn"), meta("max_lsn")),
                (min_lsn, max_lsn),
                "{name}: LSNs"
            );
            assert!(
                min_lsn > previous_max_lsn,
                "cycle {cycle}: {table}: {name} starts at LSN {min_lsn}, the file before ends at \
                 {previous_max_lsn}"
            );
            previous_max_lsn = max_lsn;
            totals.files += 1;
            totals.rows_in_files += rows;
        }
        // Every change is in the files, unless compaction replaced it by a later version of
        // its key or dropped its key after a delete.
        let mut live_in_files = BTreeMap::new();
        for (key, versions) in history.table(index) {
            let in_files = present.get(&key).map_or(&[][..], Vec::as_slice);
            let newest_in_files = in_files.iter().max().copied();
            let &(last_lsn, last_id) = versions.last().expect("a key has changes");
            let deleted = change_of(last_id).row.is_none();
            for &(lsn, _) in versions {
                if in_files.contains(&lsn) {
                    totals.present += 1;
                } else if newest_in_files.is_some_and(|newest| newest > lsn) {
                    totals.replaced += 1;
                } else if newest_in_files.is_none() && deleted {
                    totals.dropped += 1;
                } else {
                    panic!(
                        "cycle {cycle}: {table}: the change to key {key} at LSN {lsn} is not in the \
                         files (they hold LSNs {in_files:?} of it; its last change is at {last_lsn})"
                    );
                }
            }
            if newest_in_files == Some(last_lsn) && !deleted {
                live_in_files.insert(key, last_lsn);
            }
        }
        let model: BTreeMap<i64, u64> = history
            .model(index)
            .into_iter()
            .map(|(key, (lsn, _))| (key, lsn))
            .collect();
        assert!(
            live_in_files == model,
            "cycle {cycle}: {table}: the files resolve to {} live keys, the model has {}",
            live_in_files.len(),
            model.len()
        );
    }
    for (index, (table, seen)) in TABLES.into_iter().zip(&snapshots).enumerate() {
        let what = format!("the snapshot of {table}");
        assert_live(cycle, &what, seen, history, index);
    }
    totals.checks += 1;
    checkpoint
}

#[test]
fn every_acknowledged_change_is_in_parquet_exactly_once_after_sigkill() {
    let cycles: u32 = std::env::var(CYCLES_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CYCLES_DEFAULT);
    let dir = TempDir::new("exactly-once");
    let root = dir.0.as_path();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC4A5_0DDB);
    let mut history = History::default();
    let mut totals = Totals::default();
    let started = Instant::now();
    for cycle in 0..cycles {
        // Mostly while writing, flushing and compacting; sometimes while still recovering.
        let wait_for_ready = rng.random_bool(0.85);
        let kill_after = Duration::from_millis(if wait_for_ready {
            rng.random_range(0..600)
        } else {
            rng.random_range(0..20)
        });
        let run = run_child(root, cycle, kill_after, wait_for_ready);
        totals.killed_before_ready += u32::from(!run.ready);
        let wal = Arc::new(Wal::open(wal_dir(root), wal_options()).expect("reopen the WAL"));
        history.ingest(cycle, &run.acks, &wal);
        // Unchecked kills leave unflushed records for the next child to recover.
        let check_now = cycle + 1 == cycles || cycle % 10 == 9 || rng.random_bool(0.7);
        if history.created() && check_now {
            let checkpoint = check(cycle, root, &wal, &history, &mut totals);
            wal.truncate_before(Lsn(checkpoint + 1))
                .expect("truncate the WAL below the checkpoint");
        }
    }
    eprintln!(
        "{cycles} SIGKILL cycles ({} before the child was ready) in {:.1?}: {} acknowledged \
         records and {} durable but unacknowledged, {} row changes; {} checks; at the last, \
         {} changes in the files, {} replaced by compaction, {} dropped with their deleted \
         key, in {} files of {} rows",
        totals.killed_before_ready,
        started.elapsed(),
        history.acked_records,
        history.unacked_records,
        history.changes,
        totals.checks,
        totals.present,
        totals.replaced,
        totals.dropped,
        totals.files,
        totals.rows_in_files,
    );
    assert!(
        history.acked_records >= u64::from(cycles),
        "the children acknowledged too little to test: {}",
        history.acked_records
    );
    assert!(totals.checks > 0, "nothing was checked");
    assert!(
        totals.replaced > 0,
        "compaction never replaced a version: the test did not exercise it"
    );
}

/// Tables created by one record must keep their files across a restart: each gets its own
/// directory (they once shared `t{lsn}`, and `remove_orphans` deleted one table's listed
/// files at start; the crash test above found it).
#[test]
fn tables_created_in_one_record_keep_their_files_across_a_restart() {
    let dir = TempDir::new("one-record-creates");
    let wal_options = WalOptions {
        sync_mode: SyncMode::None,
        ..WalOptions::default()
    };
    let wal = Arc::new(Wal::open(wal_dir(&dir.0), wal_options).expect("WAL"));
    let start = || {
        WalReplicator::start(Arc::clone(&wal), parquet_dir(&dir.0), replicator_options())
            .expect("start the replicator")
    };
    let replicator = start();
    let mut encoder = ChangeEncoder::new();
    for table in TABLES {
        encoder.create_table(table, &schema());
    }
    wal.append(&encoder.finish()).expect("append the CREATEs");
    let mut encoder = ChangeEncoder::new();
    for table in TABLES {
        for key in 0..50 {
            encoder.upsert(
                table,
                &[
                    Value::Int64(key),
                    Value::Int64(key),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ],
            );
        }
    }
    wal.append(&encoder.finish()).expect("append rows");
    replicator.flush_now().expect("flush");
    drop(replicator);

    let replicator = start();
    replicator.flush_now().expect("flush after the restart");
    for table in TABLES {
        let rows = replicator
            .snapshot(table, wal.last_lsn())
            .and_then(|snapshot| snapshot.read())
            .unwrap_or_else(|e| panic!("{table} after a restart: {e}"))
            .num_rows();
        assert_eq!(rows, 50, "{table} after a restart");
    }
}
