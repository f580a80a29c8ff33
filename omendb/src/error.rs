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
    Sql(#[source] datafusion::error::DataFusionError),

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

    /// A row leaves a NOT NULL column empty; nothing of the batch was applied.
    #[error(
        "table {table:?}, column {column:?} is NOT NULL and the row gives it no value; nothing \
         of the batch was applied"
    )]
    NullValue {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },

    /// A text value is longer than its `VARCHAR(n)` or `CHAR(n)` column allows; nothing of
    /// the batch was applied.
    #[error(
        "value too long for table {table:?}, column {column:?}: {chars} characters, the column \
         allows {max_chars}; nothing of the batch was applied"
    )]
    ValueTooLong {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The value's length in characters.
        chars: usize,
        /// What the column allows.
        max_chars: u32,
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

    /// A SQL statement exceeds a limit of [`crate::SqlLimits`]; nothing of it ran.
    #[error("{}", limit_message(*kind, *found, *limit))]
    Limit {
        /// Which limit.
        kind: LimitKind,
        /// What the statement has.
        found: usize,
        /// What the limit allows.
        limit: usize,
    },

    /// A value is out of the range of its type (an integer overflow, a literal too large);
    /// nothing of the statement was applied.
    #[error("value out of range: {0}")]
    OutOfRange(String),

    /// A value an operator or function cannot take, or a value it cannot represent
    /// (PostgreSQL's data exceptions: division by zero, the logarithm of zero, a date
    /// that does not exist); nothing of the statement was applied.
    #[error("{message}")]
    Data {
        /// Which exception (it carries the SQLSTATE).
        kind: DataErrorKind,
        /// What is wrong, in PostgreSQL's words.
        message: String,
    },

    /// A transaction cannot commit without breaking its isolation (another one committed a
    /// write to the same row after it began): nothing of it was applied; run it again.
    #[error("{0}")]
    SerializationFailure(String),

    /// A statement was cancelled before it changed anything.
    #[error("canceling statement due to {0}")]
    Cancelled(CancelReason),

    /// The log holds something this database cannot apply (a bug or a foreign log).
    #[error("the log record at LSN {lsn} cannot be applied: {reason}")]
    BadLog {
        /// The record's LSN.
        lsn: u64,
        /// Why.
        reason: String,
    },
}

impl From<datafusion::error::DataFusionError> for Error {
    /// Our own errors and the replicator's come back out of DataFusion as they went in (a
    /// table provider hands them to DataFusion as `External`), so they keep their type.
    fn from(error: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError;
        match error {
            DataFusionError::External(inner) => match inner.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(inner) => match inner.downcast::<omen_replicator::ReplicatorError>() {
                    Ok(replicator) => Error::Replicator(*replicator),
                    Err(inner) => Error::Sql(DataFusionError::External(inner)),
                },
            },
            // Ours, wrapped deeper (an operator's context, a shared or Arrow error): the
            // kinds that carry their own SQLSTATE come back out by value.
            other => match find_cause::<Error>(&other).and_then(Error::copy_of) {
                Some(ours) => ours,
                None => Error::Sql(other),
            },
        }
    }
}

impl Error {
    /// A copy of a plain error (a limit, a cancellation, a value out of range), which can
    /// be taken out of a borrowed error chain.
    fn copy_of(&self) -> Option<Error> {
        Some(match self {
            Error::Limit { kind, found, limit } => Error::Limit {
                kind: *kind,
                found: *found,
                limit: *limit,
            },
            Error::Cancelled(reason) => Error::Cancelled(*reason),
            Error::OutOfRange(what) => Error::OutOfRange(what.clone()),
            Error::Data { kind, message } => Error::Data {
                kind: *kind,
                message: message.clone(),
            },
            _ => return None,
        })
    }
}

impl Error {
    /// Whether the operating system's "no space left on device" is among the causes: writes
    /// are refused until space is freed (see [`crate::Db::write`]); reads go on.
    pub fn is_disk_full(&self) -> bool {
        if let Error::Wal(omen_wal::WalError::DiskFull { .. }) = self {
            return true;
        }
        find_cause::<std::io::Error>(self)
            .is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull)
    }
}

