//! `omen-bench`: runs a benchmark report. `omen-bench alex` compares the learned index with
//! `BTreeMap` and RocksDB and writes `bench-report/alex.md` with SVG plots; `omen-bench wal`
//! compares the write-ahead log with RocksDB's and writes `bench-report/wal.md`;
//! `omen-bench replicator` measures WAL-to-Parquet replication and writes
//! `bench-report/replicator.md`; `db` and `sql-groupby` measure the facade; `all` runs every
//! one of them and writes an index, `bench-report/README.md`.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use omen_bench::alloc_counter::CountingAllocator;
use omen_bench::datasets::Distribution;
use omen_bench::db_report::{self, DbReportOptions};
use omen_bench::replicator_report::{self, ReplicatorReportOptions};
use omen_bench::report::{self, AlexReportOptions};
use omen_bench::sql_bench::{self, SqlBenchOptions};
use omen_bench::suite::{self, Scale};
use omen_bench::wal_report::{self, WalReportOptions};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[derive(Parser)]
#[command(version, about = "OmenDB benchmark reports")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every report below, one after another, into one directory with an index
    /// (`README.md`) of the headline tables and plots. This is what `omendb bench` runs.
    All {
        /// Small: about a tenth of the data (minutes); full: the sizes the targets are
        /// stated for (most of an hour on two cores).
        #[arg(long, value_enum, default_value = "small")]
        scale: Scale,
        /// Directory for the reports.
        #[arg(long, default_value = "bench-report")]
        out: PathBuf,
    },
    /// The Db: get vs RocksDB, SQL point queries, freshness, isolation.
    Db(DbReportOptions),
    /// GROUP BY over 10M rows: OmenDB's SQL vs DuckDB on the same Parquet files.
    SqlGroupby(SqlBenchOptions),
    /// ALEX vs BTreeMap vs RocksDB: bulk load, lookups, chains, scans, inserts, memory.
    Alex {
        /// Keys bulk loaded per distribution.
        #[arg(long, default_value_t = 10_000_000)]
        keys: usize,
        /// Keys inserted after the load (default: a tenth of --keys).
        #[arg(long)]
        inserts: Option<usize>,
        /// Random lookups per measurement.
        #[arg(long, default_value_t = 2_000_000)]
        lookups: usize,
        /// 100-key range scans per measurement.
        #[arg(long, default_value_t = 100_000)]
        scans: usize,
        /// Distributions to run (default: all four).
        #[arg(long, value_enum, value_delimiter = ',')]
        distributions: Vec<Distribution>,
        /// Directory for the report.
        #[arg(long, default_value = "bench-report")]
        out: PathBuf,
        /// Keep the heap on 4 KiB pages with glibc's default trimming (by default the run
        /// re-executes itself with huge pages and no trimming, for every structure alike).
        #[arg(long)]
        no_huge_pages: bool,
    },
    /// omen-wal's sync modes vs RocksDB's WAL: appends/s and latency by thread count, and
    /// recovery time of a 64 MiB log.
    Wal {
        /// Most records one writer thread appends per configuration.
        #[arg(long, default_value_t = 1_000_000)]
        records_per_thread: u64,
        /// Most seconds one configuration runs.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Writer thread counts.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 4, 16])]
        threads: Vec<usize>,
        /// Times the 64 MiB log is reopened for the recovery figures.
        #[arg(long, default_value_t = 20)]
        reopens: usize,
        /// Directory for the report (scratch directories go below it, on the same disk).
        #[arg(long, default_value = "bench-report")]
        out: PathBuf,
    },
    /// omen-replicator: rows/s draining a WAL backlog into Parquet, durable writers with and
    /// without a replicator running, commit-to-Parquet lag and snapshot staleness at a steady
    /// rate.
    Replicator {
        /// Rows of the backlog drained (the catch-up target is for 10,000,000).
        #[arg(long, default_value_t = 10_000_000)]
        rows: u64,
        /// Rows per WAL record of the backlog.
        #[arg(long, default_value_t = 1000)]
        record_rows: usize,
        /// Durable (group-commit) writer threads of the overhead runs.
        #[arg(long, default_value_t = 4)]
        overhead_threads: usize,
        /// Rows per record of the overhead runs.
        #[arg(long, default_value_t = 100)]
        overhead_record_rows: usize,
        /// Seconds of one overhead run.
        #[arg(long, default_value_t = 8.0)]
        overhead_seconds: f64,
        /// Pairs of overhead runs (without and with a replicator, order alternating).
        #[arg(long, default_value_t = 6)]
        overhead_rounds: usize,
        /// Rows per second of the lag run.
        #[arg(long, default_value_t = 50_000)]
        lag_rows_per_s: u64,
        /// Rows per record of the lag run.
        #[arg(long, default_value_t = 100)]
        lag_record_rows: usize,
        /// Seconds of the lag run.
        #[arg(long, default_value_t = 30.0)]
        lag_seconds: f64,
        /// Directory for the report (scratch directories go below it, on the same disk).
        #[arg(long, default_value = "bench-report")]
        out: PathBuf,
        /// Directory for the replicator's Parquet files (default: next to the WAL, on the
        /// report's disk); a tmpfs here tells the disk's share of a cost from the CPU's.
        #[arg(long)]
        parquet_dir: Option<PathBuf>,
    },
}

