//! `omendb serve` under statements and clients that would hang or kill a naive server, each
//! spoken to by a real driver (tokio-postgres) or a raw socket: statements nested thousands
//! deep, queries that never end (statement timeout, cancel request, disconnect, SIGTERM),
//! integer overflow in stored data, transaction blocks, the session statements drivers send
//! on connect, malformed and slow logins, a client that stops reading.

#![allow(clippy::unwrap_used)]

mod cli_support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use cli_support::{PASSWORD, Server, TempDir, code, connect, runtime, scalar};
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, SimpleQueryMessage};

/// A query that runs for hours unless stopped.
const ENDLESS: &str = "SELECT count(*) FROM generate_series(1, 100000000000)";

/// Statements running in the server, from its metrics endpoint.
fn running_statements(metrics_port: u16) -> u64 {
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    socket.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix("omendb_statements_running "))
        .unwrap_or_else(|| panic!("no omendb_statements_running in {body}"))
        .trim()
        .parse()
        .unwrap()
}

/// The server runtime's threads (workers and blocking threads) of process `pid`.
fn server_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter(|task| {
            let comm = task.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|name| name.trim() == "omendb-serve")
        })
        .count()
}

/// Waits (bounded) until no statement runs in the server.
fn wait_idle(metrics_port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while running_statements(metrics_port) > 0 {
        assert!(
            Instant::now() < deadline,
            "a cancelled statement is still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn deeply_nested_statements_are_refused_and_the_server_lives_on() {
    let dir = TempDir::new("limits-depth");
    let server = Server::start(dir.path(), &[]);
    runtime().block_on(async {
        let client = connect(server.port).await;
        client
            .batch_execute("CREATE TABLE t (id BIGINT PRIMARY KEY, s TEXT)")
            .await
            .unwrap();
        let chain = |term: &str, separator: &str, n: usize| vec![term; n].join(separator);
        let statements = [
            format!("SELECT {}", chain("1", "+", 2000)),
            format!("SELECT * FROM t WHERE {}", chain("id = 1", " OR ", 2000)),
            format!("SELECT {}", chain("'x'", " || ", 2000)),
            chain("SELECT 1", " UNION ALL ", 2000),
            format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000)),
            // 2 MB on the wire.
            format!("SELECT {}", chain("1", "+", 1_000_000)),
        ];
        for sql in &statements {
            let error = client.simple_query(sql).await.unwrap_err();
            assert!(
                ["54001", "42601"].contains(&code(&error).as_str()),
                "{:.60}: {error:?}",
                sql
            );
            // Also through the extended protocol.
            let error = client.prepare(sql).await.unwrap_err();
            assert!(
                ["54001", "42601"].contains(&code(&error).as_str()),
                "{:.60}: {error:?}",
                sql
            );
        }
        // A chain within the limit is answered.
        let sum = scalar(&client, &format!("SELECT {}", chain("1", "+", 500))).await;
        assert_eq!(sum.as_deref(), Some("500"));
        assert_eq!(scalar(&client, "SELECT 1").await.as_deref(), Some("1"));
    });
    let (clean, stderr) = server.stop();
    assert!(clean, "{stderr}");
}

