//! PostgreSQL error codes (SQLSTATE) for OmenDB errors, so that drivers can tell bad SQL
//! (class 42), bad data (22, 23) and unsupported features (0A) from server failures (XX).

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use pgwire::error::{ErrorInfo, PgWireError};

/// SQLSTATE `42601`: syntax error.
pub const SYNTAX_ERROR: &str = "42601";
/// SQLSTATE `0A000`: feature not supported.
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// SQLSTATE `22023`: invalid parameter value.
pub const INVALID_PARAMETER_VALUE: &str = "22023";
/// SQLSTATE `28P01`: invalid password.
pub const INVALID_PASSWORD: &str = "28P01";
/// SQLSTATE `53300`: too many connections.
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// SQLSTATE `54000`: program limit exceeded.
pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
/// SQLSTATE `54001`: statement too complex.
pub const STATEMENT_TOO_COMPLEX: &str = "54001";
/// SQLSTATE `22003`: numeric value out of range.
pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
/// SQLSTATE `22021`: a byte sequence the encoding does not allow (a NUL in text).
pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
/// SQLSTATE `42883`: undefined function.
pub const UNDEFINED_FUNCTION: &str = "42883";
/// SQLSTATE `57014`: query canceled.
pub const QUERY_CANCELED: &str = "57014";
/// SQLSTATE `53100`: disk full.
pub const DISK_FULL: &str = "53100";
/// SQLSTATE `58030`: I/O error.
pub const IO_ERROR: &str = "58030";
/// SQLSTATE `XX000`: internal error.
pub const INTERNAL_ERROR: &str = "XX000";

/// An `ERROR` with a code and message.
pub fn error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(info("ERROR", code, message)))
}

/// An error or notice body.
pub fn info(severity: &str, code: &str, message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new(severity.to_string(), code.to_string(), message.into())
}

/// The SQLSTATE of an OmenDB error.
pub fn code(error: &omendb::Error) -> &'static str {
    use omendb::replicator::ReplicatorError;
    use omendb::wal::WalError;
    use omendb::{Error, LimitKind};
    match error {
        Error::Sql(error) => datafusion_code(error),
        Error::Unsupported(_) => FEATURE_NOT_SUPPORTED,
        Error::NoSuchTable(_) => "42P01",
        Error::TableExists(_) => "42P07",
        Error::InvalidSchema { .. } => "42P16",
        Error::NullValue { .. } => "23502",
        Error::ValueTooLong { .. } => "22001",
        Error::BadRow { .. } => "42804",
        Error::DuplicateKey { .. } => "23505",
        Error::Limit {
            kind: LimitKind::StatementBytes,
            ..
        } => PROGRAM_LIMIT_EXCEEDED,
        Error::Limit {
            kind:
                LimitKind::ExpressionDepth
                | LimitKind::SubqueryDepth
                | LimitKind::SortKeys
                | LimitKind::InList
                | LimitKind::Relations
                | LimitKind::Windows
                | LimitKind::CaseBranches
                | LimitKind::CteDepth,
            ..
        } => STATEMENT_TOO_COMPLEX,
        Error::Limit {
            kind: LimitKind::TargetList,
            ..
        } => "54011",
        Error::Limit {
            kind: LimitKind::FunctionArguments,
            ..
        } => "54023",
        Error::Limit {
            kind: LimitKind::Placeholder,
            ..
        } => "42P02",
        Error::SerializationFailure(_) => "40001",
        Error::Limit {
            kind:
                LimitKind::ValueBytes
                | LimitKind::WriteBytes
                | LimitKind::ArrayDimensions
                | LimitKind::TransactionBytes
                | LimitKind::SpilledReadBytes
                | LimitKind::Statements,
            ..
        } => PROGRAM_LIMIT_EXCEEDED,
        Error::OutOfRange(_) => NUMERIC_VALUE_OUT_OF_RANGE,
        Error::Data { kind, .. } => kind.sqlstate(),
        Error::Cancelled(omendb::CancelReason::Shutdown) => "57P01",
        Error::Cancelled(_) => QUERY_CANCELED,
        _ if error.is_disk_full() => DISK_FULL,
        // Backpressure: the client may retry once the replicator catches up.
        Error::Replicator(ReplicatorError::Behind { .. } | ReplicatorError::Timeout(_)) => "53000",
        // The replicator stopped: writes wait for an operator (see its message).
        Error::Replicator(_) => "58000",
        // A write whose record is larger than the log takes: nothing was applied.
        Error::Wal(WalError::RecordTooLarge { .. }) => PROGRAM_LIMIT_EXCEEDED,
        Error::Wal(WalError::Poisoned { .. } | WalError::Io { .. }) => IO_ERROR,
        _ => INTERNAL_ERROR,
    }
}

