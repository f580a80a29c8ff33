//! Errors of the replicator.

use std::path::PathBuf;

/// Errors of [`crate::WalReplicator`] and the Parquet tier.
#[derive(Debug, thiserror::Error)]
pub enum ReplicatorError {
    /// Reading the WAL failed.
    #[error("replicator: WAL error: {0}")]
    Wal(#[from] omen_wal::WalError),

    /// A file operation failed.
    #[error("replicator: I/O error: {op} {path}: {source}")]
    Io {
        /// What the replicator was doing.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Arrow rejected a batch (a bug or a schema mismatch).
    #[error("replicator: Arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// Parquet encoding or decoding failed.
    #[error("replicator: Parquet error in {path}: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// Parquet's error.
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// A WAL record is not a valid change record.
    #[error("replicator: WAL record {lsn} is not a valid change record: {source}")]
    BadRecord {
        /// The record's LSN.
        lsn: u64,
        /// What was wrong.
        #[source]
        source: crate::change::ChangeError,
    },

    /// The records of a transaction group are out of order (see `change`).
    #[error("replicator: WAL record {lsn}: {reason}")]
    BadGroup {
        /// The record's LSN.
        lsn: u64,
        /// What was wrong.
        reason: String,
    },

    /// A row does not fit its table's schema, or names an unknown table.
    #[error("replicator: WAL record {lsn}, table {table:?}: {reason}")]
    SchemaMismatch {
        /// The table.
        table: String,
        /// The record's LSN.
        lsn: u64,
        /// What did not fit.
        reason: String,
    },

    /// A Parquet file does not match the checksum or size its manifest recorded (bit rot,
    /// truncation). Nothing of it was decoded. `WalReplicator::repair` quarantines it and
    /// rebuilds it from the WAL where the WAL still holds its rows.
    #[error(
        "replicator: Parquet file {path} is damaged ({reason}); run WalReplicator::repair to \
         quarantine it and rebuild it from the WAL"
    )]
    FileCorrupt {
        /// The damaged file.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },

    /// The manifest cannot be read.
    #[error("replicator: manifest {path} is unreadable: {reason}")]
    BadManifest {
        /// The manifest file.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// The WAL no longer holds the records after the replicator's checkpoint.
    #[error(
        "replicator: its checkpoint is LSN {checkpoint} but the WAL starts at LSN {wal_first}: \
         records in between were truncated before they were replicated"
    )]
    WalTruncated {
        /// The replicator's checkpoint.
        checkpoint: u64,
        /// The oldest LSN in the WAL.
        wal_first: u64,
    },

    /// The manifest's checkpoint is past the end of the WAL: the WAL lost records that were
    /// already replicated (it was replaced, or recovered with `RecoveryMode::PointInTime`).
    #[error(
        "replicator: its checkpoint is LSN {checkpoint} but the WAL ends at LSN {wal_last}: \
         the WAL lost records that are already in Parquet; restore the WAL or start a new \
         replica directory"
    )]
    WalBehind {
        /// The replicator's checkpoint.
        checkpoint: u64,
        /// The WAL's last LSN.
        wal_last: u64,
    },

    /// Writers are further ahead of the replicator than the configured budget.
    #[error(
        "replicator is {lag} records behind the WAL (budget {budget}); writes are refused until \
         it catches up"
    )]
    Behind {
        /// Records not yet replicated.
        lag: u64,
        /// The configured budget.
        budget: u64,
    },

    /// The table does not exist.
    #[error("replicator: no table {0:?}")]
    NoTable(String),

    /// The replicator stopped after an earlier failure (its source) or, without one, was
    /// shut down.
    #[error("replicator stopped: {}", stopped_cause(.0.as_deref()))]
    Stopped(#[source] Option<std::sync::Arc<ReplicatorError>>),

    /// Waiting for the replicator timed out.
    #[error("replicator: timed out waiting for LSN {0} to be read")]
    Timeout(u64),
}

fn stopped_cause(cause: Option<&ReplicatorError>) -> String {
    cause.map_or_else(|| "shut down".to_string(), ToString::to_string)
}

impl ReplicatorError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Results of the replicator.
pub type Result<T, E = ReplicatorError> = std::result::Result<T, E>;
