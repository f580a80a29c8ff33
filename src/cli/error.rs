//! The binary's errors: each says what failed and what to do about it.

use std::path::PathBuf;

/// Errors of the `omendb` commands.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The database failed (open, SQL, close).
    #[error(transparent)]
    Db(#[from] omendb::Error),

    /// A file or the terminal could not be used.
    #[error("could not {op}: {source}")]
    Io {
        /// What failed.
        op: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// The configuration file could not be read or parsed.
    #[error("configuration file {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A setting is missing or invalid.
    #[error("{0}")]
    Usage(String),

    /// The line editor failed.
    #[error("line editor: {0}")]
    Readline(#[from] rustyline::error::ReadlineError),
}

impl CliError {
    /// An I/O error with what was being done.
    pub fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            op: op.into(),
            source,
        }
    }
}
