//! Fuzzers against a live `omendb serve`, seeded, in the normal suite: 1500 generated and
//! mutated statements, 300 malformed logins, and 150 logged-in sessions each sending a
//! pipeline of malformed extended-protocol messages (Parse, Bind, Describe, Execute, Close,
//! Sync, Query, unknown types; bad lengths, counts and formats). Statements a client cannot
//! send (with a NUL) are not generated. `OMENDB_FUZZ_STATEMENTS`, `OMENDB_FUZZ_LOGINS` and
//! `OMENDB_FUZZ_PROTOCOL` ask for longer runs. The properties: the server never dies, a
//! second connection stays responsive throughout, every statement ends with a response, every
//! whole pipeline is answered to its end (ReadyForQuery, or `FATAL 08P01` at the first
//! malformed message), nothing hangs, and no panic is logged.

#![allow(clippy::unwrap_used)]

mod cli_support;

use std::io::{Read, Write};
use std::time::Duration;

use cli_support::{Server, TempDir, connect, message, raw_login, read_message};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const SEEDS: &[&str] = &[
    "SELECT id, s, v FROM t WHERE id = 1",
    "SELECT count(*), sum(v), avg(v) FROM t WHERE v > 10 GROUP BY s ORDER BY 1 LIMIT 5",
    "INSERT INTO t VALUES (7, 'seven', 7)",
    "UPDATE t SET v = v + 1 WHERE id BETWEEN 1 AND 5",
    "DELETE FROM t WHERE id = 3",
    "SELECT a.id FROM t a JOIN t b ON a.id = b.v WHERE a.s LIKE 'x%'",
    "SELECT * FROM t WHERE id IN (1, 2, 3) OR s IS NULL",
    "WITH w AS (SELECT id FROM t) SELECT * FROM w UNION ALL SELECT 1",
    "SELECT CAST(v AS DOUBLE) / 0, -v, abs(v) FROM t",
    "SHOW statement_timeout",
    "BEGIN",
    "COMMIT",
    "SET application_name = 'fuzz'",
    "EXPLAIN SELECT * FROM t WHERE id = 2",
];

const FRAGMENTS: &[&str] = &[
    "(",
    ")",
    ",",
    "'",
    "\"",
    ";",
    "+",
    "-",
    "*",
    "/",
    "||",
    " OR ",
    " AND ",
    " NOT ",
    "NULL",
    "SELECT",
    "FROM",
    "WHERE",
    "UNION ALL",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "1e400",
    "0.0",
    "'é'",
    "$1",
    "::BIGINT",
    "CAST(",
    " AS TEXT)",
    "t",
    "id",
    "v",
    "s",
    "*",
    "generate_series(1, 10)",
    "count(*)",
    "sum(",
    "ORDER BY",
    "LIMIT 0",
];

