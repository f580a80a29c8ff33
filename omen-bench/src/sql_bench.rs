//! `sql-groupby`: `SELECT k, SUM(x), COUNT(*) FROM t GROUP BY k` over a table loaded through
//! `Db` (bulk write batches, replicator flushed and compacted to steady state), timed through
//! `Db::sql`, against DuckDB running the same query on the same Parquet files with the same
//! thread count. After compaction the files hold one live version per key and no deletes, so
//! DuckDB may read them directly; OmenDB still proves that from the files' statistics.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use omendb::replicator::ReplicatorOptions;
use omendb::replicator::change::{ColumnDef, DataType, TableSchema};
use omendb::replicator::manifest::Manifest;
use omendb::wal::{SyncMode, WalOptions};
use omendb::{Db, DbOptions, Value, WriteBatch};

use crate::plot::{self, Line};

/// Our p50 must be at most this many times DuckDB's.
pub const RATIO_TARGET: f64 = 1.5;

/// The query, over table `t`.
pub const QUERY: &str = "SELECT k, SUM(x), COUNT(*) FROM t GROUP BY k";

/// Options of `omen-bench sql-groupby`.
#[derive(Clone, Debug, clap::Args)]
pub struct SqlBenchOptions {
    /// Rows of the table.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: u64,
    /// Distinct values of `k`.
    #[arg(long, default_value_t = 500)]
    pub groups: u64,
    /// Key of row i is i * stride: 1 gives dense keys, anything else sparse ones (the scan
    /// then reads the key column to prove keys distinct).
    #[arg(long, default_value_t = 1)]
    pub key_stride: i64,
    /// Rows per `WriteBatch` of the load.
    #[arg(long, default_value_t = 100_000)]
    pub load_batch_rows: u64,
    /// Timed runs per engine and thread count (after one warm-up run).
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// Thread counts (OmenDB's `sql_threads`, DuckDB's `threads`).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2])]
    pub threads: Vec<usize>,
    /// Directory for the report.
    #[arg(long, default_value = "bench-report")]
    pub out: PathBuf,
    /// Scratch directory for the database (default: under the system temp dir).
    #[arg(long)]
    pub scratch: Option<PathBuf>,
}

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum SqlBenchError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] omendb::Error),
    /// DuckDB (through python3) failed or is missing.
    #[error("DuckDB via python3: {0} (install it with scripts/install-test-deps.sh)")]
    DuckDb(String),
    /// The engines disagree.
    #[error("results differ: {0}")]
    Mismatch(String),
    /// Files or the report could not be written.
    #[error("{0}")]
    Io(String),
}

/// One thread count's figures.
#[derive(Clone, Debug)]
pub struct ThreadResult {
    /// Threads of both engines.
    pub threads: usize,
    /// OmenDB's run times, sorted.
    pub omendb: Vec<Duration>,
    /// DuckDB's run times, sorted.
    pub duckdb: Vec<Duration>,
}