/// Whether an I/O error's message is DataFusion's refusal to spill past a query's
/// `query_spill_mb` (PostgreSQL's `temp_file_limit` answers `53400`).
fn past_spill_limit(message: &str) -> bool {
    message.contains("spilling process has exceeded the allowable limit")
}

fn datafusion_code(error: &DataFusionError) -> &'static str {
    match error.find_root() {
        DataFusionError::SQL(..) => SYNTAX_ERROR,
        DataFusionError::NotImplemented(_) => FEATURE_NOT_SUPPORTED,
        DataFusionError::SchemaError(..) => "42703",
        // Unknown tables are found before planning (`Error::NoSuchTable`); the rest of
        // DataFusion's planning errors carry no finer type.
        DataFusionError::Plan(message) if message.starts_with("Invalid function") => {
            UNDEFINED_FUNCTION
        }
        DataFusionError::Plan(message) if message.starts_with("LIMIT must be >=") => "2201W",
        // `generate_series(1, 3, 0)` in FROM, as PostgreSQL's.
        DataFusionError::Plan(message) if message.starts_with("Step cannot be zero") => "22023",
        DataFusionError::Plan(message) if message.starts_with("OFFSET must be >=") => "2201X",
        // `ON CONFLICT`, `DELETE ... USING` and other clauses DataFusion does not plan.
        DataFusionError::Plan(message) if message.ends_with("not supported") => {
            FEATURE_NOT_SUPPORTED
        }
        DataFusionError::Plan(_) => "42000",
        DataFusionError::ArrowError(error, _) => match error.as_ref() {
            ArrowError::ArithmeticOverflow(_) => NUMERIC_VALUE_OUT_OF_RANGE,
            ArrowError::DivideByZero => "22012",
            ArrowError::CastError(message) => cast_code(message),
            ArrowError::ParseError(_) => "22P02",
            ArrowError::IoError(message, _) if past_spill_limit(message) => "53400",
            // `abs`, `gcd`, `lcm` of integers that do not fit.
            ArrowError::ComputeError(message) if message.contains("overflow") => {
                NUMERIC_VALUE_OUT_OF_RANGE
            }
            // A NULL for a NOT NULL column that DataFusion's insert plan finds first.
            ArrowError::InvalidArgumentError(message)
                if message.contains("non-nullable but contains null") =>
            {
                "23502"
            }
            _ => "22000",
        },
        DataFusionError::Execution(message)
            if message.contains("negative substring length")
                || message.starts_with("negative count not allowed") =>
        {
            "22011"
        }
        DataFusionError::Execution(message)
            if message.starts_with("field position must not be zero")
                || message.starts_with("levenshtein argument exceeds") =>
        {
            "22023"
        }
        // A pattern that does not compile, through `regexp_like` and the `~` operators.
        DataFusionError::Execution(message)
            if message.starts_with("Regular expression did not compile") =>
        {
            "2201B"
        }
        // A function's input past what one uninterruptible call may take (`bounded.rs`).
        DataFusionError::Execution(message)
            if message.starts_with("argument of ") && message.contains(" too large: ") =>
        {
            PROGRAM_LIMIT_EXCEEDED
        }
        // `chr` of a code point that is none, or of 0 (PostgreSQL's codes).
        DataFusionError::Execution(message)
            if message.starts_with("invalid Unicode scalar value: ")
                || message.starts_with("null character not permitted") =>
        {
            PROGRAM_LIMIT_EXCEEDED
        }
        DataFusionError::Execution(message)
            if message.starts_with("character number must be positive")
                || message.starts_with("step can't be 0") =>
        {
            "22023"
        }
        // `make_date` of a day that does not exist, or a month or day out of range.
        DataFusionError::Execution(message)
            if message.starts_with("Unable to parse date from")
                || (message.ends_with("is out of range")
                    && ["Year value", "Month value", "Day value"]
                        .iter()
                        .any(|field| message.starts_with(field))) =>
        {
            "22008"
        }
        DataFusionError::Execution(message) if message.starts_with("Overflow happened") => {
            NUMERIC_VALUE_OUT_OF_RANGE
        }
        DataFusionError::Execution(_) => "22000",
        // A pattern that does not compile (`'x' ~ '('`).
        DataFusionError::IoError(error) if past_spill_limit(&error.to_string()) => "53400",
        DataFusionError::External(error) if error.to_string().contains("regex parse error") => {
            "2201B"
        }
        DataFusionError::ResourcesExhausted(_) => "53200",
        _ => INTERNAL_ERROR,
    }
}