/// One generated statement: a seed mutated, or a deep or huge one.
fn statement(rng: &mut StdRng) -> String {
    match rng.random_range(0..24) {
        0 => {
            let depth = rng.random_range(1..3000);
            let term = FRAGMENTS[rng.random_range(0..FRAGMENTS.len())];
            format!(
                "SELECT {}",
                vec!["1"; depth].join(if term.len() < 4 { "+" } else { " OR " })
            )
        }
        1 => {
            let depth = rng.random_range(1..3000);
            format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth))
        }
        2 => format!("SELECT '{}'", "x".repeat(rng.random_range(0..200_000))),
        3 => format!("SELECT {}", "9".repeat(rng.random_range(1..5000))),
        // Nested subqueries, whose planning time grows exponentially with depth.
        4 => {
            let depth = rng.random_range(1..40);
            format!("SELECT {}1{}", "(SELECT ".repeat(depth), ")".repeat(depth))
        }
        // Placeholders up to 2^32.
        5 => format!("SELECT ${}", rng.random_range(1..=1u64 << 32)),
        // PREPARE / EXECUTE nesting.
        6 => {
            let (p, q) = (rng.random_range(0..4), rng.random_range(0..4));
            match rng.random_range(0..3) {
                0 => format!("PREPARE p{p} AS EXECUTE p{q}"),
                1 => format!(
                    "PREPARE p{p} AS {}",
                    SEEDS[rng.random_range(0..SEEDS.len())]
                ),
                _ => format!("EXECUTE p{p}"),
            }
        }
        // Functions asked for huge values, over a few rows.
        7 => {
            let n = 1u64 << rng.random_range(0..32);
            let rows = rng.random_range(1..5000);
            let call = match rng.random_range(0..5) {
                0 => format!("length(repeat('xy', {n}))"),
                1 => format!("length(rpad('x', {n}))"),
                2 => format!("length(lpad('x', {n}, 'é'))"),
                3 => format!(
                    "length(replace(repeat('a', {}), 'a', repeat('b', {})))",
                    n % 100_000,
                    n % 100_000
                ),
                _ => format!("cardinality(array_repeat(1, {n}))"),
            };
            format!("SELECT {call} FROM generate_series(1, {rows})")
        }
        // Deep CASTs and ARRAYs.
        8 => {
            let depth = rng.random_range(1..40);
            if rng.random_bool(0.5) {
                format!(
                    "SELECT {}1{}",
                    "CAST(".repeat(depth),
                    " AS BIGINT)".repeat(depth)
                )
            } else {
                format!("SELECT {}1{}", "ARRAY[".repeat(depth), "]".repeat(depth))
            }
        }
        _ => {
            let mut sql = SEEDS[rng.random_range(0..SEEDS.len())].to_string();
            for _ in 0..rng.random_range(0..4) {
                let at = rng.random_range(0..=sql.len());
                let at = (0..=at)
                    .rev()
                    .find(|&i| sql.is_char_boundary(i))
                    .unwrap_or(0);
                match rng.random_range(0..3) {
                    0 => sql.insert_str(at, FRAGMENTS[rng.random_range(0..FRAGMENTS.len())]),
                    1 => {
                        let end = (at + rng.random_range(1..8)).min(sql.len());
                        if let Some(end) = (end..=sql.len()).find(|&i| sql.is_char_boundary(i)) {
                            sql.replace_range(at..end, "");
                        }
                    }
                    _ => {
                        let copy = sql[at..].to_string();
                        sql.push_str(&copy);
                    }
                }
            }
            sql
        }
    }
}

#[test]
fn generated_statements_all_get_a_response_and_the_server_stays_up() {
    let dir = TempDir::new("fuzz-sql");
    // Values up to 64 MiB, so that the RSS bound below holds on a debug build.
    let config = dir.path().join("omendb.toml");
    std::fs::write(&config, "[server]\nmax_value_mb = 64\n").unwrap();
    let server = Server::start_with_config(&dir.path().join("db"), &config, &[]);
    let count = count_from_env("OMENDB_FUZZ_STATEMENTS", 1500);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let fuzzed = connect(server.port).await;
        let watcher = connect(server.port).await;
        fuzzed
            .batch_execute(
                "CREATE TABLE t (id BIGINT PRIMARY KEY, s TEXT, v BIGINT); \
                 INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 20), (3, NULL, 300); \
                 SET statement_timeout = 2000",
            )
            .await
            .unwrap();
        let mut rng = StdRng::seed_from_u64(16);
        let (mut ok, mut refused) = (0, std::collections::BTreeMap::<String, usize>::new());
        for i in 0..count {
            let sql = statement(&mut rng);
            let started = std::time::Instant::now();
            let answer = fuzzed.simple_query(&sql).await;
            // Every statement is answered within its timeout (2 s) and some slack.
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "statement {i} took {:?}: {sql:.200}",
                started.elapsed()
            );
            match answer {
                Ok(_) => ok += 1,
                Err(error) => {
                    let code = error.code().unwrap_or_else(|| {
                        panic!("statement {i} got no response: {error}: {sql:.200}")
                    });
                    *refused.entry(code.code().to_string()).or_default() += 1;
                }
            }
            if i % 100 == 0 {
                let row = watcher.query_one("SELECT 1", &[]).await.unwrap();
                assert_eq!(row.get::<_, i32>(0), 1);
                // A failed block would refuse the rest: end it.
                let _ = fuzzed.batch_execute("ROLLBACK").await;
                let _ = fuzzed.batch_execute("ROLLBACK").await;
            }
        }
        eprintln!("fuzzed {count} statements: {ok} answered, refused by SQLSTATE: {refused:?}");
        let peak = server.peak_rss();
        eprintln!("peak RSS: {} MiB", peak >> 20);
        assert!(peak < 2 << 30, "peak RSS {} MiB", peak >> 20);
        assert!(ok > 0 && !refused.is_empty());
        assert!(
            !refused.contains_key("XX000"),
            "internal errors: {refused:?}"
        );
    });
    stop_clean(server);
}

