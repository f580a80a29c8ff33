//! The `Db` report (issue 5): `Db::get` against RocksDB on the same rows, point queries
//! through SQL, freshness of analytical queries under a steady write load, and point-client
//! throughput with and without an analytical client on the other core; written as Markdown
//! with SVG plots, targets marked MET or MISS.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use omendb::Db;
use omendb::wal::SyncMode;

use crate::db_bench::{
    self, ANALYTICAL_QUERY, Cores, DbBenchError, FreshnessResult, GetResult, IsolationRound,
    LoadResult, SqlPointResult,
};
use crate::db_rocks;
use crate::plot::{self, Line};

/// `Db::get` must be this many times faster than RocksDB.
pub const GET_SPEEDUP_TARGET: f64 = 10.0;
/// Share of analytical queries that must see every write committed before they started.
pub const FRESH_SHARE_TARGET: f64 = 0.999;
/// Point throughput with an analytical client, as a share of the throughput without.
pub const ISOLATION_TARGET: f64 = 0.90;

/// A part of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// `Db::get` vs RocksDB.
    Get,
    /// `SELECT * WHERE id = c` through `Db::sql`.
    Sql,
    /// Freshness under 50k rows/s.
    Freshness,
    /// Point throughput with and without analytics.
    Isolation,
}

/// What to run (the `db` subcommand's flags).
#[derive(Clone, Debug, clap::Args)]
pub struct DbReportOptions {
    /// Rows loaded into the table of the point-read, SQL and isolation measurements.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: usize,
    /// Rows per `WriteBatch` of the load.
    #[arg(long, default_value_t = 10_000)]
    pub load_batch_rows: usize,
    /// Random lookups per point-read round.
    #[arg(long, default_value_t = 2_000_000)]
    pub lookups: usize,
    /// Point-read rounds (Db and RocksDB alternate which goes first).
    #[arg(long, default_value_t = 3)]
    pub get_rounds: usize,
    /// `SELECT * WHERE id = c` queries timed.
    #[arg(long, default_value_t = 5000)]
    pub sql_queries: usize,
    /// Rows in the freshness run's table before its writer starts.
    #[arg(long, default_value_t = 100_000)]
    pub fresh_preload: usize,
    /// Rows per second the freshness run's writer commits.
    #[arg(long, default_value_t = 50_000)]
    pub fresh_rows_per_s: u64,
    /// Rows per write of the freshness run.
    #[arg(long, default_value_t = 100)]
    pub fresh_record_rows: usize,
    /// Seconds of the freshness run.
    #[arg(long, default_value_t = 60.0)]
    pub fresh_seconds: f64,
    /// Percent of the isolation client's operations that are gets (the rest upserts).
    #[arg(long, default_value_t = 90)]
    pub iso_get_percent: u64,
    /// Seconds of one isolation round.
    #[arg(long, default_value_t = 10.0)]
    pub iso_seconds: f64,
    /// Pairs of isolation rounds (without and with analytics, order alternating).
    #[arg(long, default_value_t = 3)]
    pub iso_pairs: usize,
    /// Parts to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub phases: Vec<Phase>,
    /// Directory for the report and plots.
    #[arg(long, default_value = "bench-report")]
    pub out: PathBuf,
    /// Directory for the databases (default: below --out, same disk).
    #[arg(long)]
    pub scratch: Option<PathBuf>,
    /// Keep the heap on 4 KiB pages (by default the run re-executes itself with huge pages
    /// for the Db and RocksDB alike, as `alex` does).
    #[arg(long)]
    pub no_huge_pages: bool,
}

impl DbReportOptions {
    fn runs(&self, phase: Phase) -> bool {
        self.phases.is_empty() || self.phases.contains(&phase)
    }
}

/// Every figure of the report (absent: not run).
#[derive(Default)]
pub struct DbFigures {
    /// The load of the big table.
    pub load: Option<LoadResult>,
    /// Point reads.
    pub gets: Option<GetResult>,
    /// SQL point queries.
    pub sql: Option<SqlPointResult>,
    /// Freshness run.
    pub freshness: Option<FreshnessResult>,
    /// Isolation rounds, in order.
    pub isolation: Option<(Cores, Vec<IsolationRound>)>,
}

