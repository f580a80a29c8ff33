//! The replicator report: WAL-to-Parquet throughput and catch-up, the cost of a running
//! replicator to durable writers, and commit-to-Parquet lag with snapshot staleness at a steady
//! rate; written as Markdown with SVG plots, targets marked MET or MISS.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use omen_replicator::ReplicatorOptions;

use crate::plot::{self, Line};
use crate::replicator_bench::{
    CatchUpResult, LagLoad, LagResult, OverheadRun, ReplicatorBenchError, measure_catch_up,
    measure_lag, measure_overhead,
};
use crate::wal_bench::Latency;

/// Rows per second the replicator must sustain.
pub const THROUGHPUT_TARGET: f64 = 1_000_000.0;
/// Rows of the catch-up target.
pub const CATCH_UP_ROWS: u64 = 10_000_000;
/// Time to drain [`CATCH_UP_ROWS`] into Parquet.
pub const CATCH_UP_TARGET: Duration = Duration::from_secs(15);
/// Most throughput durable writers may lose to a running replicator.
pub const OVERHEAD_TARGET: f64 = 0.05;
/// p99 of commit-to-Parquet lag at a steady rate.
pub const LAG_TARGET: Duration = Duration::from_millis(5100);

/// What to run.
#[derive(Clone, Debug)]
pub struct ReplicatorReportOptions {
    /// Rows of the backlog drained.
    pub rows: u64,
    /// Rows per WAL record of the backlog.
    pub record_rows: usize,
    /// Durable writer threads of the overhead runs.
    pub overhead_threads: usize,
    /// Rows per record of the overhead runs.
    pub overhead_record_rows: usize,
    /// Length of one overhead run.
    pub overhead_duration: Duration,
    /// Pairs of runs (without and with a replicator, order alternating).
    pub overhead_rounds: usize,
    /// Rows per second of the lag run.
    pub lag_rows_per_s: u64,
    /// Rows per record of the lag run.
    pub lag_record_rows: usize,
    /// Length of the lag run.
    pub lag_duration: Duration,
    /// Directory for the report and plots; scratch directories go below it.
    pub out: PathBuf,
    /// Where the replicator's Parquet files go instead of next to the WAL (another disk, or a
    /// tmpfs to tell the disk's share of a cost from the CPU's).
    pub parquet_dir: Option<PathBuf>,
}

/// Every figure of the report.
pub struct ReplicatorFigures {
    /// The backlog drained.
    pub catch_up: CatchUpResult,
    /// Overhead runs in the order they ran.
    pub overhead: Vec<OverheadRun>,
    /// The steady-rate run.
    pub lag: LagResult,
}

impl ReplicatorFigures {
    fn mean_records_per_s(&self, replicator: bool) -> f64 {
        let runs: Vec<f64> = self
            .overhead
            .iter()
            .filter(|r| r.replicator == replicator)
            .map(OverheadRun::records_per_s)
            .collect();
        runs.iter().sum::<f64>() / runs.len().max(1) as f64
    }

    /// Fraction of durable write throughput lost with the replicator running, per round (a
    /// round is one run without and one with, back to back; negative: a gain, i.e. noise).
    pub fn round_losses(&self) -> Vec<f64> {
        self.overhead
            .chunks_exact(2)
            .filter_map(|pair| {
                let with = pair.iter().find(|r| r.replicator)?.records_per_s();
                let without = pair.iter().find(|r| !r.replicator)?.records_per_s();
                Some(1.0 - with / without.max(1e-9))
            })
            .collect()
    }

    /// The overhead: the median of the rounds' losses. Each round compares two runs made back
    /// to back, and the median ignores the rounds a noisy neighbour hit (the machine is
    /// shared: see the "other cores" column).
    pub fn overhead(&self) -> f64 {
        let mut losses = self.round_losses();
        if losses.is_empty() {
            return 0.0;
        }
        losses.sort_by(f64::total_cmp);
        let mid = losses.len() / 2;
        if losses.len() % 2 == 1 {
            losses[mid]
        } else {
            (losses[mid - 1] + losses[mid]) / 2.0
        }
    }

    /// Loss of the mean throughputs over all runs (reported next to the median).
    pub fn mean_loss(&self) -> f64 {
        1.0 - self.mean_records_per_s(true) / self.mean_records_per_s(false).max(1e-9)
    }
}