/// A startup message, a password message or raw bytes, mutated.
fn login_bytes(rng: &mut StdRng) -> Vec<u8> {
    let mut message = cli_support::startup_message("omendb");
    match rng.random_range(0..6) {
        // A valid startup, then a mutated SASL response.
        0 | 1 => {
            message.push(b'p');
            let body: Vec<u8> = match rng.random_range(0..3) {
                0 => b"SCRAM-SHA-256\0".to_vec(),
                1 => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
                _ => {
                    let mut b = b"SCRAM-SHA-256\0".to_vec();
                    b.extend_from_slice(&(rng.random::<i32>()).to_be_bytes());
                    b.extend_from_slice(b"n,,n=,r=");
                    b.extend((0..rng.random_range(0..40)).map(|_| rng.random::<u8>()));
                    b
                }
            };
            let length: u32 = if rng.random_bool(0.2) {
                rng.random()
            } else {
                (body.len() + 4) as u32
            };
            message.extend_from_slice(&length.to_be_bytes());
            message.extend_from_slice(&body);
            message
        }
        // A startup with a bad length or protocol.
        2 => {
            let length: u32 = rng.random();
            message[..4].copy_from_slice(&length.to_be_bytes());
            message
        }
        3 => {
            message[4..8].copy_from_slice(&rng.random::<u32>().to_be_bytes());
            message
        }
        // SSL request, then garbage.
        4 => {
            let mut m = vec![0, 0, 0, 8, 4, 210, 22, 47];
            m.extend((0..rng.random_range(0..100)).map(|_| rng.random::<u8>()));
            m
        }
        _ => (0..rng.random_range(0..200))
            .map(|_| rng.random())
            .collect(),
    }
}

#[test]
fn malformed_logins_never_take_the_server_down() {
    let dir = TempDir::new("fuzz-login");
    let config = dir.path().join("omendb.toml");
    std::fs::write(&config, "[server]\nlogin_timeout_ms = 300\n").unwrap();
    let server = Server::start_with_config(dir.path(), &config, &[]);
    let count = count_from_env("OMENDB_FUZZ_LOGINS", 300);
    let mut rng = StdRng::seed_from_u64(17);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let watcher = runtime.block_on(connect(server.port));
    for i in 0..count {
        let bytes = login_bytes(&mut rng);
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = socket.write_all(&bytes);
        // The server answers and/or closes, within the login timeout: read to the end.
        read_until_closed(&mut socket, &format!("login {i}"));
        if i % 50 == 0 {
            let row = runtime
                .block_on(watcher.query_one("SELECT 1", &[]))
                .unwrap();
            assert_eq!(row.get::<_, i32>(0), 1);
        }
    }
    drop(watcher);
    stop_clean(server);
}

/// Reads what the server sends until it closes; fails if it leaves the connection open.
fn read_until_closed(socket: &mut std::net::TcpStream, what: &str) -> Vec<u8> {
    let mut reply = Vec::new();
    let read = socket.read_to_end(&mut reply);
    assert!(
        !matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "{what} was left open: {read:?}"
    );
    reply
}