/// The first error of type `T` in the chain of `error` and its sources (DataFusion passes our
/// errors through as `External` sources).
pub(crate) fn find_cause<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(found) = current.downcast_ref::<T>() {
            return Some(found);
        }
        cause = current.source();
    }
    None
}

/// Which limit of [`crate::SqlLimits`] a statement exceeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// Its text is too long.
    StatementBytes,
    /// Its expressions nest too deep.
    ExpressionDepth,
    /// Its subqueries (scalar, `IN`, `EXISTS`, derived tables, CTEs) nest too deep.
    SubqueryDepth,
    /// It names a placeholder beyond `$65535` (`found` is its number).
    Placeholder,
    /// A value it builds (a string, a binary, a list) would be larger than the limit.
    ValueBytes,
    /// Its `ARRAY[...]` constructors nest deeper than PostgreSQL's 6 dimensions.
    ArrayDimensions,
    /// The rows it writes do not fit in one log record (`WalOptions::max_record_size`).
    WriteBytes,
    /// A select list longer than PostgreSQL's 1664 entries.
    TargetList,
    /// A function call with more than PostgreSQL's 100 arguments.
    FunctionArguments,
    /// More keys in one `ORDER BY`, `GROUP BY`, `PARTITION BY` or `DISTINCT ON` than
    /// [`crate::limits::MAX_SORT_KEYS`] (planning time grows with their square).
    SortKeys,
    /// More items in one `IN (...)` list than [`crate::limits::MAX_IN_LIST`].
    InList,
    /// `WITH` queries that build on each other deeper than [`crate::limits::MAX_CTE_DEPTH`],
    /// or that expand, each reference planned in full, to more than
    /// [`crate::limits::MAX_CTE_EXPANSION`] queries.
    CteDepth,
    /// A transaction's writes would take more than `DbOptions::max_transaction_bytes`.
    TransactionBytes,
    /// A query in a transaction would read back more of the transaction's spilled writes
    /// than it may hold in memory.
    SpilledReadBytes,
    /// More statements in one text than [`crate::limits::MAX_STATEMENTS`].
    Statements,
    /// More tables, derived tables and table functions in one `FROM` list than
    /// [`crate::limits::MAX_FROM_ITEMS`], or in one statement than
    /// [`crate::limits::MAX_RELATIONS`] (planning a join takes time cubic in its width).
    Relations,
    /// More `WHEN` branches in one `CASE` than [`crate::limits::MAX_CASE_BRANCHES`].
    CaseBranches,
    /// More different windows (`OVER` clauses) in one statement than
    /// [`crate::limits::MAX_WINDOWS`].
    Windows,
}

