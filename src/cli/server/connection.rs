//! One client connection: encryption negotiation (declined), then pgwire's message handlers
//! over a [`FrameGuard`], so that no malformed message reaches pgwire's decoders.
//!
//! This is pgwire's own connection loop (`process_socket`) with two differences: the socket is
//! guarded, and a message that cannot be decoded is answered `FATAL 08P01` naming what is
//! wrong before the connection closes (pgwire closes without a word).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use pgwire::api::{
    ClientInfo, ClientPortalStore, DefaultClient, PgWireConnectionState, PgWireServerHandlers,
};
use pgwire::error::PgWireError;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{PgWireMessageServerCodec, process_error, process_message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::frames::FrameGuard;
use super::objects::Objects;
use super::sqlstate;

/// SQLSTATE `08P01`: protocol violation.
const PROTOCOL_VIOLATION: &str = "08P01";

/// The request codes a client may send before its startup packet to ask for encryption.
const SSL_REQUEST: u32 = 80_877_103;
const GSS_REQUEST: u32 = 80_877_104;

/// The first byte of a TLS ClientHello (a client asking for TLS without SSLRequest).
const TLS_HANDSHAKE: u8 = 0x16;

/// Declines the encryption requests a client opens with (`N`, as a server without TLS
/// does) and returns the first eight bytes of what follows (the length and code of its
/// startup packet or cancel request); `None` when the client left or spoke TLS directly.
pub async fn decline_encryption(socket: &mut TcpStream) -> io::Result<Option<[u8; 8]>> {
    // SSLRequest, then GSSENCRequest (or the other way round), then the startup packet.
    for _ in 0..3 {
        let mut head = [0; 8];
        if socket.peek(&mut head[..1]).await? == 1 && head[0] == TLS_HANDSHAKE {
            return Ok(None);
        }
        match socket.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let code = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if length == 8 && matches!(code, SSL_REQUEST | GSS_REQUEST) {
            socket.write_all(b"N").await?;
            continue;
        }
        return Ok(Some(head));
    }
    Ok(None)
}

/// A Sync message, whole.
const SYNC: [u8; 5] = [b'S', 0, 0, 0, 4];

/// The most rows one Execute returns before its portal suspends (see `serve`).
const MAX_ROWS_PER_EXECUTE: i32 = 1 << 16;

/// Serves one client until it leaves, is refused, or a fatal error ends its session.
pub async fn serve<H: PgWireServerHandlers>(
    mut socket: TcpStream,
    peer: SocketAddr,
    handlers: Arc<H>,
    logged_in: impl Fn() -> bool + Send + Sync + 'static,
    failed: impl Fn(),
    idle_limit: impl Fn() -> Option<std::time::Duration>,
    sync_next: impl Fn(bool),
) -> io::Result<()> {
    socket.set_nodelay(true)?;
    let Some(head) = decline_encryption(&mut socket).await? else {
        return Ok(());
    };
    let mut socket = Framed::new(
        FrameGuard::new(socket, &head).until_login(logged_in),
        PgWireMessageServerCodec::new(DefaultClient::new(peer, false)),
    );
    socket.set_state(PgWireConnectionState::AwaitingStartup);
    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let mut objects = Objects::default();
    // A message read ahead (see the Sync hint below), handled next.
    let mut ahead = None;
    loop {
        // A session idle inside a transaction block longer than its limit is closed, as in
        // PostgreSQL (its transaction rolls back with it).
        let next = match ahead.take() {
            Some(next) => next,
            None => match idle_limit() {
                Some(limit) => match tokio::time::timeout(limit, socket.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        let info = sqlstate::info(
                            "FATAL",
                            "25P03",
                            "terminating connection due to idle-in-transaction timeout",
                        );
                        socket
                            .send(PgWireBackendMessage::ErrorResponse(info.into()))
                            .await?;
                        return socket.get_mut().shutdown().await;
                    }
                },
                None => socket.next().await,
            },
        };
        let mut message = match next {
            None => return Ok(()),
            Some(Ok(message)) => message,
            Some(Err(error)) => return refuse(&mut socket, peer, error).await,
        };
        // pgwire reserves room for `max_rows` rows up front: 2^31 - 1 aborted the process on
        // an 85 GB allocation, and a negative count overflowed. As PostgreSQL, zero or less
        // is no limit; past MAX_ROWS_PER_EXECUTE the portal suspends there instead.
        if let PgWireFrontendMessage::Execute(execute) = &mut message {
            if execute.max_rows < 0 {
                execute.max_rows = 0;
            }
            execute.max_rows = execute.max_rows.min(MAX_ROWS_PER_EXECUTE);
        }
        // Whether a Sync follows this message: an Execute that is the last of its pipeline runs
        // as a statement of its own (see `handler.rs`). Drivers send the Sync with it; when
        // less than a whole message header follows yet (the rest of a pipeline split across
        // packets or reads, or a loaded client), read the next message before running it
        // rather than guess: a wrong guess runs an autocommit write as an implicit block,
        // which may fail with 40001. As in PostgreSQL, nothing of the Execute reaches the
        // client before a Flush or Sync anyway. Inside a block, the wait is bounded by the
        // idle limit.
        let sync_follows = if matches!(message, PgWireFrontendMessage::Execute(_))
            && socket.read_buffer().len() < SYNC.len()
        {
            let next = match idle_limit() {
                Some(limit) => tokio::time::timeout(limit, socket.next()).await.ok(),
                None => Some(socket.next().await),
            };
            match next {
                Some(next) => {
                    let sync = matches!(next, Some(Ok(PgWireFrontendMessage::Sync(_))));
                    ahead = Some(next);
                    sync
                }
                None => false,
            }
        } else {
            socket.read_buffer().starts_with(&SYNC)
        };
        sync_next(sync_follows);
        // The client is leaving: close now (asyncpg waits for the server to hang up).
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        let wait_for_sync = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        if let Err(error) = objects.admit(&message, socket.portal_store()) {
            failed();
            process_error(&mut socket, error, wait_for_sync).await?;
            continue;
        }
        // A cancel request comes on a connection of its own, which ends with it.
        let is_cancel = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        let processed = process_message(
            message,
            &mut socket,
            Arc::clone(&startup),
            Arc::clone(&simple),
            Arc::clone(&extended),
            Arc::clone(&copy),
            Arc::clone(&cancel),
        )
        .await;
        if let Err(error) = processed {
            let fatal = error.is_fatal();
            // PostgreSQL's code for a portal that does not exist (pgwire says 26000, the
            // code of a missing prepared statement).
            let error = match error {
                PgWireError::PortalNotFound(name) => {
                    super::sqlstate::error("34000", format!("portal \"{name}\" does not exist"))
                }
                other => other,
            };
            failed();
            process_error(&mut socket, error, wait_for_sync).await?;
            if fatal {
                return Ok(());
            }
        }
        if is_cancel {
            return Ok(());
        }
    }
}

/// Answers a message that could not be read with `FATAL 08P01` (`22021` for text that is not
/// UTF8) and ends the connection.
async fn refuse<S>(
    socket: &mut Framed<FrameGuard<TcpStream>, PgWireMessageServerCodec<S>>,
    peer: SocketAddr,
    error: PgWireError,
) -> io::Result<()> {
    let code = match socket.get_ref().refused() {
        Some(super::frames::FrameError::Encoding { .. }) => sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
        _ => PROTOCOL_VIOLATION,
    };
    let message = match (socket.get_ref().refused(), &error) {
        (Some(refused), _) => refused.to_string(),
        // The client went away mid-message or the socket failed: no one to tell.
        (None, PgWireError::IoError(_)) => return Ok(()),
        (None, other) => other.to_string(),
    };
    tracing::warn!(%peer, "connection closed: {message}");
    let info = sqlstate::info("FATAL", code, message);
    socket
        .send(PgWireBackendMessage::ErrorResponse(info.into()))
        .await?;
    socket.get_mut().shutdown().await
}
