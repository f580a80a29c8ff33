//! The `Db` measurements (issue 5): point reads against RocksDB holding the same rows, point
//! queries through SQL, freshness of analytical queries under a steady write load (as
//! HATtrick defines it), and what an analytical client costs point reads and writes on the
//! other core.
//!
//! Rows are the replicator benchmark's `orders` rows (`replicator_workload::row`), keys drawn
//! uniformly from `0..2^40`.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use omen_alex::AlexMap;
use omen_replicator::change::Value;
use omendb::wal::{SyncMode, WalOptions};
use omendb::{Db, DbOptions, RouteKind, RowBuf, ValueRef, WriteBatch};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::db_rocks::RocksRows;
use crate::replicator_workload::{self as workload, TABLE};
use crate::usage::{self, CpuMeter, CpuUsage};
use crate::wal_bench::Latency;

/// Keys are drawn from `0..KEY_SPAN` (the rows' timestamps stay in range).
pub const KEY_SPAN: i64 = 1 << 40;

/// The analytical query of the freshness and isolation runs.
pub const ANALYTICAL_QUERY: &str = "SELECT COUNT(*), SUM(qty) FROM orders";

/// Why a measurement failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbBenchError {
    /// The database failed.
    #[error("omendb: {0}")]
    Db(#[from] omendb::Error),
    /// The log failed.
    #[error("omen-wal: {0}")]
    Wal(#[from] omendb::wal::WalError),
    /// The replicator failed.
    #[error("omen-replicator: {0}")]
    Replicator(#[from] omendb::replicator::ReplicatorError),
    /// RocksDB failed.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// Scratch directories, the report or thread affinity failed.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    /// A benchmark thread panicked.
    #[error("a benchmark thread panicked")]
    ThreadPanicked,
    /// A result was wrong.
    #[error("{0}")]
    Check(String),
}

type Result<T> = std::result::Result<T, DbBenchError>;

/// `count` distinct keys drawn uniformly from `0..KEY_SPAN`, sorted.
pub fn uniform_keys(count: usize, seed: u64) -> Vec<i64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut keys: Vec<i64> = Vec::with_capacity(count + count / 16 + 16);
    while keys.len() < count {
        let missing = count - keys.len();
        keys.extend((0..missing + missing / 16 + 16).map(|_| rng.random_range(0..KEY_SPAN)));
        keys.sort_unstable();
        keys.dedup();
    }
    keys.shuffle(&mut rng);
    keys.truncate(count);
    keys.sort_unstable();
    keys
}

/// `count` of `keys` drawn uniformly at random (with repetition).
pub fn probes(keys: &[i64], count: usize, seed: u64) -> Vec<i64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| keys[rng.random_range(0..keys.len())])
        .collect()
}

fn qty(row: &[Value]) -> i64 {
    match row.get(1) {
        Some(Value::Int64(q)) => *q,
        _ => 0,
    }
}

fn qty_of(row: &RowBuf) -> i64 {
    match row.value(1) {
        Some(ValueRef::Int64(q)) => q,
        _ => 0,
    }
}

/// Options of a `Db` with the given sync mode and one SQL thread (so that an analytical
/// client occupies one core), everything else default.
pub fn db_options(sync_mode: SyncMode) -> DbOptions {
    DbOptions {
        wal: WalOptions {
            sync_mode,
            ..WalOptions::default()
        },
        sql_threads: 1,
        ..DbOptions::default()
    }
}

/// How a table was loaded.
#[derive(Clone, Copy, Debug)]
pub struct LoadResult {
    /// Rows written.
    pub rows: usize,
    /// Rows per `WriteBatch`.
    pub batch_rows: usize,
    /// From the first write until the last returned and the WAL was synced (building the rows
    /// included).
    pub written: Duration,
    /// Until `flush_now` returned: every row in Parquet too.
    pub flushed: Duration,
}

