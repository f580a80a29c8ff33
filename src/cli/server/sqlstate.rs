//! PostgreSQL error codes (SQLSTATE) for OmenDB errors, so that drivers can tell bad SQL
//! (class 42), bad data (22, 23) and unsupported features (0A) from server failures (XX).

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
    use omendb::Error;
    match error {
        Error::Sql(error) => datafusion_code(error),
        Error::Unsupported(_) => FEATURE_NOT_SUPPORTED,
        Error::NoSuchTable(_) => "42P01",
        Error::TableExists(_) => "42P07",
        Error::InvalidSchema { .. } => "42P16",
        Error::BadRow { reason, .. } if reason.contains("NOT NULL") => "23502",
        Error::BadRow { .. } => "42804",
        Error::DuplicateKey { .. } => "23505",
        // Backpressure: the client may retry.
        Error::Replicator(_) => "53000",
        _ => INTERNAL_ERROR,
    }
}

fn datafusion_code(error: &DataFusionError) -> &'static str {
    match error.find_root() {
        DataFusionError::SQL(..) => SYNTAX_ERROR,
        DataFusionError::NotImplemented(_) => FEATURE_NOT_SUPPORTED,
        DataFusionError::SchemaError(..) => "42703",
        DataFusionError::Plan(message) => {
            if message.contains("not found") && message.contains("able") {
                "42P01"
            } else if message.contains("field") || message.contains("column") {
                "42703"
            } else {
                "42000"
            }
        }
        DataFusionError::ArrowError(..) | DataFusionError::Execution(_) => "22000",
        _ => INTERNAL_ERROR,
    }
}

/// An OmenDB error as a PostgreSQL `ERROR`.
pub fn from_db(error: &omendb::Error) -> PgWireError {
    PgWireError::UserError(Box::new(db_info(error)))
}

/// An OmenDB error as a PostgreSQL error body.
pub fn db_info(error: &omendb::Error) -> ErrorInfo {
    info("ERROR", code(error), error.to_string())
}