fn limit_message(kind: LimitKind, found: usize, limit: usize) -> String {
    match kind {
        LimitKind::StatementBytes => format!(
            "statement too long: {found} bytes, the limit is {limit}; split it, or pass large \
             values as parameters"
        ),
        LimitKind::ExpressionDepth => format!(
            "statement too complex: its expressions nest more than {limit} deep; use IN (...) \
             for long OR lists, or split the statement"
        ),
        LimitKind::SubqueryDepth => format!(
            "statement too complex: its subqueries nest more than {limit} deep; use joins or \
             WITH, or split the statement"
        ),
        LimitKind::Placeholder => {
            format!("there is no parameter ${found}: placeholders run from $1 to ${limit}")
        }
        LimitKind::ArrayDimensions => {
            format!("number of array dimensions ({found}) exceeds the maximum allowed ({limit})")
        }
        LimitKind::WriteBytes => format!(
            "write too large: its rows take more than {found} bytes, and one statement writes \
             at most {limit}; nothing was applied: write the rows in smaller statements"
        ),
        LimitKind::TargetList => {
            format!("target lists can have at most {limit} entries; this one has {found}")
        }
        LimitKind::FunctionArguments => {
            format!("cannot pass more than {limit} arguments to a function ({found} given)")
        }
        LimitKind::SortKeys => format!(
            "statement too complex: {found} keys in one ORDER BY, GROUP BY, PARTITION BY or \
             DISTINCT ON; at most {limit}"
        ),
        LimitKind::CteDepth => format!(
            "statement too complex: its WITH queries build on each other more than {limit} \
             deep or expand to more than {} queries (found {found}); store intermediate \
             results in a table, or split the statement",
            crate::limits::MAX_CTE_EXPANSION
        ),
        LimitKind::InList => format!(
            "statement too complex: {found} items in one IN list, at most {limit}; put the \
             values in a table and join it, or split the statement"
        ),
        LimitKind::ValueBytes => {
            format!("value too large: {found} bytes, the limit of one value is {limit} bytes")
        }
        LimitKind::Statements => format!(
            "too many statements in one query: more than {limit}; send them in several \
             queries (nothing of this one ran)"
        ),
        LimitKind::Relations => format!(
            "statement too complex: {found} tables, derived tables and table functions, at \
             most {limit} (one FROM list joins at most {}, one statement reads at most {}); \
             split the statement",
            crate::limits::MAX_FROM_ITEMS,
            crate::limits::MAX_RELATIONS
        ),
        LimitKind::CaseBranches => format!(
            "statement too complex: {found} branches in one CASE, at most {limit}; put the \
             cases in a table and join it, or split the statement"
        ),
        LimitKind::Windows => format!(
            "statement too complex: {found} different windows (OVER clauses), at most {limit}; \
             share windows (WINDOW w AS (...)), or split the statement"
        ),
        LimitKind::TransactionBytes => format!(
            "transaction too large: its writes would take {found} bytes, and one transaction \
             writes at most {limit} (DbOptions::max_transaction_bytes); the statement was not \
             applied: commit smaller transactions"
        ),
        LimitKind::SpilledReadBytes => format!(
            "this transaction's writes spilled to disk, and a query in it would read back more \
             than {limit} bytes of them (the query memory limit): commit first, or query \
             by key"
        ),
    }
}

/// The data exceptions of [`Error::Data`], each with PostgreSQL's SQLSTATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataErrorKind {
    /// `x / 0`, `x % 0` (`22012`).
    DivisionByZero,
    /// `ln(0)`, `log(-1)` (`2201E`).
    InvalidLogarithm,
    /// `sqrt(-1)`, `power(0, -1)`, `power(-8, 0.5)` (`2201F`).
    InvalidPower,
    /// A date or time that does not exist or is out of range, `'2024-02-30'` (`22008`).
    DatetimeOutOfRange,
    /// Text that is not a date or time, `'not a date'::date` (`22007`).
    InvalidDatetime,
    /// Text that is not a value of the type it is cast to, `'abc'::int` (`22P02`).
    InvalidText,
    /// Text holding a NUL character, which PostgreSQL's text cannot (`22021`).
    NulInText,
}

impl DataErrorKind {
    /// The SQLSTATE PostgreSQL gives this exception.
    pub fn sqlstate(self) -> &'static str {
        match self {
            Self::DivisionByZero => "22012",
            Self::InvalidLogarithm => "2201E",
            Self::InvalidPower => "2201F",
            Self::DatetimeOutOfRange => "22008",
            Self::InvalidDatetime => "22007",
            Self::InvalidText => "22P02",
            Self::NulInText => "22021",
        }
    }
}

/// Why a statement was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelReason {
    /// The client asked (a cancel request) or went away.
    UserRequest,
    /// It ran longer than its statement timeout.
    StatementTimeout,
    /// The server is shutting down.
    Shutdown,
}

impl std::fmt::Display for CancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::UserRequest => "user request",
            Self::StatementTimeout => "statement timeout",
            Self::Shutdown => "server shutdown",
        })
    }
}

/// Results of the database.
pub type Result<T, E = Error> = std::result::Result<T, E>;