/// Opens a `Db` in `dir`, creates `orders` and inserts the rows of `keys` in batches of
/// `batch_rows`; `progress` hears of each batch.
pub fn load_db(
    dir: &Path,
    sync_mode: SyncMode,
    keys: &[i64],
    batch_rows: usize,
    mut progress: impl FnMut(usize),
) -> Result<(Db, LoadResult)> {
    let db = Db::open(dir, db_options(sync_mode))?;
    db.create_table(TABLE, workload::schema())?;
    let start = Instant::now();
    for chunk in keys.chunks(batch_rows.max(1)) {
        let mut batch = WriteBatch::new();
        for &key in chunk {
            batch.insert(TABLE, workload::row(key).to_vec());
        }
        db.write(&batch)?;
        progress(chunk.len());
    }
    db.wal().sync()?;
    let written = start.elapsed();
    db.replicator().flush_now()?;
    let flushed = start.elapsed();
    Ok((
        db,
        LoadResult {
            rows: keys.len(),
            batch_rows,
            written,
            flushed,
        },
    ))
}

/// Point reads: `Db::get` against RocksDB, and the parts of `Db::get` on their own.
#[derive(Clone, Debug, Default)]
pub struct GetResult {
    /// Lookups per round.
    pub lookups: usize,
    /// ns per `Db::get` (a `RowBuf`: a copy of the row's encoded values) reading `qty`, each
    /// round.
    pub db_ns: Vec<f64>,
    /// ns per RocksDB `get_pinned` reading `qty` from the pinned value, each round.
    pub rocks_ns: Vec<f64>,
    /// ns per `Db::get` plus building the row's values (`to_row`), each round.
    pub db_row_ns: Vec<f64>,
    /// ns per RocksDB `get_pinned` plus decoding the row into values, each round.
    pub rocks_row_ns: Vec<f64>,
    /// ns per `Db::get_with` reading `qty` in place (no row copied), each round.
    pub db_view_ns: Vec<f64>,
    /// ns per `AlexMap::get` reading `qty` through the reference (no refcount, no lock).
    pub alex_ref_ns: Vec<f64>,
    /// ns per `AlexMap::get` plus cloning the `Arc` row (as `Db::get` returns it).
    pub alex_clone_ns: Vec<f64>,
    /// ns per `RwLock::read` + `AlexMap::get` + clone: what `Db::get` does after finding the
    /// table.
    pub locked_clone_ns: Vec<f64>,
    /// Time to load RocksDB (SST writing and ingestion).
    pub rocks_load: Duration,
    /// Bytes of RocksDB's table files.
    pub rocks_sst_bytes: u64,
    /// Bytes in RocksDB's block cache after warming.
    pub rocks_cache_bytes: usize,
    /// The block cache's capacity.
    pub rocks_cache_capacity: usize,
    /// Shape of the Db's index (built by the load's inserts).
    pub db_index: Option<omen_alex::AlexStats>,
    /// Shape of the breakdown's index (bulk-loaded from the same rows).
    pub bare_index: Option<omen_alex::AlexStats>,
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

impl GetResult {
    /// Best round of `Db::get`, ns.
    pub fn db_best_ns(&self) -> f64 {
        min(&self.db_ns)
    }

    /// Best round of RocksDB, ns.
    pub fn rocks_best_ns(&self) -> f64 {
        min(&self.rocks_ns)
    }

    /// How many times faster `Db::get` is (best rounds).
    pub fn speedup(&self) -> f64 {
        self.rocks_best_ns() / self.db_best_ns()
    }

    /// How many times faster `Db::get` is when both sides build the row's values.
    pub fn row_speedup(&self) -> f64 {
        min(&self.rocks_row_ns) / min(&self.db_row_ns)
    }