/// Runs every measurement, writes `replicator.md` and the plots to `options.out`, returns the
/// path of `replicator.md`.
pub fn run(options: &ReplicatorReportOptions) -> Result<PathBuf, ReplicatorBenchError> {
    std::fs::create_dir_all(&options.out)?;
    let scratch = options
        .out
        .join(format!("replicator-scratch-{}", std::process::id()));
    let lag_seconds = options.lag_duration.as_secs().max(1);
    let steps = 2 + 2 * options.overhead_rounds as u64 + lag_seconds;
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let outcome = measure_all(options, &scratch, &bar);
    let _ = std::fs::remove_dir_all(&scratch);
    let figures = outcome?;
    bar.finish_with_message("done");

    let path = options.out.join("replicator.md");
    std::fs::write(&path, render(options, &figures))?;
    write_plots(&options.out, &figures).map_err(std::io::Error::other)?;
    Ok(path)
}

fn measure_all(
    options: &ReplicatorReportOptions,
    scratch: &Path,
    bar: &ProgressBar,
) -> Result<ReplicatorFigures, ReplicatorBenchError> {
    let parquet_root = options.parquet_dir.as_deref();
    let catch_up = measure_catch_up(
        scratch,
        parquet_root,
        options.rows,
        options.record_rows,
        |message| {
            bar.set_message(message.to_string());
        },
    )?;
    bar.inc(2);
    bar.println(format!(
        "catch-up: {} rows in {:.2} s ({:.0} rows/s), read in {:.2} s, {} files, process CPU {}",
        catch_up.rows,
        catch_up.flushed.as_secs_f64(),
        catch_up.rows_per_s(),
        catch_up.read.as_secs_f64(),
        catch_up.files_written,
        seconds(catch_up.cpu.process),
    ));
    settle();

    let mut overhead = Vec::new();
    for round in 0..options.overhead_rounds {
        // Alternate which goes first, so that drift on the shared disk hits both alike.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for with_replicator in order {
            bar.set_message(format!(
                "writer overhead, round {}: {} replicator",
                round + 1,
                if with_replicator { "with" } else { "without" }
            ));
            let run = measure_overhead(
                scratch,
                parquet_root,
                options.overhead_threads,
                options.overhead_record_rows,
                options.overhead_duration,
                with_replicator,
            )?;
            bar.println(format!(
                "overhead round {} {:<18} {:>8.0} records/s ({:.2}M rows/s), append p50 {:.0} µs p99 {:.0} µs",
                round + 1,
                if with_replicator {
                    "with replicator"
                } else {
                    "without replicator"
                },
                run.records_per_s(),
                run.rows_per_s() / 1e6,
                micros(run.latency.p50),
                micros(run.latency.p99),
            ));
            overhead.push(run);
            settle();
            bar.inc(1);
        }
    }

    bar.set_message(format!(
        "lag at {} rows/s for {:.0} s",
        options.lag_rows_per_s,
        options.lag_duration.as_secs_f64()
    ));
    let load = LagLoad {
        rows_per_s: options.lag_rows_per_s,
        record_rows: options.lag_record_rows,
        duration: options.lag_duration,
        snapshot_every: 25,
    };
    let lag = measure_lag(scratch, parquet_root, load, || bar.inc(1))?;
    bar.println(format!(
        "lag: {} commits, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; staleness misses {} of {}",
        lag.commits,
        millis(lag.lag.p50),
        millis(lag.lag.p99),
        millis(lag.lag.max),
        lag.staleness.missing,
        lag.staleness.samples,
    ));
    Ok(ReplicatorFigures {
        catch_up,
        overhead,
        lag,
    })
}

/// Writes back what the last run left dirty and waits (up to 10 s) for the machine to go
/// quiet, so that one run's writeback does not slow the next.
fn settle() {
    let _ = std::process::Command::new("sync").status();
    crate::usage::wait_for_quiet(0.1, Duration::from_secs(10));
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn seconds(duration: Option<Duration>) -> String {
    duration.map_or("–".to_string(), |d| format!("{:.2} s", d.as_secs_f64()))
}

fn verdict(met: bool) -> &'static str {
    if met { "**MET**" } else { "**MISS**" }
}

fn millions(value: f64) -> String {
    format!("{:.2}M", value / 1e6)
}

