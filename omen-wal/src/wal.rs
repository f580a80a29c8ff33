//! The write-ahead log: options, open (recovery), append, sync, truncation, close.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::commit::{CommitError, Committer, Wait};
use crate::error::{Result, WalError};
use crate::format::{RecordKind, encode_frame};
use crate::fs::{OsFs, WalFs};
use crate::reader::{Visibility, WalReader};
use crate::recovery::{RecoveryMode, RecoveryReport, recover};
use crate::segment::{SegmentWriter, Segments};
use crate::{Lsn, LsnRange};

/// When an append is acknowledged, and what survives what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Each append writes and fsyncs on its own, after any I/O in progress: one fsync per
    /// append. Survives power loss. Simplest and slowest under concurrency.
    Full,
    /// Concurrent appends share fsyncs: each is acknowledged after an fsync that covers it.
    /// Survives power loss; the default.
    GroupCommit,
    /// Acknowledged once written to the operating system; a background thread fsyncs every
    /// `interval`. Survives a process crash; a power loss may lose the last `interval`.
    Buffered {
        /// Time between background fsyncs.
        interval: Duration,
    },
    /// Acknowledged once written to the operating system; fsynced only on segment rotation,
    /// [`Wal::sync`] and [`Wal::close`]. Survives a process crash, not a power loss.
    None,
}

impl SyncMode {
    fn wait(self) -> Wait {
        match self {
            Self::Full => Wait::OwnSync,
            Self::GroupCommit => Wait::SharedSync,
            Self::Buffered { .. } | Self::None => Wait::Written,
        }
    }
}

/// Options of [`Wal::open`].
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// A segment is closed and a new one started once it holds this many bytes (a segment
    /// may exceed it by one batch of records). Default 64 MiB.
    pub segment_size: u64,
    /// The largest payload accepted; larger appends fail with
    /// [`WalError::RecordTooLarge`]. Default 16 MiB.
    pub max_record_size: u32,
    /// The default durability of appends. Default [`SyncMode::GroupCommit`].
    pub sync_mode: SyncMode,
    /// What recovery does with damage. Default [`RecoveryMode::TolerateCorruptedTail`].
    pub recovery_mode: RecoveryMode,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            max_record_size: 16 << 20,
            sync_mode: SyncMode::GroupCommit,
            recovery_mode: RecoveryMode::TolerateCorruptedTail,
        }
    }
}