/// Stops the server: it must exit cleanly, with no panic in its log (a panic caught in a
/// connection is logged as one line, "a connection failed on a bug"); returns the log.
fn stop_clean(server: Server) -> String {
    let (clean, stderr) = server.stop();
    assert!(clean, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

const PROTOCOL_QUERIES: &[&str] = &[
    "SELECT $1::bigint + 1",
    "SELECT id, s, v FROM t WHERE id = $1",
    "INSERT INTO t VALUES ($1, $2, $3)",
    "UPDATE t SET v = $1 WHERE id = $2",
    "SELECT * FROM t",
    "SELECT count(*) FROM generate_series(1, 100000)",
    "BEGIN",
    "COMMIT",
    "SET statement_timeout = 100",
    "SELEC garbage $1",
    "",
];

/// A cstring of `text`, sometimes without its terminator or with random bytes.
fn cstring(rng: &mut StdRng, text: &str) -> Vec<u8> {
    let mut b = text.as_bytes().to_vec();
    match rng.random_range(0..20) {
        0 => b.extend((0..rng.random_range(0..20)).map(|_| rng.random_range(1..=255u8))),
        1 => return b,
        _ => {}
    }
    b.push(0);
    b
}

/// An extended-protocol message (Parse, Bind, Describe, Execute, Close, Sync, Flush, Query)
/// with random fields, or a message of a random type.
fn protocol_message(rng: &mut StdRng) -> Vec<u8> {
    let name = ["", "s1", "s2"][rng.random_range(0..3)];
    let (kind, mut body) = match rng.random_range(0..10) {
        0 | 1 => {
            let query = PROTOCOL_QUERIES[rng.random_range(0..PROTOCOL_QUERIES.len())];
            let mut b = cstring(rng, name);
            b.extend(cstring(rng, query));
            let count: i16 = if rng.random_bool(0.1) {
                rng.random()
            } else {
                rng.random_range(0..4)
            };
            b.extend_from_slice(&count.to_be_bytes());
            for _ in 0..count.clamp(0, 8) {
                let oid: u32 = [0, 20, 23, 25, 16, 701, rng.random()][rng.random_range(0..7)];
                b.extend_from_slice(&oid.to_be_bytes());
            }
            (b'P', b)
        }
        2 | 3 => {
            let mut b = cstring(rng, "");
            b.extend(cstring(rng, name));
            let formats: i16 = rng.random_range(-1..3);
            b.extend_from_slice(&formats.to_be_bytes());
            for _ in 0..formats.max(0) {
                b.extend_from_slice(&rng.random_range(-1i16..3).to_be_bytes());
            }
            let params: i16 = if rng.random_bool(0.1) {
                rng.random()
            } else {
                rng.random_range(0..4)
            };
            b.extend_from_slice(&params.to_be_bytes());
            for _ in 0..params.clamp(0, 8) {
                let value: Vec<u8> = match rng.random_range(0..4) {
                    0 => b"42".to_vec(),
                    1 => 7i64.to_be_bytes().to_vec(),
                    2 => (0..rng.random_range(0..12)).map(|_| rng.random()).collect(),
                    _ => b"9223372036854775807".to_vec(),
                };
                let length: i32 = match rng.random_range(0..10) {
                    0 => -1,
                    1 => rng.random(),
                    _ => value.len() as i32,
                };
                b.extend_from_slice(&length.to_be_bytes());
                b.extend_from_slice(&value);
            }
            let results: i16 = rng.random_range(-1..3);
            b.extend_from_slice(&results.to_be_bytes());
            for _ in 0..results.max(0) {
                b.extend_from_slice(&rng.random_range(-1i16..3).to_be_bytes());
            }
            (b'B', b)
        }
        4 => {
            let mut b = vec![[b'S', b'P', rng.random()][rng.random_range(0..3)]];
            b.extend(cstring(rng, name));
            (b'D', b)
        }
        5 => {
            let mut b = cstring(rng, "");
            let max_rows: i32 = [0, 1, 5, -1, rng.random()][rng.random_range(0..5)];
            b.extend_from_slice(&max_rows.to_be_bytes());
            (b'E', b)
        }
        6 => {
            let mut b = vec![[b'S', b'P', rng.random()][rng.random_range(0..3)]];
            b.extend(cstring(rng, name));
            (b'C', b)
        }
        7 => (b'S', Vec::new()),
        8 => {
            let query = PROTOCOL_QUERIES[rng.random_range(0..PROTOCOL_QUERIES.len())];
            (b'Q', cstring(rng, query))
        }
        _ => {
            let body = (0..rng.random_range(0..32)).map(|_| rng.random()).collect();
            (
                [b'H', b'd', b'c', b'f', b'F', rng.random()][rng.random_range(0..6)],
                body,
            )
        }
    };
    if rng.random_bool(0.03) {
        body.truncate(rng.random_range(0..=body.len()));
    }
    let mut m = message(kind, &body);
    if rng.random_bool(0.03) {
        let length: u32 = rng.random_range(0..64);
        m[1..5].copy_from_slice(&length.to_be_bytes());
    }
    m
}

#[test]
fn malformed_extended_protocol_messages_after_login_never_take_the_server_down() {
    let dir = TempDir::new("fuzz-protocol");
    let server = Server::start(dir.path(), &[]);
    let sessions = count_from_env("OMENDB_FUZZ_PROTOCOL", 150);
    let mut rng = StdRng::seed_from_u64(18);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let watcher = runtime.block_on(connect(server.port));
    runtime
        .block_on(watcher.batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, s TEXT, v BIGINT); \
             INSERT INTO t VALUES (1, 'one', 1), (2, 'two', 2)",
        ))
        .unwrap();
    let (mut messages, mut answered, mut refused) = (0, 0, 0);
    for i in 0..sessions {
        // Session slots of closed connections come back within a second or so.
        let mut socket = (0..50)
            .find_map(|_| {
                raw_login(server.port)
                    .inspect_err(|_| std::thread::sleep(Duration::from_millis(100)))
                    .ok()
            })
            .unwrap_or_else(|| panic!("session {i}: no session slot came back in 5 s"));
        // A pipeline of messages, then Sync, then the end of input: the server answers every
        // whole message and closes, or closes at the first it refuses, saying why.
        let mut bytes = Vec::new();
        for _ in 0..rng.random_range(1..24) {
            bytes.extend(protocol_message(&mut rng));
            messages += 1;
        }
        bytes.extend(message(b'S', &[]));
        let _ = socket.write_all(&bytes);
        let _ = socket.shutdown(std::net::Shutdown::Write);
        let reply = read_until_closed(&mut socket, &format!("session {i}"));
        let last = last_message(&reply);
        if pipeline_is_whole(&bytes) {
            let fatal =
                last.is_some_and(|(kind, body)| kind == b'E' && body.starts_with(b"SFATAL\0"));
            assert!(
                last.is_some_and(|(kind, _)| kind == b'Z') || fatal,
                "session {i}: a whole pipeline was not answered to its end: {last:?}"
            );
            refused += usize::from(fatal);
        }
        answered += usize::from(last.is_some());
        if i % 25 == 0 {
            let row = runtime
                .block_on(watcher.query_one("SELECT count(*) FROM t", &[]))
                .unwrap();
            assert!(row.get::<_, i64>(0) >= 2);
        }
    }
    eprint!(
        "{sessions} sessions, {messages} messages, {answered} sessions answered, \
         {refused} closed with FATAL at a malformed message"
    );
    let row = runtime
        .block_on(watcher.query_one("SELECT 1", &[]))
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    drop(watcher);
    let log = stop_clean(server);
    assert!(!log.contains("failed on a bug"), "{log}");
    eprintln!();
}

