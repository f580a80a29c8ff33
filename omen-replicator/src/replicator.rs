//! `WalReplicator`: the tail thread decodes WAL records into per-table Arrow buffers and seals
//! them by size or age; the writer thread turns sealed batches into Parquet files and commits
//! them through the manifest. A bounded channel between them is the backpressure.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use crossbeam_channel::{Receiver, Sender};
use omen_wal::{Lsn, Wal, WalReader};

use crate::buffer::TableBuffer;
use crate::change::{self, Entry, RowChange, TableSchema};
use crate::clock::{Clock, SystemClock};
use crate::error::{ReplicatorError, Result};
use crate::group::GroupFilter;
use crate::manifest::{Manifest, TableManifest, sync_dir};
use crate::priority::{Boost, BoostGuard, Priority, Role};
use crate::storage;

/// How long a caller waits for the replicator's idle-priority threads before it raises them.
const BOOST_AFTER: Duration = Duration::from_millis(5);

/// Options of [`WalReplicator::start`].
#[derive(Clone)]
pub struct ReplicatorOptions {
    /// Seal a table's buffer when it holds this many rows. Default 1000.
    pub max_batch_rows: usize,
    /// Seal a table's buffer when its oldest row arrived this long ago. Default 5 s.
    pub max_batch_age: Duration,
    /// Sealed batches that may wait for the writer before the tail blocks. Default 1024.
    pub queue_batches: usize,
    /// Rows of sealed batches that may wait for the writer before the tail blocks (it blocks
    /// at whichever bound comes first). At least `max_file_rows`, so that a writer that is
    /// behind finds a full file's worth waiting. Default 262144 (two files).
    pub queue_rows: usize,
    /// The writer merges waiting batches of a table into one file until it holds at least this
    /// many rows (a file ends with the batch that reaches it, so that a full file is never
    /// smaller than `compaction_target_rows` by a fraction of a batch and rewritten for it).
    /// Default 131072.
    pub max_file_rows: usize,
    /// A sealed batch waits up to this long after its oldest row arrived (never longer than
    /// `max_batch_age`) for more batches of its table, so that a steady stream is written as
    /// one file a second rather than one per `max_batch_rows`: each file costs an fsync, a
    /// manifest commit and later a compaction, whatever its size. Readers see waiting batches
    /// in the delta meanwhile. A run reaching `max_file_rows` is written at once; zero writes
    /// each batch as it is sealed. Default 1 s.
    pub file_linger: Duration,
    /// How often at most the manifest is made durable. Files are written without an fsync
    /// and published to readers at once; then, at most once per `sync_interval`, the writer
    /// makes the files written since durable and stores the manifest (temporary file,
    /// fsync, rename, directory fsync). [`ReplicatorStats::durable_checkpoint_lsn`] is the stored
    /// checkpoint: the WAL may be truncated below it, not below `checkpoint_lsn`. After a
    /// crash the replicator resumes from the stored manifest, removes the files it does not
    /// list and writes their rows again, exactly once. `flush_now`, `repair` and stopping
    /// store at once. Zero stores on every publish. Default 1 s. Why: an fsync per file and
    /// three per manifest commit were what durable writers on the same disk lost to the
    /// replicator (see `docs/replicator.md`).
    pub sync_interval: Duration,
    /// `throttle` refuses writers when the replicator is this many records behind the WAL.
    /// Default 1,000,000.
    pub lag_budget: u64,
    /// Compact a table once it has this many files smaller than `compaction_target_rows`.
    /// Default 8.
    pub compaction_trigger_files: usize,
    /// Compaction merges small files into files of about this many rows. Default 131072.
    pub compaction_target_rows: usize,
    /// Run the replicator's threads at the lowest CPU priority (`SCHED_IDLE` on Linux; a
    /// no-op elsewhere), so they use only CPU time that writers leave idle. When other work
    /// keeps every core busy the replicator falls behind; past half of `lag_budget` its
    /// threads return to normal priority (so they cannot be starved), below an eighth they go
    /// back to idle, and past `lag_budget` `throttle` holds writers back. A caller that has
    /// waited 5 ms for them (`snapshot`, `flush_now`, `repair`, `throttle`) raises them while
    /// it waits. Default true.
    pub low_priority: bool,
    /// The clock that ages buffers (tests inject a manual one).
    pub clock: Arc<dyn Clock>,
    /// The oldest snapshot LSN a reader still needs (a facade's oldest running transaction;
    /// `u64::MAX`: none). Compaction keeps every version above it and each key's latest at or
    /// below it, so a snapshot at or above it still reads what it read before; the merged
    /// file says from which snapshot on it is exact ([`crate::manifest::FileMeta::complete_from`]).
    pub snapshot_pin: Arc<AtomicU64>,
}

impl Default for ReplicatorOptions {
    fn default() -> Self {
        Self {
            max_batch_rows: 1000,
            max_batch_age: Duration::from_secs(5),
            queue_batches: 1024,
            queue_rows: 256 << 10,
            max_file_rows: 128 << 10,
            file_linger: Duration::from_secs(1),
            sync_interval: Duration::from_secs(1),
            lag_budget: 1_000_000,
            compaction_trigger_files: 8,
            compaction_target_rows: 128 << 10,
            low_priority: true,
            clock: Arc::new(SystemClock::default()),
            snapshot_pin: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }
}

impl std::fmt::Debug for ReplicatorOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatorOptions")
            .field("max_batch_rows", &self.max_batch_rows)
            .field("max_batch_age", &self.max_batch_age)
            .field("queue_batches", &self.queue_batches)
            .field("queue_rows", &self.queue_rows)
            .field("max_file_rows", &self.max_file_rows)
            .field("file_linger", &self.file_linger)
            .field("sync_interval", &self.sync_interval)
            .field("lag_budget", &self.lag_budget)
            .field("compaction_trigger_files", &self.compaction_trigger_files)
            .field("compaction_target_rows", &self.compaction_target_rows)
            .field("low_priority", &self.low_priority)
            .finish_non_exhaustive()
    }
}

/// A sealed batch waiting for the writer (rows in LSN order).
struct Sealed {
    batch: RecordBatch,
    min_lsn: u64,
    /// When its oldest row arrived (clock nanoseconds).
    first_arrival: u64,
}

/// A table as the tail thread knows it.
struct LiveTable {
    created_lsn: u64,
    schema_lsn: u64,
    dir: String,
    buffer: TableBuffer,
    sealed: VecDeque<Sealed>,
}

impl ReplicatorOptions {
    /// The tail blocks at this many sealed rows waiting.
    fn queue_rows_max(&self) -> usize {
        self.queue_rows.max(self.max_file_rows).max(1)
    }

    /// The tail blocks at this many sealed batches waiting.
    fn queue_batches_max(&self) -> usize {
        self.queue_batches.max(1)
    }