/// A directory deleted on drop, so that a failed run leaves no gigabytes behind.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the chosen parts, writes `db.md` and the plots to `options.out`, returns the path of
/// `db.md`.
pub fn run(options: &DbReportOptions) -> Result<PathBuf, DbBenchError> {
    std::fs::create_dir_all(&options.out)?;
    let root = options
        .scratch
        .clone()
        .unwrap_or_else(|| options.out.clone())
        .join(format!("db-scratch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let scratch = Scratch(root);
    let bar = ProgressBar::new(options.rows as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let started = Instant::now();
    let figures = measure_all(options, &scratch.0, &bar)?;
    drop(scratch);
    bar.finish_with_message(format!("done in {:.0} s", started.elapsed().as_secs_f64()));
    let path = options.out.join("db.md");
    std::fs::write(&path, render(options, &command, &figures))?;
    write_plots(&options.out, &figures).map_err(std::io::Error::other)?;
    Ok(path)
}

fn restart(bar: &ProgressBar, len: u64, message: &str) {
    bar.set_length(len);
    bar.set_position(0);
    bar.set_message(message.to_string());
}

fn measure_all(
    options: &DbReportOptions,
    scratch: &Path,
    bar: &ProgressBar,
) -> Result<DbFigures, DbBenchError> {
    let mut figures = DbFigures::default();
    let big =
        options.runs(Phase::Get) || options.runs(Phase::Sql) || options.runs(Phase::Isolation);
    if big {
        restart(bar, options.rows as u64, "generating keys");
        let keys = db_bench::uniform_keys(options.rows, 42);
        bar.set_message(format!(
            "loading the Db: {} rows in batches of {} (SyncMode::None)",
            options.rows, options.load_batch_rows
        ));
        let (db, load) = db_bench::load_db(
            &scratch.join("db"),
            SyncMode::None,
            &keys,
            options.load_batch_rows,
            |n| bar.inc(n as u64),
        )?;
        figures.load = Some(load);
        measure_big(options, scratch, bar, &db, &keys, &mut figures)?;
        bar.set_message("closing the Db");
        db.close()?;
    }
    if options.runs(Phase::Freshness) {
        let seconds = options.fresh_seconds.max(0.0);
        restart(
            bar,
            seconds.ceil() as u64,
            &format!(
                "freshness: {} rows/s in writes of {} rows (GroupCommit), `{ANALYTICAL_QUERY}` nonstop",
                options.fresh_rows_per_s, options.fresh_record_rows
            ),
        );
        figures.freshness = Some(db_bench::measure_freshness(
            &scratch.join("fresh"),
            options.fresh_preload,
            options.fresh_rows_per_s,
            options.fresh_record_rows.max(1),
            Duration::from_secs_f64(seconds),
            || bar.inc(1),
        )?);
    }
    Ok(figures)
}

fn measure_big(
    options: &DbReportOptions,
    scratch: &Path,
    bar: &ProgressBar,
    db: &Db,
    keys: &[i64],
    figures: &mut DbFigures,
) -> Result<(), DbBenchError> {
    if options.runs(Phase::Get) {
        let probes = db_bench::probes(keys, options.lookups, 43);
        restart(bar, 3 + options.get_rounds as u64, "point reads");
        figures.gets = Some(db_bench::measure_gets(
            db,
            keys,
            &probes,
            options.get_rounds,
            &scratch.join("rocks"),
            |message| {
                bar.set_message(message.to_string());
                bar.inc(1);
            },
        )?);
    }
    if options.runs(Phase::Sql) {
        restart(bar, 1, "SQL point queries");
        let probes = db_bench::probes(keys, options.sql_queries, 44);
        figures.sql = Some(db_bench::measure_sql_points(db, &probes)?);
        bar.inc(1);
    }
    if options.runs(Phase::Isolation) {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus < 2 {
            bar.println("isolation skipped: it needs two cores");
        } else {
            let cores = Cores { point: 0, rest: 1 };
            restart(bar, 2 * options.iso_pairs as u64, "isolation");
            let rounds = db_bench::measure_isolation(
                db,
                keys,
                options.iso_get_percent.min(100),
                Duration::from_secs_f64(options.iso_seconds.max(0.0)),
                options.iso_pairs,
                cores,
                |message| {
                    bar.set_message(message.to_string());
                    bar.inc(1);
                },
            )?;
            figures.isolation = Some((cores, rounds));
        }
    }
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met { "**MET**" } else { "**MISS**" }
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn rounds_list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Mean point ops/s over the rounds with (`true`) or without analytics.
fn mean_ops(rounds: &[IsolationRound], analytics: bool) -> f64 {
    let v: Vec<f64> = rounds
        .iter()
        .filter(|r| r.analytics == analytics)
        .map(IsolationRound::ops_per_s)
        .collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The commit measured, from `git` (best effort), and whether the engine had uncommitted
/// changes.
fn source_revision() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let output = std::process::Command::new("git").args(args).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty = git(&[
        "status",
        "--porcelain",
        "--",
        "src",
        "omen-sql",
        "omen-alex",
        "omen-replicator",
        "omen-wal",
    ])?;
    Some(if dirty.is_empty() {
        format!("commit `{commit}`")
    } else {
        format!(
            "commit `{commit}` with uncommitted changes in the engine ({})",
            dirty.lines().count()
        )
    })
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(String::new(), |kib| {
            format!(", {:.0} GiB RAM", kib as f64 / (1 << 20) as f64)
        });
    format!(
        "{model}, {} CPUs{memory}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    )
}

fn render(options: &DbReportOptions, command: &str, figures: &DbFigures) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Db: point reads, SQL point queries, freshness, isolation\n"
    );
    let huge = if std::env::var_os("GLIBC_TUNABLES").is_some() {
        "heap on transparent huge pages (`GLIBC_TUNABLES` set by the run, as for `alex`)"
    } else {
        "heap on 4 KiB pages"
    };
    let _ = writeln!(
        md,
        "Generated by `{command}` on {}; {huge}. Rows are `orders (id BIGINT key, qty BIGINT, \
         price DOUBLE, sku TEXT of 8–16 characters, at TIMESTAMP)`, keys drawn uniformly from \
         0..2^40. All figures from one run; ratios compare measurements of the same run. The \
         machine is shared (2 cores, other engineers' builds at nice 10), so absolute timings \
         drift; the other processes' CPU is shown where it matters.\n",
        machine()
    );
    if let Some(revision) = source_revision() {
        let _ = writeln!(md, "Measured at {revision}.\n");
    }
    render_targets(&mut md, figures);
    if let Some(load) = &figures.load {
        let _ = writeln!(
            md,
            "## Setup\n\nThe big table: {} rows inserted through `Db::write` in `WriteBatch`es of \
             {} rows, the Db opened with `SyncMode::None` for the load (appends reach the OS, \
             no fsync until the end; one `wal().sync()` at the end) and default replicator \
             options; {:.1} s to write and sync ({:.0} rows/s, building the rows included), \
             {:.1} s until `flush_now` had every row in Parquet too. The same Db (same sync \
             mode) serves the point reads, the SQL point queries and the isolation run.\n",
            load.rows,
            load.batch_rows,
            load.written.as_secs_f64(),
            load.rows as f64 / load.written.as_secs_f64().max(1e-9),
            load.flushed.as_secs_f64(),
        );
    }
    if let Some(gets) = &figures.gets {
        render_gets(&mut md, gets, options);
    }
    if let Some(sql) = &figures.sql {
        render_sql(&mut md, sql);
    }
    if let Some(fresh) = &figures.freshness {
        render_freshness(&mut md, fresh);
    }
    if let Some((cores, rounds)) = &figures.isolation {
        render_isolation(&mut md, *cores, rounds, options);
    }
    md
}

/// The summary: one row per target.
pub fn summary(figures: &DbFigures) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "| target | measured | verdict |");
    let _ = writeln!(md, "|---|---|---|");
    if let Some(g) = &figures.gets {
        let _ = writeln!(
            md,
            "| `Db::get` ≥ {GET_SPEEDUP_TARGET:.0}x faster than RocksDB `get` ({} rows; \
             `Db::get` copies the row's encoded values out, RocksDB reads its pinned value; \
             both read `qty`) | {:.0} ns vs {:.0} ns: {:.1}x | {} |",
            figures.load.map_or(0, |l| l.rows),
            g.db_best_ns(),
            g.rocks_best_ns(),
            g.speedup(),
            verdict(g.speedup() >= GET_SPEEDUP_TARGET)
        );
    }
    if let Some(s) = &figures.sql {
        let _ = writeln!(
            md,
            "| `SELECT * … WHERE id = c` latency (report p50/p99) | p50 {:.0} µs, p99 {:.0} µs \
             ({} queries); routed to the index, {:.0}x faster than the Parquet + delta scan \
             (p50 {:.1} ms) | – |",
            micros(s.latency.p50),
            micros(s.latency.p99),
            s.queries,
            s.routing_speedup(),
            s.scan_latency.p50.as_secs_f64() * 1e3,
        );
    }
    if let Some(f) = &figures.freshness {
        let _ = writeln!(
            md,
            "| freshness 0 for ≥ {:.1}% of queries at {} rows/s | {:.2}% ({} of {} queries; \
             {:.0} rows/s achieved) | {} |",
            FRESH_SHARE_TARGET * 100.0,
            f.target_rows_per_s,
            f.fresh_share() * 100.0,
            f.fresh_queries(),
            f.queries.len(),
            f.rows_per_s(),
            verdict(f.fresh_share() >= FRESH_SHARE_TARGET && !f.queries.is_empty())
        );
    }
    if let Some((_, rounds)) = &figures.isolation {
        let (with, without) = (mean_ops(rounds, true), mean_ops(rounds, false));
        let ratio = with / without.max(1e-9);
        let _ = writeln!(
            md,
            "| point throughput with analytics ≥ {:.0}% of without | {:.1}% ({:.0} vs {:.0} \
             ops/s) | {} |",
            ISOLATION_TARGET * 100.0,
            ratio * 100.0,
            with,
            without,
            verdict(ratio >= ISOLATION_TARGET)
        );
    }
    md
}

fn render_targets(md: &mut String, figures: &DbFigures) {
    let _ = writeln!(md, "## Targets\n");
    md.push_str(&summary(figures));
    md.push('\n');
}

fn render_gets(md: &mut String, g: &GetResult, options: &DbReportOptions) {
    let _ = writeln!(md, "## 1. `Db::get` vs RocksDB `get`\n");
    let _ = writeln!(
        md,
        "RocksDB 0.25 (bundled C++) holds the same rows: key = the id's 8 big-endian bytes, \
         value = `qty`, `price`, `at` as 8 little-endian bytes each, then the `sku` bytes \
         (~35 bytes). Loaded through one SST file and ingested ({:.1} s; {:.0} MiB of table \
         files). Options (through `DB::open`, not `open_cf`'s defaults): LRU block cache of \
         {:.0} MiB (holds every block: {:.0} MiB in it after a full scan warmed it), {} KiB \
         blocks, {:.0}-bit bloom filters, a hash index in each data block \
         (`BinaryAndHash`), index and filter blocks held by the table readers, no \
         compression (the crate is built without compression libraries). RocksDB's readers: \
         `get_pinned` reading `qty` from the pinned value (no copy), the counterpart of both \
         `Db::get` (which copies the row's encoded values out, a `RowBuf`) and \
         `Db::get_with` (in place); and `get_pinned` decoding into a `Vec<Value>` (the `sku` \
         into a `String`), the counterpart of `Db::get` + `to_row`. Every loop reads `qty` of \
         each row and the sums are checked.\n",
        g.rocks_load.as_secs_f64(),
        g.rocks_sst_bytes as f64 / (1 << 20) as f64,
        g.rocks_cache_capacity as f64 / (1 << 20) as f64,
        g.rocks_cache_bytes as f64 / (1 << 20) as f64,
        db_rocks::BLOCK_BYTES / 1024,
        db_rocks::BLOOM_BITS_PER_KEY,
    );
    let _ = writeln!(
        md,
        "{} uniformly random existing keys per round, one thread, {} rounds alternating which \
         goes first; the best round counts (all rounds listed).\n",
        g.lookups, options.get_rounds
    );
    let _ = writeln!(md, "| reader | best ns/op | rounds (ns/op) |");
    let _ = writeln!(md, "|---|---:|---|");
    let rows: [(&str, &[f64]); 8] = [
        ("RocksDB `get_pinned`, `qty` read in place", &g.rocks_ns),
        ("`Db::get` (a `RowBuf`), `qty` read", &g.db_ns),
        ("`Db::get_with`, `qty` read in place", &g.db_view_ns),
        ("RocksDB `get_pinned` + decode into values", &g.rocks_row_ns),
        ("`Db::get` + `to_row` (values built)", &g.db_row_ns),
        (
            "former layout: `RwLock::read` + `AlexMap::get` + `Arc` clone",
            &g.locked_clone_ns,
        ),
        (
            "former layout: `AlexMap::get` + `Arc` clone",
            &g.alex_clone_ns,
        ),
        (
            "former layout: `AlexMap::get` (reference only)",
            &g.alex_ref_ns,
        ),
    ];
    for (name, values) in rows {
        let best = values.iter().copied().fold(f64::INFINITY, f64::min);
        let _ = writeln!(md, "| {name} | {best:.0} | {} |", rounds_list(values));
    }
    let _ = writeln!(
        md,
        "\nRatio RocksDB / `Db::get`: **{:.1}x** (target {GET_SPEEDUP_TARGET:.0}x). \
         `Db::get` returns a `RowBuf`: the row's encoded values copied out of the index's value \
         slot (no allocation for this table's rows; not checked again, see `src/row.rs`: \
         they were checked when the row entered the index), against RocksDB reading the \
         pinned value in place, without a copy. Building the row's values on both sides \
         (`to_row`; RocksDB decodes into the same `Vec<Value>`): {:.1}x. Reading the column \
         in place on both sides (`Db::get_with`): {:.1}x.\n",
        g.speedup(),
        g.row_speedup(),
        g.view_speedup()
    );
    let _ = writeln!(
        md,
        "The \"former layout\" rows use a separate, bulk-loaded `AlexMap<i64, Arc<[Value]>>` \
         built in the benchmark from the same rows, allocated one by one in random order: how \
         the Db stored rows before `src/stored_row.rs` (a pointer in the index's value slot \
         to a row allocation of its own). They split such a read into its parts: the index \
         lookup and the row's first cache line (a third dependent miss), the reference-count \
         increment and decrement of the returned `Arc` (a write to the row's cache line), and \
         the table's `RwLock` (two atomic read-modify-writes). `Db::get` also has the \
         per-thread table handle (a version check and a name comparison, see \
         `src/table_cache.rs`), the decoding of its row, and the shape of its index, which \
         the load built by inserts while the breakdown's is bulk-loaded:\n"
    );
    if let (Some(db), Some(bare)) = (&g.db_index, &g.bare_index) {
        let _ = writeln!(
            md,
            "| index | depth | internal nodes | data nodes | avg / max search distance | MiB |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---|---:|");
        for (name, s) in [("`Db` (inserted)", db), ("breakdown (bulk-loaded)", bare)] {
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {:.2} / {} | {:.0} |",
                s.depth,
                s.internal_nodes,
                s.data_nodes,
                s.avg_search_distance,
                s.max_search_distance,
                s.total_bytes as f64 / f64::from(1u32 << 20)
            );
        }
        md.push('\n');
    }
}

