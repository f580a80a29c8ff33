//! The WAL measurements: writer threads appending 100-byte records to an `omen-wal` log or to
//! RocksDB with its WAL on, and reopening a 64 MiB log to time recovery.
//!
//! Every run gets a fresh directory, deleted afterwards (also on error). The caller chooses
//! where: it must be on the disk being measured, not a tmpfs, or every fsync is free.

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use omen_wal::format::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use omen_wal::{SyncMode, Wal, WalError, WalOptions};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use rocksdb::{DB, Options, WriteOptions};

/// Bytes of every record's payload.
pub const RECORD_BYTES: usize = 100;

/// The interval of [`SyncMode::Buffered`] in this benchmark.
pub const BUFFERED_INTERVAL: Duration = Duration::from_millis(100);

/// Why a measurement failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalBenchError {
    /// The WAL under test failed.
    #[error("omen-wal: {0}")]
    Wal(#[from] WalError),
    /// The RocksDB baseline failed.
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// Scratch directories or the report could not be written.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A writer thread panicked.
    #[error("a writer thread panicked")]
    WriterPanicked,
    /// Recovery did not find what was written.
    #[error("recovery found {found} records in {segments} segment(s), expected {expected} in 1")]
    RecoveryMismatch {
        /// Records written.
        expected: u64,
        /// Records recovery reported.
        found: u64,
        /// Segments recovery reported.
        segments: usize,
    },
}

/// Who writes the records, with what durability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// `omen-wal` with this sync mode as the WAL's default.
    Omen(SyncMode),
    /// RocksDB `put_opt` with its WAL on and `WriteOptions::set_sync(sync)`.
    Rocks {
        /// Whether each write fsyncs the WAL.
        sync: bool,
    },
}

impl Writer {
    /// Our four modes, strongest durability first.
    pub const OMEN: [Writer; 4] = [
        Writer::Omen(SyncMode::Full),
        Writer::Omen(SyncMode::GroupCommit),
        Writer::Omen(SyncMode::Buffered {
            interval: BUFFERED_INTERVAL,
        }),
        Writer::Omen(SyncMode::None),
    ];

    /// The RocksDB baselines.
    pub const ROCKS: [Writer; 2] = [Writer::Rocks { sync: true }, Writer::Rocks { sync: false }];

    /// Name in tables and legends.
    pub fn name(self) -> &'static str {
        match self {
            Writer::Omen(SyncMode::Full) => "Full",
            Writer::Omen(SyncMode::GroupCommit) => "GroupCommit",
            Writer::Omen(SyncMode::Buffered { .. }) => "Buffered 100ms",
            Writer::Omen(SyncMode::None) => "None",
            Writer::Rocks { sync: true } => "RocksDB sync=true",
            Writer::Rocks { sync: false } => "RocksDB sync=false",
        }
    }

    /// A name fit for a directory.
    fn slug(self) -> &'static str {
        match self {
            Writer::Omen(SyncMode::Full) => "omen-full",
            Writer::Omen(SyncMode::GroupCommit) => "omen-group",
            Writer::Omen(SyncMode::Buffered { .. }) => "omen-buffered",
            Writer::Omen(SyncMode::None) => "omen-none",
            Writer::Rocks { sync: true } => "rocks-sync",
            Writer::Rocks { sync: false } => "rocks-nosync",
        }
    }

    /// The RocksDB baseline of the same durability: acknowledged after an fsync (survives a
    /// power loss) or after a write to the operating system (survives a process crash).
    pub fn baseline(self) -> Writer {
        match self {
            Writer::Omen(SyncMode::Full | SyncMode::GroupCommit) => Writer::Rocks { sync: true },
            Writer::Omen(SyncMode::Buffered { .. } | SyncMode::None) => {
                Writer::Rocks { sync: false }
            }
            rocks @ Writer::Rocks { .. } => rocks,
        }
    }
}

/// How much each writer thread writes: `records_per_thread` or for `duration`, whichever
/// ends first.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Concurrent writer threads.
    pub threads: usize,
    /// Most records one thread appends.
    pub records_per_thread: u64,
    /// Most time one thread appends for.
    pub duration: Duration,
}

