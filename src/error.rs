//! `omendb::Error`: each engine crate's error, plus the database's own. Messages say what
//! happened and what to do.

/// Errors of [`crate::Db`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The write-ahead log failed (see its message; an I/O failure poisons it: reopen).
    #[error(transparent)]
    Wal(#[from] omen_wal::WalError),

    /// The replicator failed or refused (backpressure).
    #[error(transparent)]
    Replicator(#[from] omen_replicator::ReplicatorError),

    /// A SQL statement failed: bad syntax, unknown tables or columns, type errors. The
    /// database is unaffected.
    #[error("SQL error: {0}")]
    Sql(#[from] datafusion::error::DataFusionError),

    /// A SQL statement OmenDB does not run (yet); the message says what to use instead.
    #[error("not supported: {0}")]
    Unsupported(String),

    /// An operating-system resource could not be set up.
    #[error("could not {op}: {source}")]
    Io {
        /// What failed.
        op: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// No table of that name.
    #[error("no table named {0:?}; list them with Db::tables")]
    NoSuchTable(String),

    /// A table of that name exists.
    #[error("a table named {0:?} already exists")]
    TableExists(String),

    /// A name or schema is not acceptable.
    #[error("invalid schema for table {table:?}: {reason}")]
    InvalidSchema {
        /// The table.
        table: String,
        /// What is wrong.
        reason: String,
    },

    /// A row does not fit its table; nothing of the batch was applied.
    #[error("table {table:?}, column {column:?}: {reason}; nothing of the batch was applied")]
    BadRow {
        /// The table.
        table: String,
        /// The column (empty when the row's length is wrong).
        column: String,
        /// What is wrong.
        reason: String,
    },

    /// An insert hit an existing key; nothing of the batch was applied.
    #[error(
        "duplicate primary key {key} in table {table:?}: use upsert to replace the row; nothing \
         of the batch was applied"
    )]
    DuplicateKey {
        /// The table.
        table: String,
        /// The key.
        key: i64,
    },

    /// A row held in memory no longer decodes: memory was corrupted. Reopen the database
    /// (it rebuilds its tables from the log).
    #[error(
        "the row with key {key} of table {table:?} is damaged in memory ({reason}): reopen the database"
    )]
    DamagedRow {
        /// The table.
        table: String,
        /// The row's key.
        key: i64,
        /// What the decoder found.
        reason: String,
    },

    /// The log holds something this database cannot apply (a bug or a foreign log).
    #[error("the log record at LSN {lsn} cannot be applied: {reason}")]
    BadLog {
        /// The record's LSN.
        lsn: u64,
        /// Why.
        reason: String,
    },
}

/// Results of the database.
pub type Result<T, E = Error> = std::result::Result<T, E>;
