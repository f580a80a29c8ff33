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
mod block;
mod commands;
mod connection;
mod encode;
mod frames;
mod handler;
mod memory_return;
mod metrics;
mod objects;
mod params;
mod session;
mod sqlstate;

/// How long statements running at SIGTERM may take to end before they are cancelled.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long, after the grace period and the cancellation, threads still running a statement
/// are waited for before the process exits without them.
const SHUTDOWN_STRAGGLERS: Duration = Duration::from_secs(2);

/// The PostgreSQL version the server reports (`server_version`, `version()`).
pub const SERVER_VERSION: &str = concat!("16.0 (OmenDB ", env!("CARGO_PKG_VERSION"), ")");

use std::sync::Arc;

use omendb::{Db, DbOptions};
use pgwire::api::PgWireServerHandlers;
use pgwire::api::auth::StartupHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::config::{
    DEFAULT_DIR, DEFAULT_LISTEN, DEFAULT_LOGIN_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_PENDING_LOGINS, DEFAULT_USER,
};
use super::{CliError, Config, ServeArgs};
use std::time::Duration;

/// What each connection is handed.
struct Handlers {
    backend: Arc<handler::Backend>,
    startup: Arc<auth::Startup>,
    cancel: Arc<Canceller>,
}

/// Answers cancel requests: cancels the running statement of the session their key names.
struct Canceller {
    sessions: Arc<session::Sessions>,
}

#[async_trait::async_trait]
impl pgwire::api::cancel::CancelHandler for Canceller {
    async fn on_cancel_request(&self, request: pgwire::messages::cancel::CancelRequest) {
        let found = self
            .sessions
            .cancel(request.pid, &request.secret_key.to_bytes());
        tracing::debug!(pid = request.pid, found, "cancel request");
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.backend)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.backend)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
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

    let max_pending_logins = config
        .server
        .max_pending_logins
        .unwrap_or(DEFAULT_MAX_PENDING_LOGINS)
        .max(1);
    let login_timeout = Duration::from_millis(
        config
            .server
            .login_timeout_ms
            .unwrap_or(DEFAULT_LOGIN_TIMEOUT_MS)
            .max(1),
    );
    let metrics_listen = args
        .metrics_listen
        .or_else(|| config.server.metrics_listen.clone());
    // A panic ends only the connection whose task it is in; log it as one line (a
    // backtrace per bad client would flood the log).
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|m| (*m).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(%location, "a connection failed on a bug: {message}");
    }));
    let mut options = DbOptions::default();
    if let Some(mb) = config.server.query_memory_mb {
        options.sql_memory_limit = mb.max(1).saturating_mul(1 << 20);
    }
    if let Some(mb) = config.server.total_query_memory_mb {
        options.sql_total_memory = mb.max(1).saturating_mul(1 << 20);
    }
    if let Some(mb) = config.server.query_spill_mb {
        options.sql_spill_limit = mb.max(1).saturating_mul(1 << 20);
    }
    if let Some(mb) = config.server.max_value_mb {
        options.sql_limits.max_value_bytes = mb.max(1).saturating_mul(1 << 20);
    }
    if let Some(mb) = config.server.transaction_memory_mb {
        options.transaction_memory = mb.max(1).saturating_mul(1 << 20);
    }
    if let Some(mb) = config.server.max_transaction_mb {
        options.max_transaction_bytes = mb.max(1).saturating_mul(1 << 20);
    }
    let db = Arc::new(Db::open(&dir, options)?);
    let metrics = Arc::new(metrics::Metrics::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("omendb-serve")
        // Statements are planned on these threads: room for the deepest one SqlLimits
        // accepts, so that Db::sql need not allocate a stack per statement (only the pages
        // touched are committed).
        .thread_stack_size(64 << 20)
        .enable_all()
        .build()
        .map_err(|e| CliError::io("start the server runtime", e))?;
    let sessions = Arc::new(session::Sessions::new(metrics.statements_running()));
    let slots = Arc::new(Semaphore::new(max_connections));
    let handlers = Arc::new(Handlers {
        backend: Arc::new(handler::Backend::new(
            Arc::clone(&db),
            Arc::clone(&metrics),
            Arc::clone(&sessions),
        )),
        startup: Arc::new(auth::Startup::new(
            user,
            &password,
            (Arc::clone(&sessions), Arc::clone(&slots)),
            Arc::clone(&metrics),
        )),
        cancel: Arc::new(Canceller {
            sessions: Arc::clone(&sessions),
        }),
    });
    let statement_timeout =
        std::time::Duration::from_millis(config.server.statement_timeout_ms.unwrap_or(0));
    let endpoints = Endpoints {
        listen: &listen,
        metrics_listen: metrics_listen.as_deref(),
    };
    let served = runtime.block_on(serve(
        endpoints,
        max_pending_logins,
        handlers,
        (&db, &metrics),
        (&sessions, statement_timeout, login_timeout),
        &dir,
    ));
    drop(slots);
    // Statements were cancelled above; a thread still busy in a library call that does not
    // look at its cancellation (planning one statement) is left behind after a bound, so the
    // process exits in time whatever a client sent.
    runtime.shutdown_timeout(SHUTDOWN_STRAGGLERS);
    let closed = match Arc::try_unwrap(db) {
        Ok(db) => db.close().map_err(CliError::from),
        Err(_) => {
            // Every acknowledged write is already durable in the log (a commit is answered
            // after its fsync): exiting without closing loses none, as after a crash.
            tracing::warn!("a statement did not end in time; exiting without closing the database");
            eprintln!(
                "omendb: a statement was still running {SHUTDOWN_STRAGGLERS:?} after it was \
                 cancelled; exiting without closing the database (every acknowledged write is \
                 in the log and is recovered at the next start)"
            );
            served?;
            return Ok(());
        }
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
    max_pending_logins: usize,
    handlers: Arc<Handlers>,
    (db, metrics): (&Arc<Db>, &Arc<metrics::Metrics>),
    (sessions, statement_timeout, login_timeout): (&Arc<session::Sessions>, Duration, Duration),
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
    memory_return::spawn();
    // Tests and scripts wait for this line (it carries the port when 0 was asked for).
    eprintln!("omendb: serving {} on {address}", dir.display());
    // Connections not yet logged in hold a login slot (a session slot is taken at login), so
    // that clients which never log in cannot lock out those that do.
    let limit = Arc::new(Semaphore::new(max_pending_logins));
    let mut running = JoinSet::new();
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
                        // Out of file descriptors and the like: log and keep serving, after
                        // a pause, so that a failing accept does not spin a core.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                    tracing::warn!(%peer, max_pending_logins, "connection refused: too many connections logging in");
                    metrics.connection_refused();
                    running.spawn(async move {
                        let _ = tokio::time::timeout(login_timeout, refuse(socket)).await;
                    });
                    continue;
                };
                let handlers = Arc::clone(&handlers);
                let metrics = Arc::clone(metrics);
                let registry = Arc::clone(sessions);
                running.spawn(async move {
                    tracing::debug!(%peer, "session start");
                    metrics.connection_opened();
                    let session = Arc::new(session::Session::new(
                        statement_timeout,
                        Arc::clone(&registry.active),
                    ));
                    session.hold(permit);
                    registry.open(peer, Arc::clone(&session));
                    // However the connection ends, a panic in the protocol code included, its
                    // session and slot go.
                    let _closed = Closed {
                        session: Arc::clone(&session),
                        registry: Arc::clone(&registry),
                        metrics: Arc::clone(&metrics),
                        peer,
                    };
                    match watch_disconnect(socket, Arc::clone(&session)) {
                        Ok((socket, watcher)) => {
                            let login_deadline = async {
                                tokio::time::sleep(login_timeout).await;
                                if session.is_logged_in() {
                                    std::future::pending::<()>().await;
                                }
                            };
                            tokio::select! {
                                served = connection::serve(socket, peer, handlers, {
                                    let session = Arc::clone(&session);
                                    move || session.is_logged_in()
                                }, {
                                    // Any error in a block fails it, whichever layer met it.
                                    let session = Arc::clone(&session);
                                    move || session.note(false, true)
                                }, {
                                    let session = Arc::clone(&session);
                                    move || session.idle_in_transaction_limit()
                                }, {
                                    let session = Arc::clone(&session);
                                    move |next| session.set_sync_next(next)
                                }) => {
                                    if let Err(error) = served {
                                        tracing::debug!(%peer, %error, "session ended with an error");
                                    }
                                }
                                () = login_deadline => {
                                    tracing::info!(%peer, ?login_timeout, "connection closed: no login in time");
                                }
                            }
                            watcher.abort();
                        }
                        Err(error) => tracing::warn!(%peer, %error, "could not watch the connection"),
                    }
                });
            }
            // Reap finished sessions so the set does not grow.
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    drop(listener);
    // Statements running now get `SHUTDOWN_GRACE` to end; then they are cancelled, and every
    // connection is closed.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while sessions.running() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if sessions.running() > 0 {
        tracing::info!(
            running = sessions.running(),
            "cancelling statements still running"
        );
        sessions.cancel_all(omendb::CancelReason::Shutdown);
        // Let the cancelled statements tell their clients (57P01) before the sessions end.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while sessions.running() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.shutdown().await;
    metrics_task.shutdown().await;
    Ok(())
}

