//! `omen-bench all`: every report in one directory, at a small or full scale, with an index
//! (`README.md`) that puts each report's headline table and first plot on one page.
//!
//! The suites run one after another (never in parallel: each measures against a baseline
//! in the same run, and two suites at once would disturb each other's timings). A suite
//! that fails is recorded in the index and the others still run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;

use crate::datasets::Distribution;
use crate::db_report::{self, DbReportOptions};
use crate::replicator_report::{self, ReplicatorReportOptions};
use crate::report::{self, AlexReportOptions};
use crate::sql_bench::{self, SqlBenchOptions};
use crate::wal_report::{self, WalReportOptions};

/// How big the runs are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scale {
    /// About a tenth of the data and time: minutes on two cores. The figures show the shape;
    /// the headline targets are stated for the full scale.
    Small,
    /// The sizes the targets are stated for (10M keys and rows): most of an hour.
    Full,
}

/// One suite's outcome.
struct Outcome {
    name: &'static str,
    elapsed: Duration,
    report: Result<PathBuf, String>,
}

/// Runs every suite at `scale` into `out`, then writes `out/README.md`. Returns the index's
/// path, or an error naming the suites that failed (the index is written either way).
pub fn run(scale: Scale, out: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let full = scale == Scale::Full;
    let pick = |small: usize, full_size: usize| if full { full_size } else { small };
    let mut outcomes = Vec::new();
    let mut suite = |name: &'static str, run: &mut dyn FnMut() -> Result<PathBuf, String>| {
        eprintln!("== omen-bench all: {name} ==");
        let start = Instant::now();
        let report = run();
        if let Err(error) = &report {
            eprintln!("{name} failed: {error}");
        }
        outcomes.push(Outcome {
            name,
            elapsed: start.elapsed(),
            report,
        });
    };
    suite("ALEX vs BTreeMap vs RocksDB", &mut || {
        let keys = pick(1_000_000, 10_000_000);
        report::run(&AlexReportOptions {
            keys,
            inserts: keys / 10,
            lookups: pick(500_000, 2_000_000),
            scans: pick(20_000, 100_000),
            distributions: Distribution::ALL.to_vec(),
            out: out.to_path_buf(),
            scratch: report::default_scratch(),
        })
        .map_err(|e| e.to_string())
    });
    suite("WAL vs RocksDB's WAL", &mut || {
        wal_report::run(&WalReportOptions {
            threads: vec![1, 4, 16],
            records_per_thread: pick(100_000, 1_000_000) as u64,
            duration: Duration::from_secs(pick(2, 5) as u64),
            recovery_log_bytes: 64 << 20,
            reopens: pick(5, 20),
            out: out.to_path_buf(),
        })
        .map_err(|e| e.to_string())
    });
    suite("WAL to Parquet replication", &mut || {
        replicator_report::run(&ReplicatorReportOptions {
            rows: pick(1_000_000, 10_000_000) as u64,
            record_rows: 1000,
            overhead_threads: 4,
            overhead_record_rows: 100,
            overhead_duration: Duration::from_secs(pick(3, 8) as u64),
            overhead_rounds: pick(3, 6),
            lag_rows_per_s: 50_000,
            lag_record_rows: 100,
            lag_duration: Duration::from_secs(pick(10, 30) as u64),
            out: out.to_path_buf(),
            parquet_dir: None,
        })
        .map_err(|e| e.to_string())
    });
    suite(
        "Db: point reads, SQL points, freshness, isolation",
        &mut || {
            let rows = pick(1_000_000, 10_000_000).to_string();
            let lookups = pick(500_000, 2_000_000).to_string();
            let out_arg = out.display().to_string();
            let mut args = vec![
                "db",
                "--rows",
                &rows,
                "--lookups",
                &lookups,
                "--out",
                &out_arg,
            ];
            if !full {
                args.extend(["--sql-queries", "1000", "--fresh-seconds", "10"]);
                args.extend(["--iso-seconds", "3", "--iso-pairs", "1"]);
            }
            let options = parse::<DbReportOptions>(&args)?;
            db_report::run(&options).map_err(|e| e.to_string())
        },
    );
    suite("SQL GROUP BY vs DuckDB", &mut || {
        let rows = pick(1_000_000, 10_000_000).to_string();
        let out_arg = out.display().to_string();
        let runs = pick(3, 7).to_string();
        let args = [
            "sql-groupby",
            "--rows",
            &rows,
            "--runs",
            &runs,
            "--out",
            &out_arg,
        ];
        let options = parse::<SqlBenchOptions>(&args)?;
        sql_bench::run(&options).map_err(|e| e.to_string())
    });
    let index = out.join("README.md");
    std::fs::write(&index, index_text(scale, &outcomes))
        .map_err(|e| format!("write {}: {e}", index.display()))?;
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.report.is_err())
        .map(|o| o.name)
        .collect();
    if failed.is_empty() {
        Ok(index)
    } else {
        Err(format!(
            "{} failed (see {})",
            failed.join(", "),
            index.display()
        ))
    }
}

