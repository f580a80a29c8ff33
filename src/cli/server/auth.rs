//! Password authentication: SCRAM-SHA-256 against one configured user.

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{FutureExt, Sink};
use pgwire::api::PgWireConnectionState;
use pgwire::api::auth::StartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{AuthSource, DefaultServerParameterProvider, LoginInfo, Password};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::PasswordMessageFamily;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::Semaphore;

use pgwire::api::{ClientInfo, PidSecretKeyGenerator};
use pgwire::messages::ProtocolVersion;
use pgwire::messages::startup::SecretKey;

use super::session::Sessions;
use super::sqlstate;

/// PBKDF2 iterations of the stored password (PostgreSQL's default).
const ITERATIONS: usize = 4096;

/// The one account the server accepts. The password is kept only salted and hashed.
#[derive(Debug)]
struct Account {
    user: String,
    salt: Vec<u8>,
    salted_password: Vec<u8>,
}

#[async_trait]
impl AuthSource for Account {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        if login.user() != Some(self.user.as_str()) {
            tracing::warn!(user = ?login.user(), host = login.host(), "login refused: unknown user");
            return Err(PgWireError::UserError(Box::new(sqlstate::info(
                "FATAL",
                sqlstate::INVALID_PASSWORD,
                format!(
                    "password authentication failed for user \"{}\"",
                    login.user().unwrap_or("")
                ),
            ))));
        }
        Ok(Password::new(
            Some(self.salt.clone()),
            self.salted_password.clone(),
        ))
    }
}

/// Gives each connection its cancel key and records it with its session.
struct CancelKeys {
    next_pid: AtomicI32,
    sessions: Arc<Sessions>,
}

impl PidSecretKeyGenerator for CancelKeys {
    fn generate(&self, client: &dyn ClientInfo) -> (i32, SecretKey) {
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
        let key = match client.protocol_version() {
            ProtocolVersion::PROTOCOL3_0 => SecretKey::I32(rand::random::<i32>()),
            _ => SecretKey::Bytes(rand::random::<[u8; 32]>().to_vec().into()),
        };
        self.sessions
            .key(pid, key.to_bytes().to_vec(), client.socket_addr());
        (pid, key)
    }
}

/// Failed logins are answered after a delay that doubles with each failure from the same
/// address, from `FIRST_DELAY` up to `MAX_DELAY`; an address without failures for
/// `FAILURE_MEMORY` starts again.
const FIRST_DELAY: Duration = Duration::from_millis(50);
const MAX_DELAY: Duration = Duration::from_secs(5);
const FAILURE_MEMORY: Duration = Duration::from_secs(60);
/// Addresses remembered at most (older ones are forgotten first).
const MAX_REMEMBERED: usize = 10_000;

