//! `ScanError`: what can go wrong reading a table's snapshot from Parquet.

use std::path::PathBuf;

/// Errors of the snapshot scan. They reach the caller as `DataFusionError::External`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// A file does not match the manifest's size or checksum; nothing of it was decoded.
    /// Run the replicator's repair to rebuild it from the WAL.
    #[error("Parquet file {path} is corrupt: {reason}; run WalReplicator::repair to rebuild it")]
    FileCorrupt {
        /// The file.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },

    /// A file could not be read.
    #[error("could not read Parquet file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// A file passed its checksum but could not be decoded.
    #[error("could not decode Parquet file {path}: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// The snapshot breaks an invariant the scan relies on (a bug, not bad input).
    #[error("internal error in the snapshot scan: {0}")]
    Internal(String),
}

impl From<ScanError> for datafusion::error::DataFusionError {
    fn from(error: ScanError) -> Self {
        datafusion::error::DataFusionError::External(Box::new(error))
    }
}