/// Whether `bytes` is a sequence of whole messages by their length fields, up to its end or
/// to a message the server must refuse (a length below 4, or Terminate, which ends it all).
fn pipeline_is_whole(mut bytes: &[u8]) -> bool {
    while let [kind, a, b, c, d, ..] = *bytes {
        let length = u32::from_be_bytes([a, b, c, d]) as usize;
        if length < 4 {
            return true;
        }
        if kind == b'X' || bytes.len() < 1 + length {
            return false;
        }
        bytes = &bytes[1 + length..];
    }
    bytes.is_empty()
}

/// The last whole backend message of `reply`: its type and body.
/// The type bytes of the messages in `reply`, in order.
fn message_kinds(reply: &[u8]) -> Vec<u8> {
    std::iter::successors(Some(reply), |rest| {
        let length = u32::from_be_bytes(rest.get(1..5)?.try_into().ok()?) as usize;
        rest.get(1 + length..).filter(|r| !r.is_empty())
    })
    .filter_map(|m| m.first().copied())
    .collect()
}

fn last_message(mut reply: &[u8]) -> Option<(u8, &[u8])> {
    let mut last = None;
    while let [kind, a, b, c, d, ..] = *reply {
        let length = u32::from_be_bytes([a, b, c, d]) as usize;
        let body = reply.get(5..1 + length)?;
        last = Some((kind, body));
        reply = &reply[1 + length..];
    }
    last
}