fn render_sql(md: &mut String, s: &SqlPointResult) {
    let _ = writeln!(
        md,
        "## 2. `SELECT * FROM orders WHERE id = c` through `Db::sql`\n"
    );
    let _ = writeln!(
        md,
        "{} queries with uniformly random existing keys, one thread, after a warm-up of a \
         tenth as many; each call timed from `Db::sql` to its return (parsing, the router's \
         classification, the index lookup, building the batch: no DataFusion session or \
         plan). Every query returned its row, through the route \"{}\".\n",
        s.queries, s.route
    );
    let _ = writeln!(md, "| p50 | p99 | max | mean |");
    let _ = writeln!(md, "|---:|---:|---:|---:|");
    let _ = writeln!(
        md,
        "| {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs |\n",
        micros(s.latency.p50),
        micros(s.latency.p99),
        micros(s.latency.max),
        micros(s.mean)
    );
    let _ = writeln!(md, "![SQL point query latency](db_sql_point.svg)\n");
    let _ = writeln!(
        md,
        "**Routing.** The baseline is the same query with its key filter hidden from the \
         index, `WHERE abs(id) = c`, which only the scan can serve: \"{}\". {} \
         queries:\n",
        s.scan_route, s.scan_queries
    );
    let _ = writeln!(md, "| route | p50 | p99 |");
    let _ = writeln!(md, "|---|---:|---:|");
    let _ = writeln!(
        md,
        "| `Db::get` of the same keys | {:.2} µs | {:.2} µs |",
        micros(s.get_latency.p50),
        micros(s.get_latency.p99)
    );
    let _ = writeln!(
        md,
        "| router fast path: index point lookup (`id = c`) | {:.1} µs | {:.1} µs |",
        micros(s.latency.p50),
        micros(s.latency.p99)
    );
    let _ = writeln!(
        md,
        "| DataFusion plan, index scan (`Db::sql_planned`, {} queries) | {:.0} µs | {:.0} µs |",
        s.planned_queries,
        micros(s.planned_latency.p50),
        micros(s.planned_latency.p99)
    );
    let _ = writeln!(
        md,
        "| Parquet + delta scan (`abs(id) = c`) | {:.0} µs | {:.0} µs |\n",
        micros(s.scan_latency.p50),
        micros(s.scan_latency.p99)
    );
    let _ = writeln!(
        md,
        "Routing the point query to the index makes it {:.0}x faster than the scan, and the \
         fast path {:.0}x faster than planning it in DataFusion (p50).\n",
        s.routing_speedup(),
        s.fast_path_speedup()
    );
    let _ = writeln!(md, "![routing](db_routing.svg)\n");
}