    /// How many times faster `Db::get_with` reads one column than RocksDB reading it from
    /// the pinned value (best rounds).
    pub fn view_speedup(&self) -> f64 {
        self.rocks_best_ns() / min(&self.db_view_ns)
    }
}

fn time_ns(lookups: usize, work: impl FnOnce() -> i64) -> (f64, i64) {
    let start = Instant::now();
    let sum = std::hint::black_box(work());
    (
        start.elapsed().as_secs_f64() * 1e9 / lookups.max(1) as f64,
        sum,
    )
}

/// Times `read` over `probes` (ns per lookup) and checks the sum of what it read.
fn time_reader(
    name: &str,
    probes: &[i64],
    expected: i64,
    read: impl Fn(i64) -> i64,
) -> Result<f64> {
    let (ns, sum) = time_ns(probes.len(), || probes.iter().map(|&k| read(k)).sum());
    check_sum(name, sum, expected)?;
    Ok(ns)
}

/// Loads RocksDB with the rows of `keys`, then times `rounds` rounds of each reader over
/// the same random `probes`, alternating the order between rounds; every reader must find
/// every row.
pub fn measure_gets(
    db: &Db,
    keys: &[i64],
    probes: &[i64],
    rounds: usize,
    rocks_dir: &Path,
    mut step: impl FnMut(&str),
) -> Result<GetResult> {
    let n = probes.len();
    let mut result = GetResult {
        lookups: n,
        ..GetResult::default()
    };
    step("loading RocksDB (SST file, ingest)");
    // Room for every data block twice over: ~60 bytes a row with the block overhead.
    result.rocks_cache_capacity = (keys.len() * 128).max(64 << 20);
    let start = Instant::now();
    let rocks = RocksRows::load(rocks_dir, keys, result.rocks_cache_capacity, |_| {})?;
    result.rocks_load = start.elapsed();
    step("warming RocksDB's block cache");
    let warmed = rocks.warm();
    if warmed != keys.len() as u64 {
        return Err(DbBenchError::Check(format!(
            "RocksDB holds {warmed} rows, {} loaded",
            keys.len()
        )));
    }
    result.rocks_sst_bytes = rocks.sst_bytes();
    result.rocks_cache_bytes = rocks.cache_usage_bytes();

    step("building a bare AlexMap of Arc rows over the Db's rows (for the breakdown)");
    // The layout before rows were stored in the index: an `Arc<[Value]>` per row, allocated
    // one by one in the load's (random) order.
    let mut order = keys.to_vec();
    order.shuffle(&mut StdRng::seed_from_u64(0x000a_110c));
    let mut pairs: Vec<(i64, Arc<[Value]>)> = Vec::with_capacity(keys.len());
    for key in order {
        let row = db
            .get(TABLE, key)?
            .ok_or_else(|| DbBenchError::Check(format!("Db lost key {key}")))?;
        pairs.push((key, Arc::from(row.to_row())));
    }
    pairs.sort_unstable_by_key(|&(key, _)| key);
    let bare =
        RwLock::new(AlexMap::from_sorted(pairs).map_err(|e| DbBenchError::Check(e.to_string()))?);
    result.db_index = Some(db.index_stats(TABLE)?);
    result.bare_index = Some(bare.read().unwrap_or_else(PoisonError::into_inner).stats());
    let expected: i64 = probes.iter().map(|&k| workload::qty_of(k)).sum();

    for round in 0..rounds.max(1) {
        step(&format!("point reads, round {} of {}", round + 1, rounds));
        // RocksDB's reader of one column in place is the counterpart of both `Db::get` (an
        // owned copy of the row's encoded values, from which `qty` is read) and
        // `Db::get_with` (`qty` read in place); the values built on both sides are the other
        // pair. The order alternates by round.
        type Reader<'a> = (&'static str, Box<dyn Fn(i64) -> i64 + 'a>);
        let readers: [Reader; 5] = [
            (
                "Db::get",
                Box::new(|k| {
                    db.get(TABLE, k)
                        .ok()
                        .flatten()
                        .map_or(0, |row| qty_of(&row))
                }),
            ),
            (
                "RocksDB get_pinned (qty in place)",
                Box::new(|k| rocks.qty(k).ok().flatten().unwrap_or(0)),
            ),
            (
                "Db::get + to_row",
                Box::new(|k| {
                    let row = db.get(TABLE, k).ok().flatten().map(|row| row.to_row());
                    row.map_or(0, |row| qty(&row))
                }),
            ),
            (
                "RocksDB get_pinned + decode",
                Box::new(|k| rocks.get(k).ok().flatten().map_or(0, |row| qty(&row))),
            ),
            (
                "Db::get_with",
                Box::new(|k| {
                    db.get_with(TABLE, k, |row| match row.map(|r| r.value(1)) {
                        Some(Ok(ValueRef::Int64(q))) => q,
                        _ => 0,
                    })
                    .unwrap_or(0)
                }),
            ),
        ];
        let mut order: Vec<usize> = (0..readers.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        let mut ns = [0.0; 5];
        for i in order {
            let (name, read) = &readers[i];
            ns[i] = time_reader(name, probes, expected, read)?;
        }
        for (rounds, ns) in [
            &mut result.db_ns,
            &mut result.rocks_ns,
            &mut result.db_row_ns,
            &mut result.rocks_row_ns,
            &mut result.db_view_ns,
        ]
        .into_iter()
        .zip(ns)
        {
            rounds.push(ns);
        }
        let map = bare.read().unwrap_or_else(PoisonError::into_inner);
        result
            .alex_ref_ns
            .push(time_reader("AlexMap::get", probes, expected, |k| {
                map.get(k).map_or(0, |row| qty(row))
            })?);
        result.alex_clone_ns.push(time_reader(
            "AlexMap::get + clone",
            probes,
            expected,
            |k| map.get(k).cloned().map_or(0, |row| qty(&row)),
        )?);
        drop(map);
        let locked = time_reader("RwLock + AlexMap::get + clone", probes, expected, |k| {
            let row = bare
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(k)
                .cloned();
            row.map_or(0, |row| qty(&row))
        })?;
        result.locked_clone_ns.push(locked);
    }
    Ok(result)
}

fn check_sum(what: &str, sum: i64, expected: i64) -> Result<()> {
    if sum == expected {
        Ok(())
    } else {
        Err(DbBenchError::Check(format!(
            "{what}: the rows read sum to qty {sum}, expected {expected}"
        )))
    }
}

/// `SELECT * FROM orders WHERE id = c` through `Db::sql`.
#[derive(Clone, Debug, Default)]
pub struct SqlPointResult {
    /// Queries timed (after a warm-up of a tenth as many).
    pub queries: usize,
    /// Latency of one `Db::sql` call (parsing, planning, the index lookup, collecting).
    pub latency: Latency,
    /// Mean latency.
    pub mean: Duration,
    /// Every latency, ns, sorted.
    pub nanos: Vec<u64>,
    /// The route of the first query.
    pub route: String,
    /// Latency of the same query with its key filter hidden from the index
    /// (`WHERE abs(id) = k`): the route a query takes without routing, for the baseline.
    pub scan_latency: Latency,
    /// Queries timed on that route.
    pub scan_queries: usize,
    /// Every latency on that route, ns, sorted.
    pub scan_nanos: Vec<u64>,
    /// The route those queries took.
    pub scan_route: String,
    /// Latency of the same point query planned by DataFusion (`Db::sql_planned`: a session,
    /// planning, the index scan of the table provider), without the router's fast path.
    pub planned_latency: Latency,
    /// Queries timed through DataFusion.
    pub planned_queries: usize,
    /// Latency of `Db::get` of the same keys, in the same run.
    pub get_latency: Latency,
}

impl SqlPointResult {
    /// How many times faster the index route is than the scan route (p50s).
    pub fn routing_speedup(&self) -> f64 {
        self.scan_latency.p50.as_secs_f64() / self.latency.p50.as_secs_f64().max(1e-12)
    }

    /// How many times faster the router's fast path is than DataFusion's plan (p50s).
    pub fn fast_path_speedup(&self) -> f64 {
        self.planned_latency.p50.as_secs_f64() / self.latency.p50.as_secs_f64().max(1e-12)
    }
}

/// Queries timed on the scan route (each reads the whole table).
const SCAN_QUERIES: usize = 10;

/// How a point query of [`measure_sql_points`] is run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SqlPath {
    /// `Db::sql`: the router's fast path.
    Routed,
    /// `Db::sql_planned`: planned by DataFusion, served by the index scan.
    Planned,
    /// `Db::sql` of `abs(id) = k`: only the Parquet + delta scan can serve it.
    Scan,
}

/// Times `SELECT * FROM orders WHERE id = k` for each of `probes`; each must return the row
/// through the index.
pub fn measure_sql_points(db: &Db, probes: &[i64]) -> Result<SqlPointResult> {
    let run = |key: i64, path: SqlPath| -> Result<(Duration, String)> {
        let indexed = path != SqlPath::Scan;
        let query = if indexed {
            format!("SELECT * FROM {TABLE} WHERE id = {key}")
        } else {
            format!("SELECT * FROM {TABLE} WHERE abs(id) = {key}")
        };
        let start = Instant::now();
        let result = if path == SqlPath::Planned {
            db.sql_planned(&query)?
        } else {
            db.sql(&query)?
        };
        let elapsed = start.elapsed();
        let rows: usize = result.batches.iter().map(|b| b.num_rows()).sum();
        let found = result
            .batches
            .iter()
            .filter_map(|b| b.column(0).as_primitive_opt::<Int64Type>())
            .any(|ids| ids.values().contains(&key));
        let route = routes_text(&result.routes);
        if rows != 1 || !found {
            return Err(DbBenchError::Check(format!(
                "{query}: {rows} rows (route {route})"
            )));
        }
        let expected = if indexed {
            RouteKind::IndexPoint
        } else {
            RouteKind::ParquetDelta
        };
        if result.routes.iter().any(|r| r.kind != expected) || result.routes.is_empty() {
            return Err(DbBenchError::Check(format!(
                "{query} was not served by the {}: {route}",
                expected.describe()
            )));
        }
        Ok((elapsed, route))
    };
    for &key in probes.iter().take(probes.len() / 10) {
        run(key, SqlPath::Routed)?;
    }
    let mut nanos = Vec::with_capacity(probes.len());
    let mut route = String::new();
    for &key in probes {
        let (elapsed, r) = run(key, SqlPath::Routed)?;
        if route.is_empty() {
            route = r;
        }
        nanos.push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }
    let latency = Latency::of(&mut nanos);
    let mean = Duration::from_nanos(nanos.iter().sum::<u64>() / nanos.len().max(1) as u64);
    let mut scan_nanos = Vec::with_capacity(SCAN_QUERIES);
    let mut scan_route = String::new();
    for &key in probes.iter().take(SCAN_QUERIES) {
        let (elapsed, r) = run(key, SqlPath::Scan)?;
        scan_route = r;
        scan_nanos.push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }
    // DataFusion's plan costs about a millisecond: a tenth of the probes is plenty.
    let mut planned: Vec<u64> = probes
        .iter()
        .take((probes.len() / 10).max(1))
        .map(|&key| run(key, SqlPath::Planned).map(|(elapsed, _)| nanos_of(elapsed)))
        .collect::<Result<_>>()?;
    let mut get_nanos = Vec::with_capacity(probes.len());
    for &key in probes {
        let start = Instant::now();
        let row = db.get(TABLE, key)?;
        get_nanos.push(nanos_of(start.elapsed()));
        if row.is_none() {
            return Err(DbBenchError::Check(format!("Db::get({key}) found no row")));
        }
    }
    Ok(SqlPointResult {
        queries: probes.len(),
        latency,
        mean,
        nanos,
        route,
        scan_latency: Latency::of(&mut scan_nanos),
        scan_queries: scan_nanos.len(),
        scan_nanos,
        scan_route,
        planned_queries: planned.len(),
        planned_latency: Latency::of(&mut planned),
        get_latency: Latency::of(&mut get_nanos),
    })
}

fn nanos_of(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

/// One analytical query as the reader saw it: start, duration, snapshot LSN, count, sum.
type QueryObservation = (Instant, Duration, u64, i64, i64);

/// One analytical query of the freshness run.
#[derive(Clone, Copy, Debug)]
pub struct QuerySample {
    /// When it started, since the writers started.
    pub start: Duration,
    /// How long `Db::sql` took.
    pub latency: Duration,
    /// Its snapshot LSN.
    pub snapshot_lsn: u64,
    /// HATtrick freshness: its start minus the commit time of the first write it does not
    /// see, if that write committed before it started; zero otherwise.
    pub freshness: Duration,
    /// Whether `COUNT(*)` and `SUM(qty)` matched the writes at or below the snapshot LSN.
    pub counts_match: bool,
}

/// The freshness run.
#[derive(Clone, Debug, Default)]
pub struct FreshnessResult {
    /// Rows in the table before the writers started.
    pub preloaded: usize,
    /// Rows per write.
    pub record_rows: usize,
    /// Target rows per second.
    pub target_rows_per_s: u64,
    /// Writes committed.
    pub commits: usize,
    /// Length of the run.
    pub elapsed: Duration,
    /// Latency of one `Db::write` (GroupCommit: includes the fsync).
    pub write_latency: Latency,
    /// The queries, in order.
    pub queries: Vec<QuerySample>,
    /// CPU during the run.
    pub cpu: CpuUsage,
}

impl FreshnessResult {
    /// Rows committed per second.
    pub fn rows_per_s(&self) -> f64 {
        (self.commits * self.record_rows) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Queries with freshness 0.
    pub fn fresh_queries(&self) -> usize {
        self.queries
            .iter()
            .filter(|q| q.freshness.is_zero())
            .count()
    }

    /// Share of queries with freshness 0.
    pub fn fresh_share(&self) -> f64 {
        self.fresh_queries() as f64 / self.queries.len().max(1) as f64
    }
}

/// A commit the writer saw acknowledged.
#[derive(Clone, Copy)]
struct Commit {
    lsn: u64,
    at: Instant,
    rows_total: usize,
    qty_total: i64,
}

/// In a fresh `Db` (GroupCommit) holding `preload` rows, one writer commits `record_rows`
/// new rows every `record_rows / rows_per_s` seconds for `duration`, while one client runs
/// [`ANALYTICAL_QUERY`] nonstop. Each query's freshness is computed from its snapshot LSN
/// against the writer's acknowledged commits, and its counts are checked against them.
pub fn measure_freshness(
    dir: &Path,
    preload: usize,
    rows_per_s: u64,
    record_rows: usize,
    duration: Duration,
    mut tick: impl FnMut() + Send,
) -> Result<FreshnessResult> {
    let keys: Vec<i64> = (0..preload as i64).collect();
    let (db, _) = load_db(dir, SyncMode::GroupCommit, &keys, 10_000, |_| {})?;
    let base_lsn = db.wal().last_lsn().0;
    let base_qty: i64 = keys.iter().map(|&k| workload::qty_of(k)).sum();
    let commits: Mutex<Vec<Commit>> = Mutex::new(vec![Commit {
        lsn: base_lsn,
        at: Instant::now(),
        rows_total: preload,
        qty_total: base_qty,
    }]);
    let stop = AtomicBool::new(false);
    let period = Duration::from_secs_f64(record_rows as f64 / rows_per_s.max(1) as f64);
    let barrier = Barrier::new(2);
    let started = Instant::now();
    let meter = CpuMeter::start();
    let (writes, samples) = std::thread::scope(|s| {
        let writer = s.spawn(|| -> Result<Vec<u64>> {
            barrier.wait();
            let mut latencies = Vec::new();
            let mut next_key = preload as i64;
            let (mut rows_total, mut qty_total) = (preload, base_qty);
            let begin = Instant::now();
            let mut deadline = begin;
            while begin.elapsed() < duration {
                let now = Instant::now();
                if now < deadline {
                    std::thread::sleep(deadline - now);
                }
                deadline += period;
                let mut batch = WriteBatch::new();
                for key in next_key..next_key + record_rows as i64 {
                    batch.insert(TABLE, workload::row(key).to_vec());
                    qty_total += workload::qty_of(key);
                }
                next_key += record_rows as i64;
                rows_total += record_rows;
                let t0 = Instant::now();
                let lsn = db.write(&batch)?;
                let at = Instant::now();
                latencies.push(u64::try_from((at - t0).as_nanos()).unwrap_or(u64::MAX));
                commits
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Commit {
                        lsn: lsn.0,
                        at,
                        rows_total,
                        qty_total,
                    });
            }
            stop.store(true, Ordering::SeqCst);
            Ok(latencies)
        });
        let reader = s.spawn(|| -> Result<Vec<QueryObservation>> {
            barrier.wait();
            let mut samples = Vec::new();
            let mut last_tick = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                let start = Instant::now();
                let result = db.sql(ANALYTICAL_QUERY)?;
                let latency = start.elapsed();
                let (count, sum) = count_and_sum(&result.batches)?;
                samples.push((start, latency, result.snapshot_lsn.0, count, sum));
                if last_tick.elapsed() >= Duration::from_secs(1) {
                    last_tick = Instant::now();
                    tick();
                }
            }
            Ok(samples)
        });
        let writes = writer.join().map_err(|_| DbBenchError::ThreadPanicked);
        let samples = reader.join().map_err(|_| DbBenchError::ThreadPanicked);
        (writes, samples)
    });
    let cpu = meter.stop();
    let elapsed = started.elapsed();
    let mut latencies = writes??;
    let samples = samples??;
    let commits = commits.into_inner().unwrap_or_else(PoisonError::into_inner);
    // Commits are in LSN order: one writer, and LSNs grow with each write.
    let queries = samples
        .iter()
        .map(|&(start, latency, snapshot_lsn, count, sum)| {
            let seen = commits.partition_point(|c| c.lsn <= snapshot_lsn);
            let freshness = match commits.get(seen) {
                Some(first_unseen) if first_unseen.at < start => start - first_unseen.at,
                _ => Duration::ZERO,
            };
            let counts_match = seen
                .checked_sub(1)
                .and_then(|i| commits.get(i))
                .is_some_and(|c| c.rows_total as i64 == count && c.qty_total == sum);
            QuerySample {
                start: start.saturating_duration_since(started),
                latency,
                snapshot_lsn,
                freshness,
                counts_match,
            }
        })
        .collect();
    db.close()?;
    Ok(FreshnessResult {
        preloaded: preload,
        record_rows,
        target_rows_per_s: rows_per_s,
        commits: commits.len() - 1,
        elapsed,
        write_latency: Latency::of(&mut latencies),
        queries,
        cpu,
    })
}

fn count_and_sum(batches: &[arrow::record_batch::RecordBatch]) -> Result<(i64, i64)> {
    let first = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| DbBenchError::Check("the analytical query returned no row".into()))?;
    let column = |i: usize| {
        first
            .column(i)
            .as_primitive_opt::<Int64Type>()
            .map(|a| a.value(0))
    };
    match (column(0), column(1)) {
        (Some(count), Some(sum)) => Ok((count, sum)),
        (Some(0), None) => Ok((0, 0)),
        _ => Err(DbBenchError::Check(format!(
            "unexpected result columns: {:?}",
            first.schema()
        ))),
    }
}

