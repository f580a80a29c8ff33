//! Checks every message a client sends against the layout the protocol gives its type before
//! pgwire decodes it.
//!
//! pgwire's decoders trust the bytes they are given: a Bind whose parameter length points past
//! its end panics, a Query or Close whose body is shorter or longer than its length field reads
//! into the next message, so one client could desynchronise or crash its connection. Between
//! the socket and pgwire sits [`FrameGuard`]: it holds back a message until all of it has
//! arrived and its fields are exactly its declared length, and then hands it on unchanged.
//!
//! Invariants:
//! - pgwire only ever reads whole messages whose fields lie within them: the first message
//!   (startup or cancel request) and typed ones after it.
//! - A message that breaks its layout, is too long, or has a type the server does not take is
//!   never handed on; the read after the last good message fails with a [`FrameError`] instead
//!   (the connection then answers `FATAL 08P01` and closes, as PostgreSQL does).
//! - The text of a Query or Parse is UTF8; other bytes are refused with
//!   [`FrameError::Encoding`] (`22021`), never read as U+FFFD.
//! - The guard buffers at most one message beyond what it has handed on: memory per connection
//!   is bounded by [`MAX_MESSAGE_BYTES`], and by [`MAX_LOGIN_MESSAGE_BYTES`] until the client
//!   has logged in.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest message accepted, header included: statements are at most 4 MiB of text, and a
/// Bind's parameter values may be larger.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The longest startup packet accepted (PostgreSQL's limit).
const MAX_STARTUP_BYTES: usize = 10_000;

/// The longest message accepted before the client has logged in: a password or SASL
/// response (PostgreSQL takes authentication tokens of up to 64 KiB).
pub const MAX_LOGIN_MESSAGE_BYTES: usize = 64 << 10;

/// The request code of a CancelRequest (in place of a protocol version).
const CANCEL_REQUEST_CODE: u32 = 80_877_102;

/// How much more is read from the socket at a time while a message is incomplete.
const READ_CHUNK: usize = 64 << 10;

/// Why a client's message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length field is below its own four bytes or above the limit.
    #[error("invalid message length {length} for a {kind} message (the limit is {limit} bytes)")]
    Length {
        /// The message's name.
        kind: &'static str,
        /// The length it declared.
        length: i64,
        /// The longest accepted.
        limit: usize,
    },
    /// A type byte the server does not take.
    #[error("invalid frontend message type {0:?}")]
    Type(char),
    /// A statement's text is not UTF8.
    #[error(
        "invalid byte sequence for encoding \"UTF8\" in a {kind} message: OmenDB reads UTF8 \
         only (set the client's encoding to UTF8); the connection is closed"
    )]
    Encoding {
        /// The message's name.
        kind: &'static str,
    },
    /// The body does not hold the fields of its type exactly.
    #[error("invalid message format: {kind} message {problem}")]
    Layout {
        /// The message's name.
        kind: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// What the guard reads next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The startup packet or a cancel request: a length, then a code, no type byte.
    Startup,
    /// Typed messages: a type byte, then a length.
    Typed,
}

/// A stream that hands its reader only whole, well-formed client messages (see the module
/// docs); writes pass straight through.
pub struct FrameGuard<S> {
    inner: S,
    /// Bytes read from the socket and not yet handed on.
    buffer: BytesMut,
    /// How many leading bytes of `buffer` are checked messages.
    checked: usize,
    phase: Phase,
    refused: Option<FrameError>,
    /// Whether the client has logged in (before that, messages are small).
    logged_in: Box<dyn Fn() -> bool + Send + Sync>,
}

impl<S> FrameGuard<S> {
    /// Guards `inner`, whose first `read_ahead` bytes were already read off it.
    pub fn new(inner: S, read_ahead: &[u8]) -> Self {
        FrameGuard {
            inner,
            buffer: BytesMut::from(read_ahead),
            checked: 0,
            phase: Phase::Startup,
            refused: None,
            logged_in: Box::new(|| true),
        }
    }

    /// Holds messages to [`MAX_LOGIN_MESSAGE_BYTES`] until `logged_in` says the client has
    /// logged in.
    pub fn until_login(mut self, logged_in: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.logged_in = Box::new(logged_in);
        self
    }

    /// The message refused, once one was.
    pub fn refused(&self) -> Option<&FrameError> {
        self.refused.as_ref()
    }

