//! Errors of the WAL. Each says what happened, where, and what the user can do.

use std::io;
use std::path::PathBuf;

use crate::Lsn;

/// Errors of [`crate::Wal`] and [`crate::WalReader`].
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An I/O operation failed. If it was a write or an fsync, the WAL is now poisoned.
    #[error("WAL I/O error: {op} {path}: {source}")]
    Io {
        /// What the WAL was doing.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The disk is full. Nothing acknowledged is lost; the append that hit it was not
    /// acknowledged, and the WAL is poisoned: free space, then reopen it.
    #[error("WAL disk full while writing {path}: free space, then reopen the WAL ({source})")]
    DiskFull {
        /// The segment being written.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// An earlier write or fsync failed, so the durability of anything after it is unknown.
    /// The WAL refuses further appends instead of retrying (a failed fsync may have dropped
    /// data the kernel will never report again). Reopen the WAL: recovery keeps every
    /// acknowledged record.
    #[error("WAL is poisoned by an earlier I/O failure ({cause}); reopen it to recover")]
    Poisoned {
        /// The failure that poisoned the WAL.
        cause: String,
    },

    /// A checksum or sequence error in the middle of the log: valid records follow the damage,
    /// so it is not a torn tail and truncating would silently drop committed records.
    #[error(
        "WAL corruption in {segment} at byte {offset} (first unreadable LSN {lsn}): {reason}; \
         restore the segment from a backup, or open with RecoveryMode::PointInTime to keep the \
         log up to this point"
    )]
    Corruption {
        /// The damaged segment file.
        segment: PathBuf,
        /// Byte offset of the damage in that file.
        offset: u64,
        /// The first LSN that could not be read.
        lsn: Lsn,
        /// What was wrong.
        reason: String,
    },

    /// A record exceeds [`crate::WalOptions::max_record_size`].
    #[error("WAL record of {size} bytes exceeds the maximum record size of {max} bytes")]
    RecordTooLarge {
        /// The record's size.
        size: usize,
        /// The configured maximum.
        max: u32,
    },

    /// An empty batch was appended.
    #[error("WAL append of an empty batch: a batch needs at least one record")]
    EmptyBatch,

    /// A reader asked for records that `truncate_before` already deleted.
    #[error("WAL records from LSN {requested} were truncated; the oldest retained LSN is {oldest}")]
    Truncated {
        /// The LSN asked for.
        requested: Lsn,
        /// The oldest LSN still in the log.
        oldest: Lsn,
    },

    /// A reader asked for an LSN that has not been written.
    #[error("WAL has no LSN {requested} yet; the next LSN to be appended is {next}")]
    FutureLsn {
        /// The LSN asked for.
        requested: Lsn,
        /// The next LSN the WAL will assign.
        next: Lsn,
    },

    /// Another process (or another `Wal` in this one) has the directory open.
    #[error("WAL directory {dir} is in use by another process (lock file {lock} is held)")]
    Locked {
        /// The WAL directory.
        dir: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },

    /// The options are inconsistent.
    #[error("invalid WAL options: {0}")]
    InvalidOptions(String),

    /// The WAL was closed.
    #[error("WAL is closed")]
    Closed,
}

impl WalError {
    /// Wraps an I/O error; ENOSPC becomes [`WalError::DiskFull`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::StorageFull {
            Self::DiskFull { path, source }
        } else {
            Self::Io { op, path, source }
        }
    }
}

/// Results of the WAL.
pub type Result<T, E = WalError> = std::result::Result<T, E>;