/// Options of a suite from command-line words (its defaults for everything not given).
fn parse<T: clap::Args>(args: &[&str]) -> Result<T, String> {
    #[derive(Parser)]
    struct Wrapper<T: clap::Args> {
        #[command(flatten)]
        options: T,
    }
    Wrapper::<T>::try_parse_from(args)
        .map(|w| w.options)
        .map_err(|e| e.to_string())
}

/// The index: per suite, its title, run time, headline table and first plot, and a link.
fn index_text(scale: Scale, outcomes: &[Outcome]) -> String {
    let mut text = String::from("# OmenDB benchmark report\n\n");
    let _ = writeln!(
        text,
        "Generated by `omen-bench all --scale {}` (or `omendb bench`), each suite against its \
         baselines in the same run, one suite at a time. {}\n",
        if scale == Scale::Full {
            "full"
        } else {
            "small"
        },
        if scale == Scale::Full {
            "Full scale: the sizes the targets are stated for."
        } else {
            "Small scale: about a tenth of the data, so figures that depend on size (lookups \
             over 10M keys, catch-up of 10M rows) are not the headline ones."
        }
    );
    for outcome in outcomes {
        let _ = writeln!(
            text,
            "## {} ({:.0} s)\n",
            outcome.name,
            outcome.elapsed.as_secs_f64()
        );
        match &outcome.report {
            Err(error) => {
                let _ = writeln!(text, "**Failed:** {error}\n");
            }
            Ok(path) => {
                let body = std::fs::read_to_string(path).unwrap_or_default();
                let name = path
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                let _ = writeln!(text, "Full report: [{name}]({name})\n");
                if let Some(table) = headline_table(&body) {
                    let _ = writeln!(text, "{table}\n");
                }
                if let Some(plot) = body.lines().find(|l| l.trim_start().starts_with("![")) {
                    let _ = writeln!(text, "{}\n", plot.trim());
                }
            }
        }
    }
    text
}

/// The table under a report's "Targets" heading, else its first table.
fn headline_table(body: &str) -> Option<String> {
    let lines: Vec<&str> = body.lines().collect();
    let table_at = |from: usize| -> Option<String> {
        let start = (from..lines.len()).find(|&i| lines[i].starts_with('|'))?;
        let end = (start..lines.len())
            .find(|&i| !lines[i].starts_with('|'))
            .unwrap_or(lines.len());
        Some(lines[start..end].join("\n"))
    };
    let targets = lines
        .iter()
        .position(|l| l.starts_with('#') && l.to_lowercase().contains("target"));
    targets.and_then(table_at).or_else(|| table_at(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_headline_is_the_targets_table_or_else_the_first() {
        let report = "# R\n\n| a |\n|---|\n| 1 |\n\n## Targets\n\n| t | v |\n|---|---|\n| x | MET |\n\ntext\n";
        assert_eq!(
            headline_table(report).as_deref(),
            Some("| t | v |\n|---|---|\n| x | MET |")
        );
        assert_eq!(
            headline_table("# R\n| a |\n| 1 |\nend").as_deref(),
            Some("| a |\n| 1 |")
        );
        assert_eq!(headline_table("# no tables"), None);
    }

    #[test]
    fn suite_options_parse_with_defaults() {
        let options = parse::<SqlBenchOptions>(&["sql-groupby", "--rows", "1000"]).expect("parse");
        assert_eq!(options.rows, 1000);
        assert!(parse::<SqlBenchOptions>(&["sql-groupby", "--no-such-flag"]).is_err());
    }
}