/// Re-executes this process with glibc's transparent-huge-page heap, unless the environment
/// already chooses glibc tunables. Random lookups over gigabytes of heap then pay far fewer
/// TLB misses, for ALEX, `BTreeMap` and RocksDB alike; the report says which mode ran.
fn use_huge_pages() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", HUGE_PAGE_TUNABLE)
        .exec();
    eprintln!("warning: could not re-run with huge pages ({error}); continuing without");
}

/// Huge pages for the heap, and freed memory kept for reuse (no trimming; allocations up to
/// 32 MiB from the heap), so that repeated loads reuse pages instead of faulting fresh ones.
const HUGE_PAGE_TUNABLE: &str = "glibc.malloc.hugetlb=1:glibc.malloc.trim_threshold=68719476736:glibc.malloc.mmap_threshold=33554432";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::All { scale, out } => {
            use_huge_pages();
            finish(suite::run(scale, &out))
        }
        Command::Db(options) => {
            if !options.no_huge_pages {
                use_huge_pages();
            }
            finish(db_report::run(&options))
        }
        Command::SqlGroupby(options) => finish(sql_bench::run(&options)),
        Command::Alex {
            keys,
            inserts,
            lookups,
            scans,
            distributions,
            out,
            no_huge_pages,
        } => {
            if !no_huge_pages {
                use_huge_pages();
            }
            if keys < 1000 {
                eprintln!("error: --keys must be at least 1000");
                return ExitCode::FAILURE;
            }
            let options = AlexReportOptions {
                keys,
                inserts: inserts.unwrap_or(keys / 10),
                lookups,
                scans,
                distributions: if distributions.is_empty() {
                    Distribution::ALL.to_vec()
                } else {
                    distributions
                },
                out,
                scratch: report::default_scratch(),
            };
            finish(report::run(&options))
        }
        Command::Wal {
            records_per_thread,
            seconds,
            threads,
            reopens,
            out,
        } => {
            let Ok(duration) = Duration::try_from_secs_f64(seconds) else {
                eprintln!("error: --seconds must be a non-negative number");
                return ExitCode::FAILURE;
            };
            if threads.is_empty() || threads.contains(&0) || records_per_thread == 0 || reopens == 0
            {
                eprintln!("error: --threads, --records-per-thread and --reopens must be positive");
                return ExitCode::FAILURE;
            }
            let options = WalReportOptions {
                threads,
                records_per_thread,
                duration,
                recovery_log_bytes: 64 << 20,
                reopens,
                out,
            };
            finish(wal_report::run(&options))
        }
        Command::Replicator {
            rows,
            record_rows,
            overhead_threads,
            overhead_record_rows,
            overhead_seconds,
            overhead_rounds,
            lag_rows_per_s,
            lag_record_rows,
            lag_seconds,
            out,
            parquet_dir,
        } => {
            let (Ok(overhead_duration), Ok(lag_duration)) = (
                Duration::try_from_secs_f64(overhead_seconds),
                Duration::try_from_secs_f64(lag_seconds),
            ) else {
                eprintln!("error: --overhead-seconds and --lag-seconds must be non-negative");
                return ExitCode::FAILURE;
            };
            let counts = [
                rows,
                record_rows as u64,
                overhead_threads as u64,
                overhead_record_rows as u64,
                overhead_rounds as u64,
                lag_rows_per_s,
                lag_record_rows as u64,
            ];
            if counts.contains(&0) {
                eprintln!("error: row, record, thread, round and rate counts must be positive");
                return ExitCode::FAILURE;
            }
            let options = ReplicatorReportOptions {
                rows,
                record_rows,
                overhead_threads,
                overhead_record_rows,
                overhead_duration,
                overhead_rounds,
                lag_rows_per_s,
                lag_record_rows,
                lag_duration,
                out,
                parquet_dir,
            };
            finish(replicator_report::run(&options))
        }
    }
}

/// Prints the report at `path` (or why there is none) and the exit code to return.
fn finish(outcome: Result<PathBuf, impl Display>) -> ExitCode {
    match outcome {
        Ok(path) => {
            print_report(&path);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: benchmark failed: {error}");
            ExitCode::FAILURE
        }
    }
}

fn print_report(path: &Path) {
    match std::fs::read_to_string(path) {
        Ok(text) => println!("{text}"),
        Err(error) => eprintln!("report written but unreadable: {error}"),
    }
    println!("report: {}", path.display());
}