    /// Marks the whole messages at the start of the unchecked bytes as checked; stops at an
    /// incomplete one, fails at a bad one.
    fn check_buffered(&mut self) -> Result<(), FrameError> {
        let limit = if (self.logged_in)() {
            MAX_MESSAGE_BYTES
        } else {
            MAX_LOGIN_MESSAGE_BYTES
        };
        while let Some(length) = next_message(&self.buffer[self.checked..], self.phase, limit)? {
            self.checked += length;
            self.phase = Phase::Typed;
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.checked > 0 {
                let n = this.checked.min(out.remaining());
                out.put_slice(&this.buffer[..n]);
                this.buffer.advance(n);
                this.checked -= n;
                return Poll::Ready(Ok(()));
            }
            if let Some(refused) = &this.refused {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    refused.clone(),
                )));
            }
            if let Err(refused) = this.check_buffered() {
                this.refused = Some(refused);
                continue;
            }
            if this.checked > 0 {
                continue;
            }
            this.buffer.reserve(READ_CHUNK);
            let read = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.buffer
            ))?;
            if read == 0 {
                // The client is gone; a message it did not finish is dropped with it.
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The length of the whole, well-formed message at the start of `bytes`, `None` while it is
/// incomplete.
fn next_message(bytes: &[u8], phase: Phase, limit: usize) -> Result<Option<usize>, FrameError> {
    let (offset, kind, limit) = match phase {
        Phase::Startup => (0, "startup", MAX_STARTUP_BYTES),
        Phase::Typed => match bytes.first() {
            None => return Ok(None),
            Some(&byte) => (1, kind_of(byte)?, limit),
        },
    };
    let Some(length) = bytes.get(offset..offset + 4) else {
        return Ok(None);
    };
    let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
    let minimum = if phase == Phase::Startup { 8 } else { 4 };
    let total = usize::try_from(length)
        .ok()
        .filter(|&n| n >= minimum && n + offset <= limit)
        .ok_or(FrameError::Length {
            kind,
            length: length.into(),
            limit,
        })?;
    let Some(body) = bytes.get(offset + 4..offset + total) else {
        return Ok(None);
    };
    let problem = match phase {
        Phase::Startup => check_startup(body),
        Phase::Typed => check_typed(bytes[0], body),
    };
    if let Err(problem) = problem {
        return Err(FrameError::Layout { kind, problem });
    }
    // The text of a statement is UTF8 (pgwire would read other bytes as U+FFFD, and store
    // them so: a write different from what was sent).
    // A Query is one string; a Parse two (its name and text), then binary type codes.
    let strings = match (phase, bytes[0]) {
        (Phase::Typed, b'Q') => 1,
        (Phase::Typed, b'P') => 2,
        _ => 0,
    };
    if body
        .split(|&b| b == 0)
        .take(strings)
        .any(|text| std::str::from_utf8(text).is_err())
    {
        return Err(FrameError::Encoding { kind });
    }
    Ok(Some(offset + total))
}

/// The name of a message type the server takes.
fn kind_of(byte: u8) -> Result<&'static str, FrameError> {
    Ok(match byte {
        b'Q' => "Query",
        b'P' => "Parse",
        b'B' => "Bind",
        b'D' => "Describe",
        b'E' => "Execute",
        b'C' => "Close",
        b'H' => "Flush",
        b'S' => "Sync",
        b'X' => "Terminate",
        b'p' => "password",
        b'd' => "CopyData",
        b'c' => "CopyDone",
        b'f' => "CopyFail",
        other => return Err(FrameError::Type(char::from(other))),
    })
}

/// Checks a startup packet's body: a protocol version, then name/value pairs of strings ended
/// by an empty name; or a cancel request's code, process id and key.
fn check_startup(body: &[u8]) -> Result<(), String> {
    let mut fields = Fields(body);
    let code = fields.u32()?;
    if code == CANCEL_REQUEST_CODE {
        // A process id and a key of 4 (protocol 3.0) to 256 bytes (3.2).
        fields.u32()?;
        let key = fields.0.len();
        return if (4..=256).contains(&key) {
            Ok(())
        } else {
            Err(format!("has a cancel key of {key} bytes"))
        };
    }
    loop {
        if fields.cstring()?.is_empty() {
            return fields.end();
        }
        fields.cstring()?;
    }
}

