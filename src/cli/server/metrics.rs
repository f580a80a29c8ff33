//! The optional Prometheus endpoint of `omendb serve` (`--metrics-listen ADDR`): `GET /metrics`
//! answers the text exposition format (version 0.0.4); any other path gets a 404.
//!
//! What it shows: replication lag and throughput (the Parquet tier), the WAL's LSNs, rows per
//! table in the index tier, connections, statements by outcome and by the route their scans
//! took, and a histogram of statement latency. Counters are plain atomics bumped by the
//! sessions; the database's own figures are read at scrape time (each O(1) per table).
//!
//! The endpoint is a few lines of HTTP/1.1 on a tokio listener rather than an HTTP framework:
//! one path, one method, a response that is closed after it is sent.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use omendb::{Db, Route, RouteKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Upper bounds (seconds) of the latency histogram's buckets; `+Inf` is implied.
const LATENCY_BUCKETS: [f64; 12] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];
/// A request head larger than this is refused.
const REQUEST_HEAD_MAX: usize = 8 << 10;
/// A client that sends no complete request head in this time is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters the sessions bump; rendered with the database's figures on each scrape.
#[derive(Debug, Default)]
pub struct Metrics {
    connections_active: AtomicU64,
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    statements_ok: AtomicU64,
    statements_failed: AtomicU64,
    routes: [AtomicU64; 3],
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    /// Statements running now (shared with the sessions, which count them).
    statements_running: Arc<AtomicUsize>,
}

