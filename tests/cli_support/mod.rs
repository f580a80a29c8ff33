//! Helpers of the `cli_*` tests: temporary directories and an `omendb serve` child process.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The binary under test.
pub const OMENDB: &str = env!("CARGO_BIN_EXE_omendb");
/// The password the test servers require.
pub const PASSWORD: &str = "s3cret pw";

/// A tokio-postgres client logged in to the test server on `port`, its connection driven by
/// a task of the current runtime.
pub async fn connect(port: u16) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("omendb")
        .password(PASSWORD)
        .dbname("omendb")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

#[path = "watchdog.rs"]
mod watchdog_impl;
pub use watchdog_impl::watchdog;

/// A two-worker runtime for a test's client side.
pub fn runtime() -> tokio::runtime::Runtime {
    watchdog();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The SQLSTATE of a failed statement (or what the error is, when it has none).
pub fn code(error: &tokio_postgres::Error) -> String {
    error
        .code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {error}"))
}

/// The first value of the first row of a simple query, as text.
pub async fn scalar(client: &tokio_postgres::Client, sql: &str) -> Option<String> {
    let messages = client.simple_query(sql).await.unwrap();
    messages.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
        _ => None,
    })?
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("omendb-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `omendb serve` on a free loopback port.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    /// The metrics endpoint's port, when started with `--metrics-listen`.
    pub metrics_port: Option<u16>,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    /// Starts the server on `dir` with extra flags and waits until it listens.
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::spawn(dir, None, extra)
    }

    /// Starts the server with a configuration file.
    pub fn start_with_config(dir: &Path, config: &Path, extra: &[&str]) -> Self {
        Self::spawn(dir, Some(config), extra)
    }

    fn spawn(dir: &Path, config: Option<&Path>, extra: &[&str]) -> Self {
        watchdog();
        let mut command = Command::new(OMENDB);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .args(["serve", "--dir"])
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("OMENDB_PASSWORD", PASSWORD)
            .env_remove("OMENDB_USER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines_tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // "omendb: metrics on http://127.0.0.1:PORT/metrics" (with --metrics-listen), then
        // "omendb: serving DIR on 127.0.0.1:PORT"
        let mut metrics_port = None;
        let port = loop {
            // A server that hangs at start fails the test instead of hanging it.
            let line = lines
                .recv_timeout(std::time::Duration::from_secs(120))
                .unwrap_or_else(|e| panic!("the server did not listen: {e}"));
            if let Some(url) = line.strip_prefix("omendb: metrics on http://") {
                let address = url.trim_end_matches("/metrics");
                metrics_port = Some(address.rsplit(':').next().unwrap().parse().unwrap());
            }
            if let Some(address) = line.strip_prefix("omendb: serving ") {
                let port = address.rsplit(':').next().unwrap();
                break port.parse().unwrap();
            }
        };
        Self {
            child: Some(child),
            port,
            metrics_port,
            stderr: lines,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The server's peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    /// The server's resident memory now (VmRSS), in bytes.
    pub fn rss(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            * 1024
    }

    /// Sends SIGTERM, waits for the exit, and returns (success, rest of stderr).
    pub fn stop(mut self) -> (bool, String) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        // A server that does not exit in time fails the test instead of hanging it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let exit = loop {
            if let Some(exit) = child.try_wait().unwrap() {
                break exit;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not exit within 60 s of SIGTERM");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let rest: Vec<String> = self.stderr.iter().collect();
        (exit.success(), rest.join("\n"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A frontend message: its type byte, then its length (counting itself) and body.
pub fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Reads one backend message: its type byte and body.
pub fn read_message(socket: &mut std::net::TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 5];
    socket.read_exact(&mut header)?;
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut body = vec![0u8; length.saturating_sub(4)];
    socket.read_exact(&mut body)?;
    Ok((header[0], body))
}

/// A protocol 3.0 startup message for `user` and database `omendb`.
pub fn startup_message(user: &str) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (key, value) in [("user", user), ("database", "omendb")] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    message.extend_from_slice(&body);
    message
}

/// Logs in over a raw socket with SCRAM-SHA-256, up to the first ReadyForQuery; `Err`: the
/// server's error response.
pub fn raw_login(port: u16) -> Result<std::net::TcpStream, String> {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket.write_all(&startup_message("omendb")).unwrap();
    let mut scram = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
    loop {
        let (kind, body) = read_message(&mut socket).unwrap();
        let code = body
            .get(..4)
            .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        match (kind, code) {
            (b'R', Some(10)) => {
                let mut initial = b"SCRAM-SHA-256\0".to_vec();
                initial.extend_from_slice(&(scram.message().len() as i32).to_be_bytes());
                initial.extend_from_slice(scram.message());
                socket.write_all(&message(b'p', &initial)).unwrap();
            }
            (b'R', Some(11)) => {
                scram.update(&body[4..]).unwrap();
                socket.write_all(&message(b'p', scram.message())).unwrap();
            }
            (b'R', Some(12)) => scram.finish(&body[4..]).unwrap(),
            (b'Z', _) => return Ok(socket),
            (b'E', _) => return Err(String::from_utf8_lossy(&body).into_owned()),
            _ => {}
        }
    }
}