    /// How long a sealed batch may wait for more of its table's (see `file_linger`).
    fn linger_nanos(&self) -> u64 {
        self.file_linger.min(self.max_batch_age).as_nanos() as u64
    }
}

impl LiveTable {
    /// The LSN of the oldest row not yet in a file, skipping the first `skip` sealed
    /// batches (the ones being published).
    fn first_pending_lsn(&self, skip: usize) -> Option<u64> {
        let sealed = self.sealed.get(skip).map(|s| s.min_lsn);
        match (sealed, self.buffer.first_lsn) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

struct State {
    /// The manifest readers see.
    manifest: Arc<Manifest>,
    /// The manifest as last stored: every file it lists is durable. Held here so that a file
    /// it lists is not deleted (see `delete_obsolete`) before a stored manifest drops it.
    durable: Arc<Manifest>,
    /// When `durable` was stored (clock nanoseconds); `None` before the first store.
    stored_at: Option<u64>,
    tables: BTreeMap<String, LiveTable>,
    /// Last WAL LSN applied to the buffers.
    read_lsn: u64,
    /// Why replication stopped, if it did (shared: every later caller gets it as the
    /// source of its `Stopped`).
    failure: Option<Arc<ReplicatorError>>,
    /// Files replaced by compaction or dropped, deleted once no snapshot can read them.
    obsolete: Vec<(u64, Vec<PathBuf>)>,
    /// Manifests replaced so far that a snapshot may still hold, by generation.
    replaced: Vec<(u64, std::sync::Weak<Manifest>)>,
    /// Generation of the current manifest (counts publishes).
    generation: u64,
    /// When the current manifest was published.
    published: Instant,
}

impl State {
    /// Sealed batches and their rows, over all tables.
    fn sealed(&self) -> (usize, usize) {
        self.tables.values().fold((0, 0), |(batches, rows), t| {
            let table_rows: usize = t.sealed.iter().map(|s| s.batch.num_rows()).sum();
            (batches + t.sealed.len(), rows + table_rows)
        })
    }
}

enum Msg {
    /// Batches were sealed (one token stands for any number: the writer writes every sealed
    /// batch it finds, so a token that does not fit in the channel is not needed).
    Sealed,
    /// Write everything sealed so far, commit the manifest, then answer.
    Barrier(Sender<Result<(), Arc<ReplicatorError>>>),
    /// Commit the manifest (after a schema change).
    Commit,
    /// Verify every file and rebuild damaged ones, then answer.
    Repair(Sender<Result<crate::repair::RepairReport, Arc<ReplicatorError>>>),
}

struct Shared {
    root: PathBuf,
    options: ReplicatorOptions,
    wal: Arc<Wal>,
    state: Mutex<State>,
    progress: Condvar,
    /// Wakes the idle tail before its poll ends (a reader waits for it, or it must stop).
    tail_wake: Condvar,
    /// Bumped, under the state lock, by whoever notifies `tail_wake`.
    tail_wake_seq: AtomicU64,
    /// Readers waiting for the threads raise their priority (see `priority`).
    boost: Boost,
    stop: AtomicBool,
    rows_replicated: AtomicU64,
    files_written: AtomicU64,
    bytes_written: AtomicU64,
    started: Instant,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// WAL records written but not yet read by the tail. (The written watermark is an atomic
    /// load; `last_lsn` would take the log's commit lock, which appenders contend for, on
    /// every record the tail reads.)
    fn lag(&self, state: &State) -> u64 {
        self.wal.written_lsn().0.saturating_sub(state.read_lsn)
    }

    /// Raises the threads' priority for a caller that has waited for them `BOOST_AFTER`
    /// since `started` (renewing the raise on later calls). Starved idle-priority threads
    /// cannot raise themselves; but a caller that waits usually frees the core they need,
    /// and raising them at once would let them compete with the writers' cores.
    fn boost_if_starved<'a>(&'a self, boost: &mut Option<BoostGuard<'a>>, started: Instant) {
        match boost {
            Some(_) => self.boost.raise(),
            None if started.elapsed() >= BOOST_AFTER => *boost = Some(self.boost.wait()),
            None => {}
        }
    }

    /// Wakes the tail if it is idle. Takes the state lock's guard so that the wake-up
    /// cannot fall between the tail's check and its wait (see `tail_idle`).
    fn wake_tail(&self, _held: &State) {
        self.tail_wake_seq.fetch_add(1, Ordering::SeqCst);
        self.tail_wake.notify_all();
    }

    fn fail(&self, error: ReplicatorError) {
        // A writer that answered its waiters with the failure returns it as `Stopped`.
        let cause = match error {
            ReplicatorError::Stopped(Some(cause)) => cause,
            error => Arc::new(error),
        };
        let mut state = self.lock();
        state.failure.get_or_insert(cause);
        drop(state);
        self.progress.notify_all();
    }
}

/// What the replicator has done and how far behind it is.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicatorStats {
    /// Last WAL LSN applied to the buffers.
    pub read_lsn: u64,
    /// The published manifest's checkpoint: everything at or below is in Parquet files that
    /// readers see.
    pub checkpoint_lsn: u64,
    /// The stored manifest's checkpoint: everything at or below is in durable Parquet files,
    /// and a restart resumes after it. The WAL may be truncated below this LSN.
    pub durable_checkpoint_lsn: u64,
    /// WAL records not yet read (`wal.last_lsn() - read_lsn`).
    pub lag_records: u64,
    /// WAL records not yet in Parquet (`wal.last_lsn() - checkpoint_lsn`).
    pub unflushed_records: u64,
    /// How long the oldest row not yet in Parquet (buffered or sealed) has waited (zero if none).
    pub oldest_unflushed_age: Duration,
    /// Rows written to Parquet since start.
    pub rows_replicated: u64,
    /// Rows per second since start.
    pub rows_per_second: f64,
    /// Files written since start.
    pub files_written: u64,
    /// Bytes written since start.
    pub bytes_written: u64,
    /// Files currently visible, over all tables.
    pub files: usize,
    /// Why replication stopped, if it did.
    pub failure: Option<String>,
}

/// A consistent view of one table at a snapshot LSN: the Parquet files the manifest lists and
/// the rows above its watermark, which together hold every change at or below the snapshot.
#[derive(Clone, Debug)]
pub struct TableSnapshot {
    /// The snapshot LSN.
    pub lsn: u64,
    /// The table's schema at the snapshot.
    pub schema: TableSchema,
    /// Arrow schema of the stored form (columns, `_lsn`, `_op`).
    pub stored_schema: SchemaRef,
    /// The manifest the files belong to (keeps them from being deleted while in use).
    pub manifest: Arc<Manifest>,
    /// The table's files, paths included.
    pub files: Vec<(PathBuf, crate::manifest::FileMeta)>,
    /// Rows not in `files`, with `_lsn <= lsn`, in stored form.
    pub delta: Vec<RecordBatch>,
}