#[test]
fn a_malformed_bind_is_refused_with_08p01_after_the_messages_before_it_are_answered() {
    let dir = TempDir::new("fuzz-bad-bind");
    let server = Server::start(dir.path(), &[]);
    let mut socket = raw_login(server.port).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // A good Query, then a Bind whose one parameter claims 1000 bytes of the 2 there are
    // (pgwire's decoder panicked on it), then a Sync the server must never reach.
    let mut bytes = message(b'Q', b"SELECT 1\0");
    let mut bind = b"\0\0\0\0\0\x01".to_vec();
    bind.extend_from_slice(&1000i32.to_be_bytes());
    bind.extend_from_slice(b"42\0\0");
    bytes.extend(message(b'B', &bind));
    bytes.extend(message(b'S', &[]));
    socket.write_all(&bytes).unwrap();
    let reply = read_until_closed(&mut socket, "the connection");
    let kinds = message_kinds(&reply);
    assert_eq!(kinds, b"TDCZE", "{reply:?}");
    let (_, error) = last_message(&reply).unwrap();
    let error = String::from_utf8_lossy(error);
    assert!(error.contains("SFATAL\0"), "{error}");
    assert!(error.contains("C08P01\0"), "{error}");
    assert!(
        error.contains("Bind message ends inside a parameter value"),
        "{error}"
    );
    let log = stop_clean(server);
    assert!(!log.contains("failed on a bug"), "{log}");
}

/// A statement whose text is not UTF8 is refused (`22021`), never stored with U+FFFD in
/// place of its bytes (found by an outside attack: `'a\xff\xfeb'` was stored as
/// `'a\u{fffd}\u{fffd}b'`).
#[test]
fn a_statement_that_is_not_utf8_is_refused_and_nothing_is_stored() {
    let dir = TempDir::new("fuzz-not-utf8");
    let server = Server::start(dir.path(), &[]);
    let mut socket = raw_login(server.port).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut bytes = message(b'Q', b"CREATE TABLE enc (id BIGINT PRIMARY KEY, s TEXT)\0");
    bytes.extend(message(b'Q', b"INSERT INTO enc VALUES (1, 'a\xff\xfeb')\0"));
    socket.write_all(&bytes).unwrap();
    let reply = read_until_closed(&mut socket, "the connection");
    let (_, error) = last_message(&reply).unwrap();
    let error = String::from_utf8_lossy(error);
    assert!(error.contains("C22021\0"), "{error}");
    let mut socket = raw_login(server.port).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket
        .write_all(&message(b'Q', b"SELECT count(*) FROM enc\0"))
        .unwrap();
    let mut rows = Vec::new();
    loop {
        let (kind, body) = read_message(&mut socket).unwrap();
        if kind == b'D' {
            rows.push(body);
        }
        if kind == b'Z' {
            break;
        }
    }
    assert_eq!(rows.len(), 1);
    assert!(rows[0].ends_with(b"0"), "nothing stored: {:?}", rows[0]);
    let log = stop_clean(server);
    assert!(!log.contains("failed on a bug"), "{log}");
}