#[test]
fn a_query_that_never_ends_is_stopped_by_timeout_cancel_disconnect_and_sigterm() {
    let dir = TempDir::new("limits-cancel");
    let server = Server::start(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let metrics = server.metrics_port.unwrap();
    let rt = runtime();
    let client = rt.block_on(async {
        let mut client = connect(server.port).await;
        // statement_timeout, set per session.
        client
            .batch_execute("SET statement_timeout = 300")
            .await
            .unwrap();
        assert_eq!(
            scalar(&client, "SHOW statement_timeout").await.as_deref(),
            Some("300ms")
        );
        let error = client.simple_query(ENDLESS).await.unwrap_err();
        assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error}");
        let error = client.query(ENDLESS, &[]).await.unwrap_err();
        assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error}");
        wait_idle(metrics);
        client
            .batch_execute("RESET statement_timeout")
            .await
            .unwrap();
        assert_eq!(scalar(&client, "SELECT 2").await.as_deref(), Some("2"));

        // A cancel request from another connection.
        let token = client.cancel_token();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            token.cancel_query(NoTls).await.unwrap();
        });
        let error = client.simple_query(ENDLESS).await.unwrap_err();
        assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error}");
        canceller.await.unwrap();
        wait_idle(metrics);
        assert_eq!(scalar(&client, "SELECT 3").await.as_deref(), Some("3"));

        // A client that goes away mid-query (psql, killed: the kernel closes its socket).
        let mut psql = std::process::Command::new("psql")
            .args(["-X", "-h", "127.0.0.1", "-U", "omendb", "-d", "omendb"])
            .args(["-p", &server.port.to_string(), "-c", ENDLESS])
            .env("PGPASSWORD", PASSWORD)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("psql (scripts/install-test-deps.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while running_statements(metrics) == 0 {
            assert!(Instant::now() < deadline, "the query never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        psql.kill().unwrap();
        psql.wait().unwrap();
        wait_idle(metrics);
        assert_eq!(scalar(&client, "SELECT 4").await.as_deref(), Some("4"));

        // Results stream: Execute with max_rows suspends the portal.
        let transaction = client.transaction().await.unwrap();
        let statement = transaction
            .prepare("SELECT v FROM generate_series(1, 100000) AS g(v)")
            .await
            .unwrap();
        let portal = transaction.bind(&statement, &[]).await.unwrap();
        let first = transaction.query_portal(&portal, 10).await.unwrap();
        assert_eq!(first.len(), 10);
        assert_eq!(first[0].get::<_, i64>(0), 1);
        let next = transaction.query_portal(&portal, 5).await.unwrap();
        assert_eq!(next[0].get::<_, i64>(0), 11);
        transaction.commit().await.unwrap();

        client
    });
    // SIGTERM while a statement runs: it is cancelled after the grace period, and the
    // client is told why. (First the portal above must be gone, so that the gauge below
    // counts this statement.)
    wait_idle(metrics);
    let sigterm = rt.spawn(async move { client.simple_query(ENDLESS).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while running_statements(metrics) == 0 {
        assert!(Instant::now() < deadline, "the query never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let (clean, stderr) = server.stop();
    let stopped_in = started.elapsed();
    assert!(clean, "{stderr}");
    assert!(stderr.contains("shut down cleanly"), "{stderr}");
    eprintln!("SIGTERM to exit with a statement running: {stopped_in:?}");
    assert!(stopped_in < Duration::from_secs(60), "{stopped_in:?}");
    let answer = rt.block_on(sigterm).unwrap().unwrap_err();
    assert_eq!(code(&answer), "57P01", "{answer}");
}

#[test]
fn integer_overflow_is_an_error_and_the_row_keeps_its_value() {
    let dir = TempDir::new("limits-overflow");
    let server = Server::start(dir.path(), &[]);
    runtime().block_on(async {
        let client = connect(server.port).await;
        client
            .batch_execute(
                "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT); \
                 INSERT INTO t VALUES (1, 9223372036854775807), (2, 9223372036854775807)",
            )
            .await
            .unwrap();
        for sql in [
            "UPDATE t SET v = v + 1 WHERE id = 1",
            "UPDATE t SET v = v * 2",
            "UPDATE t SET v = -v - 2 WHERE id = 2",
            "INSERT INTO t SELECT id + 10, v + 1 FROM t",
            "SELECT sum(v) FROM t",
            "SELECT id % 1, sum(v) FROM t GROUP BY id % 1",
            "SELECT 9223372036854775807 + 1",
            "SELECT 1e400",
        ] {
            let error = client.simple_query(sql).await.unwrap_err();
            assert_eq!(
                error.code(),
                Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE),
                "{sql}: {error}"
            );
        }
        let rows = client
            .query("SELECT id, v FROM t ORDER BY id", &[])
            .await
            .unwrap();
        let got: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(got, [(1, i64::MAX), (2, i64::MAX)]);
        // Sums that fit are exact and still BIGINT.
        client
            .batch_execute("UPDATE t SET v = 4611686018427387903")
            .await
            .unwrap();
        let row = client.query_one("SELECT sum(v) FROM t", &[]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 9223372036854775806);
        let row = client
            .query_one("SELECT sum(v) AS total, count(*) FROM t WHERE id > 0", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>("total"), 9223372036854775806);
    });
    let (clean, stderr) = server.stop();
    assert!(clean, "{stderr}");
}

#[test]
fn transaction_blocks_and_session_statements_answer_as_postgresql_does() {
    let dir = TempDir::new("limits-session");
    let server = Server::start(dir.path(), &[]);
    runtime().block_on(async {
        let client = connect(server.port).await;
        client
            .batch_execute("CREATE TABLE t (id BIGINT PRIMARY KEY, s TEXT)")
            .await
            .unwrap();
        // What pgjdbc, psycopg and SQLAlchemy send on connect.
        client
            .batch_execute(
                "SET extra_float_digits = 3; SET application_name = 'PostgreSQL JDBC Driver'; \
                 SET DateStyle = 'ISO'; SET TIME ZONE 'UTC'",
            )
            .await
            .unwrap();
        assert_eq!(
            scalar(&client, "SHOW application_name").await.as_deref(),
            Some("PostgreSQL JDBC Driver")
        );
        assert_eq!(
            scalar(&client, "SHOW transaction isolation level")
                .await
                .as_deref(),
            Some("repeatable read")
        );
        assert_eq!(
            scalar(&client, "SHOW standard_conforming_strings")
                .await
                .as_deref(),
            Some("on")
        );
        let version = scalar(&client, "SELECT pg_catalog.version()")
            .await
            .unwrap();
        assert!(version.starts_with("PostgreSQL 16"), "{version}");
        let row = client
            .query_one("select current_schema()", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, &str>(0), "public");
        let error = client
            .simple_query("SHOW no_such_setting")
            .await
            .unwrap_err();
        assert_eq!(code(&error), "42704");
        // Settings whose values the answers would not follow are refused, not ignored
        // (found by an outside attack); the ones drivers send pass.
        for (sql, expected) in [
            ("SET client_encoding = 'LATIN1'", "0A000"),
            ("SET standard_conforming_strings = off", "0A000"),
            ("SET DateStyle = 'German'", "0A000"),
            ("SET IntervalStyle = 'sql_standard'", "0A000"),
            ("SET extra_float_digits = 0", "0A000"),
            ("SET extra_float_digits = 4", "22023"),
        ] {
            let error = client.simple_query(sql).await.unwrap_err();
            assert_eq!(code(&error), expected, "{sql}: {error}");
        }
        client
            .batch_execute(
                "SET client_encoding = 'UTF8'; SET DateStyle = 'ISO, MDY'; \
                 SET extra_float_digits = 2; SET standard_conforming_strings = on",
            )
            .await
            .unwrap();
        let error = client
            .simple_query("SET statement_timeout = 'soon'")
            .await
            .unwrap_err();
        assert_eq!(code(&error), "22023");

        // A block with reads and writes commits them together.
        client
            .batch_execute(
                "BEGIN; SELECT * FROM t; INSERT INTO t VALUES (1, 'a'); \
                 INSERT INTO t VALUES (6, 'f'); COMMIT",
            )
            .await
            .unwrap();
        // A block that failed applies nothing: COMMIT answers ROLLBACK, truthfully.
        client.batch_execute("BEGIN").await.unwrap();
        client
            .execute("INSERT INTO t VALUES (2, 'b')", &[])
            .await
            .unwrap();
        client
            .execute("INSERT INTO t VALUES (3, 'c')", &[])
            .await
            .unwrap();
        let error = client.simple_query("SELECT 1 / 0").await.unwrap_err();
        assert_eq!(code(&error), "22012", "{error}");
        let error = client.simple_query("SELECT 1").await.unwrap_err();
        assert_eq!(code(&error), "25P02");
        client.batch_execute("COMMIT").await.unwrap();
        client
            .batch_execute("DELETE FROM t WHERE id = 6")
            .await
            .unwrap();
        // A query that fails after its first rows were streamed fails its block too.
        client.batch_execute("BEGIN").await.unwrap();
        let error = client
            .query(
                "SELECT 10 / (v - 30000) FROM generate_series(1, 40000) AS s(v)",
                &[],
            )
            .await
            .unwrap_err();
        assert_eq!(code(&error), "22012", "{error}");
        let error = client.simple_query("SELECT 1").await.unwrap_err();
        assert_eq!(code(&error), "25P02");
        client.batch_execute("ROLLBACK").await.unwrap();
        // ROLLBACK undoes the block's writes.
        client.batch_execute("BEGIN").await.unwrap();
        client
            .execute("INSERT INTO t VALUES (4, 'd')", &[])
            .await
            .unwrap();
        client.batch_execute("ROLLBACK").await.unwrap();
        let rows = client
            .query("SELECT id FROM t ORDER BY id", &[])
            .await
            .unwrap();
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(ids, [1], "exactly the writes of committed blocks");

        // SQL-level prepared statements.
        client
            .batch_execute(
                "PREPARE ins (BIGINT, TEXT) AS INSERT INTO t VALUES ($1, $2); \
                 EXECUTE ins (10, 'ten'); DEALLOCATE ins; DEALLOCATE ALL",
            )
            .await
            .unwrap();
        // As in PostgreSQL, not inside a transaction block (a multi-statement query is one).
        let error = client
            .batch_execute("SELECT 1; DISCARD ALL")
            .await
            .unwrap_err();
        assert_eq!(code(&error), "25001", "{error}");
        client.batch_execute("DISCARD ALL").await.unwrap();
        assert_eq!(
            scalar(&client, "SELECT s FROM t WHERE id = 10")
                .await
                .as_deref(),
            Some("ten")
        );
        let error = client
            .simple_query("EXECUTE ins (11, 'x')")
            .await
            .unwrap_err();
        assert_eq!(code(&error), "26000");

        // A prepared INSERT reused many times (pgjdbc switches to a named statement at the
        // 5th) is described as returning no rows, and every execution reports its row.
        let insert = client
            .prepare("INSERT INTO t VALUES ($1, $2)")
            .await
            .unwrap();
        assert!(insert.columns().is_empty());
        for id in 100..200i64 {
            assert_eq!(client.execute(&insert, &[&id, &"x"]).await.unwrap(), 1);
        }
        let count = scalar(&client, "SELECT count(*) FROM t WHERE id >= 100").await;
        assert_eq!(count.as_deref(), Some("100"));
    });
    let (clean, stderr) = server.stop();
    assert!(clean, "{stderr}");
}

/// Reads backend messages until `tag` arrives (or the socket closes); returns the tags seen.
fn read_until(socket: &mut std::net::TcpStream, tag: u8) -> Vec<u8> {
    let mut tags = Vec::new();
    while let Ok((kind, _)) = cli_support::read_message(socket) {
        tags.push(kind);
        if kind == tag {
            break;
        }
    }
    tags
}

#[test]
fn malformed_and_slow_logins_end_only_their_own_connection() {
    let dir = TempDir::new("limits-login");
    let config = dir.path().join("omendb.toml");
    std::fs::write(
        &config,
        "[server]\nlogin_timeout_ms = 500\nmax_pending_logins = 8\n",
    )
    .unwrap();
    let server = Server::start_with_config(dir.path(), &config, &[]);
    let address = ("127.0.0.1", server.port);
    // Malformed password messages: a protocol error, the connection closes, no panic.
    for garbage in [
        b"p\x00\x00\x00\x08abcd".to_vec(),
        b"p\x00\x00\x00\x04".to_vec(),
        b"p\x00\x00\x00\x0dSCRAM\x00\xff\xff\xff\xff".to_vec(),
        b"p\x00\x00\x00\x14SCRAM-SHA-256\x00\x00\x00\x00\x01".to_vec(),
    ] {
        let mut socket = std::net::TcpStream::connect(address).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        socket
            .write_all(&cli_support::startup_message("omendb"))
            .unwrap();
        let tags = read_until(&mut socket, b'R');
        assert_eq!(tags.last(), Some(&b'R'), "SASL request expected");
        socket.write_all(&garbage).unwrap();
        let tags = read_until(&mut socket, b'E');
        assert_eq!(
            tags.last(),
            Some(&b'E'),
            "an error, then the connection closes"
        );
    }
    // Connections that never log in are closed after the login timeout, and do not lock
    // out a client that logs in.
    let idle: Vec<_> = (0..20)
        .map(|_| std::net::TcpStream::connect(address).unwrap())
        .collect();
    runtime().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            let attempt = tokio_postgres::Config::new()
                .host("127.0.0.1")
                .port(server.port)
                .user("omendb")
                .password(PASSWORD)
                .connect(NoTls)
                .await;
            match attempt {
                Ok((client, connection)) => {
                    tokio::spawn(connection);
                    break client;
                }
                Err(error) => {
                    assert!(Instant::now() < deadline, "locked out: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        assert_eq!(scalar(&client, "SELECT 5").await.as_deref(), Some("5"));
        // Wrong passwords name the user and are answered ever more slowly.
        let started = Instant::now();
        for _ in 0..4 {
            let error = tokio_postgres::Config::new()
                .host("127.0.0.1")
                .port(server.port)
                .user("omendb")
                .password("wrong")
                .connect(NoTls)
                .await
                .err()
                .unwrap();
            let text = format!("{error:?}");
            assert!(
                text.contains("\\\"omendb\\\"") || text.contains("\"omendb\""),
                "{text}"
            );
        }
        // 50 + 100 + 200 + 400 ms of delay at least.
        assert!(started.elapsed() >= Duration::from_millis(750));
    });
    for mut socket in idle {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut byte = [0u8; 1];
        // Closed by the server (EOF) or answered with a refusal; never left open.
        let read = socket.read(&mut byte);
        assert!(matches!(read, Ok(0) | Ok(1)), "{read:?}");
    }
    let (clean, stderr) = server.stop();
    assert!(clean, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_query_beyond_its_memory_spills_or_fails_and_the_server_stays_small() {
    let dir = TempDir::new("limits-memory");
    let config = dir.path().join("omendb.toml");
    std::fs::write(&config, "[server]\nquery_memory_mb = 64\n").unwrap();
    let server = Server::start_with_config(dir.path(), &config, &[]);
    runtime().block_on(async {
        let client = connect(server.port).await;
        // Ten million groups: a hash table of several hundred MB without a limit.
        let groups = "SELECT count(*) FROM (SELECT v % 10000000 AS k, count(*) AS n \
                      FROM generate_series(1, 20000000) AS g(v) GROUP BY v % 10000000) AS s";
        match client.simple_query(groups).await {
            Ok(messages) => {
                let count = messages.iter().find_map(|m| match m {
                    SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                    _ => None,
                });
                assert_eq!(count.as_deref(), Some("10000000"));
            }
            Err(error) => assert_eq!(code(&error), "53200", "{error}"),
        }
        // A sort of 8M rows (64 MB of keys alone), read as it streams.
        let sorted = "SELECT v FROM generate_series(1, 8000000) AS g(v) ORDER BY v DESC";
        let outcome = async {
            let stream = client.query_raw(sorted, Vec::<i64>::new()).await?;
            futures::pin_mut!(stream);
            let (mut rows, mut previous) = (0u64, i64::MAX);
            while let Some(row) = futures::StreamExt::next(&mut stream).await {
                let v: i64 = row?.get(0);
                assert!(v < previous, "sorted");
                previous = v;
                rows += 1;
            }
            Ok::<_, tokio_postgres::Error>(rows)
        };
        match outcome.await {
            Ok(rows) => assert_eq!(rows, 8_000_000),
            Err(error) => assert_eq!(code(&error), "53200", "{error}"),
        }
        // A hash join cannot spill its build side: 5M rows need more than 64 MiB, so the
        // limit must refuse it (it answers without the limit). This fails if the limit
        // is not applied.
        let join = "SELECT count(*) FROM generate_series(1, 5000000) a(v) \
                    JOIN generate_series(1, 5000000) b(w) ON v = w";
        let error = client.simple_query(join).await.unwrap_err();
        assert_eq!(code(&error), "53200", "{error}");
        assert_eq!(scalar(&client, "SELECT 6").await.as_deref(), Some("6"));
    });
    let peak = server.peak_rss();
    eprintln!("peak RSS under a 64 MiB query limit: {} MiB", peak >> 20);
    // The pool bounds the operators' state; batches in flight, the scan and the allocator's
    // retained pages come on top (1.1 GiB was seen on a debug build).
    assert!(peak < 2 << 30, "peak RSS {} MiB", peak >> 20);
    let (clean, stderr) = server.stop();
    assert!(clean, "{stderr}");
}

/// What no operator reserves is counted too: the batch coalescers between operators gather
/// up to 8,192 rows whatever their size (a recursive CTE of 1 MB values took 7.5 GB with a
/// 256 MB pool). The allocator's meter stops such a query at twice `query_memory_mb`, while
/// a result many times that size streams to the client, since sent batches are given back.
#[test]
fn a_query_is_bounded_by_what_it_holds_not_only_by_what_operators_reserve() {
    let dir = TempDir::new("limits-meter");
    let config = dir.path().join("omendb.toml");
    std::fs::write(
        &config,
        "[server]\nquery_memory_mb = 32\nquery_spill_mb = 16\n",
    )
    .unwrap();
    let server = Server::start_with_config(dir.path(), &config, &[]);
    let before = server.rss();
    runtime().block_on(async {
        let client = connect(server.port).await;
        let other = connect(server.port).await;
        // 600 rows of 1 MB, each a batch of its own, coalesced above the recursion.
        let held = "WITH RECURSIVE r(n, a) AS (SELECT 1, repeat('x', 1000000) \
                    UNION ALL SELECT n + 1, a FROM r WHERE n < 600) \
                    SELECT sum(length(a)) FROM r";
        let error = client.simple_query(held).await.unwrap_err();
        assert_eq!(code(&error), "53200", "{error}");
        let message = error.as_db_error().map(|e| e.message().to_string());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("query_memory_mb")),
            "{message:?}"
        );
        // One large constant repeated over a batch: built in one step inside a projection,
        // whether folded into a literal (1 MB) or computed when the query runs (2 MB).
        for size in [1_000_000, 2_000_000] {
            let repeated = format!(
                "SELECT max(length(a)), max(length(b)) FROM (SELECT repeat('x', {size}) a, \
                 repeat('y', {size}) b FROM generate_series(1, 1500))"
            );
            let error = client.simple_query(&repeated).await.unwrap_err();
            assert_eq!(code(&error), "53200", "{error}");
        }
        // A join repeats a row up to a batch's worth of times in one step: refused before
        // it builds 800 MB (a 1.5 MB row went on to 12 GB after its query had failed).
        let joined = "SELECT sum(length(a)) FROM (SELECT repeat('x', 100000) a) t \
                      CROSS JOIN generate_series(1, 8192)";
        let error = client.simple_query(joined).await.unwrap_err();
        assert_eq!(code(&error), "53200", "{error}");
        // A sort spills to disk past its pool, up to `query_spill_mb` (PostgreSQL's
        // `temp_file_limit` code past it): one query cannot fill the log's disk.
        let sorted = "SELECT v FROM generate_series(1, 8000000) g(v) ORDER BY v DESC";
        let error = client.simple_query(sorted).await.unwrap_err();
        assert_eq!(code(&error), "53400", "{error}");
        let started = Instant::now();
        assert_eq!(scalar(&other, "SELECT 7").await.as_deref(), Some("7"));
        assert!(started.elapsed() < Duration::from_secs(1));
        // 200 MB of rows, read as they stream: more than the meter's 64 MB, never held.
        let streamed = "SELECT repeat('x', 1000) FROM generate_series(1, 200000)";
        let stream = client.query_raw(streamed, Vec::<i64>::new()).await.unwrap();
        futures::pin_mut!(stream);
        let mut bytes = 0usize;
        while let Some(row) = futures::StreamExt::next(&mut stream).await {
            bytes += row.unwrap().get::<_, &str>(0).len();
        }
        assert_eq!(bytes, 200_000_000);
        // The session is usable after the failure, and the same query within the meter runs.
        let small = held.replace("n < 600", "n < 20");
        assert_eq!(scalar(&client, &small).await.as_deref(), Some("20000000"));
    });
    let peak = server.peak_rss();
    eprintln!("RSS before {} MiB, peak {} MiB", before >> 20, peak >> 20);
    // Without the meter the first query holds 600 MB and answers, the repeated ones 3 GB
    // and 6 GB.
    assert!(peak < before + (512 << 20), "peak RSS {} MiB", peak >> 20);
    let (clean, stderr) = server.stop();
    assert!(clean, "{stderr}");
}

/// Every query's memory counts against one pool of the server too, suspended portals'
/// included: sessions together cannot hold operator memory past it, however many queries
/// they run or suspend.
#[test]
fn suspended_portals_hold_memory_within_the_servers_total() {
    let dir = TempDir::new("limits-total-memory");
    let config = dir.path().join("omendb.toml");
    std::fs::write(
        &config,
        "[server]\nquery_memory_mb = 64\ntotal_query_memory_mb = 96\n",
    )
    .unwrap();
    let server = Server::start_with_config(dir.path(), &config, &[]);
    runtime().block_on(async {
        let mut holder = connect(server.port).await;
        let other = connect(server.port).await;
        // A hash join whose build side fits one query's pool.
        let join = "SELECT count(*) FROM generate_series(1, 3000000) a(v) \
                    JOIN generate_series(1, 3000000) b(w) ON v = w";
        assert_eq!(scalar(&other, join).await.as_deref(), Some("3000000"));
        // The same join's hash table, kept in memory by a suspended portal.
        let block = holder.transaction().await.unwrap();
        let joined = block
            .prepare(
                "SELECT v FROM generate_series(1, 3000000) a(v) \
                 JOIN generate_series(1, 3000000) b(w) ON v = w",
            )
            .await
            .unwrap();
        let portal = block.bind(&joined, &[]).await.unwrap();
        let first = block.query_portal(&portal, 1).await.unwrap();
        assert_eq!(first.len(), 1);
        let error = other.simple_query(join).await.unwrap_err();
        assert_eq!(
            code(&error),
            "53200",
            "the portal holds the memory: {error}"
        );
        drop(portal);
        block.rollback().await.unwrap();
        assert_eq!(scalar(&other, join).await.as_deref(), Some("3000000"));
    });
    let (clean, stderr) = server.stop();
    assert!(clean, "{stderr}");
}

#[test]
fn a_client_that_stops_reading_stops_its_query_and_the_server_stays_small() {
    let dir = TempDir::new("limits-slow-reader");
    let server = Server::start(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let metrics = server.metrics_port.unwrap();
    // 100 GB of rows, asked for and then not read.
    let mut socket = cli_support::raw_login(server.port).unwrap();
    let query = "SELECT repeat('x', 1000) AS s FROM generate_series(1, 100000000)\0";
    socket
        .write_all(&cli_support::message(b'Q', query.as_bytes()))
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        running_statements(metrics),
        1,
        "the query still waits to send"
    );
    let idle = server.peak_rss();
    std::thread::sleep(Duration::from_secs(2));
    let later = server.peak_rss();
    eprintln!(
        "peak RSS with a reader that stopped: {} MiB, 2 s later {} MiB",
        idle >> 20,
        later >> 20
    );
    // Without backpressure the rows would pile up at ~1 GB/s; what waits is the two-batch
    // channel, the encoder's rows and the socket buffers.
    assert!(idle < 1 << 30, "peak RSS {} MiB", idle >> 20);
    assert!(
        later - idle < 64 << 20,
        "RSS grew by {} MiB",
        (later - idle) >> 20
    );
    // More readers that stop: each holds its buffered batches, but no thread while it waits
    // (the server's blocking threads idle out after tokio's 10 s keep-alive).
    let stalled: Vec<_> = (0..12)
        .map(|_| {
            let mut socket = cli_support::raw_login(server.port).unwrap();
            socket
                .write_all(&cli_support::message(b'Q', query.as_bytes()))
                .unwrap();
            socket
        })
        .collect();
    std::thread::sleep(Duration::from_secs(14));
    assert_eq!(
        running_statements(metrics),
        13,
        "the queries still wait to send"
    );
    let threads = server_threads(server.pid());
    eprintln!("server threads with 13 readers that stopped: {threads}");
    assert!(
        threads < 8,
        "{threads} server threads: stopped readers hold threads"
    );
    drop(stalled);
    // The rows that were sent are real rows; then the client goes away and the query ends.
    let (kind, _) = cli_support::read_message(&mut socket).unwrap();
    assert_eq!(kind, b'T', "a row description first");
    let (kind, body) = cli_support::read_message(&mut socket).unwrap();
    assert_eq!(kind, b'D');
    assert_eq!(body.len(), 2 + 4 + 1000);
    drop(socket);
    wait_idle(metrics);
    let (clean, stderr) = server.stop();
    assert!(clean, "{stderr}");
}

#[test]
fn a_write_that_fails_in_any_way_applies_nothing() {
    let dir = TempDir::new("limits-nothing");
    let server = Server::start(dir.path(), &[]);
    runtime().block_on(async {
        let client = connect(server.port).await;
        client
            .batch_execute(
                "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT NOT NULL, d DATE); \
                 INSERT INTO t VALUES (1, 10, NULL), (2, 20, NULL)",
            )
            .await
            .unwrap();
        let contents = || async {
            let rows = client
                .query("SELECT id, v FROM t ORDER BY id", &[])
                .await
                .unwrap();
            rows.iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
                .collect::<Vec<_>>()
        };
        let before = contents().await;
        client
            .batch_execute("SET statement_timeout = 300")
            .await
            .unwrap();
        // Each fails after some of its rows were computed: none of them may be applied.
        for (sql, expected) in [
            ("INSERT INTO t VALUES (3, 30, NULL), (1, 11, NULL)", "23505"),
            ("INSERT INTO t VALUES (4, 40, NULL), (5, NULL, NULL)", "23502"),
            ("INSERT INTO t VALUES (6, 60, NULL), (7, 70, 'not a date')", "22007"),
            ("UPDATE t SET v = v * 9223372036854775807", "22003"),
            (
                "INSERT INTO t SELECT id + 10, v + 9223372036854775800, NULL FROM t",
                "22003",
            ),
            ("UPDATE t SET nope = 1", "42703"),
            ("DELETE FROM nope", "42P01"),
            (
                // Few rows pass the filter, so the statement meets its timeout long before
                // its rows could reach the size of one log record (54000).
                "INSERT INTO t SELECT v + 100, v, NULL FROM generate_series(1, 100000000000) AS g(v) \
                 WHERE v % 1000000007 = 0",
                "57014",
            ),
            (
                "DELETE FROM t WHERE id IN (SELECT count(*) FROM generate_series(1, 100000000000))",
                "57014",
            ),
        ] {
            let error = client.simple_query(sql).await.unwrap_err();
            assert_eq!(code(&error), expected, "{sql}: {error}");
            assert_eq!(contents().await, before, "{sql} applied something");
            // Through the extended protocol too.
            let error = client.execute(sql, &[]).await.unwrap_err();
            assert_eq!(code(&error), expected, "{sql}: {error}");
            assert_eq!(contents().await, before, "{sql} applied something");
        }
    });
    let (clean, stderr) = server.stop();
    assert!(clean, "{stderr}");
}