/// PostgreSQL's code for a failed cast, from Arrow's message: text that is no date is
/// `22007`, a date that does not exist (`'2024-02-30'`) `22008`, text that is no number
/// `22P02`, a number out of the target's range `22003`.
fn cast_code(message: &str) -> &'static str {
    if let Some(rest) = message.strip_prefix("Cannot cast string '") {
        let (text, target) = rest.rsplit_once("' to value of ").unwrap_or((rest, ""));
        let temporal = ["Date", "Time", "Timestamp", "Interval"]
            .iter()
            .any(|t| target.starts_with(t));
        if !temporal {
            // An integer too large for the target is out of range, not malformed.
            let integer = text.trim().trim_start_matches(['-', '+']);
            let digits = !integer.is_empty() && integer.bytes().all(|b| b.is_ascii_digit());
            return if digits && target.starts_with("Int") {
                NUMERIC_VALUE_OUT_OF_RANGE
            } else {
                "22P02"
            };
        }
        // Digits in a date's shape that name no day are out of range, anything else is
        // not a date at all.
        let shaped = text.len() >= 8
            && text
                .bytes()
                .take(10)
                .all(|b| b.is_ascii_digit() || b == b'-')
            && text.bytes().filter(|b| *b == b'-').count() >= 2;
        return if shaped { "22008" } else { "22007" };
    }
    if message.starts_with("Cannot cast value '") {
        // Text that is no value of the target (`'12'::boolean`).
        return "22P02";
    }
    if message.starts_with("Can't cast value")
        || message.contains("is out of range")
        || message.contains("Overflowing on")
        || message.contains("overflow")
    {
        return NUMERIC_VALUE_OUT_OF_RANGE;
    }
    "22000"
}

/// An OmenDB error as a PostgreSQL `ERROR`.
pub fn from_db(error: &omendb::Error) -> PgWireError {
    PgWireError::UserError(Box::new(db_info(error)))
}

/// An OmenDB error as a PostgreSQL error body. Errors that need an operator say what to do
/// with the server (the library's messages speak of the WAL and `Db`).
pub fn db_info(error: &omendb::Error) -> ErrorInfo {
    let code = code(error);
    let mut message = match error {
        // A value's error, wrapped in the optimizer rule or operator that met it: the
        // value's own message is the one a user can act on.
        omendb::Error::Sql(inner) => match inner.find_root() {
            DataFusionError::ArrowError(arrow, _) => arrow.to_string(),
            _ => error.to_string(),
        },
        _ => error.to_string(),
    };
    if code == DISK_FULL
        || matches!(
            error,
            omendb::Error::Wal(omendb::wal::WalError::Poisoned { .. })
        )
    {
        message.push_str(
            "; every acknowledged write is safe: free disk space, then restart omendb serve \
             (writes stay refused until then; reads go on)",
        );
    }
    info("ERROR", code, message)
}