fn p50(sorted: &[Duration]) -> Duration {
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

impl ThreadResult {
    /// OmenDB's p50 over DuckDB's.
    pub fn ratio(&self) -> f64 {
        p50(&self.omendb).as_secs_f64() / p50(&self.duckdb).as_secs_f64().max(1e-9)
    }
}

fn db_options(threads: usize) -> DbOptions {
    DbOptions {
        wal: WalOptions {
            sync_mode: SyncMode::Buffered {
                interval: Duration::from_millis(10),
            },
            ..WalOptions::default()
        },
        replicator: ReplicatorOptions {
            max_batch_rows: 64 << 10,
            max_file_rows: 1 << 20,
            compaction_target_rows: 1 << 20,
            lag_budget: u64::MAX,
            ..ReplicatorOptions::default()
        },
        throttle_timeout: Duration::from_secs(600),
        sql_threads: threads,
        ..DbOptions::default()
    }
}

/// A cheap deterministic mix of the row number (SplitMix64's finaliser).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Loads the table through `Db` and waits for the replicator's steady state.
fn load(db: &Db, options: &SqlBenchOptions) -> Result<Duration, SqlBenchError> {
    let started = Instant::now();
    db.create_table(
        "t",
        TableSchema {
            columns: vec![
                ColumnDef::new("id", DataType::Int64, false),
                ColumnDef::new("k", DataType::Int64, true),
                ColumnDef::new("x", DataType::Int64, true),
            ],
            key: 0,
        },
    )?;
    let mut row = 0;
    while row < options.rows {
        let end = (row + options.load_batch_rows).min(options.rows);
        let mut batch = WriteBatch::new();
        for i in row..end {
            let h = mix(i);
            batch.insert(
                "t",
                vec![
                    Value::Int64(i as i64 * options.key_stride),
                    Value::Int64((h % options.groups.max(1)) as i64),
                    Value::Int64(((h >> 32) % 1000) as i64),
                ],
            );
        }
        db.write(&batch)?;
        row = end;
    }
    steady(db)?;
    Ok(started.elapsed())
}

/// Flushes until the manifest stops changing (compactions done).
fn steady(db: &Db) -> Result<(), SqlBenchError> {
    let mut last = None;
    loop {
        db.replicator().flush_now().map_err(omendb::Error::from)?;
        std::thread::sleep(Duration::from_millis(500));
        let files: Vec<String> = table_files(db)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        if last.as_ref() == Some(&files) {
            return Ok(());
        }
        last = Some(files);
    }
}

fn table_files(db: &Db) -> Vec<PathBuf> {
    let manifest = db.replicator().manifest();
    manifest
        .tables
        .get("t")
        .map(|t| {
            t.files
                .iter()
                .map(|f| Manifest::file_path(db.replicator().root(), t, f))
                .collect()
        })
        .unwrap_or_default()
}

/// (k, sum, count) rows sorted by k.
type Groups = Vec<(i64, i64, i64)>;

fn omendb_groups(db: &Db) -> Result<Groups, SqlBenchError> {
    let result = db.sql(QUERY)?;
    let mut groups = Vec::new();
    for batch in &result.batches {
        let k = batch.column(0).as_primitive::<Int64Type>();
        let sum = batch.column(1).as_primitive::<Int64Type>();
        let count = batch.column(2).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            let value = |a: &arrow::array::Int64Array| {
                if a.is_null(i) { 0 } else { a.value(i) }
            };
            groups.push((value(k), value(sum), value(count)));
        }
    }
    groups.sort_unstable();
    Ok(groups)
}

/// Times `runs` runs of the query through `Db::sql` after one warm-up.
fn time_omendb(db: &Db, runs: usize) -> Result<Vec<Duration>, SqlBenchError> {
    db.sql(QUERY)?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let result = db.sql(QUERY)?;
        times.push(started.elapsed());
        std::hint::black_box(result);
    }
    times.sort();
    Ok(times)
}

const DUCKDB_SCRIPT: &str = r#"
import json, sys, time
import duckdb
files, threads, runs = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
query = "SELECT k, SUM(x), COUNT(*) FROM read_parquet(" + json.dumps(files).replace('"', "'") + ") GROUP BY k"
rows = con.execute(query).fetchall()
times = []
for _ in range(runs):
    started = time.perf_counter()
    con.execute(query).fetchall()
    times.append(time.perf_counter() - started)
print(json.dumps({"times": times, "rows": sorted([list(map(int, r)) for r in rows])}))
"#;