fn render_freshness(md: &mut String, f: &FreshnessResult) {
    let _ = writeln!(md, "## 3. Freshness (HATtrick)\n");
    let mut fresh: Vec<u64> = f
        .queries
        .iter()
        .map(|q| u64::try_from(q.freshness.as_nanos()).unwrap_or(u64::MAX))
        .collect();
    let freshness = crate::wal_bench::Latency::of(&mut fresh);
    let mut latencies: Vec<u64> = f
        .queries
        .iter()
        .map(|q| u64::try_from(q.latency.as_nanos()).unwrap_or(u64::MAX))
        .collect();
    let latency = crate::wal_bench::Latency::of(&mut latencies);
    let mismatches = f.queries.iter().filter(|q| !q.counts_match).count();
    let _ = writeln!(
        md,
        "A fresh Db with the default `SyncMode::GroupCommit`, {} rows preloaded. One writer \
         commits a `WriteBatch` of {} new rows every {:.1} ms ({} rows/s target) for {:.0} s, \
         recording each write's LSN (returned by `Db::write`) and the instant it returned \
         (the commit time). One analytical client runs `{ANALYTICAL_QUERY}` nonstop. For \
         each query, freshness = its start minus the commit time of the first write with an \
         LSN above the query's `snapshot_lsn`, if that write had committed before the query \
         started; else 0. Independently, each query's `COUNT(*)` and `SUM(qty)` are checked \
         against the rows of the writes at or below its snapshot LSN.\n",
        f.preloaded,
        f.record_rows,
        f.record_rows as f64 * 1e3 / f.target_rows_per_s.max(1) as f64,
        f.target_rows_per_s,
        f.elapsed.as_secs_f64(),
    );
    let _ = writeln!(md, "| measure | value |");
    let _ = writeln!(md, "|---|---:|");
    let rows = [
        ("writes committed", format!("{}", f.commits)),
        ("rows/s achieved", format!("{:.0}", f.rows_per_s())),
        (
            "write latency p50 / p99 / max",
            format!(
                "{:.2} / {:.2} / {:.2} ms",
                millis(f.write_latency.p50),
                millis(f.write_latency.p99),
                millis(f.write_latency.max)
            ),
        ),
        ("analytical queries", format!("{}", f.queries.len())),
        (
            "queries with freshness 0",
            format!("{} ({:.3}%)", f.fresh_queries(), f.fresh_share() * 100.0),
        ),
        (
            "freshness p50 / p99 / max",
            format!(
                "{:.3} / {:.3} / {:.3} ms",
                millis(freshness.p50),
                millis(freshness.p99),
                millis(freshness.max)
            ),
        ),
        (
            "query latency p50 / p99 / max",
            format!(
                "{:.1} / {:.1} / {:.1} ms",
                millis(latency.p50),
                millis(latency.p99),
                millis(latency.max)
            ),
        ),
        (
            "queries whose COUNT/SUM disagree with their snapshot LSN",
            format!("{mismatches}"),
        ),
        (
            "process CPU / other processes (cores)",
            format!(
                "{} / {}",
                f.cpu
                    .process_cores()
                    .map_or("–".into(), |v| format!("{v:.2}")),
                f.cpu
                    .other_cores()
                    .map_or("–".into(), |v| format!("{v:.2}"))
            ),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(md, "| {name} | {value} |");
    }
    let _ = writeln!(md, "\n![freshness](db_freshness.svg)\n");
    let _ = writeln!(
        md,
        "Why it is 0 by construction: `Db::write` returns only after the batch is applied and \
         the Db's applied LSN published; `Db::sql` takes that LSN as its snapshot when it \
         starts (waiting out an apply in progress), and the Parquet-plus-delta scan serves \
         exactly the rows at or below it. A query that misses a write committed before it \
         started would show here as freshness > 0 and as a count mismatch.\n"
    );
}

fn render_isolation(
    md: &mut String,
    cores: Cores,
    rounds: &[IsolationRound],
    options: &DbReportOptions,
) {
    let _ = writeln!(
        md,
        "## 4. Isolation: point client with and without analytics\n"
    );
    let _ = writeln!(
        md,
        "On the big table (Db opened with `SyncMode::None`, see Setup). A point client \
         pinned to CPU {} (`sched_setaffinity`) loops: {}% `Db::get` of a random existing \
         key, the rest `Db::write` of a one-row upsert of a random existing key (same \
         values). The analytics (the SQL runtime's single worker `omendb-sql` and the \
         analytical client) are pinned to CPU {} in every round; the replicator's threads, \
         whose work is the point client's writes, may run on either CPU (at `SCHED_IDLE` \
         while within half their lag budget). With analytics, one client runs `{ANALYTICAL_QUERY}` nonstop (a \
         Parquet + delta scan of the whole table; the Db has `sql_threads: 1`). {} rounds of {:.0} s, \
         without/with alternating in order. Other engineers' processes may still run on \
         either CPU; their CPU share is listed.\n",
        cores.point,
        options.iso_get_percent,
        cores.rest,
        rounds.len(),
        options.iso_seconds,
    );
    let _ = writeln!(
        md,
        "| round | analytics | point ops/s | upserts/s | analytical queries | this process (cores) | other processes (cores) |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|");
    for (i, r) in rounds.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {} | {} | {} |",
            i + 1,
            if r.analytics { "with" } else { "without" },
            r.ops_per_s(),
            r.upserts as f64 / r.elapsed.as_secs_f64().max(1e-9),
            r.queries,
            r.cpu
                .process_cores()
                .map_or("–".into(), |v| format!("{v:.2}")),
            r.cpu
                .other_cores()
                .map_or("–".into(), |v| format!("{v:.2}")),
        );
    }
    let (with, without) = (mean_ops(rounds, true), mean_ops(rounds, false));
    let _ = writeln!(
        md,
        "\nMean: {with:.0} ops/s with analytics, {without:.0} without: **{:.1}%** (target ≥ \
         {:.0}%).\n",
        with / without.max(1e-9) * 100.0,
        ISOLATION_TARGET * 100.0
    );
    let _ = writeln!(md, "![isolation](db_isolation.svg)\n");
}