impl Metrics {
    /// The counter of running statements, for the sessions to keep.
    pub fn statements_running(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.statements_running)
    }

    pub fn connection_opened(&self) {
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
        self.connections_active.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_active.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one statement: how long it took, whether it succeeded, the routes it took.
    pub fn statement<'a>(
        &self,
        elapsed: Duration,
        ok: bool,
        routes: impl IntoIterator<Item = &'a Route>,
    ) {
        let counter = if ok {
            &self.statements_ok
        } else {
            &self.statements_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        for route in routes {
            self.routes[route.kind as usize].fetch_add(1, Ordering::Relaxed);
        }
        let seconds = elapsed.as_secs_f64();
        // Buckets are stored non-cumulative; rendering sums them.
        if let Some(bucket) = LATENCY_BUCKETS.iter().position(|&le| seconds <= le) {
            self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The exposition text: these counters and the database's figures now.
    pub fn render(&self, db: &Db) -> String {
        let mut out = String::new();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let one = |value: f64| vec![(String::new(), value)];

        metric(
            "omendb_statements_running",
            "gauge",
            "Statements running now (cancelled ones stop within one batch).",
            &one(self.statements_running.load(Ordering::Relaxed) as f64),
        );
        let wal = db.wal();
        metric(
            "omendb_wal_last_lsn",
            "gauge",
            "LSN of the last record appended to the write-ahead log.",
            &one(wal.last_lsn().0 as f64),
        );
        metric(
            "omendb_wal_durable_lsn",
            "gauge",
            "LSN up to which the write-ahead log is on disk.",
            &one(wal.durable_lsn().0 as f64),
        );
        let stats = db.replicator().stats();
        metric(
            "omendb_replication_up",
            "gauge",
            "1 while the replicator runs, 0 after it stopped on an error (see the log).",
            &one(if stats.failure.is_none() { 1.0 } else { 0.0 }),
        );
        metric(
            "omendb_replication_lag_records",
            "gauge",
            "WAL records the replicator has not read yet.",
            &one(stats.lag_records as f64),
        );
        metric(
            "omendb_replication_unflushed_records",
            "gauge",
            "WAL records not yet in Parquet (SQL reads them from the replicator's delta).",
            &one(stats.unflushed_records as f64),
        );
        metric(
            "omendb_replication_oldest_unflushed_seconds",
            "gauge",
            "Age of the oldest row waiting to be flushed to Parquet.",
            &one(stats.oldest_unflushed_age.as_secs_f64()),
        );
        metric(
            "omendb_replication_rows_total",
            "counter",
            "Rows written to Parquet since the server started.",
            &one(stats.rows_replicated as f64),
        );
        metric(
            "omendb_replication_files_written_total",
            "counter",
            "Parquet files written (flushes and compactions) since the server started.",
            &one(stats.files_written as f64),
        );
        metric(
            "omendb_replication_bytes_written_total",
            "counter",
            "Bytes of Parquet written since the server started.",
            &one(stats.bytes_written as f64),
        );
        metric(
            "omendb_parquet_files",
            "gauge",
            "Parquet files visible in the manifest, over all tables (the analytics tier).",
            &one(stats.files as f64),
        );
        let tables: Vec<(String, f64)> = db
            .tables()
            .into_iter()
            .filter_map(|(name, _)| {
                let rows = db.len(&name).ok()? as f64;
                Some((format!("{{table=\"{}\"}}", escape(&name)), rows))
            })
            .collect();
        metric(
            "omendb_index_rows",
            "gauge",
            "Rows of each table in the learned index (the point-read tier).",
            &tables,
        );
        metric(
            "omendb_connections_active",
            "gauge",
            "PostgreSQL sessions open now.",
            &one(load(&self.connections_active) as f64),
        );
        metric(
            "omendb_connections_accepted_total",
            "counter",
            "PostgreSQL sessions accepted.",
            &one(load(&self.connections_accepted) as f64),
        );
        metric(
            "omendb_connections_refused_total",
            "counter",
            "Connections refused because max_connections sessions were open.",
            &one(load(&self.connections_refused) as f64),
        );
        metric(
            "omendb_statements_total",
            "counter",
            "Statements run, by outcome.",
            &[
                (
                    "{outcome=\"ok\"}".to_string(),
                    load(&self.statements_ok) as f64,
                ),
                (
                    "{outcome=\"error\"}".to_string(),
                    load(&self.statements_failed) as f64,
                ),
            ],
        );
        let routes: Vec<(String, f64)> = RouteKind::ALL
            .iter()
            .map(|&r| {
                (
                    format!("{{route=\"{}\"}}", r.label()),
                    load(&self.routes[r as usize]) as f64,
                )
            })
            .collect();
        metric(
            "omendb_scan_routes_total",
            "counter",
            "Table scans by the route that served them: the index (point or range) or Parquet \
             plus the replicator's delta.",
            &routes,
        );
        let mut cumulative = 0;
        let mut histogram: Vec<(String, f64)> = LATENCY_BUCKETS
            .iter()
            .zip(&self.latency_buckets)
            .map(|(le, count)| {
                cumulative += load(count);
                (format!("_bucket{{le=\"{le}\"}}"), cumulative as f64)
            })
            .collect();
        let count = load(&self.latency_count);
        histogram.push(("_bucket{le=\"+Inf\"}".to_string(), count as f64));
        histogram.push((
            "_sum".to_string(),
            load(&self.latency_sum_micros) as f64 / 1e6,
        ));
        histogram.push(("_count".to_string(), count as f64));
        metric(
            "omendb_statement_duration_seconds",
            "histogram",
            "Time from receiving a statement to having its result (planning included).",
            &histogram,
        );
        out
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, db: Arc<Db>) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (metrics, db) = (Arc::clone(&metrics), Arc::clone(&db));
        tokio::spawn(async move {
            if let Err(error) = answer(socket, &metrics, &db).await {
                tracing::debug!(%peer, %error, "metrics request failed");
            }
        });
    }
}

async fn answer(mut socket: TcpStream, metrics: &Metrics, db: &Arc<Db>) -> std::io::Result<()> {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut socket)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next(), parts.next());
    let (status, content_type, body) = match (method, path) {
        (Some("GET"), Some("/metrics")) => {
            let text = metrics.render(db);
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text)
        }
        (Some(_), Some(_)) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "only GET /metrics is served here\n".to_string(),
        ),
        _ => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "bad request\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}

/// Reads up to the blank line that ends a request head (at most `REQUEST_HEAD_MAX` bytes).
async fn read_head(socket: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= REQUEST_HEAD_MAX {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
