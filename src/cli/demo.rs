//! `omendb demo`: the tour. Creates `customers` and `orders`, bulk-loads generated rows
//! through durable write batches (with progress bars), then runs a mixed workload — point
//! reads, updates, analytical queries — through SQL, printing for each kind the route the
//! router took, p50/p99 latency, and the replicator's lag and Parquet tier; it ends with a
//! summary that checks the analytics saw every write.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use omendb::{Db, DbOptions, Route, Value, WriteBatch};

use super::{CliError, Config, DemoArgs, format, statements};

/// Rows per write batch while loading.
const LOAD_BATCH_ROWS: u64 = 10_000;
/// Distinct order statuses.
const STATUSES: [&str; 4] = ["new", "paid", "shipped", "returned"];
/// Customer regions.
const REGIONS: [&str; 5] = ["north", "south", "east", "west", "central"];

/// A deterministic generator (SplitMix64), so every run loads the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Latencies of one kind of operation, and the routes taken.
#[derive(Default)]
struct Kind {
    latencies: Vec<Duration>,
    routes: BTreeMap<String, u64>,
}

impl Kind {
    fn record(&mut self, started: Instant, routes: &[Route]) {
        self.latencies.push(started.elapsed());
        // Routes carry per-query details (keys, files, LSNs): count by table and kind.
        let route = if routes.is_empty() {
            "write: WAL + index".to_string()
        } else {
            let kinds: Vec<String> = routes
                .iter()
                .map(|r| format!("{}: {}", r.table, r.kind.describe()))
                .collect();
            kinds.join(", ")
        };
        *self.routes.entry(route).or_default() += 1;
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(rank).copied().unwrap_or_default()
    }

    fn report(&self, name: &str) -> String {
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|(route, n)| format!("{route} (x{n})"))
            .collect();
        format!(
            "{name:<12} ops={:<6} p50={:>9.3} ms  p99={:>9.3} ms  route: {}",
            self.latencies.len(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            routes.join("; ")
        )
    }
}

fn bar(len: u64, message: &'static str, hidden: bool) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if hidden {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template(
        "{msg:>10} [{bar:40}] {pos}/{len} rows ({per_sec}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message);
    bar
}

fn tiers(db: &Db) -> String {
    let stats = db.replicator().stats();
    format!(
        "replication: lag {} records, {} not yet in Parquet (oldest {:.0} ms); Parquet tier: {} \
         files, {} rows replicated ({:.0} rows/s)",
        stats.lag_records,
        stats.unflushed_records,
        stats.oldest_unflushed_age.as_secs_f64() * 1e3,
        stats.files,
        stats.rows_replicated,
        stats.rows_per_second
    )
}

/// Runs the SQL and returns its first value as f64 (for the checks).
fn scalar(db: &Db, sql: &str) -> Result<f64, CliError> {
    use arrow::array::{Array, Float64Array, Int64Array};
    let result = db.sql(sql)?;
    let column = result
        .batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| b.column(0).clone());
    let value = column.and_then(|c| {
        let c = c.as_any();
        c.downcast_ref::<Int64Array>()
            .filter(|a| a.is_valid(0))
            .map(|a| a.value(0) as f64)
            .or_else(|| {
                c.downcast_ref::<Float64Array>()
                    .filter(|a| a.is_valid(0))
                    .map(|a| a.value(0))
            })
    });
    value.ok_or_else(|| CliError::Usage(format!("no numeric result from {sql}")))
}

