//! `omendb serve`: the PostgreSQL wire protocol (pgwire) over one database.
//!
//! - Password authentication (SCRAM-SHA-256) always: the user and password come from
//!   `OMENDB_USER` / `OMENDB_PASSWORD`, else the config's `[server]` table; without a
//!   password the server refuses to start.
//! - Loopback by default; at most `max_connections` sessions at once, the next ones are
//!   answered `FATAL 53300 too many connections` and closed.
//! - Optionally, Prometheus metrics on a second address (`--metrics-listen`, see `metrics`).
//! - On SIGTERM or Ctrl-C: stop accepting, end the sessions, wait for running statements,
//!   then close the database (replicator flushed, log synced).

mod auth;
mod encode;
mod handler;
mod metrics;
mod params;
mod sqlstate;

use std::sync::Arc;

use omendb::{Db, DbOptions};
use pgwire::api::PgWireServerHandlers;
use pgwire::api::auth::StartupHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::config::{DEFAULT_DIR, DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS, DEFAULT_USER};
use super::{CliError, Config, ServeArgs};

/// What each connection is handed.
struct Handlers {
    backend: Arc<handler::Backend>,
    startup: Arc<auth::Startup>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.backend)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.backend)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.handler()
    }
}

/// Runs `omendb serve` until SIGTERM or Ctrl-C.
pub fn run(config: &Config, args: ServeArgs) -> Result<(), CliError> {
    let dir = config.dir(args.dir.as_deref(), DEFAULT_DIR);
    let listen = args
        .listen
        .or_else(|| config.server.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let max_connections = args
        .max_connections
        .or(config.server.max_connections)
        .unwrap_or(DEFAULT_MAX_CONNECTIONS)
        .max(1);
    let user = std::env::var("OMENDB_USER")
        .ok()
        .or_else(|| config.server.user.clone())
        .unwrap_or_else(|| DEFAULT_USER.to_string());
    let password = std::env::var("OMENDB_PASSWORD")
        .ok()
        .or_else(|| config.server.password.clone())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            CliError::Usage(
                "omendb serve needs a password: set OMENDB_PASSWORD, or `password` under \
                 [server] in the --config file"
                    .to_string(),
            )
        })?;

    let metrics_listen = args
        .metrics_listen
        .or_else(|| config.server.metrics_listen.clone());
    let db = Arc::new(Db::open(&dir, DbOptions::default())?);
    let metrics = Arc::new(metrics::Metrics::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("omendb-serve")
        .enable_all()
        .build()
        .map_err(|e| CliError::io("start the server runtime", e))?;
    let handlers = Arc::new(Handlers {
        backend: Arc::new(handler::Backend::new(Arc::clone(&db), Arc::clone(&metrics))),
        startup: Arc::new(auth::Startup::new(user, &password)),
    });
    let endpoints = Endpoints {
        listen: &listen,
        metrics_listen: metrics_listen.as_deref(),
    };
    let served = runtime.block_on(serve(
        endpoints,
        max_connections,
        handlers,
        (&db, &metrics),
        &dir,
    ));
    // Dropping the runtime waits for statements still running on blocking threads; then no
    // handle to the database is left.
    drop(runtime);
    let closed = match Arc::try_unwrap(db) {
        Ok(db) => db.close().map_err(CliError::from),
        Err(_) => Err(CliError::Usage(
            "the database is still in use at shutdown; it was not closed cleanly".to_string(),
        )),
    };
    served?;
    closed?;
    tracing::info!("database closed");
    eprintln!("omendb: shut down cleanly");
    Ok(())
}

/// Where `serve` listens.
struct Endpoints<'a> {
    listen: &'a str,
    metrics_listen: Option<&'a str>,
}

