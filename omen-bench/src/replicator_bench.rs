//! The replicator measurements: draining a backlog of rows from the WAL into Parquet, what a
//! running replicator costs durable writers, and how long a committed row takes to reach
//! Parquet at a steady write rate (plus whether snapshots see it at once).
//!
//! Every run gets a fresh directory, deleted afterwards (also on error), on the disk of the
//! report: fsyncs must be real.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, PoisonError};
use std::time::{Duration, Instant};

use omen_replicator::{ReplicatorError, ReplicatorOptions, WalReplicator};
use omen_wal::{Lsn, SyncMode, Wal, WalError, WalOptions};

use crate::replicator_workload::{self as workload, Found, TABLE};
use crate::usage::{self, CpuMeter, CpuUsage};
use crate::wal_bench::Latency;

/// Why a measurement failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicatorBenchError {
    /// The WAL failed.
    #[error("omen-wal: {0}")]
    Wal(#[from] WalError),
    /// The replicator failed.
    #[error("omen-replicator: {0}")]
    Replicator(#[from] ReplicatorError),
    /// Scratch directories or the report could not be written.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A benchmark thread panicked.
    #[error("a benchmark thread panicked")]
    ThreadPanicked,
    /// The replicator did not produce what was written.
    #[error("{0}")]
    Check(String),
}

/// A directory deleted on drop, so that a failed run leaves no gigabytes behind.
struct Scratch(PathBuf);

impl Scratch {
    fn fresh(path: PathBuf) -> std::io::Result<Self> {
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The directories of one run: the WAL below the scratch directory, Parquet next to it or
/// below `parquet_root` when one is given (both deleted on drop).
struct RunDirs {
    wal: Scratch,
    parquet: Option<Scratch>,
}

impl RunDirs {
    fn fresh(scratch: &Path, parquet_root: Option<&Path>, name: &str) -> std::io::Result<Self> {
        let wal = Scratch::fresh(scratch.join(name))?;
        let parquet = match parquet_root {
            Some(root) => Some(Scratch::fresh(
                root.join(format!("omen-bench-{}-{name}", std::process::id())),
            )?),
            None => None,
        };
        Ok(Self { wal, parquet })
    }

    fn wal(&self) -> PathBuf {
        self.wal.0.join("wal")
    }

    fn parquet(&self) -> PathBuf {
        match &self.parquet {
            Some(dir) => dir.0.join("parquet"),
            None => self.wal.0.join("parquet"),
        }
    }
}

fn open_wal(dir: &Path, sync_mode: SyncMode) -> Result<Arc<Wal>, WalError> {
    let options = WalOptions {
        sync_mode,
        ..WalOptions::default()
    };
    Ok(Arc::new(Wal::open(dir, options)?))
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// CPU time of the replicator's two threads, found by name among the threads that appeared
/// since `before` (the kernel keeps 15 bytes of a name, so both read `omen-replicator`; the
/// tail is started first and has the lower id).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplicatorThreads {
    /// Thread id of the tail (decoding WAL records into Arrow buffers).
    pub tail: Option<u64>,
    /// Thread id of the writer (Parquet files, manifest commits, compaction).
    pub writer: Option<u64>,
}

impl ReplicatorThreads {
    fn find(before: &[usage::Task]) -> Self {
        let mut new = usage::tasks()
            .into_iter()
            .filter(|t| t.name.starts_with("omen-replicat") && !before.contains(t))
            .map(|t| t.tid);
        Self {
            tail: new.next(),
            writer: new.next(),
        }
    }

    fn cpu(&self) -> (Option<Duration>, Option<Duration>) {
        (
            self.tail.and_then(usage::thread_cpu),
            self.writer.and_then(usage::thread_cpu),
        )
    }
}

/// A backlog drained: rows pre-written to the WAL, then a replicator started on it.
#[derive(Clone, Debug)]
pub struct CatchUpResult {
    /// Rows in the backlog.
    pub rows: u64,
    /// Rows per WAL record.
    pub record_rows: usize,
    /// WAL records of rows (the table's creation not counted).
    pub records: u64,
    /// Payload bytes of those records.
    pub wal_bytes: u64,
    /// Time to encode and append the backlog (two threads, `SyncMode::None`) and sync it.
    pub prewrite: Duration,
    /// From `WalReplicator::start` until `read_lsn` reached the WAL's last LSN.
    pub read: Duration,
    /// From `WalReplicator::start` until `flush_now` returned with the checkpoint at the last
    /// LSN: every row in a committed Parquet file.
    pub flushed: Duration,
    /// CPU during the drain (start to `flush_now` returned).
    pub cpu: CpuUsage,
    /// CPU time of the tail thread over the drain.
    pub tail_cpu: Option<Duration>,
    /// CPU time of the writer thread over the drain.
    pub writer_cpu: Option<Duration>,
    /// Parquet files written (compaction outputs not counted).
    pub files_written: u64,
    /// Bytes of those files.
    pub parquet_bytes: u64,
    /// Bytes the process sent to storage during the drain: flushed files, compaction outputs,
    /// manifests.
    pub disk_bytes: Option<u64>,
    /// Files the manifest listed at the end (after any compaction).
    pub files_listed: usize,
    /// `(seconds since start, rows read, rows in Parquet files)`, sampled every 10 ms.
    pub progress: Vec<(f64, u64, u64)>,
}

impl CatchUpResult {
    /// Rows per second, start to checkpoint.
    pub fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.flushed.as_secs_f64().max(1e-9)
    }

    /// Rows per second of CPU time of the whole process during the drain.
    pub fn rows_per_core_s(&self) -> Option<f64> {
        Some(self.rows as f64 / self.cpu.process?.as_secs_f64().max(1e-9))
    }
}

/// Encodes `rows` rows in records of `record_rows` and appends them (two threads), after the
/// table's creation, then syncs; returns the records and payload bytes appended.
fn prewrite(wal: &Wal, rows: u64, record_rows: usize) -> Result<(u64, u64), ReplicatorBenchError> {
    wal.append(&workload::create_record())?;
    let record_rows = record_rows.max(1) as u64;
    let records = rows.div_ceil(record_rows);
    let threads = 2;
    let bytes = AtomicU64::new(0);
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let bytes = &bytes;
                scope.spawn(move || -> Result<(), WalError> {
                    for record in (thread..records).step_by(threads as usize) {
                        let first = record * record_rows;
                        let end = (first + record_rows).min(rows);
                        let payload = workload::rows_record(first as i64..end as i64);
                        bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
                        wal.append(&payload)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    for outcome in outcomes {
        outcome.map_err(|_| ReplicatorBenchError::ThreadPanicked)??;
    }
    // The replicator reads durable records only: a backlog is one that survived.
    wal.sync()?;
    Ok((records, bytes.into_inner()))
}

/// Pre-writes `rows` rows in records of `record_rows` with [`SyncMode::None`], then times a
/// replicator with default options draining them into Parquet. `progress(rows_read)` is
/// called as it goes.
pub fn measure_catch_up(
    scratch: &Path,
    parquet_root: Option<&Path>,
    rows: u64,
    record_rows: usize,
    mut progress: impl FnMut(&str),
) -> Result<CatchUpResult, ReplicatorBenchError> {
    let dirs = RunDirs::fresh(scratch, parquet_root, "catch-up")?;
    let wal = open_wal(&dirs.wal(), SyncMode::None)?;
    progress("pre-writing the backlog");
    let started = Instant::now();
    let (records, wal_bytes) = prewrite(&wal, rows, record_rows)?;
    let prewrite = started.elapsed();
    let last = wal.last_lsn().0;
    let record_rows_u64 = record_rows.max(1) as u64;

    let before = usage::tasks();
    let meter = CpuMeter::start();
    let written_before = usage::process_write_bytes();
    let started = Instant::now();
    let replicator = WalReplicator::start(
        Arc::clone(&wal),
        dirs.parquet(),
        ReplicatorOptions::default(),
    )?;
    let mut samples = Vec::new();
    let read = loop {
        let stats = replicator.stats();
        if let Some(failure) = stats.failure {
            return Err(ReplicatorBenchError::Check(format!(
                "replication stopped: {failure}"
            )));
        }
        let read_rows = (stats.read_lsn.saturating_sub(1) * record_rows_u64).min(rows);
        samples.push((
            started.elapsed().as_secs_f64(),
            read_rows,
            stats.rows_replicated,
        ));
        if stats.read_lsn >= last {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(ReplicatorBenchError::Check(format!(
                "the replicator read {} of {last} records in 10 minutes",
                stats.read_lsn
            )));
        }
        if samples.len() % 25 == 0 {
            progress(&format!(
                "catch-up: {:.1}M of {:.1}M rows read, {:.1}M in Parquet",
                read_rows as f64 / 1e6,
                rows as f64 / 1e6,
                stats.rows_replicated as f64 / 1e6
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    replicator.flush_now()?;
    let flushed = started.elapsed();
    // Found only now: a new thread names itself once it runs, after `start` returned.
    let (tail_cpu, writer_cpu) = ReplicatorThreads::find(&before).cpu();
    let cpu = meter.stop();
    let disk_bytes = Option::zip(usage::process_write_bytes(), written_before)
        .map(|(after, before)| after.saturating_sub(before));
    let stats = replicator.stats();
    samples.push((flushed.as_secs_f64(), rows, stats.rows_replicated));
    if stats.checkpoint_lsn != last || stats.rows_replicated != rows {
        return Err(ReplicatorBenchError::Check(format!(
            "after flush_now: checkpoint {} of {last}, {} of {rows} rows in Parquet",
            stats.checkpoint_lsn, stats.rows_replicated
        )));
    }
    replicator.shutdown()?;
    Ok(CatchUpResult {
        rows,
        record_rows,
        records,
        wal_bytes,
        prewrite,
        read,
        flushed,
        cpu,
        tail_cpu,
        writer_cpu,
        files_written: stats.files_written,
        parquet_bytes: stats.bytes_written,
        disk_bytes,
        files_listed: stats.files,
        progress: samples,
    })
}

/// Durable writers for a fixed time, with or without a replicator tailing their WAL.
#[derive(Clone, Copy, Debug)]
pub struct OverheadRun {
    /// Whether a replicator ran.
    pub replicator: bool,
    /// Writer threads.
    pub threads: usize,
    /// Rows per record.
    pub record_rows: usize,
    /// Records acknowledged, all threads together.
    pub records: u64,
    /// From the common start until the last thread finished.
    pub elapsed: Duration,
    /// Latency of one `append` (encoding not included).
    pub latency: Latency,
    /// Rows the replicator had read when the writers stopped.
    pub rows_read: u64,
    /// Rows it had in Parquet files when the writers stopped.
    pub rows_in_parquet: u64,
    /// CPU while the writers ran.
    pub cpu: CpuUsage,
}

impl OverheadRun {
    /// Acknowledged records per second.
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Acknowledged rows per second.
    pub fn rows_per_s(&self) -> f64 {
        self.records_per_s() * self.record_rows as f64
    }
}

/// `threads` writers each encode records of `record_rows` rows and append them with
/// [`SyncMode::GroupCommit`] for `duration`; with `with_replicator`, a replicator with default
/// options tails the WAL from before the first write.
pub fn measure_overhead(
    scratch: &Path,
    parquet_root: Option<&Path>,
    threads: usize,
    record_rows: usize,
    duration: Duration,
    with_replicator: bool,
) -> Result<OverheadRun, ReplicatorBenchError> {
    let name = if with_replicator { "with" } else { "without" };
    let dirs = RunDirs::fresh(scratch, parquet_root, &format!("overhead-{name}"))?;
    let wal = open_wal(&dirs.wal(), SyncMode::GroupCommit)?;
    wal.append(&workload::create_record())?;
    let replicator = if with_replicator {
        Some(WalReplicator::start(
            Arc::clone(&wal),
            dirs.parquet(),
            ReplicatorOptions::default(),
        )?)
    } else {
        None
    };
    let threads = threads.max(1);
    let barrier = Barrier::new(threads + 1);
    let (outcomes, elapsed, cpu) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let (barrier, wal) = (&barrier, &wal);
                scope.spawn(move || -> Result<Vec<u64>, WalError> {
                    let mut nanos = Vec::with_capacity(1 << 16);
                    barrier.wait();
                    let deadline = Instant::now() + duration;
                    for seq in 0u64.. {
                        // Keys unique across threads: thread in the top bits.
                        let first = (((thread as u64) << 40) | (seq * record_rows as u64)) as i64;
                        let payload = workload::rows_record(first..first + record_rows as i64);
                        let started = Instant::now();
                        wal.append(&payload)?;
                        let finished = Instant::now();
                        nanos.push(nanos_between(started, finished));
                        if finished >= deadline {
                            break;
                        }
                    }
                    Ok(nanos)
                })
            })
            .collect();
        barrier.wait();
        let meter = CpuMeter::start();
        let start = Instant::now();
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        (outcomes, start.elapsed(), meter.stop())
    });
    let mut all = Vec::new();
    for outcome in outcomes {
        all.extend(outcome.map_err(|_| ReplicatorBenchError::ThreadPanicked)??);
    }
    let (rows_read, rows_in_parquet) = match &replicator {
        Some(replicator) => {
            let stats = replicator.stats();
            if let Some(failure) = stats.failure {
                return Err(ReplicatorBenchError::Check(format!(
                    "replication stopped: {failure}"
                )));
            }
            (
                stats.read_lsn.saturating_sub(1) * record_rows as u64,
                stats.rows_replicated,
            )
        }
        None => (0, 0),
    };
    // Stopping the replicator (without a flush) and closing are not timed.
    drop(replicator);
    if let Ok(wal) = Arc::try_unwrap(wal) {
        wal.close()?;
    }
    Ok(OverheadRun {
        replicator: with_replicator,
        threads,
        record_rows,
        records: all.len() as u64,
        elapsed,
        latency: Latency::of(&mut all),
        rows_read,
        rows_in_parquet,
        cpu,
    })
}

fn nanos_between(earlier: Instant, later: Instant) -> u64 {
    nanos(later.saturating_duration_since(earlier))
}

/// What sampled snapshot reads found.
#[derive(Clone, Copy, Debug, Default)]
pub struct Staleness {
    /// Snapshots taken.
    pub samples: u64,
    /// Rows found in the delta (not yet in a file).
    pub in_delta: u64,
    /// Rows found in Parquet files.
    pub in_files: u64,
    /// Rows not found: stale reads.
    pub missing: u64,
    /// Slowest `snapshot` call plus the search.
    pub slowest: Duration,
}

/// A paced writer at a steady row rate, with commit-to-Parquet lag and snapshot staleness.
#[derive(Clone, Debug)]
pub struct LagResult {
    /// The rate asked for.
    pub target_rows_per_s: u64,
    /// Rows per record.
    pub record_rows: usize,
    /// How long the writer wrote.
    pub elapsed: Duration,
    /// Records committed.
    pub commits: u64,
    /// Commits the checkpoint had not passed when the wait after the run ended.
    pub never_flushed: u64,
    /// From `append` returning to the checkpoint passing the record's LSN, over every commit.
    pub lag: Latency,
    /// The same to the durable (stored) checkpoint, over the commits it passed in the wait.
    pub durable_lag: Latency,
    /// `(seconds since start, max lag ms, median lag ms)` per 250 ms window of commits.
    pub series: Vec<(f64, f64, f64)>,
    /// Latency of one `append`.
    pub append: Latency,
    /// Snapshot reads right after commits.
    pub staleness: Staleness,
    /// Files written, files the manifest listed at the end.
    pub files: (u64, usize),
    /// CPU while the writer ran.
    pub cpu: CpuUsage,
    /// CPU time of the replicator's two threads over the run and the wait after it.
    pub replicator_cpu: Option<Duration>,
    /// Payload bytes appended to the WAL.
    pub wal_bytes: u64,
    /// Bytes of the Parquet files flushed.
    pub parquet_bytes: u64,
    /// Bytes the process sent to storage over the run and the wait after it: WAL, flushes,
    /// compactions, manifests.
    pub disk_bytes: Option<u64>,
}

impl LagResult {
    /// Rows committed per second.
    pub fn rows_per_s(&self) -> f64 {
        (self.commits * self.record_rows as u64) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Options of [`measure_lag`].
#[derive(Clone, Copy, Debug)]
pub struct LagLoad {
    /// Rows per second the writer commits.
    pub rows_per_s: u64,
    /// Rows per record.
    pub record_rows: usize,
    /// How long it writes.
    pub duration: Duration,
    /// Every this many commits, a snapshot read checks the commit is visible.
    pub snapshot_every: u64,
}

/// One writer commits records at `load.rows_per_s` with [`SyncMode::GroupCommit`] while a
/// replicator with default options tails the WAL. A monitor thread polls `stats()` every
/// millisecond and notes when the checkpoint moves; a checker thread takes a snapshot at
/// `wal.last_lsn()` right after every `snapshot_every`-th commit and looks for its row.
/// `tick` is called every second.
pub fn measure_lag(
    scratch: &Path,
    parquet_root: Option<&Path>,
    load: LagLoad,
    mut tick: impl FnMut(),
) -> Result<LagResult, ReplicatorBenchError> {
    let dirs = RunDirs::fresh(scratch, parquet_root, "lag")?;
    let wal = open_wal(&dirs.wal(), SyncMode::GroupCommit)?;
    let before = usage::tasks();
    let replicator = WalReplicator::start(
        Arc::clone(&wal),
        dirs.parquet(),
        ReplicatorOptions::default(),
    )?;
    wal.append(&workload::create_record())?;
    replicator.flush_now()?;
    let threads = ReplicatorThreads::find(&before);
    let threads_before = threads.cpu();
    let written_before = usage::process_write_bytes();
    let record_rows = load.record_rows.max(1);
    let interval = Duration::from_secs_f64(record_rows as f64 / load.rows_per_s.max(1) as f64);
    let stop = AtomicBool::new(false);
    let checkpoints: Mutex<Vec<(Instant, u64)>> = Mutex::new(Vec::new());
    let durable_checkpoints: Mutex<Vec<(Instant, u64)>> = Mutex::new(Vec::new());
    let staleness = Mutex::new(Staleness::default());
    let (sample_tx, sample_rx) = std::sync::mpsc::sync_channel::<(i64, u64)>(4096);

    let outcome = std::thread::scope(|scope| {
        let monitor = scope.spawn(|| {
            // Each log notes when its checkpoint moved (the last entry is the latest seen).
            let note = |log: &Mutex<Vec<(Instant, u64)>>, now: Instant, lsn: u64| {
                let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
                if log.last().is_none_or(|&(_, last)| last != lsn) {
                    log.push((now, lsn));
                }
            };
            while !stop.load(Ordering::Relaxed) {
                let stats = replicator.stats();
                let now = Instant::now();
                note(&checkpoints, now, stats.checkpoint_lsn);
                note(&durable_checkpoints, now, stats.durable_checkpoint_lsn);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let checker = scope.spawn(|| -> Result<(), ReplicatorError> {
            for (key, lsn) in sample_rx {
                let started = Instant::now();
                let snapshot = replicator.snapshot(TABLE, wal.last_lsn())?;
                let found = workload::find_row(&snapshot, key, lsn)?;
                let took = started.elapsed();
                let mut s = staleness.lock().unwrap_or_else(PoisonError::into_inner);
                s.samples += 1;
                match found {
                    Found::Delta => s.in_delta += 1,
                    Found::Files => s.in_files += 1,
                    Found::Missing => s.missing += 1,
                }
                s.slowest = s.slowest.max(took);
            }
            Ok(())
        });
        let written = write_paced(&wal, load, interval, record_rows, &sample_tx, &mut tick);
        drop(sample_tx);
        let checked = checker.join();
        // Wait for the monitor to see the checkpoint pass the last commit: rows sealed by age
        // take up to `max_batch_age`.
        let last = wal.last_lsn().0;
        let deadline = Instant::now() + ReplicatorOptions::default().max_batch_age * 2;
        let seen = |log: &Mutex<Vec<(Instant, u64)>>| {
            let log = log.lock().unwrap_or_else(PoisonError::into_inner);
            log.last().map_or(0, |c| c.1)
        };
        while (seen(&checkpoints) < last || seen(&durable_checkpoints) < last)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        let monitored = monitor.join();
        (written, checked, monitored)
    });
    let (written, checked, monitored) = outcome;
    let Paced {
        commits,
        elapsed,
        append,
        cpu,
        payload_bytes,
    } = written?;
    let threads_after = threads.cpu();
    let replicator_cpu = match (threads_before, threads_after) {
        ((Some(tail0), Some(writer0)), (Some(tail1), Some(writer1))) => {
            Some((tail1 + writer1).saturating_sub(tail0 + writer0))
        }
        _ => None,
    };
    let disk_bytes = Option::zip(usage::process_write_bytes(), written_before)
        .map(|(after, before)| after.saturating_sub(before));
    checked.map_err(|_| ReplicatorBenchError::ThreadPanicked)??;
    monitored.map_err(|_| ReplicatorBenchError::ThreadPanicked)?;
    let stats = replicator.stats();
    if let Some(failure) = stats.failure {
        return Err(ReplicatorBenchError::Check(format!(
            "replication stopped: {failure}"
        )));
    }
    replicator.shutdown()?;

    let checkpoints = checkpoints
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    let durable_checkpoints = durable_checkpoints
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    let mut durable_nanos: Vec<u64> = lags(&commits, &durable_checkpoints)
        .0
        .iter()
        .map(|&l| nanos(l))
        .collect();
    let (lags, never_flushed) = lags(&commits, &checkpoints);
    let start = commits.first().map(|c| c.1);
    let series = series(&commits, &lags, start);
    let mut lag_nanos: Vec<u64> = lags.iter().map(|&l| nanos(l)).collect();
    Ok(LagResult {
        target_rows_per_s: load.rows_per_s,
        record_rows,
        elapsed,
        commits: commits.len() as u64,
        never_flushed,
        lag: Latency::of(&mut lag_nanos),
        durable_lag: Latency::of(&mut durable_nanos),
        series,
        append,
        staleness: staleness
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner),
        files: (stats.files_written, stats.files),
        cpu,
        replicator_cpu,
        wal_bytes: payload_bytes,
        parquet_bytes: stats.bytes_written,
        disk_bytes,
    })
}

/// What the paced writer did.
struct Paced {
    /// `(LSN, acknowledged at)` of every commit.
    commits: Vec<(u64, Instant)>,
    /// How long it wrote.
    elapsed: Duration,
    /// Latency of one `append`.
    append: Latency,
    /// CPU while it wrote.
    cpu: CpuUsage,
    /// Payload bytes appended.
    payload_bytes: u64,
}

/// The paced writer of [`measure_lag`]: record `i` is due `i` intervals after the start (a
/// late record does not move the schedule, so the mean rate holds).
fn write_paced(
    wal: &Wal,
    load: LagLoad,
    interval: Duration,
    record_rows: usize,
    samples: &std::sync::mpsc::SyncSender<(i64, u64)>,
    tick: &mut impl FnMut(),
) -> Result<Paced, ReplicatorBenchError> {
    let mut commits = Vec::new();
    let mut payload_bytes = 0;
    let mut append_nanos = Vec::new();
    let meter = CpuMeter::start();
    let start = Instant::now();
    let mut next_tick = start + Duration::from_secs(1);
    for i in 0u64.. {
        let due = start + interval.mul_f64(i as f64);
        if due >= start + load.duration {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let first = (i * record_rows as u64) as i64;
        let payload = workload::rows_record(first..first + record_rows as i64);
        payload_bytes += payload.len() as u64;
        let started = Instant::now();
        let Lsn(lsn) = wal.append(&payload)?;
        let acknowledged = Instant::now();
        commits.push((lsn, acknowledged));
        append_nanos.push(nanos_between(started, acknowledged));
        if i % load.snapshot_every.max(1) == 0 {
            // The last row of the record; a full queue skips the sample rather than stall.
            let _ = samples.try_send((first + record_rows as i64 - 1, lsn));
        }
        if acknowledged >= next_tick {
            next_tick += Duration::from_secs(1);
            tick();
        }
    }
    let elapsed = start.elapsed();
    let cpu = meter.stop();
    Ok(Paced {
        commits,
        elapsed,
        append: Latency::of(&mut append_nanos),
        cpu,
        payload_bytes,
    })
}

/// The lag of each commit: from its acknowledgement to the first checkpoint at or past its
/// LSN. Commits no checkpoint passed get the time until the last checkpoint seen and are
/// counted.
fn lags(commits: &[(u64, Instant)], checkpoints: &[(Instant, u64)]) -> (Vec<Duration>, u64) {
    let end = checkpoints.last().map(|c| c.0);
    let mut never = 0;
    let mut at = 0;
    let lags = commits
        .iter()
        .map(|&(lsn, acknowledged)| {
            // Checkpoints and commits both ascend: a moving cursor finds each first pass.
            while checkpoints.get(at).is_some_and(|c| c.1 < lsn) {
                at += 1;
            }
            match checkpoints.get(at) {
                Some(&(when, _)) => when.saturating_duration_since(acknowledged),
                None => {
                    never += 1;
                    end.map_or(Duration::ZERO, |e| {
                        e.saturating_duration_since(acknowledged)
                    })
                }
            }
        })
        .collect();
    (lags, never)
}

/// Max and median lag per 250 ms window of commit times.
fn series(
    commits: &[(u64, Instant)],
    lags: &[Duration],
    start: Option<Instant>,
) -> Vec<(f64, f64, f64)> {
    let Some(start) = start else {
        return Vec::new();
    };
    let window = 0.25;
    let mut out = Vec::new();
    let mut bucket: Vec<f64> = Vec::new();
    let mut bucket_index = 0u64;
    let mut flush = |index: u64, bucket: &mut Vec<f64>| {
        if bucket.is_empty() {
            return;
        }
        bucket.sort_by(f64::total_cmp);
        let max = bucket.last().copied().unwrap_or(0.0);
        let median = bucket.get(bucket.len() / 2).copied().unwrap_or(0.0);
        out.push(((index as f64 + 0.5) * window, max, median));
        bucket.clear();
    };
    for (&(_, acknowledged), lag) in commits.iter().zip(lags) {
        let t = acknowledged.saturating_duration_since(start).as_secs_f64();
        let index = (t / window) as u64;
        if index != bucket_index {
            flush(bucket_index, &mut bucket);
            bucket_index = index;
        }
        bucket.push(lag.as_secs_f64() * 1e3);
    }
    flush(bucket_index, &mut bucket);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_commit_waits_for_the_first_checkpoint_past_it() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let commits = [(2, at(0)), (3, at(1)), (4, at(2)), (5, at(3))];
        let checkpoints = [(at(10), 1), (at(20), 3), (at(30), 4)];
        let (lags, never) = lags(&commits, &checkpoints);
        let ms: Vec<u128> = lags.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [20, 19, 28, 27]);
        assert_eq!(never, 1);
    }
}
