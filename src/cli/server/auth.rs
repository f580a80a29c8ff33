//! Password authentication: SCRAM-SHA-256 against one configured user.

use std::sync::Arc;

use async_trait::async_trait;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{AuthSource, DefaultServerParameterProvider, LoginInfo, Password};
use pgwire::error::{PgWireError, PgWireResult};

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

/// Builds the startup (authentication) handler of each connection.
pub struct Startup {
    account: Arc<Account>,
}

impl Startup {
    /// Accepts `user` with `password`.
    pub fn new(user: String, password: &str) -> Self {
        let salt: Vec<u8> = (0..16).map(|_| rand_byte()).collect();
        let salted_password = gen_salted_password(password, &salt, ITERATIONS);
        Self {
            account: Arc::new(Account {
                user,
                salt,
                salted_password,
            }),
        }
    }

    /// A SCRAM-SHA-256 startup handler.
    pub fn handler(&self) -> Arc<SASLAuthStartupHandler<DefaultServerParameterProvider>> {
        let mut scram = ScramAuth::new(Arc::clone(&self.account) as Arc<dyn AuthSource>);
        scram.set_iterations(ITERATIONS);
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = format!("16.0 (OmenDB {})", env!("CARGO_PKG_VERSION"));
        Arc::new(SASLAuthStartupHandler::new(Arc::new(parameters)).with_scram(scram))
    }
}

/// A random byte for the salt, from the OS-seeded hasher (no extra dependency).
fn rand_byte() -> u8 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    hasher.finish().to_le_bytes()[0]
}