/// Recent failed logins by client address.
#[derive(Debug, Default)]
struct Failures {
    by_ip: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Failures {
    /// Records a failure from `ip`; returns how long to wait before answering.
    fn record(&self, ip: IpAddr) -> Duration {
        let mut by_ip = self.by_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if by_ip.len() >= MAX_REMEMBERED {
            by_ip.retain(|_, (_, last)| last.elapsed() < FAILURE_MEMORY);
        }
        let entry = by_ip.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_MEMORY {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
        let doublings = entry.0.saturating_sub(1).min(16);
        FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
    }

    fn clear(&self, ip: IpAddr) {
        self.by_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&ip);
    }
}

/// The startup (authentication) handler of every connection: SCRAM-SHA-256 for the one
/// account, guarded so that a malformed message ends only its connection (a protocol error,
/// never a panic), failed logins are delayed per address and name the user that was tried,
/// and a session slot is taken only once the client has logged in.
pub struct Startup {
    scram: Arc<SASLAuthStartupHandler<DefaultServerParameterProvider>>,
    failures: Failures,
    sessions: Arc<Sessions>,
    slots: Arc<Semaphore>,
    metrics: Arc<super::metrics::Metrics>,
}

impl Startup {
    /// Accepts `user` with `password`; records cancel keys in `sessions`; at most as many
    /// logged-in sessions as `slots` has permits (refusals are counted in `metrics`).
    pub fn new(
        user: String,
        password: &str,
        (sessions, slots): (Arc<Sessions>, Arc<Semaphore>),
        metrics: Arc<super::metrics::Metrics>,
    ) -> Self {
        let salt: Vec<u8> = rand::random::<[u8; 16]>().to_vec();
        let salted_password = gen_salted_password(password, &salt, ITERATIONS);
        let account = Arc::new(Account {
            user,
            salt,
            salted_password,
        });
        let keys = Arc::new(CancelKeys {
            next_pid: AtomicI32::new(1000),
            sessions: Arc::clone(&sessions),
        });
        let mut scram = ScramAuth::new(account as Arc<dyn AuthSource>);
        scram.set_iterations(ITERATIONS);
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = super::SERVER_VERSION.to_string();
        let scram = Arc::new(
            SASLAuthStartupHandler::new(Arc::new(parameters))
                .with_scram(scram)
                .with_pid_secret_key_generator(keys as _),
        );
        Self {
            scram,
            failures: Failures::default(),
            sessions,
            slots,
            metrics,
        }
    }
}

/// Whether `body` is a well-formed SASLInitialResponse: a mechanism name ending in NUL, then
/// a length (-1, or at most the bytes that follow) and that many bytes. (pgwire's decoder
/// assumes this and would panic on less.)
fn valid_sasl_initial_response(body: &[u8]) -> bool {
    let Some(nul) = body.iter().position(|&b| b == 0) else {
        return false;
    };
    let rest = &body[nul + 1..];
    let Some(length) = rest.get(..4).and_then(|l| <[u8; 4]>::try_from(l).ok()) else {
        return false;
    };
    let length = i32::from_be_bytes(length);
    if length == -1 {
        return true;
    }
    let Some(payload) = usize::try_from(length)
        .ok()
        .and_then(|n| rest.get(4..4 + n))
    else {
        return false;
    };
    // RFC 5802: a client-first message whose bare part starts with a mandatory extension
    // (`m=`) that the server does not know must be refused. The bare part follows the GS2
    // header, `flag,[authzid],`.
    let bare = payload.splitn(3, |&b| b == b',').nth(2).unwrap_or_default();
    !bare.starts_with(b"m=")
}

/// Whether `message` may come while a client logs in.
fn login_message(message: &PgWireFrontendMessage) -> bool {
    matches!(
        message,
        PgWireFrontendMessage::Startup(_)
            | PgWireFrontendMessage::PasswordMessageFamily(_)
            | PgWireFrontendMessage::SslNegotiation(_)
            | PgWireFrontendMessage::CancelRequest(_)
    )
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(sqlstate::info("FATAL", code, message)))
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let peer = client.socket_addr();
        if !login_message(&message) {
            // A query (or anything else) in place of the authentication response.
            tracing::warn!(%peer, "login refused: a message other than an authentication response");
            return Err(fatal(
                "08P01",
                "invalid message during authentication: expected a password or SASL \
                 response; the connection is closed"
                    .into(),
            ));
        }
        let first = matches!(message, PgWireFrontendMessage::Startup(_));
        // Settings the startup message asks for (`options=-c name=value`, ...) that a SET
        // would refuse fail the connection, as PostgreSQL's FATAL does.
        if let PgWireFrontendMessage::Startup(startup) = &message {
            let scratch = super::session::Session::new(std::time::Duration::ZERO, Arc::default());
            if let Err(PgWireError::UserError(info)) = scratch.apply_startup(&startup.parameters) {
                tracing::warn!(%peer, "login refused: {}", info.message);
                return Err(fatal(&info.code, info.message.clone()));
            }
        }
        if first && self.slots.available_permits() == 0 {
            self.metrics.connection_refused();
            return Err(fatal(
                sqlstate::TOO_MANY_CONNECTIONS,
                "sorry, too many clients already".into(),
            ));
        }
        if let PgWireFrontendMessage::PasswordMessageFamily(PasswordMessageFamily::Raw(body)) =
            &message
            && let Some(session) = self.sessions.get(peer)
            && session.first_password_message()
            && !valid_sasl_initial_response(body)
        {
            tracing::warn!(%peer, "login refused: malformed SASL initial response");
            return Err(fatal(
                "08P01",
                "invalid authentication message: the connection is closed".into(),
            ));
        }
        let outcome = AssertUnwindSafe(self.scram.on_startup(client, message))
            .catch_unwind()
            .await;
        let user = client
            .metadata()
            .get(pgwire::api::METADATA_USER)
            .cloned()
            .unwrap_or_default();
        let failed_login = |what: &str| {
            tracing::warn!(%peer, user, "login refused: {what}");
            fatal(
                sqlstate::INVALID_PASSWORD,
                format!("password authentication failed for user \"{user}\""),
            )
        };
        let error = match outcome {
            Ok(Ok(())) => {
                if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
                    self.failures.clear(peer.ip());
                    let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
                        self.metrics.connection_refused();
                        return Err(fatal(
                            sqlstate::TOO_MANY_CONNECTIONS,
                            "sorry, too many clients already".into(),
                        ));
                    };
                    if let Some(session) = self.sessions.get(peer) {
                        session.logged_in(slot);
                        // Checked at the startup message: nothing here is refused.
                        if let Err(error) = session.apply_startup(client.metadata()) {
                            tracing::debug!(?error, "startup setting refused");
                        }
                    }
                }
                return Ok(());
            }
            Ok(Err(PgWireError::InvalidPassword(_))) => failed_login("wrong password"),
            Ok(Err(PgWireError::UserError(info))) if info.code == sqlstate::INVALID_PASSWORD => {
                failed_login("unknown user")
            }
            Ok(Err(PgWireError::InvalidScramMessage(_)))
            | Ok(Err(PgWireError::InvalidSASLState))
            | Ok(Err(PgWireError::NoAuthenticationInProgress))
            | Err(_) => {
                tracing::warn!(%peer, "login refused: malformed authentication message");
                return Err(fatal(
                    "08P01",
                    "invalid authentication message: the connection is closed".into(),
                ));
            }
            Ok(Err(other)) => return Err(other),
        };
        tokio::time::sleep(self.failures.record(peer.ip())).await;
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_initial_responses_are_checked_before_pgwire_decodes_them() {
        assert!(valid_sasl_initial_response(b"SCRAM-SHA-256\0\0\0\0\x03abc"));
        // RFC 5802: an unknown mandatory extension is refused.
        let first = b"n,,n=u,r=abc";
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        body.extend_from_slice(&(first.len() as i32).to_be_bytes());
        body.extend_from_slice(first);
        assert!(valid_sasl_initial_response(&body));
        let first = b"n,,m=ext,n=u,r=abc";
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        body.extend_from_slice(&(first.len() as i32).to_be_bytes());
        body.extend_from_slice(first);
        assert!(!valid_sasl_initial_response(&body));
        assert!(valid_sasl_initial_response(
            b"SCRAM-SHA-256\0\xff\xff\xff\xff"
        ));
        assert!(!valid_sasl_initial_response(b"abcd"));
        assert!(!valid_sasl_initial_response(b"SCRAM\0\0\0"));
        assert!(!valid_sasl_initial_response(b"SCRAM\0\0\0\0\x09abc"));
        assert!(!valid_sasl_initial_response(b"SCRAM\0\xff\xff\xff\xfe"));
    }

    #[test]
    fn failed_logins_wait_longer_each_time() {
        let failures = Failures::default();
        let ip: IpAddr = [127, 0, 0, 1].into();
        let delays: Vec<Duration> = (0..9).map(|_| failures.record(ip)).collect();
        assert_eq!(delays[0], FIRST_DELAY);
        assert_eq!(delays[1], FIRST_DELAY * 2);
        assert_eq!(delays[8], MAX_DELAY);
        failures.clear(ip);
        assert_eq!(failures.record(ip), FIRST_DELAY);
    }
}