/// Ends a connection's session when dropped.
struct Closed {
    session: Arc<session::Session>,
    registry: Arc<session::Sessions>,
    metrics: Arc<metrics::Metrics>,
    peer: std::net::SocketAddr,
}

impl Drop for Closed {
    fn drop(&mut self) {
        // Whatever still runs for this connection is of no use to anyone.
        self.session.cancel(omendb::CancelReason::UserRequest);
        self.session.release_slot();
        self.registry.close(self.peer);
        self.metrics.connection_closed();
    }
}

/// Watches a connection for its client going away while a statement runs (the protocol
/// loop reads nothing then): a second handle on the socket waits for the peer's close and
/// cancels the session's running statement. Returns the socket to serve and the watcher.
fn watch_disconnect(
    socket: TcpStream,
    session: Arc<session::Session>,
) -> std::io::Result<(TcpStream, tokio::task::JoinHandle<()>)> {
    let socket = socket.into_std()?;
    let watched = TcpStream::from_std(socket.try_clone()?)?;
    let socket = TcpStream::from_std(socket)?;
    let watcher = tokio::spawn(async move {
        loop {
            match watched.ready(tokio::io::Interest::READABLE).await {
                Ok(ready) if ready.is_read_closed() => {
                    session.cancel(omendb::CancelReason::UserRequest);
                    return;
                }
                // Data waiting (the protocol loop will read it): look again shortly.
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                Err(_) => return,
            }
        }
    });
    Ok((socket, watcher))
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
    let Ok(Some(head)) = connection::decline_encryption(&mut socket).await else {
        return;
    };
    let length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let Some(rest) = length.checked_sub(head.len()).filter(|&n| n <= 10_000) else {
        return;
    };
    if socket.read_exact(&mut vec![0; rest]).await.is_err() {
        return;
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
