//! The configuration file (`--config FILE`, TOML). Every key is optional; flags override it,
//! and `OMENDB_USER` / `OMENDB_PASSWORD` override the server's credentials.
//!
//! ```toml
//! dir = "/var/lib/omendb"   # database directory of `sql` and `serve`
//! log = "info"              # log filter (RUST_LOG syntax)
//!
//! [server]
//! listen = "127.0.0.1:5433"
//! user = "omendb"
//! password = "change me"
//! max_connections = 64
//! metrics_listen = "127.0.0.1:9187"   # Prometheus `GET /metrics` (off when absent)
//! statement_timeout_ms = 0            # each session's default statement_timeout (0: none)
//! query_memory_mb = 2048             # memory of one query's sorts, aggregations and joins
//! total_query_memory_mb = 4096       # the same for all queries together, suspended ones too
//! query_spill_mb = 16384             # temporary disk one query's sorts may spill to
//! max_value_mb = 1024                # the largest value a function or `||` may build
//! transaction_memory_mb = 64         # a transaction's writes in memory; beyond, they spill
//! max_transaction_mb = 65536         # the most one transaction or statement may write
//! login_timeout_ms = 10000            # time a client has to log in
//! max_pending_logins = 64             # connections logging in at once (besides sessions)
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::CliError;

/// The default database directory of `sql` and `serve`.
pub const DEFAULT_DIR: &str = "omendb-data";
/// The default listen address of `serve`: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5433";
/// The default connection limit of `serve`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// The default user name of `serve`.
pub const DEFAULT_USER: &str = "omendb";
/// Default `login_timeout_ms`: a client has 10 s to log in.
pub const DEFAULT_LOGIN_TIMEOUT_MS: u64 = 10_000;
/// Default `max_pending_logins`.
pub const DEFAULT_MAX_PENDING_LOGINS: usize = 64;

/// The configuration file's contents.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The database directory.
    pub dir: Option<PathBuf>,
    /// The log filter.
    pub log: Option<String>,
    /// `omendb serve` settings.
    #[serde(default)]
    pub server: ServerConfig,
}

/// The `[server]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The address to listen on.
    pub listen: Option<String>,
    /// The user name clients log in with.
    pub user: Option<String>,
    /// The password clients log in with (SCRAM-SHA-256).
    pub password: Option<String>,
    /// Connections served at once.
    pub max_connections: Option<usize>,
    /// Where to serve Prometheus metrics (`GET /metrics`); off when absent.
    pub metrics_listen: Option<String>,
    /// The default `statement_timeout` of each session, in milliseconds (0 or absent: none;
    /// a session may `SET statement_timeout`).
    pub statement_timeout_ms: Option<u64>,
    /// Memory each query's operators may use, in MiB (default 2048); sorts and aggregations
    /// spill to disk beyond it, other operators fail with `53200`.
    pub query_memory_mb: Option<usize>,
    /// Memory all queries' operators together may use, in MiB (default 4096), those of
    /// suspended portals included; past it as past `query_memory_mb`.
    pub total_query_memory_mb: Option<usize>,
    /// Temporary disk each query's sorts and aggregations may spill to, in MiB (default
    /// 16384); past it the query fails with `53400`, as PostgreSQL past `temp_file_limit`.
    pub query_spill_mb: Option<u64>,
    /// The largest value (string, binary, list) a function or `||` may build, in MiB
    /// (default 1024, as PostgreSQL); larger ones are refused with `54000` before they are
    /// built.
    pub max_value_mb: Option<usize>,
    /// Memory a transaction's writes may hold, in MiB (default 64): beyond, they spill to a
    /// temporary file in the database directory.
    pub transaction_memory_mb: Option<usize>,
    /// The most one transaction (or statement) may write, in MiB (default 65536); beyond,
    /// its statement fails with `54000` and applies nothing.
    pub max_transaction_mb: Option<u64>,
    /// How long a connection may take to log in, in milliseconds (default 10 s).
    pub login_timeout_ms: Option<u64>,
    /// Connections that may be logging in at once, besides the logged-in sessions (default
    /// 64); more are answered `53300` and closed.
    pub max_pending_logins: Option<usize>,
}

impl Config {
    /// Reads `path`, or gives the defaults when there is none.
    pub fn load(path: Option<&Path>) -> Result<Self, CliError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| CliError::Config {
            path: path.to_path_buf(),
            reason: format!("cannot read it: {e}"),
        })?;
        Self::parse(&text).map_err(|reason| CliError::Config {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The database directory: the flag, else the file's, else `default`.
    pub fn dir(&self, flag: Option<&Path>, default: &str) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| self.dir.clone())
            .unwrap_or_else(|| PathBuf::from(default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key_and_rejects_unknown_ones() {
        let config = Config::parse(
            "dir = \"d\"\nlog = \"info\"\n[server]\nlisten = \"127.0.0.1:1\"\nuser = \"u\"\n\
             password = \"p\"\nmax_connections = 3\n",
        )
        .expect("valid config");
        assert_eq!(config.dir, Some(PathBuf::from("d")));
        assert_eq!(config.server.max_connections, Some(3));
        assert_eq!(config.server.password.as_deref(), Some("p"));
        assert!(Config::parse("dri = \"typo\"").is_err());
    }
}