/// Runs `omendb demo`.
pub fn run(config: &Config, args: DemoArgs) -> Result<(), CliError> {
    let dir = config.dir(args.dir.as_deref(), "omendb-demo");
    let orders = args.rows.max(1);
    let customers = (orders / 10).max(1);
    let hidden = args.no_progress;
    println!("OmenDB demo in {}", dir.display());
    let db = Db::open(&dir, DbOptions::default())?;
    db.sql(
        "DROP TABLE IF EXISTS orders; DROP TABLE IF EXISTS customers;
         CREATE TABLE customers (id BIGINT PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL,
                                 signup DATE NOT NULL);
         CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT NOT NULL,
                              amount DOUBLE NOT NULL, status TEXT NOT NULL,
                              created_at TIMESTAMP NOT NULL)",
    )?;
    println!("\n== load: {customers} customers, {orders} orders (durable write batches) ==");
    let started = Instant::now();
    let mut rng = Rng(42);
    let progress = bar(customers, "customers", hidden);
    let mut batch = WriteBatch::new();
    for id in 0..customers {
        batch.insert(
            "customers",
            vec![
                Value::Int64(id as i64),
                Value::Utf8(format!("customer-{id}")),
                Value::Utf8(REGIONS[rng.below(REGIONS.len() as u64) as usize].to_string()),
                Value::Date32(18_000 + rng.below(2_000) as i32),
            ],
        );
        if batch.len() as u64 >= LOAD_BATCH_ROWS || id + 1 == customers {
            db.write(&batch)?;
            progress.inc(batch.len() as u64);
            batch = WriteBatch::new();
        }
    }
    progress.finish();
    let progress = bar(orders, "orders", hidden);
    // Cents, so that the sum is exact in f64 for the freshness check.
    let mut total_cents: i64 = 0;
    for id in 0..orders {
        let cents = 100 + rng.below(100_000) as i64;
        total_cents += cents;
        batch.insert(
            "orders",
            vec![
                Value::Int64(id as i64),
                Value::Int64(rng.below(customers) as i64),
                Value::Float64(cents as f64 / 100.0),
                Value::Utf8(STATUSES[rng.below(STATUSES.len() as u64) as usize].to_string()),
                Value::TimestampMicros(1_700_000_000_000_000 + id as i64 * 1_000_000),
            ],
        );
        if batch.len() as u64 >= LOAD_BATCH_ROWS || id + 1 == orders {
            db.write(&batch)?;
            progress.inc(batch.len() as u64);
            batch = WriteBatch::new();
        }
    }
    progress.finish();
    let load = started.elapsed();
    println!(
        "loaded {} rows in {:.2} s ({:.0} rows/s)",
        orders + customers,
        load.as_secs_f64(),
        (orders + customers) as f64 / load.as_secs_f64().max(1e-9)
    );
    println!("{}", tiers(&db));

    println!("\n== mixed workload ==");
    let mut reads = Kind::default();
    let mut updates = Kind::default();
    let mut analytics = Kind::default();
    let analytical = [
        "SELECT status, COUNT(*) AS orders, SUM(amount) AS revenue FROM orders GROUP BY status",
        "SELECT c.region, COUNT(*) AS orders, AVG(o.amount) AS avg_amount FROM orders o \
         JOIN customers c ON o.customer_id = c.id GROUP BY c.region",
        "SELECT COUNT(*) FROM orders WHERE amount > 500",
    ];
    let analytical_ops = (args.ops / 100).max(analytical.len() as u64);
    let total = args.ops * 2 + analytical_ops;
    let stride = (total / analytical_ops).max(1);
    let progress = bar(total, "workload", hidden);
    for i in 0..total {
        // Interleaved: reads and updates alternate, an analytical query every `stride`.
        let reads_left = (reads.latencies.len() as u64) < args.ops;
        let updates_left = (updates.latencies.len() as u64) < args.ops;
        let analytic_due = i % stride == 0 && (analytics.latencies.len() as u64) < analytical_ops;
        let started = Instant::now();
        if analytic_due || (!reads_left && !updates_left) {
            let sql = analytical[analytics.latencies.len() % analytical.len()];
            let result = db.sql(sql)?;
            analytics.record(started, &result.routes);
        } else if reads_left && (i % 2 == 0 || !updates_left) {
            let id = rng.below(orders);
            let result = db.sql(&format!("SELECT * FROM orders WHERE id = {id}"))?;
            reads.record(started, &result.routes);
        } else {
            let id = rng.below(orders);
            // One cent more per update: the freshness check below counts them.
            let result = db.sql(&format!(
                "UPDATE orders SET amount = amount + 0.01, status = 'paid' WHERE id = {id}"
            ))?;
            total_cents += statements::count(&result.batches) as i64;
            updates.record(started, &result.routes);
        }
        progress.inc(1);
    }
    progress.finish();
    println!("{}", reads.report("point read"));
    println!("{}", updates.report("update"));
    println!("{}", analytics.report("analytical"));
    println!("{}", tiers(&db));

    println!("\n== a query and its route ==");
    let sql = analytical[0];
    println!("{sql};");
    let result = db.sql(sql)?;
    println!(
        "{}",
        format::result(statements::Kind::Rows, &result.batches)?
    );
    let explain = db.sql("EXPLAIN SELECT * FROM orders WHERE id = 7")?;
    println!(
        "EXPLAIN SELECT * FROM orders WHERE id = 7;  -- routes: {:?}",
        explain.routes
    );

    // Freshness: the analytical path (Parquet + unflushed rows) must see every write,
    // including the updates just made.
    let count = scalar(&db, "SELECT COUNT(*) FROM orders")? as u64;
    let cents = scalar(
        &db,
        "SELECT SUM(CAST(ROUND(amount * 100) AS BIGINT)) FROM orders",
    )?;
    let fresh = count == orders && cents as i64 == total_cents;
    println!("\n== summary ==");
    println!(
        "demo complete: orders={count} customers={customers} reads={} updates={} analytics={} \
         fresh={}",
        reads.latencies.len(),
        updates.latencies.len(),
        analytics.latencies.len(),
        if fresh { "yes" } else { "NO" }
    );
    println!(
        "point reads p50 {:.3} ms, updates p50 {:.3} ms, analytical p50 {:.1} ms; load {:.0} \
         rows/s",
        reads.percentile(0.5).as_secs_f64() * 1e3,
        updates.percentile(0.5).as_secs_f64() * 1e3,
        analytics.percentile(0.5).as_secs_f64() * 1e3,
        (orders + customers) as f64 / load.as_secs_f64().max(1e-9)
    );
    println!("{}", tiers(&db));
    db.close()?;
    if !fresh {
        return Err(CliError::Usage(format!(
            "analytics missed writes: {count} orders (expected {orders}), {cents} cents \
             (expected {total_cents})"
        )));
    }
    Ok(())
}
