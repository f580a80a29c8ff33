//! The command line: arguments, configuration, logging, and one module per command.

mod bench;
mod config;
mod demo;
mod error;
mod format;
mod server;
mod shell;
mod statements;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use config::Config;
pub use error::CliError;

/// OmenDB: an embedded HTAP database with a learned index, a write-ahead log and fresh SQL
/// analytics over Parquet.
#[derive(Debug, Parser)]
#[command(name = "omendb", version, about, propagate_version = true)]
pub struct Cli {
    /// A TOML configuration file (see docs/cli.md); flags override its values.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log filter, as in RUST_LOG (for example `info` or `omendb=debug`); default `warn`, or
    /// the config's `log`.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a demo data set, run a mixed workload and print routes, latencies and tiers.
    Demo(DemoArgs),
    /// An interactive SQL shell, or run SQL from `-c`, a file or standard input.
    Sql(SqlArgs),
    /// Serve the database over the PostgreSQL wire protocol.
    Serve(ServeArgs),
    /// Run the benchmark suite against its baselines and write a report with plots.
    Bench(BenchArgs),
}

/// Arguments of `omendb bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Small (default): about a tenth of the data, minutes on two cores. Full: the sizes the
    /// headline targets are stated for (10M keys and rows), most of an hour.
    #[arg(long, value_enum, default_value = "small")]
    pub scale: BenchScale,
    /// Directory for the report (`README.md` indexes it).
    #[arg(long, default_value = "bench-report", value_name = "DIR")]
    pub out: PathBuf,
}

/// Sizes of `omendb bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchScale {
    /// About a tenth of the data.
    Small,
    /// The headline sizes.
    Full,
}

/// Arguments of `omendb demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The database directory (its demo tables are replaced). Default: `omendb-demo`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Orders to load (customers: a tenth of that).
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub rows: u64,
    /// Operations of each kind in the mixed workload.
    #[arg(long, default_value_t = 2_000, value_name = "N")]
    pub ops: u64,
    /// Do not draw progress bars (they are hidden anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// Arguments of `omendb sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The database directory. Default: the config's `dir`, else `omendb-data`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Run this SQL (statements and backslash commands) and exit.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub command: Option<String>,
    /// Run the SQL in this file (`-` for standard input) and exit.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print each statement's run time (as `\timing on` does).
    #[arg(long)]
    pub timing: bool,
}

/// Arguments of `omendb serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The database directory. Default: the config's `dir`, else `omendb-data`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The address to listen on. Default: the config's `server.listen`, else 127.0.0.1:5433.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Connections served at once; more are refused with SQLSTATE 53300. Default 64.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Also serve Prometheus metrics (`GET /metrics`: replication lag, tiers, routes,
    /// latencies) on this address, e.g. 127.0.0.1:9187. Default: the config's
    /// `server.metrics_listen`, else off.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let config = Config::load(cli.config.as_deref())?;
    init_logging(cli.log.as_deref().or(config.log.as_deref()));
    match cli.command {
        Command::Demo(args) => demo::run(&config, args),
        Command::Sql(args) => shell::run(&config, args),
        Command::Serve(args) => server::run(&config, args),
        Command::Bench(args) => bench::run(args),
    }
}

fn init_logging(filter: Option<&str>) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| filter.map(str::to_string))
        .unwrap_or_else(|| "warn".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Logs go to stderr so that query output on stdout stays clean.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