/// Latency percentiles of a set of operations.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Latency {
    /// Nearest-rank percentiles of `nanos` (sorted here).
    pub fn of(nanos: &mut [u64]) -> Self {
        nanos.sort_unstable();
        let rank = |q: f64| -> Duration {
            if nanos.is_empty() {
                return Duration::ZERO;
            }
            let index = ((q * nanos.len() as f64).ceil() as usize).clamp(1, nanos.len()) - 1;
            nanos
                .get(index)
                .map_or(Duration::ZERO, |&n| Duration::from_nanos(n))
        };
        Self {
            p50: rank(0.50),
            p99: rank(0.99),
            max: rank(1.0),
        }
    }
}

/// The outcome of one writer at one thread count.
#[derive(Clone, Copy, Debug)]
pub struct WriteResult {
    /// Who wrote.
    pub writer: Writer,
    /// Writer threads.
    pub threads: usize,
    /// Records acknowledged, all threads together.
    pub records: u64,
    /// From the common start until the last thread finished.
    pub elapsed: Duration,
    /// Latency of one append (one `put_opt`), over every append of every thread.
    pub latency: Latency,
}

impl WriteResult {
    /// Acknowledged records per second, all threads together.
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
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

/// A random payload of [`RECORD_BYTES`], different for every seed.
fn payload(seed: u64) -> [u8; RECORD_BYTES] {
    let mut bytes = [0u8; RECORD_BYTES];
    StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

/// Runs `writer` under `load` in a fresh directory below `scratch`.
pub fn measure_writes(
    writer: Writer,
    load: Load,
    scratch: &Path,
) -> Result<WriteResult, WalBenchError> {
    let dir = Scratch::fresh(scratch.join(format!("{}-{}t", writer.slug(), load.threads)))?;
    let (records, elapsed, latency) = match writer {
        Writer::Omen(sync_mode) => {
            let options = WalOptions {
                sync_mode,
                ..WalOptions::default()
            };
            let wal = Wal::open(&dir.0, options)?;
            let run = drive(load, |_, _, payload| wal.append(payload).map(|_| ()))?;
            wal.close()?;
            run
        }
        Writer::Rocks { sync } => {
            let mut options = Options::default();
            options.create_if_missing(true);
            let db = DB::open(&options, &dir.0)?;
            let mut write_options = WriteOptions::default();
            write_options.set_sync(sync);
            drive(load, |thread, seq, payload| {
                // Keys unique across threads and increasing within one: thread in the top
                // 24 bits, sequence number below.
                let key = ((thread as u64) << 40 | seq).to_be_bytes();
                db.put_opt(key, payload, &write_options)
            })?
        }
    };
    Ok(WriteResult {
        writer,
        threads: load.threads,
        records,
        elapsed,
        latency,
    })
}

/// Starts `load.threads` threads together; each calls `append(thread, seq, payload)` until
/// its count or time is up, timing every call. Returns the records appended, the time from
/// the common start until the last thread finished, and the latency over all appends.
fn drive<E, F>(load: Load, append: F) -> Result<(u64, Duration, Latency), WalBenchError>
where
    E: Into<WalBenchError> + Send,
    F: Fn(usize, u64, &[u8]) -> Result<(), E> + Sync,
{
    let threads = load.threads.max(1);
    let barrier = Barrier::new(threads + 1);
    // Room for the latencies of a few seconds of fast appends up front, so that the vector
    // rarely grows (and copies) while the clock runs.
    let capacity = usize::try_from(load.records_per_thread)
        .unwrap_or(usize::MAX)
        .min(1 << 21);
    let (outcomes, elapsed) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let (barrier, append) = (&barrier, &append);
                scope.spawn(move || -> Result<Vec<u64>, E> {
                    let payload = payload(thread as u64 + 1);
                    let mut nanos = Vec::with_capacity(capacity);
                    barrier.wait();
                    let deadline = Instant::now() + load.duration;
                    for seq in 0..load.records_per_thread {
                        let started = Instant::now();
                        append(thread, seq, &payload)?;
                        let finished = Instant::now();
                        let took = finished.duration_since(started).as_nanos();
                        nanos.push(u64::try_from(took).unwrap_or(u64::MAX));
                        if finished >= deadline {
                            break;
                        }
                    }
                    Ok(nanos)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        (outcomes, start.elapsed())
    });
    let mut all = Vec::new();
    for outcome in outcomes {
        let nanos = outcome
            .map_err(|_| WalBenchError::WriterPanicked)?
            .map_err(Into::into)?;
        all.extend_from_slice(&nanos);
    }
    let records = all.len() as u64;
    Ok((records, elapsed, Latency::of(&mut all)))
}

/// Recovery of a log on reopen, over several reopens of the same log.
#[derive(Clone, Copy, Debug)]
pub struct RecoveryResult {
    /// Bytes of the log (one segment).
    pub log_bytes: u64,
    /// Records in it.
    pub records: u64,
    /// Times it was reopened.
    pub reopens: usize,
    /// Wall time of `Wal::open`.
    pub open: Latency,
    /// `RecoveryReport::duration`, the part of `open` spent recovering.
    pub recovery: Latency,
}

/// Writes one segment of `log_bytes` of 100-byte records with [`SyncMode::None`], closes it,
/// then times `reopens` reopens. `tick` is called after each step, for progress.
pub fn measure_recovery(
    scratch: &Path,
    log_bytes: u64,
    reopens: usize,
    mut tick: impl FnMut(),
) -> Result<RecoveryResult, WalBenchError> {
    let dir = Scratch::fresh(scratch.join("recovery"))?;
    let options = WalOptions {
        segment_size: log_bytes,
        sync_mode: SyncMode::None,
        ..WalOptions::default()
    };
    // As many records as fit in the segment, so that none starts a second one.
    let frame = (FRAME_HEADER_LEN + RECORD_BYTES) as u64;
    let records = log_bytes.saturating_sub(SEGMENT_HEADER_LEN as u64) / frame;
    let payloads: Vec<_> = (0..64).map(payload).collect();
    let wal = Wal::open(&dir.0, options.clone())?;
    for payload in payloads.iter().cycle().take(records as usize) {
        wal.append(payload)?;
    }
    wal.close()?;
    tick();

    let mut open_nanos = Vec::with_capacity(reopens);
    let mut recovery_nanos = Vec::with_capacity(reopens);
    for _ in 0..reopens {
        let started = Instant::now();
        let wal = Wal::open(&dir.0, options.clone())?;
        let took = started.elapsed();
        let report = wal.recovery_report();
        if report.records != records || report.segments != 1 {
            return Err(WalBenchError::RecoveryMismatch {
                expected: records,
                found: report.records,
                segments: report.segments,
            });
        }
        open_nanos.push(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
        recovery_nanos.push(u64::try_from(report.duration.as_nanos()).unwrap_or(u64::MAX));
        wal.close()?;
        tick();
    }
    Ok(RecoveryResult {
        log_bytes: SEGMENT_HEADER_LEN as u64 + records * frame,
        records,
        reopens,
        open: Latency::of(&mut open_nanos),
        recovery: Latency::of(&mut recovery_nanos),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut nanos: Vec<u64> = (1..=100).rev().collect();
        let latency = Latency::of(&mut nanos);
        assert_eq!(latency.p50, Duration::from_nanos(50));
        assert_eq!(latency.p99, Duration::from_nanos(99));
        assert_eq!(latency.max, Duration::from_nanos(100));
        assert_eq!(Latency::of(&mut []).p99, Duration::ZERO);
    }

    #[test]
    fn every_mode_has_a_baseline_of_the_same_durability() {
        for writer in Writer::OMEN {
            assert!(matches!(writer.baseline(), Writer::Rocks { .. }));
        }
        assert_eq!(
            Writer::Omen(SyncMode::GroupCommit).baseline(),
            Writer::Rocks { sync: true }
        );
        assert_eq!(
            Writer::Omen(SyncMode::None).baseline(),
            Writer::Rocks { sync: false }
        );
    }
}