fn render(options: &ReplicatorReportOptions, figures: &ReplicatorFigures) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# omen-replicator: WAL to Parquet\n");
    let _ = writeln!(
        md,
        "Generated by `cargo run --release -p omen-bench -- replicator --rows {} --record-rows {} \
         --overhead-threads {} --overhead-record-rows {} --overhead-seconds {} \
         --overhead-rounds {} --lag-rows-per-s {} --lag-record-rows {} --lag-seconds {}{}` on \
         {} ({} CPUs). Rows have five columns: `id BIGINT` (the key), `qty BIGINT`, `price DOUBLE`, \
         `sku TEXT` of 8–16 characters, `at TIMESTAMP`, about 52 bytes each in a change record. \
         The replicator runs with default options ({} rows or {} s per sealed batch, files up \
         to {} rows, zstd). All figures from the same run; every measurement starts in a fresh \
         directory next to the report, on the same disk; {}.\n",
        options.rows,
        options.record_rows,
        options.overhead_threads,
        options.overhead_record_rows,
        options.overhead_duration.as_secs_f64(),
        options.overhead_rounds,
        options.lag_rows_per_s,
        options.lag_record_rows,
        options.lag_duration.as_secs_f64(),
        options
            .parquet_dir
            .as_ref()
            .map_or(String::new(), |d| format!(" --parquet-dir {}", d.display())),
        std::env::consts::ARCH,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        ReplicatorOptions::default().max_batch_rows,
        ReplicatorOptions::default().max_batch_age.as_secs(),
        ReplicatorOptions::default().max_file_rows,
        match &options.parquet_dir {
            Some(dir) => format!(
                "the replicator's Parquet files go below `{}` instead",
                dir.display()
            ),
            None => "the replicator's Parquet files go next to the WAL".to_string(),
        },
    );
    if let Some(revision) = source_revision() {
        let _ = writeln!(md, "Measured at {revision}.\n");
    }
    render_targets(&mut md, figures);
    render_catch_up(&mut md, &figures.catch_up);
    render_overhead(&mut md, figures);
    render_lag(&mut md, &figures.lag);
    md
}

/// The commit measured, from `git` in the working directory (best effort), and whether
/// `omen-replicator` or `omen-wal` had uncommitted changes.
fn source_revision() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let output = std::process::Command::new("git").args(args).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--", "omen-replicator", "omen-wal"])?;
    Some(if dirty.is_empty() {
        format!("commit `{commit}`")
    } else {
        format!("commit `{commit}` with uncommitted changes in omen-replicator/omen-wal")
    })
}

/// The summary: one row per target.
pub fn summary(figures: &ReplicatorFigures) -> String {
    let c = &figures.catch_up;
    let lag = &figures.lag;
    let mut md = String::new();
    let _ = writeln!(md, "| target | measured | verdict |");
    let _ = writeln!(md, "|---|---|---|");
    let cores = match (c.rows_per_core_s(), c.cpu.process) {
        (Some(per_core), Some(cpu)) => format!(
            "; {:.2} s CPU ({:.2} cores), {} rows per core-second",
            cpu.as_secs_f64(),
            c.cpu.process_cores().unwrap_or(0.0),
            millions(per_core)
        ),
        _ => String::new(),
    };
    let _ = writeln!(
        md,
        "| replication ≥ {:.0} rows/s (backlog start to checkpoint) | {:.0} rows/s{cores} | {} |",
        THROUGHPUT_TARGET,
        c.rows_per_s(),
        verdict(c.rows_per_s() >= THROUGHPUT_TARGET)
    );
    let catch_up_verdict = if c.rows == CATCH_UP_ROWS {
        verdict(c.flushed <= CATCH_UP_TARGET).to_string()
    } else {
        format!("– (ran {} rows, not {CATCH_UP_ROWS})", c.rows)
    };
    let _ = writeln!(
        md,
        "| catch-up: {}M-row backlog in Parquet ≤ {} s | {:.2} s for {:.1}M rows | {catch_up_verdict} |",
        CATCH_UP_ROWS / 1_000_000,
        CATCH_UP_TARGET.as_secs(),
        c.flushed.as_secs_f64(),
        c.rows as f64 / 1e6,
    );
    let overhead = figures.overhead();
    let _ = writeln!(
        md,
        "| durable writers lose ≤ {:.0}% with the replicator running | {:.1}%, median of {} rounds (mean throughputs: {:.0} vs {:.0} records/s, {:.1}%) | {} |",
        OVERHEAD_TARGET * 100.0,
        overhead * 100.0,
        figures.round_losses().len(),
        figures.mean_records_per_s(true),
        figures.mean_records_per_s(false),
        figures.mean_loss() * 100.0,
        verdict(overhead <= OVERHEAD_TARGET)
    );
    let _ = writeln!(
        md,
        "| lag p99 ≤ {:.1} s at {} rows/s | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms | {} |",
        LAG_TARGET.as_secs_f64(),
        lag.target_rows_per_s,
        millis(lag.lag.p50),
        millis(lag.lag.p99),
        millis(lag.lag.max),
        verdict(lag.lag.p99 <= LAG_TARGET && lag.never_flushed == 0)
    );
    let s = &lag.staleness;
    let _ = writeln!(
        md,
        "| staleness 0: snapshot at `last_lsn()` after a commit holds it | {} misses of {} reads | {} |",
        s.missing,
        s.samples,
        verdict(s.missing == 0 && s.samples > 0)
    );
    md
}