/// Times DuckDB in python (interpreter start excluded); also returns its groups.
fn time_duckdb(
    files: &[PathBuf],
    threads: usize,
    runs: usize,
) -> Result<(Vec<Duration>, Groups), SqlBenchError> {
    let list: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let list = format!(
        "[{}]",
        list.iter()
            .map(|p| format!("\"{}\"", p.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join(",")
    );
    let output = Command::new("python3")
        .arg("-c")
        .arg(DUCKDB_SCRIPT)
        .arg(&list)
        .arg(threads.to_string())
        .arg(runs.to_string())
        .output()
        .map_err(|e| SqlBenchError::DuckDb(e.to_string()))?;
    if !output.status.success() {
        return Err(SqlBenchError::DuckDb(
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    parse_duckdb(&text).ok_or_else(|| SqlBenchError::DuckDb(format!("unexpected output {text}")))
}

/// Parses `{"times": [..], "rows": [[k, sum, count], ..]}` without a JSON dependency.
fn parse_duckdb(text: &str) -> Option<(Vec<Duration>, Groups)> {
    let times_start = text.find("\"times\": [")? + "\"times\": [".len();
    let times_end = times_start + text.get(times_start..)?.find(']')?;
    let mut times: Vec<Duration> = text
        .get(times_start..times_end)?
        .split(',')
        .map(|s| s.trim().parse::<f64>().ok().map(Duration::from_secs_f64))
        .collect::<Option<_>>()?;
    times.sort();
    let rows_start = text.find("\"rows\": [")? + "\"rows\": [".len();
    let numbers: Vec<i64> = text
        .get(rows_start..)?
        .split(|c: char| !(c.is_ascii_digit() || c == '-'))
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    let groups = numbers
        .chunks_exact(3)
        .map(|c| (c[0], c[1], c[2]))
        .collect();
    Some((times, groups))
}

/// Runs the benchmark and writes `sql.md` (and `sql.svg`) into `options.out`.
pub fn run(options: &SqlBenchOptions) -> Result<PathBuf, SqlBenchError> {
    let scratch = options.scratch.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("omen-bench-sql-{}", std::process::id()))
    });
    let io = |e: std::io::Error| SqlBenchError::Io(e.to_string());
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&options.out).map_err(io)?;
    let first = options.threads.first().copied().unwrap_or(1);
    let db = Db::open(&scratch, db_options(first))?;
    eprintln!("loading {} rows through Db ...", options.rows);
    let load_time = load(&db, options)?;
    let files = table_files(&db);
    let bytes: u64 = files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "loaded in {load_time:?}: {} files, {bytes} bytes",
        files.len()
    );
    db.close()?;
    let mut results = Vec::new();
    let mut route = String::new();
    for &threads in &options.threads {
        // Reopen with this many SQL threads (the runtime is sized at open).
        let db = Db::open(&scratch, db_options(threads))?;
        steady(&db)?;
        let ours = omendb_groups(&db)?;
        let omendb = time_omendb(&db, options.runs)?;
        route = crate::db_bench::routes_text(&db.sql(QUERY)?.routes);
        let files = table_files(&db);
        let (duckdb, theirs) = time_duckdb(&files, threads, options.runs)?;
        if ours != theirs {
            return Err(SqlBenchError::Mismatch(format!(
                "{} groups from OmenDB, {} from DuckDB",
                ours.len(),
                theirs.len()
            )));
        }
        let result = ThreadResult {
            threads,
            omendb,
            duckdb,
        };
        eprintln!(
            "{threads} thread(s): OmenDB p50 {:?}, DuckDB p50 {:?}, ratio {:.2}",
            p50(&result.omendb),
            p50(&result.duckdb),
            result.ratio()
        );
        results.push(result);
        db.close()?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let path = options.out.join("sql.md");
    let text = report(options, &results, files.len(), bytes, load_time, &route);
    std::fs::write(&path, text).map_err(io)?;
    let lines = vec![
        Line {
            label: "OmenDB Db::sql p50".into(),
            points: results
                .iter()
                .map(|r| (r.threads as f64, p50(&r.omendb).as_secs_f64() * 1e3))
                .collect(),
            dashed: false,
        },
        Line {
            label: "DuckDB p50".into(),
            points: results
                .iter()
                .map(|r| (r.threads as f64, p50(&r.duckdb).as_secs_f64() * 1e3))
                .collect(),
            dashed: true,
        },
    ];
    plot::linear_lines(
        &options.out.join("sql.svg"),
        "GROUP BY over 10M rows: p50 query time",
        ("threads", "ms"),
        &lines,
    )
    .map_err(SqlBenchError::Io)?;
    Ok(path)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn report(
    options: &SqlBenchOptions,
    results: &[ThreadResult],
    files: usize,
    bytes: u64,
    load_time: Duration,
    route: &str,
) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# SQL GROUP BY: OmenDB vs DuckDB on the same Parquet files\n"
    );
    let _ = writeln!(
        text,
        "`{QUERY}` over {} rows ({} groups, key stride {}), loaded through `Db` in write \
         batches of {} rows in {:.1} s, then flushed and compacted: {files} Parquet file(s), \
         {:.1} MiB. {} timed runs per engine after one warm-up; DuckDB runs in python, \
         timed around `execute(..).fetchall()` on `read_parquet([files])`.\n",
        options.rows,
        options.groups,
        options.key_stride,
        options.load_batch_rows,
        load_time.as_secs_f64(),
        bytes as f64 / (1 << 20) as f64,
        options.runs
    );
    let _ = writeln!(text, "Scan route: {route}\n");
    let _ = writeln!(
        text,
        "| threads | OmenDB p50 ms | OmenDB min–max | DuckDB p50 ms | DuckDB min–max | ratio | target ≤ {RATIO_TARGET}x |"
    );
    let _ = writeln!(text, "|---|---|---|---|---|---|---|");
    for r in results {
        let range = |v: &[Duration]| {
            format!(
                "{}–{}",
                ms(v.first().copied().unwrap_or_default()),
                ms(v.last().copied().unwrap_or_default())
            )
        };
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {:.2} | {} |",
            r.threads,
            ms(p50(&r.omendb)),
            range(&r.omendb),
            ms(p50(&r.duckdb)),
            range(&r.duckdb),
            r.ratio(),
            if r.ratio() <= RATIO_TARGET {
                "MET"
            } else {
                "MISSED"
            }
        );
    }
    let _ = writeln!(text, "\n![p50 by threads](sql.svg)");
    text
}