fn write_plots(out: &Path, figures: &DbFigures) -> Result<(), String> {
    if let Some(s) = &figures.sql {
        // (µs, % of queries at or below), from latencies sorted ascending.
        let cdf = |nanos: &[u64]| -> Vec<(f64, f64)> {
            let n = nanos.len().max(1) as f64;
            nanos
                .iter()
                .enumerate()
                .map(|(i, &ns)| (ns as f64 / 1e3, (i + 1) as f64 / n * 100.0))
                .collect()
        };
        let step = (s.nanos.len() / 500).max(1);
        let points: Vec<(f64, f64)> = cdf(&s.nanos).into_iter().step_by(step).collect();
        plot::log_lines(
            &out.join("db_routing.svg"),
            "The same point query by route: latency CDF (log scales)",
            ("latency µs", "% of queries at or below"),
            &[
                Line {
                    label: "index point lookup (id = c)".into(),
                    points: points.clone(),
                    dashed: false,
                },
                Line {
                    label: "baseline: Parquet + delta scan (abs(id) = c)".into(),
                    points: cdf(&s.scan_nanos),
                    dashed: true,
                },
            ],
        )?;
        plot::linear_lines(
            &out.join("db_sql_point.svg"),
            "SELECT * FROM orders WHERE id = c through Db::sql: latency CDF",
            ("latency µs", "% of queries at or below"),
            &[Line {
                label: "Db::sql point query".into(),
                points,
                dashed: false,
            }],
        )?;
    }
    if let Some(f) = &figures.freshness {
        let at = |q: &db_bench::QuerySample| q.start.as_secs_f64();
        plot::linear_lines(
            &out.join("db_freshness.svg"),
            &format!(
                "Analytical queries at {} rows/s of writes: freshness and latency",
                f.target_rows_per_s
            ),
            ("seconds since the writer started", "ms"),
            &[
                Line {
                    label: "freshness (ms)".into(),
                    points: f
                        .queries
                        .iter()
                        .map(|q| (at(q), millis(q.freshness)))
                        .collect(),
                    dashed: false,
                },
                Line {
                    label: "query latency (ms)".into(),
                    points: f
                        .queries
                        .iter()
                        .map(|q| (at(q), millis(q.latency)))
                        .collect(),
                    dashed: false,
                },
            ],
        )?;
    }
    if let Some((_, rounds)) = &figures.isolation {
        let series = |analytics: bool| -> Vec<(f64, f64)> {
            rounds
                .iter()
                .enumerate()
                .filter(|(_, r)| r.analytics == analytics)
                .map(|(i, r)| ((i + 1) as f64, r.ops_per_s()))
                .collect()
        };
        plot::linear_lines(
            &out.join("db_isolation.svg"),
            "Point client ops/s by round (one core), with and without analytics on the other",
            ("round", "ops/s"),
            &[
                Line {
                    label: "without analytics".into(),
                    points: series(false),
                    dashed: false,
                },
                Line {
                    label: "with analytics".into(),
                    points: series(true),
                    dashed: false,
                },
            ],
        )?;
    }
    Ok(())
}