async fn serve(
    endpoints: Endpoints<'_>,
    max_connections: usize,
    handlers: Arc<Handlers>,
    (db, metrics): (&Arc<Db>, &Arc<metrics::Metrics>),
    dir: &std::path::Path,
) -> Result<(), CliError> {
    let listen = endpoints.listen;
    let shutdown = shutdown_signal()?;
    tokio::pin!(shutdown);
    // Ends with this function: the task holds a handle to the database only until then.
    let mut metrics_task = JoinSet::new();
    if let Some(metrics_listen) = endpoints.metrics_listen {
        let (listener, address) = bind(metrics_listen, "metrics").await?;
        eprintln!("omendb: metrics on http://{address}/metrics");
        metrics_task.spawn(metrics::serve(
            listener,
            Arc::clone(metrics),
            Arc::clone(db),
        ));
    }
    let (listener, address) = bind(listen, "PostgreSQL clients").await?;
    // Tests and scripts wait for this line (it carries the port when 0 was asked for).
    eprintln!("omendb: serving {} on {address}", dir.display());
    let limit = Arc::new(Semaphore::new(max_connections));
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            signal = &mut shutdown => {
                tracing::info!(signal, "shutting down");
                eprintln!("omendb: {signal} received, shutting down");
                break;
            }
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: log and keep serving.
                        tracing::warn!(%error, "accept failed");
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                    tracing::warn!(%peer, max_connections, "connection refused: too many connections");
                    metrics.connection_refused();
                    sessions.spawn(refuse(socket));
                    continue;
                };
                let handlers = Arc::clone(&handlers);
                let metrics = Arc::clone(metrics);
                sessions.spawn(async move {
                    tracing::debug!(%peer, "session start");
                    metrics.connection_opened();
                    if let Err(error) = pgwire::tokio::process_socket(socket, None, handlers).await {
                        tracing::debug!(%peer, %error, "session ended with an error");
                    }
                    metrics.connection_closed();
                    drop(permit);
                });
            }
            // Reap finished sessions so the set does not grow.
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    drop(listener);
    sessions.shutdown().await;
    metrics_task.shutdown().await;
    Ok(())
}

/// Listens on `address` for `what`, warning when that is beyond loopback; returns the listener
/// and the address it got (with the real port when 0 was asked for).
async fn bind(address: &str, what: &str) -> Result<(TcpListener, std::net::SocketAddr), CliError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| CliError::io(format!("listen for {what} on {address}"), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| CliError::io(format!("read the address of {what}"), e))?;
    if !bound.ip().is_loopback() {
        tracing::warn!(address = %bound, "listening for {what} beyond loopback: the network can connect");
    }
    Ok((listener, bound))
}

/// A future that resolves on SIGTERM or Ctrl-C (SIGINT), naming the signal. SIGTERM is
/// watched from the call on (before the server announces itself), so a SIGTERM sent as soon
/// as the server listens is never lost.
fn shutdown_signal() -> Result<impl std::future::Future<Output = &'static str>, CliError> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| CliError::io("watch SIGTERM", e))?;
    Ok(async move {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    })
}

/// Answers a connection over the limit: reads its startup packet (declining TLS), then sends
/// `FATAL 53300` as PostgreSQL does, and closes.
async fn refuse(mut socket: TcpStream) {
    const SSL_REQUEST: u32 = 80_877_103;
    const GSS_REQUEST: u32 = 80_877_104;
    for _ in 0..3 {
        let Ok(length) = socket.read_u32().await else {
            return;
        };
        let Some(body) = (length as usize).checked_sub(4).filter(|&n| n <= 10_000) else {
            return;
        };
        let mut packet = vec![0; body];
        if socket.read_exact(&mut packet).await.is_err() {
            return;
        }
        let code = packet
            .get(..4)
            .and_then(|c| <[u8; 4]>::try_from(c).ok())
            .map(u32::from_be_bytes);
        if matches!(code, Some(SSL_REQUEST | GSS_REQUEST)) {
            if socket.write_all(b"N").await.is_err() {
                return;
            }
            continue;
        }
        break;
    }
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', sqlstate::TOO_MANY_CONNECTIONS),
        (b'M', "sorry, too many clients already"),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&u32::try_from(fields.len() + 4).unwrap_or(0).to_be_bytes());
    message.extend_from_slice(&fields);
    let _ = socket.write_all(&message).await;
    let _ = socket.shutdown().await;
}