/// Checks a typed message's body against the fields of its type.
fn check_typed(kind: u8, body: &[u8]) -> Result<(), String> {
    let mut fields = Fields(body);
    match kind {
        b'Q' | b'f' => {
            fields.cstring()?;
        }
        b'P' => {
            fields.cstring()?;
            fields.cstring()?;
            let types = fields.count("parameter types")?;
            fields.skip(types * 4, "parameter types")?;
        }
        b'B' => {
            fields.cstring()?;
            fields.cstring()?;
            let formats = fields.count("parameter formats")?;
            fields.skip(formats * 2, "parameter formats")?;
            let parameters = fields.count("parameters")?;
            for parameter in 1..=parameters {
                let length = fields.i32()?;
                match usize::try_from(length) {
                    Ok(length) => fields.skip(length, "a parameter value")?,
                    Err(_) if length == -1 => {}
                    Err(_) => return Err(format!("gives parameter {parameter} length {length}")),
                }
            }
            let results = fields.count("result formats")?;
            fields.skip(results * 2, "result formats")?;
        }
        b'D' | b'C' => {
            let target = fields.u8()?;
            if !matches!(target, b'S' | b'P') {
                return Err(format!(
                    "names target {:?}, not 'S' (statement) or 'P' (portal)",
                    char::from(target)
                ));
            }
            fields.cstring()?;
        }
        b'E' => {
            fields.cstring()?;
            fields.i32()?;
        }
        // Password, SASL and copy data are raw bytes here (the login code checks its own).
        b'p' | b'd' => return Ok(()),
        // Flush, Sync, Terminate, CopyDone: no fields.
        _ => {}
    }
    fields.end()
}