impl WalOptions {
    fn validate(&self) -> Result<()> {
        if self.segment_size < 4096 {
            return Err(WalError::InvalidOptions(format!(
                "segment_size {} is below the minimum of 4096 bytes",
                self.segment_size
            )));
        }
        if self.max_record_size == 0 || self.max_record_size > 1 << 30 {
            return Err(WalError::InvalidOptions(format!(
                "max_record_size {} must be between 1 byte and 1 GiB",
                self.max_record_size
            )));
        }
        if let SyncMode::Buffered { interval } = self.sync_mode
            && interval.is_zero()
        {
            return Err(WalError::InvalidOptions(
                "SyncMode::Buffered needs a non-zero interval (use SyncMode::GroupCommit to \
                 sync every append)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// What the WAL's threads and readers share.
pub(crate) struct Shared {
    pub(crate) committer: Committer<SegmentWriter>,
    pub(crate) segments: Arc<Segments>,
    pub(crate) fs: Arc<dyn WalFs>,
    pub(crate) max_record_size: u32,
}

/// A durable write-ahead log in a directory of segment files.
///
/// `Wal` is `Send + Sync`: share it (e.g. in an `Arc`) and append from many threads; their
/// fsyncs are shared under [`SyncMode::GroupCommit`]. See the crate documentation for the
/// format and the guarantees.
pub struct Wal {
    shared: Arc<Shared>,
    dir: PathBuf,
    sync_mode: SyncMode,
    report: RecoveryReport,
    flusher: Option<(JoinHandle<()>, std::sync::mpsc::Sender<()>)>,
    _lock: File,
}

fn commit_error(error: CommitError<WalError>) -> WalError {
    match error {
        CommitError::Sink(error) => error,
        CommitError::Poisoned(cause) => WalError::Poisoned { cause },
        CommitError::Closed => WalError::Closed,
    }
}

impl Wal {
    /// Opens (or creates) the WAL in `dir`, running recovery first.
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<Self> {
        Self::open_with_fs(dir, options, Arc::new(OsFs))
    }

    /// Opens the WAL through a file system of the caller's (fault injection in tests).
    pub fn open_with_fs(
        dir: impl AsRef<Path>,
        options: WalOptions,
        fs: Arc<dyn WalFs>,
    ) -> Result<Self> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs.create_dir_all(&dir)
            .map_err(|e| WalError::io("create directory", &dir, e))?;
        let lock = lock_dir(&dir)?;
        let recovered = recover(&fs, &dir, options.recovery_mode, options.max_record_size)?;
        let segments = Arc::new(Segments::new(recovered.segments));
        let writer = SegmentWriter {
            fs: Arc::clone(&fs),
            dir: dir.clone(),
            segments: Arc::clone(&segments),
            file: recovered.tail_file,
            path: recovered.tail_path,
            offset: recovered.tail_offset,
            allocated: recovered.tail_allocated,
            segment_size: options.segment_size,
        };
        let shared = Arc::new(Shared {
            committer: Committer::new(writer, recovered.next_lsn),
            segments,
            fs,
            max_record_size: options.max_record_size,
        });
        let flusher = match options.sync_mode {
            SyncMode::Buffered { interval } => Some(start_flusher(Arc::clone(&shared), interval)?),
            _ => None,
        };
        Ok(Self {
            shared,
            dir,
            sync_mode: options.sync_mode,
            report: recovered.report,
            flusher,
            _lock: lock,
        })
    }

    /// Appends one record with the WAL's sync mode; returns its LSN once acknowledged.
    pub fn append(&self, payload: &[u8]) -> Result<Lsn> {
        self.append_with(payload, self.sync_mode)
    }

    /// Appends one record with the given sync mode.
    pub fn append_with(&self, payload: &[u8], mode: SyncMode) -> Result<Lsn> {
        self.append_batch_with(&[payload], mode)
            .map(|range| range.first)
    }

    /// Appends records as one atomic group: after a crash, recovery keeps all of them or none.
    pub fn append_batch<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<LsnRange> {
        self.append_batch_with(payloads, self.sync_mode)
    }

    /// Appends an atomic group with the given sync mode; returns the LSNs it got.
    pub fn append_batch_with<P: AsRef<[u8]>>(
        &self,
        payloads: &[P],
        mode: SyncMode,
    ) -> Result<LsnRange> {
        if payloads.is_empty() {
            return Err(WalError::EmptyBatch);
        }
        let max = self.shared.max_record_size;
        let mut crcs = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let payload = payload.as_ref();
            if payload.len() > max as usize {
                return Err(WalError::RecordTooLarge {
                    size: payload.len(),
                    max,
                });
            }
            crcs.push(crc32c::crc32c(payload));
        }
        let count = payloads.len();
        let encode = |buf: &mut Vec<u8>, first: u64| {
            for (i, (payload, crc)) in payloads.iter().zip(&crcs).enumerate() {
                let kind = RecordKind::in_group(i, count);
                encode_frame(buf, first + i as u64, kind, payload.as_ref(), *crc);
            }
        };
        let first = self
            .shared
            .committer
            .append(count as u64, encode, mode.wait())
            .map_err(commit_error)?;
        Ok(LsnRange {
            first: Lsn(first),
            last: Lsn(first + count as u64 - 1),
        })
    }

    /// Writes and fsyncs everything appended so far; returns the durable LSN.
    pub fn sync(&self) -> Result<Lsn> {
        self.shared.committer.sync().map(Lsn).map_err(commit_error)
    }

    /// The highest LSN known durable (survives power loss).
    pub fn durable_lsn(&self) -> Lsn {
        Lsn(self.shared.committer.durable())
    }

    /// The highest LSN written to the operating system (survives a process crash).
    pub fn written_lsn(&self) -> Lsn {
        Lsn(self.shared.committer.written())
    }

    /// The highest LSN assigned ([`Lsn::ZERO`] if none yet).
    pub fn last_lsn(&self) -> Lsn {
        Lsn(self.shared.committer.next_lsn() - 1)
    }

    /// The oldest LSN still in the log (records below were truncated).
    pub fn first_lsn(&self) -> Lsn {
        Lsn(self.shared.segments.oldest_lsn())
    }

    /// The directory of the WAL.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What recovery found and did when this WAL was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Why the WAL is poisoned, if it is.
    pub fn poisoned(&self) -> Option<String> {
        self.shared.committer.poison()
    }

    /// A reader of durable records from `from` on (see [`WalReader`]).
    pub fn reader(&self, from: Lsn) -> Result<WalReader> {
        WalReader::new(Arc::clone(&self.shared), from, Visibility::Durable)
    }

    /// A reader that also sees records written but not yet fsynced. Such records survive a
    /// process crash but may vanish in a power loss: use it only where that is acceptable.
    pub fn reader_of_written(&self, from: Lsn) -> Result<WalReader> {
        WalReader::new(Arc::clone(&self.shared), from, Visibility::Written)
    }

    /// Deletes whole segments all of whose records are below `lsn` (a checkpoint: the caller
    /// has made them durable elsewhere). The segment being appended to is never deleted.
    /// Returns the number of segments deleted.
    pub fn truncate_before(&self, lsn: Lsn) -> Result<usize> {
        let doomed: Vec<PathBuf> = {
            let mut list = self.shared.segments.lock();
            // Segment i holds LSNs below list[i + 1].first_lsn.
            let count = list
                .windows(2)
                .take_while(|pair| pair[1].first_lsn <= lsn.0)
                .count();
            list.drain(..count).map(|s| s.path).collect()
        };
        for path in &doomed {
            self.shared
                .fs
                .remove(path)
                .map_err(|e| WalError::io("delete segment", path, e))?;
        }
        if !doomed.is_empty() {
            self.shared
                .fs
                .sync_dir(&self.dir)
                .map_err(|e| WalError::io("fsync directory", &self.dir, e))?;
        }
        Ok(doomed.len())
    }

    /// Syncs everything and closes the WAL, reporting any failure (dropping it syncs too,
    /// but cannot report).
    pub fn close(mut self) -> Result<()> {
        self.stop_flusher();
        self.shared
            .committer
            .close()
            .map(|_| ())
            .map_err(commit_error)
    }

    fn stop_flusher(&mut self) {
        if let Some((handle, stop)) = self.flusher.take() {
            drop(stop);
            let _ = handle.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop_flusher();
        // Best effort: a failure here poisons nothing anyone can still observe, and recovery
        // handles whatever tail is left.
        let _ = self.shared.committer.close();
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("sync_mode", &self.sync_mode)
            .field("last_lsn", &self.last_lsn())
            .field("durable_lsn", &self.durable_lsn())
            .finish()
    }
}

/// Takes the directory's lock file, so that two processes never append to one log.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| WalError::io("open lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(WalError::Locked {
            dir: dir.to_path_buf(),
            lock: path,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(WalError::io("lock", &path, e)),
    }
}

/// The background fsync of [`SyncMode::Buffered`]: wakes every `interval` and syncs if
/// anything was written since; stops when the sender is dropped.
fn start_flusher(
    shared: Arc<Shared>,
    interval: Duration,
) -> Result<(JoinHandle<()>, std::sync::mpsc::Sender<()>)> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("omen-wal-flusher".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(interval)
            {
                let committer = &shared.committer;
                // A failure poisons the WAL; appenders see it on their next append.
                if committer.durable() < committer.written() && committer.sync().is_err() {
                    break;
                }
            }
        })
        .map_err(|e| WalError::io("start flusher thread", PathBuf::new(), e))?;
    Ok((handle, stop))
}