impl TableSnapshot {
    /// Reads the files (checksums verified) and merges them with the delta: the live rows at
    /// the snapshot, sorted by key, without hidden columns.
    pub fn read(&self) -> Result<RecordBatch> {
        let mut batches = Vec::new();
        for (path, meta) in &self.files {
            batches.extend(storage::read_file(path, meta, &self.stored_schema)?);
        }
        batches.extend(self.delta.iter().cloned());
        let live = storage::resolve(
            &batches,
            &self.stored_schema,
            self.schema.key,
            self.lsn,
            false,
        )?;
        storage::without_hidden_columns(&live)
    }
}

/// The background replicator from the WAL to Parquet.
pub struct WalReplicator {
    shared: Arc<Shared>,
    sender: Sender<Msg>,
    threads: Vec<JoinHandle<()>>,
}

impl WalReplicator {
    /// Recovers from the manifest in `root` and starts tailing `wal` after its checkpoint.
    pub fn start(
        wal: Arc<Wal>,
        root: impl AsRef<Path>,
        options: ReplicatorOptions,
    ) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root)
            .map_err(|e| ReplicatorError::io("create directory", &root, e))?;
        let manifest = Arc::new(Manifest::load(&root)?);
        remove_orphans(&root, &manifest)?;
        let checkpoint = manifest.checkpoint_lsn;
        let wal_first = wal.first_lsn().0;
        if checkpoint + 1 < wal_first {
            return Err(ReplicatorError::WalTruncated {
                checkpoint,
                wal_first,
            });
        }
        // Durable records only: Parquet never holds a row the WAL could still lose.
        let next = wal.last_lsn().0 + 1;
        if checkpoint + 1 > next {
            return Err(ReplicatorError::WalBehind {
                checkpoint,
                wal_last: next - 1,
            });
        }
        let reader = wal.reader(Lsn(checkpoint + 1))?;
        let tables = manifest
            .tables
            .iter()
            .map(|(name, t)| {
                let live = LiveTable {
                    created_lsn: t.created_lsn,
                    schema_lsn: t.schema_lsn,
                    dir: t.dir.clone(),
                    buffer: TableBuffer::new(t.schema.clone()),
                    sealed: VecDeque::new(),
                };
                (name.clone(), live)
            })
            .collect();
        let shared = Arc::new(Shared {
            root,
            options: options.clone(),
            wal,
            state: Mutex::new(State {
                durable: Arc::clone(&manifest),
                stored_at: None,
                manifest,
                tables,
                read_lsn: checkpoint,
                failure: None,
                obsolete: Vec::new(),
                replaced: Vec::new(),
                generation: 0,
                published: Instant::now(),
            }),
            progress: Condvar::new(),
            tail_wake: Condvar::new(),
            tail_wake_seq: AtomicU64::new(0),
            boost: Boost::default(),
            stop: AtomicBool::new(false),
            rows_replicated: AtomicU64::new(0),
            files_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            started: Instant::now(),
        });
        let (sender, receiver) = crossbeam_channel::bounded(options.queue_batches.max(1));
        let tail = {
            let (shared, sender) = (Arc::clone(&shared), sender.clone());
            std::thread::Builder::new()
                .name("omen-replicator-tail".into())
                .spawn(move || {
                    if let Err(error) = tail_loop(&shared, reader, &sender) {
                        shared.fail(error);
                    }
                })
                .map_err(|e| ReplicatorError::io("start thread", PathBuf::new(), e))?
        };
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("omen-replicator-writer".into())
                .spawn(move || {
                    // Stopping stores what was published (a restart then resumes after it).
                    let run = writer_loop(&shared, &receiver);
                    if let Err(error) = run.and_then(|()| store_manifest(&shared, true)) {
                        shared.fail(error);
                    }
                })
                .map_err(|e| ReplicatorError::io("start thread", PathBuf::new(), e))?
        };
        Ok(Self {
            shared,
            sender,
            threads: vec![tail, writer],
        })
    }

    fn check_running(&self, state: &State) -> Result<()> {
        match &state.failure {
            Some(failure) => Err(ReplicatorError::Stopped(Some(Arc::clone(failure)))),
            None => Ok(()),
        }
    }

    /// Waits until the tail has read the WAL up to `lsn` (or `timeout` passes).
    fn wait_read(&self, lsn: u64, timeout: Duration) -> Result<MutexGuard<'_, State>> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        let started = Instant::now();
        let mut boost = None;
        loop {
            self.check_running(&state)?;
            if state.read_lsn >= lsn {
                return Ok(state);
            }
            self.shared.wake_tail(&state);
            self.shared.boost_if_starved(&mut boost, started);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReplicatorError::Timeout(lsn));
            }
            state = self
                .shared
                .progress
                .wait_timeout(state, left.min(BOOST_AFTER))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Seals every buffer up to what the WAL holds now, writes it to Parquet and commits the
    /// manifest. For tests and shutdown.
    pub fn flush_now(&self) -> Result<()> {
        // Make everything appended so far durable, hence readable by the tail.
        let target = self.shared.wal.sync()?.0;
        let mut state = self.wait_read(target, Duration::from_secs(60))?;
        seal_all(&mut state, |_| true)?;
        drop(state);
        let (ack, done) = crossbeam_channel::bounded(1);
        self.send(Msg::Barrier(ack))?;
        self.await_writer(&done)
    }

    /// Waits for the writer's answer, raising the threads' priority meanwhile (an idle
    /// writer thread on busy cores would never answer).
    fn await_writer<T>(
        &self,
        done: &Receiver<std::result::Result<T, Arc<ReplicatorError>>>,
    ) -> Result<T> {
        let (started, mut boost) = (Instant::now(), None);
        loop {
            match done.recv_timeout(BOOST_AFTER) {
                Ok(result) => return result.map_err(|cause| ReplicatorError::Stopped(Some(cause))),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    self.shared.boost_if_starved(&mut boost, started);
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(self.stopped());
                }
            }
        }
    }

    fn send(&self, msg: Msg) -> Result<()> {
        self.sender.send(msg).map_err(|_| self.stopped())
    }

    fn stopped(&self) -> ReplicatorError {
        let state = self.shared.lock();
        ReplicatorError::Stopped(state.failure.clone())
    }

    /// A consistent view of `table` at `lsn` (waits for the tail to read that far). With the
    /// WAL's durable LSN as `lsn`, a query over it sees every committed write: zero staleness.
    /// An `lsn` above the WAL's durable LSN makes the WAL sync first (the tail reads only
    /// durable records).
    pub fn snapshot(&self, table: &str, lsn: Lsn) -> Result<TableSnapshot> {
        if lsn > self.shared.wal.durable_lsn() {
            self.shared.wal.sync()?;
        }
        let mut state = self.wait_read(lsn.0, Duration::from_secs(60))?;
        let manifest = Arc::clone(&state.manifest);
        let live = state
            .tables
            .get_mut(table)
            .ok_or_else(|| ReplicatorError::NoTable(table.to_string()))?;
        let schema = live.buffer.schema().clone();
        let stored_schema = Arc::clone(live.buffer.arrow_schema());
        let mut delta = Vec::new();
        for sealed in &live.sealed {
            delta.push(storage::adapt(
                &storage::up_to(&sealed.batch, lsn.0)?,
                &stored_schema,
            )?);
        }
        delta.push(storage::up_to(&live.buffer.snapshot()?, lsn.0)?);
        let files = manifest
            .tables
            .get(table)
            .filter(|t| t.dir == live.dir)
            .map(|t| {
                t.files
                    .iter()
                    .map(|f| (Manifest::file_path(&self.shared.root, t, f), f.clone()))
                    .collect()
            })
            .unwrap_or_default();
        drop(state);
        Ok(TableSnapshot {
            lsn: lsn.0,
            schema,
            stored_schema,
            manifest,
            files,
            delta,
        })
    }

    /// The rows of `table` above the manifest's watermark with `_lsn <= up_to`, in stored
    /// form: what SQL merges with the Parquet files for a zero-staleness read.
    pub fn delta(&self, table: &str, up_to: Lsn) -> Result<Vec<RecordBatch>> {
        Ok(self.snapshot(table, up_to)?.delta)
    }

    /// Waits while the replicator is beyond its lag budget, as long as it makes progress:
    /// [`ReplicatorError::Behind`] once it has read nothing for `timeout` (stuck, or starved
    /// of CPU). Writers call it before appending to the WAL, so a replicator that falls
    /// behind slows them to its pace instead of failing their writes.
    pub fn throttle(&self, timeout: Duration) -> Result<()> {
        let mut deadline = Instant::now() + timeout;
        let budget = self.shared.options.lag_budget;
        let mut state = self.shared.lock();
        let mut read = state.read_lsn;
        let started = Instant::now();
        let mut boost = None;
        loop {
            self.check_running(&state)?;
            let lag = self.shared.lag(&state);
            if lag <= budget {
                return Ok(());
            }
            self.shared.boost_if_starved(&mut boost, started);
            if state.read_lsn > read {
                read = state.read_lsn;
                deadline = Instant::now() + timeout;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReplicatorError::Behind { lag, budget });
            }
            state = self
                .shared
                .progress
                .wait_timeout(state, left.min(BOOST_AFTER))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Counters and lag.
    pub fn stats(&self) -> ReplicatorStats {
        let shared = &self.shared;
        let state = shared.lock();
        let last = shared.wal.last_lsn().0;
        let now = shared.options.clock.now_nanos();
        let oldest = state
            .tables
            .values()
            .flat_map(|t| {
                let sealed = t.sealed.front().map(|s| s.first_arrival);
                sealed.into_iter().chain(t.buffer.first_arrival)
            })
            .min()
            .map_or(Duration::ZERO, |t| {
                Duration::from_nanos(now.saturating_sub(t))
            });
        let rows = shared.rows_replicated.load(Ordering::Relaxed);
        ReplicatorStats {
            read_lsn: state.read_lsn,
            checkpoint_lsn: state.manifest.checkpoint_lsn,
            durable_checkpoint_lsn: state.durable.checkpoint_lsn,
            lag_records: last.saturating_sub(state.read_lsn),
            unflushed_records: last.saturating_sub(state.manifest.checkpoint_lsn),
            oldest_unflushed_age: oldest,
            rows_replicated: rows,
            rows_per_second: rows as f64 / shared.started.elapsed().as_secs_f64().max(1e-9),
            files_written: shared.files_written.load(Ordering::Relaxed),
            bytes_written: shared.bytes_written.load(Ordering::Relaxed),
            files: state.manifest.tables.values().map(|t| t.files.len()).sum(),
            failure: state.failure.as_ref().map(ToString::to_string),
        }
    }

    /// Verifies every Parquet file against the manifest's checksums. A damaged file is moved
    /// aside as `*.corrupt` and rebuilt from the WAL if the WAL still holds its LSN range;
    /// otherwise it is reported as unrecoverable (and left in place).
    pub fn repair(&self) -> Result<crate::repair::RepairReport> {
        let (ack, done) = crossbeam_channel::bounded(1);
        self.send(Msg::Repair(ack))?;
        self.await_writer(&done)
    }

    /// The manifest as last published (what readers see; it is stored within
    /// `sync_interval`, and at once by `flush_now`).
    pub fn manifest(&self) -> Arc<Manifest> {
        Arc::clone(&self.shared.lock().manifest)
    }

    /// The directory holding the manifest and the table directories.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// Flushes everything and stops the threads.
    pub fn shutdown(mut self) -> Result<()> {
        let flushed = self.flush_now();
        self.stop_threads();
        flushed
    }

    fn stop_threads(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.progress.notify_all();
        self.shared.wake_tail(&self.shared.lock());
        // Dropping our sender lets the writer's channel close once the tail exits.
        let (dummy, _) = crossbeam_channel::bounded(1);
        drop(std::mem::replace(&mut self.sender, dummy));
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for WalReplicator {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// Seals the buffers `which` selects; returns how many batches were sealed.
fn seal_all(state: &mut State, which: impl Fn(&TableBuffer) -> bool) -> Result<usize> {
    let mut sealed = 0;
    for table in state.tables.values_mut() {
        if table.buffer.len() > 0 && which(&table.buffer) {
            seal(table)?;
            sealed += 1;
        }
    }
    Ok(sealed)
}

fn seal(table: &mut LiveTable) -> Result<()> {
    let min_lsn = table.buffer.first_lsn.unwrap_or(0);
    let first_arrival = table.buffer.first_arrival.unwrap_or(0);
    let batch = table.buffer.seal()?;
    table.sealed.push_back(Sealed {
        batch,
        min_lsn,
        first_arrival,
    });
    Ok(())
}

/// Removes Parquet files the manifest does not list (a flush or compaction that crashed
/// before its commit) and directories of tables it no longer has.
fn remove_orphans(root: &Path, manifest: &Manifest) -> Result<()> {
    let entries =
        std::fs::read_dir(root).map_err(|e| ReplicatorError::io("list directory", root, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ReplicatorError::io("list directory", root, e))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(table) = manifest.tables.values().find(|t| t.dir == name) else {
            std::fs::remove_dir_all(&path)
                .map_err(|e| ReplicatorError::io("remove directory", &path, e))?;
            continue;
        };
        let files = std::fs::read_dir(&path)
            .map_err(|e| ReplicatorError::io("list directory", &path, e))?;
        for file in files {
            let file = file.map_err(|e| ReplicatorError::io("list directory", &path, e))?;
            let file_name = file.file_name().to_string_lossy().into_owned();
            let listed = table.files.iter().any(|f| f.name == file_name);
            if !listed && file_name.ends_with(".parquet") {
                std::fs::remove_file(file.path())
                    .map_err(|e| ReplicatorError::io("remove orphan file", file.path(), e))?;
            }
        }
    }
    Ok(())
}

/// Applies one WAL record to the buffers. Returns the batches sealed and whether the schema
/// changed (so the manifest should be committed).
fn apply(
    state: &mut State,
    lsn: u64,
    payload: &[u8],
    options: &ReplicatorOptions,
) -> Result<(usize, bool)> {
    let entries =
        change::decode(payload).map_err(|source| ReplicatorError::BadRecord { lsn, source })?;
    let now = options.clock.now_nanos();
    let mut sealed = 0;
    let mut ddl = false;
    let flushed = |state: &State, table: &str| {
        state
            .manifest
            .tables
            .get(table)
            .map_or(0, |t| t.flushed_lsn)
    };
    for (index, entry) in entries.into_iter().enumerate() {
        match entry {
            Entry::CreateTable { table, schema } => {
                if state
                    .tables
                    .get(table)
                    .is_some_and(|t| t.created_lsn >= lsn)
                {
                    continue; // already applied before a restart
                }
                schema
                    .validate()
                    .map_err(|reason| ReplicatorError::SchemaMismatch {
                        table: table.to_string(),
                        lsn,
                        reason,
                    })?;
                let live = LiveTable {
                    created_lsn: lsn,
                    schema_lsn: lsn,
                    // Unique even when one record creates several tables.
                    dir: format!("t{lsn}-{index}"),
                    buffer: TableBuffer::new(schema),
                    sealed: VecDeque::new(),
                };
                state.tables.insert(table.to_string(), live);
                ddl = true;
            }
            Entry::AddColumn { table, column } => {
                let live = known(state, table, lsn)?;
                if live.schema_lsn >= lsn {
                    continue;
                }
                if live.buffer.len() > 0 {
                    seal(live)?;
                    sealed += 1;
                }
                let mut schema = live.buffer.schema().clone();
                schema.columns.push(column);
                live.buffer = TableBuffer::new(schema);
                live.schema_lsn = lsn;
                ddl = true;
            }
            // The tail skips the parts of groups that do not commit (`group`).
            Entry::Part | Entry::Commit(_) | Entry::Abort(_) => {}
            Entry::DropTable { table } => {
                if state.tables.get(table).is_some_and(|t| t.created_lsn < lsn) {
                    state.tables.remove(table);
                    ddl = true;
                }
            }
            Entry::Rows { table, rows } => {
                if lsn <= flushed(state, table) {
                    continue; // in Parquet already: exactly once across restarts
                }
                let live = known(state, table, lsn)?;
                for row in rows {
                    match row.map_err(|source| ReplicatorError::BadRecord { lsn, source })? {
                        RowChange::Upsert(values) => live.buffer.upsert_written_before(
                            table,
                            lsn,
                            now,
                            values,
                            lsn < live.schema_lsn,
                        )?,
                        RowChange::Delete(key) => live.buffer.delete(lsn, now, key),
                    }
                }
            }
        }
    }
    Ok((sealed, ddl))
}

fn known<'a>(state: &'a mut State, table: &str, lsn: u64) -> Result<&'a mut LiveTable> {
    state
        .tables
        .get_mut(table)
        .ok_or_else(|| ReplicatorError::SchemaMismatch {
            table: table.to_string(),
            lsn,
            reason: "no such table".into(),
        })
}

/// The tail thread: WAL records into buffers; seals by size and age.
fn tail_loop(shared: &Shared, mut reader: WalReader, sender: &Sender<Msg>) -> Result<()> {
    let options = &shared.options;
    let max_age = options.max_batch_age.as_nanos() as u64;
    let poll = options.max_batch_age.min(Duration::from_millis(20));
    let mut priority = Priority::start(options.low_priority, Role::Tail, &shared.boost);
    let mut idle = IdlePoll::new(poll);
    let mut groups = GroupFilter::new();
    while !shared.stop.load(Ordering::SeqCst) {
        if !wait_for_room(shared) {
            return Ok(());
        }
        let wake_seq = shared.tail_wake_seq.load(Ordering::SeqCst);
        let mut record = reader.next_record()?;
        if record.is_none() {
            tail_idle(shared, wake_seq, idle.next_wait());
            record = reader.next_record()?;
            if record.is_some() {
                idle.reset();
            } else if idle.unsynced_for(&shared.wal) >= poll {
                // Records written a poll ago are still not durable: nobody syncs the log
                // (`SyncMode::None`). Parquet holds only durable rows, so sync it here
                // rather than stall until the lag budget refuses every writer.
                shared.wal.sync()?;
            }
        }
        // A part of a transaction group counts once its group's commit is durable: read
        // ahead to it (the writer is writing the group now).
        let counts = match &record {
            Some(record) => groups.counts_with(
                record.lsn.0,
                &record.payload,
                |ahead| wait_durable(shared, ahead, poll),
                &shared.wal,
            )?,
            None => false,
        };
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut state = shared.lock();
        priority.follow(shared.lag(&state), options.lag_budget);
        let (mut sealed, mut ddl) = (0, false);
        if let Some(record) = &record {
            if counts {
                let applied = apply(&mut state, record.lsn.0, &record.payload, options)?;
                sealed += applied.0;
                ddl = applied.1;
            }
            state.read_lsn = record.lsn.0;
        }
        let now = options.clock.now_nanos();
        let max_rows = options.max_batch_rows;
        sealed += seal_all(&mut state, |b| {
            b.len() >= max_rows
                || b.first_arrival
                    .is_some_and(|t| now.saturating_sub(t) >= max_age)
        })?;
        drop(state);
        shared.progress.notify_all();
        // One token wakes the writer for every batch sealed so far; when the channel is
        // full, the tokens in it will.
        if sealed > 0
            && let Err(crossbeam_channel::TrySendError::Disconnected(_)) =
                sender.try_send(Msg::Sealed)
        {
            return Ok(());
        }
        if ddl && sender.send(Msg::Commit).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The next durable record of `reader`, waiting for it; `None` once the replicator stops or
/// the log can give no more.
fn wait_durable(
    shared: &Shared,
    reader: &mut WalReader,
    poll: Duration,
) -> Result<Option<omen_wal::Record>> {
    loop {
        if shared.stop.load(Ordering::SeqCst) || shared.wal.poisoned().is_some() {
            return Ok(None);
        }
        if let Some(record) = reader.wait_next(poll)? {
            return Ok(Some(record));
        }
    }
}

/// Sleeps the caught-up tail for `wait`, or until `wake_tail` (a reader waits for it) or a
/// stop. The tail polls the log rather than waiting on its commit condition: that would wake
/// it (and make it take the log's commit lock) on every group commit, in the writers' path,
/// from a thread at idle priority that may be preempted while it holds the lock.
fn tail_idle(shared: &Shared, wake_seq: u64, wait: Duration) {
    let state = shared.lock();
    if shared.stop.load(Ordering::SeqCst) || shared.tail_wake_seq.load(Ordering::SeqCst) != wake_seq
    {
        return;
    }
    let _ = shared.tail_wake.wait_timeout(state, wait);
}

/// The caught-up tail's polling: 1 ms while records keep coming (a batch of commits per
/// wake-up, far below the flush policy's latency), doubling while the log is quiet up to the
/// age-seal poll. Also tracks how long written records have stayed not durable.
struct IdlePoll {
    wait: Duration,
    max: Duration,
    unsynced: Option<(Lsn, Instant)>,
}

impl IdlePoll {
    const MIN: Duration = Duration::from_millis(1);

    fn new(max: Duration) -> Self {
        Self {
            wait: Self::MIN.min(max),
            max,
            unsynced: None,
        }
    }

    fn next_wait(&mut self) -> Duration {
        let wait = self.wait;
        self.wait = (self.wait * 2).min(self.max);
        wait
    }

    fn reset(&mut self) {
        self.wait = Self::MIN.min(self.max);
        self.unsynced = None;
    }

    /// How long the log's written watermark, as first seen above the durable one, has not
    /// become durable (zero when everything written is durable).
    fn unsynced_for(&mut self, wal: &Wal) -> Duration {
        let (written, durable) = (wal.written_lsn(), wal.durable_lsn());
        match self.unsynced {
            _ if written <= durable => {
                self.unsynced = None;
                Duration::ZERO
            }
            Some((seen, since)) if seen > durable => since.elapsed(),
            _ => {
                self.unsynced = Some((written, Instant::now()));
                Duration::ZERO
            }
        }
    }
}

/// Backpressure: blocks the tail while the sealed batches waiting for the writer reach
/// `queue_batches` or `queue_rows`. The tail then stops reading, so memory stays bounded and
/// the WAL lag grows until `throttle` holds writers back. `false` once stopping or failed.
fn wait_for_room(shared: &Shared) -> bool {
    let options = &shared.options;
    let mut state = shared.lock();
    loop {
        if shared.stop.load(Ordering::SeqCst) || state.failure.is_some() {
            return false;
        }
        let (batches, rows) = state.sealed();
        if batches < options.queue_batches_max() && rows < options.queue_rows_max() {
            return true;
        }
        state = shared
            .progress
            .wait_timeout(state, Duration::from_millis(50))
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// The writer thread: sealed batches into Parquet files, committed through the manifest.
///
/// Each wake-up takes every message waiting, then writes every sealed batch (so a backlog
/// drains into files of `max_file_rows`), then commits and answers. It compacts only when no
/// sealed batch waits: rows on their way to a file come first.
fn writer_loop(shared: &Shared, receiver: &Receiver<Msg>) -> Result<()> {
    /// A table this long without a publish is quiet (see `compaction::Urgency::Quiet`).
    const QUIET: Duration = Duration::from_secs(1);
    let mut priority = Priority::start(shared.options.low_priority, Role::Writer, &shared.boost);
    loop {
        priority.follow(shared.lag(&shared.lock()), shared.options.lag_budget);
        let first = match receiver.recv_timeout(Duration::from_millis(50)) {
            Ok(msg) => msg,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if shared.stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                // Batches left lingering: write the ones now due; store what is due.
                write_sealed(shared, true)?;
                store_manifest(shared, false)?;
                let quiet_after = QUIET.max(shared.options.file_linger * 2);
                let quiet = shared.lock().published.elapsed() >= quiet_after;
                if quiet {
                    let view = shared_view(shared);
                    crate::compaction::maybe_compact(view, crate::compaction::Urgency::Quiet)?;
                    delete_obsolete(shared)?;
                } else {
                    compact_if_idle(shared)?;
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let messages: Vec<Msg> = std::iter::once(first).chain(receiver.try_iter()).collect();
        // Someone waits for an answer: no waiting for full files. (A schema change's
        // `Commit` is not urgent: it races the tail's first batches of a backlog, and would
        // otherwise cut the backlog's first file short.)
        let urgent = messages
            .iter()
            .any(|m| matches!(m, Msg::Barrier(_) | Msg::Repair(_)));
        let written = write_sealed(shared, !urgent).map_err(Arc::new);
        let mut acks = Vec::new();
        let mut commit_needed = false;
        for msg in messages {
            match msg {
                Msg::Sealed => {}
                Msg::Commit => commit_needed = true,
                Msg::Barrier(ack) => {
                    commit_needed = true;
                    acks.push(ack);
                }
                Msg::Repair(ack) => {
                    let result = match &written {
                        Ok(()) => crate::repair::repair(shared_view(shared), &shared.wal)
                            .and_then(|report| store_manifest(shared, true).map(|()| report))
                            .map_err(Arc::new),
                        Err(e) => Err(Arc::clone(e)),
                    };
                    let _ = ack.send(result);
                }
            }
        }
        let result = written.and_then(|()| {
            if commit_needed {
                commit(shared).map_err(Arc::new)?;
            }
            if acks.is_empty() {
                Ok(())
            } else {
                // `flush_now` returns with its rows durable in Parquet.
                store_manifest(shared, true).map_err(Arc::new)
            }
        });
        for ack in acks {
            let _ = ack.send(result.clone());
        }
        if let Err(failure) = result {
            return Err(ReplicatorError::Stopped(Some(failure)));
        }
        compact_if_idle(shared)?;
    }
}

/// Compacts (one run) and deletes replaced files. While the writer has a backlog (half a
/// file's worth of sealed rows waiting, or the tail blocked on the queue), flushing comes
/// first: it then compacts only to keep the number of small files bounded.
fn compact_if_idle(shared: &Shared) -> Result<()> {
    let busy = {
        let state = shared.lock();
        let (batches, rows) = state.sealed();
        let options = &shared.options;
        rows >= options.max_file_rows / 2 || batches >= options.queue_batches_max()
    };
    let urgency = if busy {
        crate::compaction::Urgency::Busy
    } else {
        crate::compaction::Urgency::Normal
    };
    crate::compaction::maybe_compact(shared_view(shared), urgency)?;
    delete_obsolete(shared)
}

/// What compaction needs of the replicator.
pub(crate) struct SharedView<'a> {
    pub(crate) root: &'a Path,
    pub(crate) options: &'a ReplicatorOptions,
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) commit: Box<dyn Fn(Manifest, Vec<PathBuf>) -> Result<()> + 'a>,
}

fn shared_view(shared: &Shared) -> SharedView<'_> {
    SharedView {
        root: &shared.root,
        options: &shared.options,
        manifest: Arc::clone(&shared.lock().manifest),
        commit: Box::new(|manifest, obsolete| publish(shared, manifest, obsolete, |_| {})),
    }
}

/// Writes every sealed batch: per table, runs of same-schema batches merged until they hold
/// `max_file_rows`, each run one file, committed before the next. With `patient`, a run
/// shorter than `max_file_rows` waits (briefly) while the tail is still reading a backlog, so
/// that a writer that is behind writes full files rather than many small ones that
/// compaction would rewrite.
fn write_sealed(shared: &Shared, patient: bool) -> Result<()> {
    loop {
        if patient {
            wait_for_full_file(shared);
        }
        // Pick the first table with a run due for a file and take it from the front: a run is
        // due when it is full, ends at a schema change, or its oldest row has lingered long
        // enough (or when nobody may wait: `patient` is false).
        let now = shared.options.clock.now_nanos();
        let linger = shared.options.linger_nanos();
        let job = {
            let state = shared.lock();
            state.tables.iter().find_map(|(name, t)| {
                let first = t.sealed.front()?;
                let schema = first.batch.schema();
                let mut rows = 0;
                let mut run = Vec::new();
                let mut ends = false;
                for s in &t.sealed {
                    if s.batch.schema() != schema || rows >= shared.options.max_file_rows {
                        ends = true;
                        break;
                    }
                    rows += s.batch.num_rows();
                    run.push(s.batch.clone());
                }
                let lingered = now.saturating_sub(first.first_arrival) >= linger;
                let due = !patient || ends || rows >= shared.options.max_file_rows || lingered;
                if !due {
                    return None;
                }
                let key = key_of(&schema)?;
                Some((name.clone(), t.dir.clone(), key, schema, run))
            })
        };
        let Some((table, dir, key, schema, run)) = job else {
            return Ok(());
        };
        let merged = arrow::compute::concat_batches(&schema, &run)?;
        let sorted = storage::sort_by_key(&merged, key)?;
        let file_id = shared.lock().manifest.next_file_id;
        let name = format!("{file_id:012}.parquet");
        let table_dir = shared.root.join(&dir);
        std::fs::create_dir_all(&table_dir)
            .map_err(|e| ReplicatorError::io("create directory", &table_dir, e))?;
        let meta = storage::write_file(&table_dir.join(&name), &name, &sorted, key)?;
        shared.files_written.fetch_add(1, Ordering::Relaxed);
        shared
            .bytes_written
            .fetch_add(meta.bytes, Ordering::Relaxed);
        shared
            .rows_replicated
            .fetch_add(meta.rows, Ordering::Relaxed);
        let count = run.len();
        publish_flush(shared, &table, &dir, meta, count, file_id)?;
        // A writer that never runs out of sealed batches must still compact now and then.
        compact_if_idle(shared)?;
    }
}

/// Waits while fewer than `max_file_rows` sealed rows wait and the tail has more of the WAL to
/// read (and room to seal it), at most `max_batch_age` (rows may wait that long in a buffer
/// anyway). The tail, behind, either seals a full file's worth or catches up; at a steady rate
/// it is caught up and this returns at once.
fn wait_for_full_file(shared: &Shared) {
    let options = &shared.options;
    let deadline = Instant::now() + options.max_batch_age;
    let mut state = shared.lock();
    loop {
        if shared.stop.load(Ordering::SeqCst) || state.failure.is_some() {
            return;
        }
        let (batches, rows) = state.sealed();
        let full = rows >= options.max_file_rows
            || batches >= options.queue_batches_max()
            || rows >= options.queue_rows_max();
        let behind = state.read_lsn < shared.wal.durable_lsn().0;
        let left = deadline.saturating_duration_since(Instant::now());
        if batches == 0 || full || !behind || left.is_zero() {
            return;
        }
        state = shared
            .progress
            .wait_timeout(state, left.min(Duration::from_millis(10)))
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// The key column of a stored-form schema: the first non-nullable column but `_lsn`/`_op`.
fn key_of(schema: &SchemaRef) -> Option<usize> {
    let n = schema.fields().len().checked_sub(2)?;
    schema.fields()[..n].iter().position(|f| !f.is_nullable())
}

/// Commits a flushed file: the manifest gains it and the table's flushed LSN moves to
/// `covers`; the sealed batches it holds leave the delta, atomically for readers.
fn publish_flush(
    shared: &Shared,
    table: &str,
    dir: &str,
    meta: crate::manifest::FileMeta,
    sealed_count: usize,
    file_id: u64,
) -> Result<()> {
    let (mut manifest, obsolete) = build_manifest(shared, Some((table, sealed_count)));
    manifest.next_file_id = manifest.next_file_id.max(file_id + 1);
    if let Some(t) = manifest.tables.get_mut(table).filter(|t| t.dir == dir) {
        t.files.push(meta);
    }
    publish(shared, manifest, obsolete, |state| {
        if let Some(t) = state.tables.get_mut(table).filter(|t| t.dir == dir) {
            for _ in 0..sealed_count {
                t.sealed.pop_front();
            }
        }
    })
}

/// Commits the manifest with the current tables and checkpoint.
fn commit(shared: &Shared) -> Result<()> {
    let (manifest, obsolete) = build_manifest(shared, None);
    publish(shared, manifest, obsolete, |_| {})
}

/// The manifest for the current state: tables (schemas, files), flushed LSNs, checkpoint,
/// computed under the lock from the published manifest and the live tables, treating the
/// first `publishing.1` sealed batches of table `publishing.0` as flushed. Also returns the
/// directories of tables dropped since the published manifest.
fn build_manifest(shared: &Shared, publishing: Option<(&str, usize)>) -> (Manifest, Vec<PathBuf>) {
    let state = shared.lock();
    let mut manifest = (*state.manifest).clone();
    let read_lsn = state.read_lsn;
    let mut tables = BTreeMap::new();
    let mut checkpoint = read_lsn;
    for (name, live) in &state.tables {
        let (files, previously_flushed) = manifest
            .tables
            .remove(name)
            .filter(|t| t.dir == live.dir)
            .map(|t| (t.files, t.flushed_lsn))
            .unwrap_or_default();
        let skip = match publishing {
            Some((table, count)) if table == name => count,
            _ => 0,
        };
        // A table's flushed LSN never goes back. During recovery the tail reads from the
        // checkpoint (the lowest flushed LSN of all tables), below what another table has
        // already flushed: that table has nothing pending, and `read_lsn` would lower its
        // flushed LSN, so that `apply` wrote its already-flushed rows into a second file
        // (the SIGKILL test saw a change in two files). Rows at or below the previous value
        // are never buffered, so nothing pending is lower.
        let flushed = live
            .first_pending_lsn(skip)
            .map_or(read_lsn, |first| first - 1)
            .max(previously_flushed);
        checkpoint = checkpoint.min(flushed);
        tables.insert(
            name.clone(),
            TableManifest {
                schema: live.buffer.schema().clone(),
                created_lsn: live.created_lsn,
                schema_lsn: live.schema_lsn,
                flushed_lsn: flushed,
                dir: live.dir.clone(),
                files,
            },
        );
    }
    // Whatever remains of the old tables was dropped (or dropped and created anew).
    let dropped = manifest
        .tables
        .values()
        .map(|t| shared.root.join(&t.dir))
        .collect();
    manifest.tables = tables;
    debug_assert!(
        checkpoint >= state.manifest.checkpoint_lsn,
        "the checkpoint never moves back"
    );
    manifest.checkpoint_lsn = checkpoint;
    (manifest, dropped)
}

/// Publishes `manifest` and applies `update` under one lock, so readers see either the old
/// files and the old delta or the new ones; then stores it if `sync_interval` has passed.
fn publish(
    shared: &Shared,
    manifest: Manifest,
    obsolete: Vec<PathBuf>,
    update: impl FnOnce(&mut State),
) -> Result<()> {
    let mut state = shared.lock();
    let old = std::mem::replace(&mut state.manifest, Arc::new(manifest));
    let old_generation = state.generation;
    state.generation += 1;
    state.published = Instant::now();
    state.replaced.push((old_generation, Arc::downgrade(&old)));
    if !obsolete.is_empty() {
        // Listed up to the old generation: deletable once no snapshot holds a manifest that old.
        state.obsolete.push((old_generation, obsolete));
    }
    update(&mut state);
    drop(state);
    shared.progress.notify_all();
    store_manifest(shared, false)
}

/// Makes the published manifest durable when it differs from the stored one and `force` is
/// set or `sync_interval` has passed since the last store, then stores it (temporary file,
/// fsync, rename, directory fsync). Only the writer thread calls this, so stores never
/// overlap.
///
/// The files it lists that the stored manifest does not were written without an fsync. On
/// Linux one `syncfs` makes them, their directories and the temporary manifest durable
/// together: a journal commit and a device cache flush for all of them, where an fsync each
/// costs one per file, and durable writers on the same disk queue behind every one.
/// Elsewhere (or where `syncfs` fails) each file and directory is fsynced.
fn store_manifest(shared: &Shared, force: bool) -> Result<()> {
    let (manifest, durable) = {
        let state = shared.lock();
        let interval = shared.options.sync_interval.as_nanos() as u64;
        let now = shared.options.clock.now_nanos();
        let due = state
            .stored_at
            .is_none_or(|at| now.saturating_sub(at) >= interval);
        if Arc::ptr_eq(&state.manifest, &state.durable) || !(force || due) {
            return Ok(());
        }
        (Arc::clone(&state.manifest), Arc::clone(&state.durable))
    };
    manifest.store_with(&shared.root, |tmp, tmp_path| {
        if storage::sync_filesystem(tmp).is_err() {
            sync_new_files(&shared.root, &manifest, &durable)?;
            Manifest::sync_tmp(tmp, tmp_path)?;
        }
        Ok(())
    })?;
    let mut state = shared.lock();
    state.durable = manifest;
    state.stored_at = Some(shared.options.clock.now_nanos());
    Ok(())
}

/// Fsyncs the files `manifest` lists that `stored` does not, and their directories.
fn sync_new_files(root: &Path, manifest: &Manifest, stored: &Manifest) -> Result<()> {
    for (name, table) in &manifest.tables {
        let stored = stored
            .tables
            .get(name)
            .filter(|t| t.dir == table.dir)
            .map(|t| &t.files[..])
            .unwrap_or_default();
        let mut new_files = false;
        for file in &table.files {
            if !stored.iter().any(|f| f.name == file.name) {
                storage::sync_file(&Manifest::file_path(root, table, file))?;
                new_files = true;
            }
        }
        if new_files {
            sync_dir(&root.join(&table.dir))?;
        }
    }
    Ok(())
}

/// Deletes files replaced by compaction once no snapshot holds a manifest that lists them.
fn delete_obsolete(shared: &Shared) -> Result<()> {
    let ready: Vec<PathBuf> = {
        let mut state = shared.lock();
        state
            .replaced
            .retain(|(_, manifest)| manifest.strong_count() > 0);
        let oldest_held = state
            .replaced
            .iter()
            .map(|(g, _)| *g)
            .min()
            .unwrap_or(u64::MAX);
        let (ready, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut state.obsolete)
            .into_iter()
            .partition(|(generation, _)| *generation < oldest_held);
        state.obsolete = keep;
        ready.into_iter().flat_map(|(_, paths)| paths).collect()
    };
    for path in &ready {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(ReplicatorError::io("delete replaced file", path, e));
            }
            _ => {}
        }
    }
    if !ready.is_empty() {
        sync_dir(&shared.root)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{ColumnDef, DataType};
    use crate::manifest::FileMeta;

    fn file(name: &str) -> FileMeta {
        FileMeta {
            name: name.into(),
            rows: 1,
            bytes: 1,
            crc32c: 0,
            min_key: 0,
            max_key: 0,
            min_lsn: 1,
            max_lsn: 1,
            distinct_keys: true,
            complete_from: 0,
        }
    }

    fn manifest(files: &[&str]) -> Manifest {
        let table = TableManifest {
            schema: TableSchema {
                columns: vec![ColumnDef::new("id", DataType::Int64, false)],
                key: 0,
            },
            created_lsn: 1,
            schema_lsn: 1,
            flushed_lsn: 1,
            dir: "t1-0".into(),
            files: files.iter().map(|name| file(name)).collect(),
        };
        Manifest {
            tables: BTreeMap::from([("t".to_string(), table)]),
            ..Manifest::default()
        }
    }

    /// The fallback where `syncfs` is missing fsyncs exactly the files the stored manifest
    /// lacks: a listed file that is gone is an error naming it only when it is new.
    #[test]
    fn without_syncfs_the_new_files_are_fsynced_one_by_one() {
        let root = std::env::temp_dir().join(format!("omen-sync-new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("t1-0")).expect("dir");
        std::fs::write(root.join("t1-0/b.parquet"), b"x").expect("write");
        let stored = manifest(&["a.parquet"]);
        // a.parquet does not exist, but it is stored already: only b is synced.
        sync_new_files(&root, &manifest(&["a.parquet", "b.parquet"]), &stored).expect("sync");
        let missing = sync_new_files(&root, &manifest(&["a.parquet", "c.parquet"]), &stored);
        match missing {
            Err(ReplicatorError::Io { path, .. }) => assert!(path.ends_with("t1-0/c.parquet")),
            other => panic!("expected an I/O error naming c.parquet, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
