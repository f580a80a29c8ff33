//! `omen-replicator`: the analytics tier's feed. A [`WalReplicator`] tails the WAL, decodes
//! row changes ([`change`]) into per-table Arrow buffers, seals a buffer at `max_batch_rows`
//! rows or when its oldest row is `max_batch_age` old, and writes sealed batches to Parquet
//! files (zstd, page statistics, rows sorted by key, hidden `_lsn` and `_op` columns). A
//! sealed batch lingers up to `file_linger` (1 s) so that a steady stream becomes one file a
//! second, not one per batch; readers see it in the delta meanwhile.
//!
//! # Invariants
//! - **The manifest is the truth.** A Parquet file is visible only once the manifest lists it;
//!   the manifest is replaced atomically (temporary file, fsync, rename, directory fsync).
//!   Files it does not list are leftovers of a crash and are deleted at start.
//! - **Durable at most `sync_interval` late.** Files are written without an fsync and
//!   published to readers at once; the manifest is stored at most every `sync_interval` (1 s),
//!   once the files it adds are durable (one `syncfs` on Linux, else an fsync each). A file
//!   the stored manifest lists is durable and is
//!   not deleted until a stored manifest drops it. The WAL may be truncated below
//!   `durable_checkpoint_lsn` only: after a crash, what followed it is written again.
//! - **Exactly once.** The manifest records, per table, the LSN up to which all its row
//!   changes are in files (`flushed_lsn`), and a global `checkpoint_lsn` below which every
//!   record is reflected. After a crash, replication resumes after the checkpoint and skips
//!   row changes at or below their table's `flushed_lsn`: no row lost, none written twice.
//! - **Zero staleness.** [`WalReplicator::snapshot`] returns, under one lock, the manifest's
//!   files and the rows above its watermark, so a reader sees every change up to its
//!   snapshot LSN exactly once even while a flush or compaction commits.
//! - **Checksums.** The manifest records each file's size and CRC32C; a file that does not
//!   match is reported as [`ReplicatorError::FileCorrupt`] before it is decoded.
//! - **Bounded memory.** Sealed batches wait in a bounded queue; when it is full the tail
//!   stops reading, and [`WalReplicator::throttle`] refuses writers beyond the lag budget.

mod buffer;
pub mod change;
pub mod clock;
mod compaction;
mod error;
pub mod group;
pub mod manifest;
mod priority;
mod repair;
mod replicator;
mod storage;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{ReplicatorError, Result};
pub use priority::{in_background, lower_current_thread};
pub use repair::RepairReport;
pub use replicator::{ReplicatorOptions, ReplicatorStats, TableSnapshot, WalReplicator};
pub use storage::without_hidden_columns;