fn render_targets(md: &mut String, figures: &ReplicatorFigures) {
    let _ = writeln!(md, "## Targets\n");
    md.push_str(&summary(figures));
    md.push('\n');
}

fn render_catch_up(md: &mut String, c: &CatchUpResult) {
    let _ = writeln!(md, "## Throughput and catch-up\n");
    let _ = writeln!(
        md,
        "{} rows in {} WAL records of {} rows ({:.0} MiB of payload) were appended with \
         `SyncMode::None` by two threads and synced ({:.2} s, not counted). Then a replicator was started \
         on the WAL: the clock runs from `WalReplicator::start` until `read_lsn` reached the last \
         LSN (the tail decoded everything), then until `flush_now()` returned with the \
         checkpoint at the last LSN and every row in a committed Parquet file.\n",
        c.rows,
        c.records,
        c.record_rows,
        c.wal_bytes as f64 / 1048576.0,
        c.prewrite.as_secs_f64(),
    );
    let _ = writeln!(md, "![catch-up](replicator_catchup.svg)\n");
    let _ = writeln!(md, "| measure | value |");
    let _ = writeln!(md, "|---|---:|");
    let rows = |d: Duration| c.rows as f64 / d.as_secs_f64().max(1e-9);
    let lines = [
        (
            "start to all read (tail)".to_string(),
            format!(
                "{:.2} s ({} rows/s)",
                c.read.as_secs_f64(),
                millions(rows(c.read))
            ),
        ),
        (
            "start to checkpoint = last LSN".to_string(),
            format!(
                "{:.2} s ({} rows/s)",
                c.flushed.as_secs_f64(),
                millions(c.rows_per_s())
            ),
        ),
        (
            "process CPU (all threads)".to_string(),
            format!(
                "{} ({} cores on average)",
                seconds(c.cpu.process),
                c.cpu
                    .process_cores()
                    .map_or("–".to_string(), |v| format!("{v:.2}"))
            ),
        ),
        ("tail thread CPU".to_string(), seconds(c.tail_cpu)),
        ("writer thread CPU".to_string(), seconds(c.writer_cpu)),
        (
            "rows per core-second (process CPU)".to_string(),
            c.rows_per_core_s().map_or("–".to_string(), millions),
        ),
        (
            "tail: ns of CPU per row".to_string(),
            c.tail_cpu.map_or("–".to_string(), |d| {
                format!("{:.0}", d.as_secs_f64() * 1e9 / c.rows.max(1) as f64)
            }),
        ),
        (
            "writer: ns of CPU per row".to_string(),
            c.writer_cpu.map_or("–".to_string(), |d| {
                format!("{:.0}", d.as_secs_f64() * 1e9 / c.rows.max(1) as f64)
            }),
        ),
        (
            "other processes on the machine".to_string(),
            c.cpu
                .other_cores()
                .map_or("–".to_string(), |v| format!("{v:.2} cores")),
        ),
        (
            "Parquet files written / listed at the end".to_string(),
            format!("{} / {}", c.files_written, c.files_listed),
        ),
        (
            "Parquet bytes flushed".to_string(),
            format!(
                "{:.1} MiB ({:.1} bytes/row)",
                c.parquet_bytes as f64 / 1048576.0,
                c.parquet_bytes as f64 / c.rows.max(1) as f64
            ),
        ),
        (
            "bytes sent to storage (flushes, compactions, manifests)".to_string(),
            c.disk_bytes.map_or("–".to_string(), |b| {
                format!(
                    "{:.1} MiB ({:.1}x the flushed bytes)",
                    b as f64 / 1048576.0,
                    b as f64 / c.parquet_bytes.max(1) as f64
                )
            }),
        ),
    ];
    for (name, value) in lines {
        let _ = writeln!(md, "| {name} | {value} |");
    }
    let _ = writeln!(md);
}