/// Format codes as PostgreSQL checks them: a list that does not match the result's columns
/// is `08P01` (pgwire indexed past its end: a panic), a code other than 0 or 1 `22023`.
#[test]
fn bad_format_codes_are_refused_not_a_bug() {
    let dir = TempDir::new("fuzz-format-codes");
    let server = Server::start(dir.path(), &[]);
    for (codes, expected) in [(&[0i16, 1][..], "C08P01\0"), (&[0, 7, 1][..], "C22023\0")] {
        let mut socket = raw_login(server.port).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut bytes = message(b'P', b"\0SELECT 1, 2, 3\0\0\0");
        let mut bind = b"\0\0\0\0\0\0".to_vec();
        bind.extend_from_slice(&(codes.len() as i16).to_be_bytes());
        for code in codes {
            bind.extend_from_slice(&code.to_be_bytes());
        }
        bytes.extend(message(b'B', &bind));
        bytes.extend(message(b'E', b"\0\0\0\0\0"));
        bytes.extend(message(b'S', &[]));
        bytes.extend(message(b'X', &[]));
        socket.write_all(&bytes).unwrap();
        let reply = read_until_closed(&mut socket, "the connection");
        let text = String::from_utf8_lossy(&reply);
        assert!(text.contains(expected), "{codes:?}: {text}");
    }
    let log = stop_clean(server);
    assert!(!log.contains("failed on a bug"), "{log}");
}

/// As in PostgreSQL, Sync outside a block ends every portal: a suspended named portal (and
/// the snapshot its query reads) does not outlive it.
#[test]
fn sync_outside_a_block_ends_suspended_portals() {
    let dir = TempDir::new("fuzz-portal-sync");
    let server = Server::start(dir.path(), &[]);
    let mut socket = raw_login(server.port).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut bytes = message(b'P', b"s\0SELECT value FROM generate_series(1, 1000)\0\0\0");
    bytes.extend(message(b'B', b"p1\0s\0\0\0\0\0\0\0"));
    bytes.extend(message(b'E', b"p1\0\0\0\0\x02"));
    bytes.extend(message(b'S', &[]));
    bytes.extend(message(b'E', b"p1\0\0\0\0\x02"));
    bytes.extend(message(b'S', &[]));
    bytes.extend(message(b'X', &[]));
    socket.write_all(&bytes).unwrap();
    let reply = read_until_closed(&mut socket, "the connection");
    let kinds = message_kinds(&reply);
    // Parse, Bind, two rows, suspended, ready; then the portal is gone: an error, ready.
    assert_eq!(kinds, b"12DDsZEZ", "{}", String::from_utf8_lossy(&reply));
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("C34000\0"), "PostgreSQL's code: {text}");
    let log = stop_clean(server);
    assert!(!log.contains("failed on a bug"), "{log}");
}

/// A portal whose write ran cannot be run again (55000), as in PostgreSQL: each Execute ran
/// the UPDATE once more.
#[test]
fn a_portal_runs_its_write_once() {
    let dir = TempDir::new("fuzz-portal-write");
    let server = Server::start(dir.path(), &[]);
    let mut socket = raw_login(server.port).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut bytes = message(
        b'Q',
        b"CREATE TABLE t5 (id BIGINT PRIMARY KEY, v BIGINT); INSERT INTO t5 VALUES (1, 0)\0",
    );
    bytes.extend(message(
        b'P',
        b"s\0UPDATE t5 SET v = v + 1 WHERE id = 1\0\0\0",
    ));
    bytes.extend(message(b'B', b"pu\0s\0\0\0\0\0\0\0"));
    for _ in 0..3 {
        bytes.extend(message(b'E', b"pu\0\0\0\0\0"));
    }
    bytes.extend(message(b'S', &[]));
    bytes.extend(message(b'Q', b"SELECT v FROM t5 WHERE id = 1\0"));
    bytes.extend(message(b'X', &[]));
    socket.write_all(&bytes).unwrap();
    let reply = read_until_closed(&mut socket, "the connection");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("C55000\0"), "{text}");
    assert_eq!(text.matches("UPDATE 1").count(), 1, "{text}");
    // The error aborted the pipeline's implicit transaction, as in PostgreSQL: its one UPDATE
    // is not applied either. The last DataRow holds v: 0 (one column, 4-byte length, "0").
    assert!(
        reply.windows(7).any(|w| w == b"\0\x01\0\0\0\x010"),
        "{text}"
    );
    let log = stop_clean(server);
    assert!(!log.contains("failed on a bug"), "{log}");
}