/// One round of the isolation run.
#[derive(Clone, Copy, Debug)]
pub struct IsolationRound {
    /// Whether the analytical client ran.
    pub analytics: bool,
    /// Point operations (gets and upserts) completed.
    pub operations: u64,
    /// Of which upserts.
    pub upserts: u64,
    /// Length of the round.
    pub elapsed: Duration,
    /// Analytical queries completed during the round.
    pub queries: u64,
    /// CPU during the round (other processes show in `other_cores`).
    pub cpu: CpuUsage,
}

impl IsolationRound {
    /// Point operations per second.
    pub fn ops_per_s(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Which cores the two clients ran on.
#[derive(Clone, Copy, Debug)]
pub struct Cores {
    /// The point client's core.
    pub point: usize,
    /// The core of the analytical client and the SQL runtime's workers.
    pub rest: usize,
}

/// Restricts thread `tid` to `cpus` with util-linux `taskset` (a thread id is a process id
/// to `sched_setaffinity`), which keeps this crate free of `unsafe` and of new dependencies.
fn pin(tid: u64, cpus: &[usize]) -> io::Result<()> {
    let list = cpus
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let output = std::process::Command::new("taskset")
        .args(["-p", "-c", &list, &tid.to_string()])
        .output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "taskset -p -c {list} {tid}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// The kernel's id of the calling thread, from `/proc/thread-self` (a link to
/// `PID/task/TID`).
fn this_tid() -> io::Result<u64> {
    let link = std::fs::read_link("/proc/thread-self")?;
    link.file_name()
        .and_then(|name| name.to_str()?.parse().ok())
        .ok_or_else(|| io::Error::other(format!("unexpected /proc/thread-self: {link:?}")))
}

/// Pins every thread of the process except `except` to `cpus` (threads that exit meanwhile
/// are skipped).
fn pin_all_but(except: u64, cpus: &[usize]) {
    for task in usage::tasks() {
        if task.tid != except {
            let _ = pin(task.tid, cpus);
        }
    }
}

/// A small fast generator for the client loop (SplitMix64), so that drawing keys costs
/// little next to the operations.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Rounds of a point client (pinned to `cores.point`: `get_percent`% `Db::get`, the rest
/// single-row upserts of existing keys) with and without an analytical client running
/// [`ANALYTICAL_QUERY`] nonstop on `cores.rest`, where the SQL runtime's workers are pinned
/// too; the other threads (the replicator) may use either core. The order alternates:
/// without/with, then with/without, and so on.
pub fn measure_isolation(
    db: &Db,
    keys: &[i64],
    get_percent: u64,
    round_duration: Duration,
    pairs: usize,
    cores: Cores,
    mut step: impl FnMut(&str),
) -> Result<Vec<IsolationRound>> {
    let mut rounds = Vec::new();
    let mut order = Vec::new();
    for pair in 0..pairs.max(1) {
        if pair % 2 == 0 {
            order.extend([false, true]);
        } else {
            order.extend([true, false]);
        }
    }
    let total = order.len();
    for (i, analytics) in order.into_iter().enumerate() {
        step(&format!(
            "isolation round {} of {total} ({} analytics)",
            i + 1,
            if analytics { "with" } else { "without" }
        ));
        rounds.push(isolation_round(
            db,
            keys,
            get_percent,
            round_duration,
            analytics,
            cores,
            i as u64,
        )?);
    }
    // Give the threads both cores back.
    pin_all_but(0, &[cores.point, cores.rest]);
    Ok(rounds)
}

fn isolation_round(
    db: &Db,
    keys: &[i64],
    get_percent: u64,
    duration: Duration,
    analytics: bool,
    cores: Cores,
    seed: u64,
) -> Result<IsolationRound> {
    let stop_sql = AtomicBool::new(false);
    let queries = AtomicU64::new(0);
    let sql_tid = AtomicU64::new(0);
    let sql_started = Barrier::new(if analytics { 2 } else { 1 });
    std::thread::scope(|s| {
        let sql = analytics.then(|| {
            s.spawn(|| -> Result<()> {
                let tid = this_tid()?;
                pin(tid, &[cores.rest])?;
                sql_tid.store(tid, Ordering::SeqCst);
                sql_started.wait();
                while !stop_sql.load(Ordering::SeqCst) {
                    let result = db.sql(ANALYTICAL_QUERY)?;
                    count_and_sum(&result.batches)?;
                    queries.fetch_add(1, Ordering::SeqCst);
                }
                Ok(())
            })
        });
        sql_started.wait();
        let point = s.spawn(|| -> Result<(u64, u64, Duration, CpuUsage, u64)> {
            let tid = this_tid()?;
            pin(tid, &[cores.point])?;
            // The analytics (its client, pinned above, and the SQL runtime's workers) get the
            // other core. The rest of the process, the replicator above all (its work is the
            // point client's writes), may run on either. (Pinned with the analytics instead,
            // the replicator falls behind while they fill their core, and backpressure then
            // slows the point client's writes more: 68.8% instead of 83.5–101%.)
            let analytics_tid = sql_tid.load(Ordering::SeqCst);
            for task in usage::tasks() {
                if task.tid != tid && task.tid != analytics_tid {
                    let sql_worker = task.name.starts_with("omendb-sql");
                    let cpus: &[usize] = if sql_worker {
                        &[cores.rest]
                    } else {
                        &[cores.point, cores.rest]
                    };
                    let _ = pin(task.tid, cpus);
                }
            }
            let mut rng = SplitMix(0x5eed ^ seed);
            let (mut operations, mut upserts) = (0u64, 0u64);
            let queries_before = queries.load(Ordering::SeqCst);
            let meter = CpuMeter::start();
            let start = Instant::now();
            let mut elapsed;
            loop {
                for _ in 0..256 {
                    let r = rng.next();
                    let key = keys[(r >> 8) as usize % keys.len()];
                    if r % 100 < get_percent {
                        let row = db.get(TABLE, key)?;
                        std::hint::black_box(row.map(|row| qty_of(&row)));
                    } else {
                        let mut batch = WriteBatch::new();
                        batch.upsert(TABLE, workload::row(key).to_vec());
                        db.write(&batch)?;
                        upserts += 1;
                    }
                }
                operations += 256;
                elapsed = start.elapsed();
                if elapsed >= duration {
                    break;
                }
            }
            let cpu = meter.stop();
            let queries_during = queries.load(Ordering::SeqCst) - queries_before;
            Ok((operations, upserts, elapsed, cpu, queries_during))
        });
        let outcome = point.join().map_err(|_| DbBenchError::ThreadPanicked);
        stop_sql.store(true, Ordering::SeqCst);
        if let Some(sql) = sql {
            sql.join().map_err(|_| DbBenchError::ThreadPanicked)??;
        }
        let (operations, upserts, elapsed, cpu, queries) = outcome??;
        Ok(IsolationRound {
            analytics,
            operations,
            upserts,
            elapsed,
            queries,
            cpu,
        })
    })
}

/// The routes of one query, as `EXPLAIN` lists them, on one line.
pub(crate) fn routes_text(routes: &[omendb::Route]) -> String {
    let texts: Vec<String> = routes.iter().map(ToString::to_string).collect();
    texts.join("; ")
}