fn render_overhead(md: &mut String, figures: &ReplicatorFigures) {
    let _ = writeln!(md, "## Writer overhead\n");
    let first = figures.overhead.first();
    let _ = writeln!(
        md,
        "{} writer threads each encode records of {} rows and append them with \
         `SyncMode::GroupCommit` for {:.0} s, in a fresh WAL, once without and once with a \
         replicator (default options) tailing it from before the first write; the order \
         alternates between rounds. Throughput is acknowledged records over the time until the \
         last writer stopped; latency is one `append`. \"read\" and \"in Parquet\" are the rows \
         the replicator had read and written when the writers stopped.\n",
        first.map_or(0, |r| r.threads),
        first.map_or(0, |r| r.record_rows),
        first.map_or(0.0, |r| r.elapsed.as_secs_f64()),
    );
    let _ = writeln!(
        md,
        "| run | replicator | records/s | rows/s | append p50 µs | append p99 µs | process cores | other cores | read | in Parquet |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, run) in figures.overhead.iter().enumerate() {
        let cores = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2}"));
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {} | {:.0} | {:.0} | {} | {} | {} | {} |",
            i + 1,
            if run.replicator { "running" } else { "none" },
            run.records_per_s(),
            millions(run.rows_per_s()),
            micros(run.latency.p50),
            micros(run.latency.p99),
            cores(run.cpu.process_cores()),
            cores(run.cpu.other_cores()),
            if run.replicator {
                millions(run.rows_read as f64)
            } else {
                "–".into()
            },
            if run.replicator {
                millions(run.rows_in_parquet as f64)
            } else {
                "–".into()
            },
        );
    }
    let _ = writeln!(
        md,
        "\nLoss per round (runs 1–2, 3–4, …): {}. Median: **{:.1}%**. Mean without: {:.0} \
         records/s; with: {:.0} records/s; loss of the means {:.1}%. Before each run the \
         benchmark syncs the filesystem and waits (up to 10 s) until other processes use under \
         0.1 cores; \"other cores\" includes the hypervisor's steal time.\n",
        figures
            .round_losses()
            .iter()
            .map(|l| format!("{:.1}%", l * 100.0))
            .collect::<Vec<_>>()
            .join(", "),
        figures.overhead() * 100.0,
        figures.mean_records_per_s(false),
        figures.mean_records_per_s(true),
        figures.mean_loss() * 100.0
    );
    if let Some(run) = figures.overhead.iter().find(|r| r.replicator) {
        let written = run.records as f64 * run.record_rows as f64;
        let _ = writeln!(
            md,
            "The replicator read {:.0}% of the rows written in the first run with it, so it ran \
             as fast as it could for the whole run: this is its cost at full speed, on the \
             same cores and disk as the writers.\n",
            run.rows_read as f64 * 100.0 / written.max(1.0)
        );
    }
}