/// The unread fields of a message body.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err(format!(
                "ends inside {what} ({n} bytes needed, {} left)",
                self.0.len()
            ));
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn skip(&mut self, n: usize, what: &str) -> Result<(), String> {
        self.take(n, what).map(|_| ())
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1, "a byte field")?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4, "a 4-byte field")?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4, "a 4-byte field")?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A 16-bit count, which must not be negative.
    fn count(&mut self, what: &str) -> Result<usize, String> {
        let b = self.take(2, what)?;
        let count = i16::from_be_bytes([b[0], b[1]]);
        usize::try_from(count).map_err(|_| format!("gives {count} {what}"))
    }

    /// A string up to its terminating zero byte (not included).
    fn cstring(&mut self) -> Result<&'a [u8], String> {
        let end = self
            .0
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| "has a string without its terminating zero byte".to_string())?;
        let text = &self.0[..end];
        self.0 = &self.0[end + 1..];
        Ok(text)
    }

    fn end(self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("has {} bytes after its last field", self.0.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwire::messages::Message;
    use pgwire::messages::extendedquery::{Bind, Close, Describe, Execute, Parse, Sync};
    use pgwire::messages::simplequery::Query;
    use pgwire::messages::startup::Startup;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use tokio::io::AsyncReadExt;

    fn encoded(message: &impl Message) -> Vec<u8> {
        let mut buf = BytesMut::new();
        message.encode(&mut buf).expect("encodes");
        buf.to_vec()
    }

    /// Messages as a driver sends them, encoded by pgwire itself.
    fn good_messages() -> Vec<Vec<u8>> {
        vec![
            encoded(&Query::new("SELECT 1".into())),
            encoded(&Parse::new(
                Some("s1".into()),
                "SELECT $1, $2".into(),
                vec![20, 25],
            )),
            encoded(&Parse::new(None, String::new(), vec![])),
            encoded(&Bind::new(
                None,
                Some("s1".into()),
                vec![0, 1],
                vec![Some(b"42".as_slice().into()), None],
                vec![1],
            )),
            encoded(&Describe::new(b'S', Some("s1".into()))),
            encoded(&Execute::new(None, 10)),
            encoded(&Close::new(b'P', None)),
            encoded(&Sync::new()),
        ]
    }

    fn startup() -> Vec<u8> {
        let mut startup = Startup::new();
        startup.parameters.insert("user".into(), "omendb".into());
        encoded(&startup)
    }

    fn check_all(mut bytes: &[u8]) -> Result<usize, FrameError> {
        let (mut phase, mut messages) = (Phase::Startup, 0);
        while let Some(length) = next_message(bytes, phase, MAX_MESSAGE_BYTES)? {
            bytes = &bytes[length..];
            phase = Phase::Typed;
            messages += 1;
        }
        assert!(bytes.is_empty(), "{} bytes left over", bytes.len());
        Ok(messages)
    }

    #[test]
    fn what_pgwire_encodes_is_accepted() {
        let mut stream = startup();
        for message in good_messages() {
            stream.extend(message);
        }
        assert_eq!(check_all(&stream), Ok(9));
    }

    #[test]
    fn a_bind_value_longer_than_its_message_is_refused() {
        let mut bind = encoded(&Bind::new(
            None,
            None,
            vec![],
            vec![Some(b"42".as_slice().into())],
            vec![],
        ));
        // The value's length field: after the type, length, two empty names and a count.
        bind[5 + 2 + 2 + 2..5 + 2 + 2 + 2 + 4].copy_from_slice(&1000i32.to_be_bytes());
        let mut stream = startup();
        stream.extend(bind);
        let error = check_all(&stream).expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("Bind message ends inside a parameter value"),
            "{error}"
        );
    }

    #[test]
    fn a_query_reaching_into_the_next_message_is_refused() {
        let mut stream = startup();
        // "SELECT 1" without its zero byte, then a Sync whose bytes hold one.
        stream.extend(b"Q\0\0\0\x0cSELECT 1");
        stream.extend(encoded(&Sync::new()));
        stream.extend(b"\0");
        assert!(matches!(
            check_all(&stream),
            Err(FrameError::Layout { kind: "Query", .. })
        ));
    }

    #[test]
    fn a_statement_that_is_not_utf8_is_refused() {
        let mut stream = startup();
        // "SELECT 'a\xff'" as a Query: a length of 4 + 11 + 1 bytes.
        stream.extend(b"Q\0\0\0\x10SELECT 'a\xff'\0");
        assert_eq!(
            check_all(&stream),
            Err(FrameError::Encoding { kind: "Query" })
        );
        let mut stream = startup();
        stream.extend(b"Q\0\0\0\x10SELECT '\xc3\xa9'\0");
        assert_eq!(check_all(&stream), Ok(2), "UTF8 passes");
        // A Parse's type codes after its text are binary.
        let mut stream = startup();
        stream.extend(encoded(&Parse::new(
            None,
            "SELECT $1".to_string(),
            vec![0xff_ff_ff_ff],
        )));
        assert_eq!(check_all(&stream), Ok(2), "type codes are not text");
        let mut stream = startup();
        stream.extend(b"P\0\0\0\x12\0SELECT '\xff'\0\0\0");
        assert_eq!(
            check_all(&stream),
            Err(FrameError::Encoding { kind: "Parse" })
        );
    }

    #[test]
    fn lengths_and_types_out_of_bounds_are_refused() {
        let mut stream = startup();
        stream.extend(b"S\0\0\0\x03");
        assert!(matches!(
            check_all(&stream),
            Err(FrameError::Length { length: 3, .. })
        ));
        let mut stream = startup();
        stream.extend(b"F\0\0\0\x04");
        assert_eq!(check_all(&stream), Err(FrameError::Type('F')));
        assert!(matches!(
            check_all(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]),
            Err(FrameError::Length {
                kind: "startup",
                ..
            })
        ));
    }

    #[test]
    fn a_mutated_stream_is_cut_at_a_message_boundary_and_never_panics() {
        let mut rng = StdRng::seed_from_u64(16);
        let mut stream = startup();
        for message in good_messages() {
            stream.extend(message);
        }
        for _ in 0..20_000 {
            let mut mutated = stream.clone();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..mutated.len());
                match rng.random_range(0..3) {
                    0 => mutated[at] = rng.random(),
                    1 => {
                        mutated.remove(at);
                    }
                    _ => mutated.insert(at, rng.random()),
                }
            }
            let (mut bytes, mut phase) = (&mutated[..], Phase::Startup);
            while let Ok(Some(length)) = next_message(bytes, phase, MAX_MESSAGE_BYTES) {
                assert!(length <= bytes.len());
                bytes = &bytes[length..];
                phase = Phase::Typed;
            }
        }
    }

    #[tokio::test]
    async fn the_guard_hands_on_good_messages_then_fails_at_the_bad_one() {
        let mut good = startup();
        good.extend(encoded(&Query::new("SELECT 1".into())));
        let mut stream = good.clone();
        stream.extend(b"B\0\0\0\x05\x01");
        let (split, rest) = stream.split_at(3);
        let mut guard = FrameGuard::new(rest, split);
        let mut read = vec![0; good.len()];
        guard.read_exact(&mut read).await.expect("good messages");
        assert_eq!(read, good);
        let error = guard.read_u8().await.expect_err("refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(matches!(
            guard.refused(),
            Some(FrameError::Layout { kind: "Bind", .. })
        ));
    }
}
