//! `omen-wal`: OmenDB's write-ahead log.
//!
//! A [`Wal`] is a directory of segment files (`00000000000000000001.wal`, named by the LSN of
//! their first record). Each record is framed with its length, its LSN and a CRC32C over both
//! and the payload (see [`format`]). Appends get consecutive LSNs from 1; a batch appended with
//! [`Wal::append_batch`] is an atomic group that recovery keeps whole or not at all.
//!
//! ```
//! # fn main() -> Result<(), omen_wal::WalError> {
//! # let dir = std::env::temp_dir().join(format!("omen-wal-doc-{}", std::process::id()));
//! use omen_wal::{Lsn, Wal, WalOptions};
//! let wal = Wal::open(&dir, WalOptions::default())?;
//! let lsn = wal.append(b"row 1")?;              // durable when it returns (group commit)
//! let batch = wal.append_batch(&[b"a", b"b"])?; // atomic group
//! assert_eq!(batch.first, lsn.next());
//! let records: Vec<_> = wal.reader(Lsn(1))?.collect::<Result<_, _>>()?;
//! assert_eq!(records.len(), 3);
//! # drop(wal); std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//! - **Acknowledged means durable.** Under [`SyncMode::Full`] and [`SyncMode::GroupCommit`],
//!   `append` returns only after an fsync that covers the record; under
//!   [`SyncMode::Buffered`] and [`SyncMode::None`], after the record reached the operating
//!   system (it survives a process crash, not necessarily a power loss).
//! - **LSNs are dense and ordered.** Records carry LSNs `first_lsn..=last_lsn` without gaps,
//!   in append order, across segments. Recovery checks it.
//! - **Fail-stop on I/O errors.** A failed write or fsync poisons the WAL: that append and
//!   every later one fail ([`WalError::Poisoned`]); nothing is retried, since a failed fsync
//!   may have dropped pages the kernel will not report again. Reopening recovers every
//!   acknowledged record.
//! - **Recovery never guesses.** A torn tail (what a crash mid-write leaves) is cut off;
//!   damage with valid records after it is [`WalError::Corruption`], unless the
//!   [`RecoveryMode`] says otherwise. Decoding never panics, whatever the bytes.
//! - **Readers see only durable records** (unless they ask for written ones), in order,
//!   following segment rotation; truncated LSNs give [`WalError::Truncated`].
//! - **One process per directory**, enforced by a lock file.
//!
//! # Concurrency
//! `Wal` is `Send + Sync`. Appenders encode under a short lock; one of them at a time writes
//! (and fsyncs) everything pending for all of them (see `commit.rs`, which has a loom test).

mod commit;
mod error;
pub mod fault;
pub mod format;
pub mod fs;
mod reader;
mod recovery;
mod segment;
mod wal;

pub use error::{Result, WalError};
pub use reader::{Record, WalReader};
pub use recovery::{RecoveryMode, RecoveryReport, TailTruncation};
pub use wal::{SyncMode, Wal, WalOptions};

/// The primitives `commit.rs` is written against; its loom test swaps in loom's.
mod sync {
    pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
    pub(crate) use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
    pub(crate) use std::thread::yield_now;
    /// Yields before an appender waiting for a write goes to sleep.
    pub(crate) const SPINS: usize = 16;
}

/// A log sequence number: the position of a record in the log. The first record is LSN 1;
/// [`Lsn::ZERO`] means "no record".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// No record: below every LSN.
    pub const ZERO: Lsn = Lsn(0);

    /// The LSN after this one.
    #[must_use]
    pub fn next(self) -> Lsn {
        Lsn(self.0 + 1)
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The LSNs of an atomic group, `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LsnRange {
    /// The group's first LSN.
    pub first: Lsn,
    /// The group's last LSN.
    pub last: Lsn,
}