fn render_lag(md: &mut String, lag: &LagResult) {
    let _ = writeln!(md, "## Lag and staleness at a steady rate\n");
    let _ = writeln!(
        md,
        "One writer commits a record of {} rows every {:.1} ms ({} rows/s asked, {:.0} \
         achieved) with `SyncMode::GroupCommit` for {:.0} s, a replicator with default options \
         tailing the WAL. A monitor thread polls `stats().checkpoint_lsn` every millisecond; a \
         commit's lag runs from its `append` returning to the first poll that saw the \
         checkpoint at or past its LSN (so it includes up to about 1 ms of polling), over all \
         {} commits. \"Durable\" is the same for `durable_checkpoint_lsn`, the stored \
         manifest's (at most `sync_interval`, 1 s, behind). After the writer stops, both \
         checkpoints are awaited for up to {} s.\n",
        lag.record_rows,
        lag.record_rows as f64 * 1e3 / lag.target_rows_per_s.max(1) as f64,
        lag.target_rows_per_s,
        lag.rows_per_s(),
        lag.elapsed.as_secs_f64(),
        lag.commits,
        (ReplicatorOptions::default().max_batch_age * 2).as_secs(),
    );
    let _ = writeln!(md, "![lag](replicator_lag.svg)\n");
    let _ = writeln!(md, "| measure | p50 | p99 | max |");
    let _ = writeln!(md, "|---|---:|---:|---:|");
    let row = |md: &mut String, name: &str, l: &Latency, unit: fn(Duration) -> String| {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} |",
            unit(l.p50),
            unit(l.p99),
            unit(l.max)
        );
    };
    row(md, "commit to Parquet (lag)", &lag.lag, |d| {
        format!("{:.1} ms", millis(d))
    });
    row(md, "commit to durable Parquet", &lag.durable_lag, |d| {
        format!("{:.1} ms", millis(d))
    });
    row(md, "`append` (GroupCommit)", &lag.append, |d| {
        format!("{:.0} µs", micros(d))
    });
    let s = &lag.staleness;
    let rows = (lag.commits * lag.record_rows as u64).max(1) as f64;
    let _ = writeln!(
        md,
        "\nCommits the checkpoint never passed: {}. Files flushed: {} ({:.0} rows each on \
         average); listed at the end: {}. The replicator's two threads used {} of CPU ({} µs \
         per row). Bytes sent to storage: {} for {:.1} MiB of WAL payload and {:.1} MiB of \
         Parquet flushed. Process CPU while writing: {} ({} cores); other processes: {} \
         cores.\n",
        lag.never_flushed,
        lag.files.0,
        rows / lag.files.0.max(1) as f64,
        lag.files.1,
        seconds(lag.replicator_cpu),
        lag.replicator_cpu.map_or("–".to_string(), |d| format!(
            "{:.1}",
            d.as_secs_f64() * 1e6 / rows
        )),
        lag.disk_bytes.map_or("–".to_string(), |b| format!(
            "{:.1} MiB",
            b as f64 / 1048576.0
        )),
        lag.wal_bytes as f64 / 1048576.0,
        lag.parquet_bytes as f64 / 1048576.0,
        seconds(lag.cpu.process),
        lag.cpu
            .process_cores()
            .map_or("–".to_string(), |v| format!("{v:.2}")),
        lag.cpu
            .other_cores()
            .map_or("–".to_string(), |v| format!("{v:.2}")),
    );
    let _ = writeln!(
        md,
        "Staleness: after every 25th commit, a checker thread takes `snapshot(\"orders\", \
         wal.last_lsn())` and looks for the commit's last row, with its LSN and values, in the \
         snapshot's delta, else in the Parquet files whose key and LSN ranges cover it (read, \
         checksums verified, versions resolved). {} reads: {} found in the delta, {} in files, \
         **{} missing**; slowest read {:.1} ms.",
        s.samples,
        s.in_delta,
        s.in_files,
        s.missing,
        millis(s.slowest),
    );
}

fn write_plots(out: &Path, figures: &ReplicatorFigures) -> Result<(), String> {
    let c = &figures.catch_up;
    plot::linear_lines(
        &out.join("replicator_catchup.svg"),
        &format!(
            "Draining a {:.0}M-row backlog into Parquet",
            c.rows as f64 / 1e6
        ),
        ("seconds since start", "rows"),
        &[
            Line {
                label: "rows read by the tail".into(),
                points: c.progress.iter().map(|p| (p.0, p.1 as f64)).collect(),
                dashed: false,
            },
            Line {
                label: "rows in Parquet files".into(),
                points: c.progress.iter().map(|p| (p.0, p.2 as f64)).collect(),
                dashed: false,
            },
        ],
    )?;
    let lag = &figures.lag;
    plot::linear_lines(
        &out.join("replicator_lag.svg"),
        &format!(
            "Commit-to-Parquet lag at {} rows/s, per 250 ms of commits",
            lag.target_rows_per_s
        ),
        ("seconds since start", "lag ms"),
        &[
            Line {
                label: "max".into(),
                points: lag.series.iter().map(|p| (p.0, p.1)).collect(),
                dashed: false,
            },
            Line {
                label: "median".into(),
                points: lag.series.iter().map(|p| (p.0, p.2)).collect(),
                dashed: false,
            },
        ],
    )
}
