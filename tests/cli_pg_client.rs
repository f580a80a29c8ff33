//! `omendb serve` speaks the PostgreSQL protocol to a real driver (tokio-postgres): prepared
//! statements with typed parameters in both directions, errors with SQLSTATE codes that
//! leave the connection usable, SCRAM password authentication, the connection limit, and a
//! clean shutdown on SIGTERM that keeps every acknowledged write.

// The binary exists only with the `cli` feature (`cargo test --no-default-features` skips this).
#![allow(clippy::unwrap_used)]

mod cli_support;

use cli_support::{PASSWORD, Server, TempDir};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

async fn connect(port: u16, password: &str) -> Result<Client, tokio_postgres::Error> {
    connect_with_task(port, password)
        .await
        .map(|(client, _)| client)
}

/// A client and the task driving its connection (it ends when the server closes the socket).
async fn connect_with_task(
    port: u16,
    password: &str,
) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("omendb")
        .password(password)
        .dbname("omendb")
        .connect(NoTls)
        .await?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, task))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn prepared_statements_with_parameters_round_trip_typed_values() {
    let dir = TempDir::new("pg-client");
    let server = Server::start(dir.path(), &[]);
    runtime().block_on(async {
        let client = connect(server.port, PASSWORD).await.unwrap();
        client
            .batch_execute(
                "CREATE TABLE kv (id BIGINT PRIMARY KEY, name TEXT, qty INT, price DOUBLE, \
                 ok BOOLEAN, day DATE)",
            )
            .await
            .unwrap();
        let insert = client
            .prepare("INSERT INTO kv VALUES ($1, $2, $3, $4, $5, CAST('2024-02-29' AS DATE))")
            .await
            .unwrap();
        for (id, name) in [(1i64, "ada"), (2, "o'brien; DROP TABLE kv"), (3, "zoë")] {
            let n = client
                .execute(
                    &insert,
                    &[
                        &id,
                        &name,
                        &(id as i32 * 10),
                        &(id as f64 / 4.0),
                        &(id % 2 == 1),
                    ],
                )
                .await
                .unwrap();
            assert_eq!(n, 1);
        }
        // Parameter in WHERE, typed results.
        let row = client
            .query_one(
                "SELECT id, name, qty, price, ok, CAST(day AS TEXT) FROM kv WHERE id = $1",
                &[&2i64],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 2);
        assert_eq!(row.get::<_, &str>(1), "o'brien; DROP TABLE kv");
        assert_eq!(row.get::<_, i32>(2), 20);
        assert_eq!(row.get::<_, f64>(3), 0.5);
        assert!(!row.get::<_, bool>(4));
        assert_eq!(row.get::<_, &str>(5), "2024-02-29");

        // UPDATE with parameters in SET and WHERE; the statement is reused.
        let update = client
            .prepare("UPDATE kv SET name = $1, qty = $2 WHERE id = $3")
            .await
            .unwrap();
        assert_eq!(
            client
                .execute(&update, &[&"grace", &7i32, &1i64])
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            client
                .execute(&update, &[&"nobody", &0i32, &99i64])
                .await
                .unwrap(),
            0
        );
        let rows = client
            .query(
                "SELECT name, qty FROM kv WHERE qty < $1 ORDER BY id",
                &[&25i32],
            )
            .await
            .unwrap();
        let got: Vec<(String, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(
            got,
            [
                ("grace".to_string(), 7),
                ("o'brien; DROP TABLE kv".to_string(), 20)
            ]
        );

        // Aggregates come back as int8 / float8.
        let row = client
            .query_one("SELECT COUNT(*), SUM(price) FROM kv", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 3);
        assert_eq!(row.get::<_, f64>(1), 1.5);

        // NULL parameters.
        client
            .execute(
                "INSERT INTO kv (id, name) VALUES ($1, $2)",
                &[&4i64, &None::<&str>],
            )
            .await
            .unwrap();
        let row = client
            .query_one("SELECT name FROM kv WHERE id = $1", &[&4i64])
            .await
            .unwrap();
        assert_eq!(row.get::<_, Option<&str>>(0), None);

        // Bad SQL: a syntax error, an unknown table, a duplicate key — each with its SQLSTATE,
        // and the connection keeps working.
        let error = client.simple_query("SELEC 1").await.unwrap_err();
        assert_eq!(error.code(), Some(&SqlState::SYNTAX_ERROR));
        let error = client
            .query("SELECT * FROM missing WHERE id = $1", &[&1i64])
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(&SqlState::UNDEFINED_TABLE));
        let error = client
            .execute(&insert, &[&1i64, &"dup", &1i32, &1.0f64, &true])
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(&SqlState::UNIQUE_VIOLATION));
        let row = client
            .query_one("SELECT COUNT(*) FROM kv", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 4);
    });
    let (clean, stderr) = server.stop();
    assert!(clean, "server did not exit cleanly: {stderr}");
    assert!(stderr.contains("shut down cleanly"), "{stderr}");

    // Everything acknowledged before SIGTERM is there after a restart.
    let server = Server::start(dir.path(), &[]);
    runtime().block_on(async {
        let client = connect(server.port, PASSWORD).await.unwrap();
        let row = client
            .query_one("SELECT name FROM kv WHERE id = 1", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, &str>(0), "grace");
    });
    let (clean, _) = server.stop();
    assert!(clean);
}

#[test]
fn wrong_password_and_unknown_user_are_refused() {
    let dir = TempDir::new("pg-auth");
    let server = Server::start(dir.path(), &[]);
    runtime().block_on(async {
        let error = connect(server.port, "wrong").await.err().unwrap();
        assert_eq!(error.code(), Some(&SqlState::INVALID_PASSWORD), "{error}");
        let error = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(server.port)
            .user("mallory")
            .password(PASSWORD)
            .connect(NoTls)
            .await
            .err()
            .unwrap();
        assert_eq!(error.code(), Some(&SqlState::INVALID_PASSWORD), "{error}");
        // The refusals did not disturb the server.
        connect(server.port, PASSWORD)
            .await
            .unwrap()
            .simple_query("SELECT 1")
            .await
            .unwrap();
    });
    let (clean, _) = server.stop();
    assert!(clean);
}

#[test]
fn connections_over_the_limit_are_refused() {
    let dir = TempDir::new("pg-limit");
    let server = Server::start(dir.path(), &["--max-connections", "1"]);
    runtime().block_on(async {
        let (first, first_task) = connect_with_task(server.port, PASSWORD).await.unwrap();
        let error = connect(server.port, PASSWORD).await.err().unwrap();
        assert_eq!(
            error.code(),
            Some(&SqlState::TOO_MANY_CONNECTIONS),
            "{error}"
        );
        // The first session is unaffected, and its slot frees once it has disconnected.
        first.simple_query("SELECT 1").await.unwrap();
        drop(first);
        first_task.await.unwrap();
        // The server releases the slot right after closing the socket: retry until it has.
        let mut again = connect(server.port, PASSWORD).await;
        for _ in 0..1000 {
            if again.is_ok() {
                break;
            }
            tokio::task::yield_now().await;
            again = connect(server.port, PASSWORD).await;
        }
        again.unwrap().simple_query("SELECT 1").await.unwrap();
    });
    let (clean, _) = server.stop();
    assert!(clean);
}

#[test]
fn serve_refuses_to_start_without_a_password() {
    let dir = TempDir::new("pg-nopass");
    let output = std::process::Command::new(cli_support::OMENDB)
        .args(["serve", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir.path())
        .env_remove("OMENDB_PASSWORD")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("OMENDB_PASSWORD"));
}

/// One HTTP/1.1 GET on loopback; returns the whole response (head and body).
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(socket, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).unwrap();
    response
}

/// The value of the sample line `name` (with its labels) in an exposition text.
fn sample(text: &str, name: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.strip_prefix(name).is_some_and(|v| v.starts_with(' ')))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"));
    line[name.len()..].trim().parse().unwrap()
}

#[test]
fn metrics_count_statements_routes_and_rows() {
    let dir = TempDir::new("pg-metrics");
    let server = Server::start(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let port = server
        .metrics_port
        .expect("the server printed its metrics address");
    let before = http_get(port, "/metrics");
    assert!(before.starts_with("HTTP/1.1 200 OK"), "{before}");
    assert!(before.contains("text/plain; version=0.0.4"), "{before}");
    assert_eq!(
        sample(&before, "omendb_statements_total{outcome=\"ok\"}"),
        0.0
    );
    runtime().block_on(async {
        let client = connect(server.port, PASSWORD).await.unwrap();
        client
            .batch_execute(
                "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT); \
                 INSERT INTO t VALUES (1, 10), (2, 20), (3, 30)",
            )
            .await
            .unwrap();
        client
            .simple_query("SELECT v FROM t WHERE id = 2")
            .await
            .unwrap();
        client.simple_query("SELECT SUM(v) FROM t").await.unwrap();
        assert!(client.simple_query("SELECT nope FROM t").await.is_err());
        let text = http_get(port, "/metrics");
        assert_eq!(
            sample(&text, "omendb_statements_total{outcome=\"ok\"}"),
            4.0
        );
        assert_eq!(
            sample(&text, "omendb_statements_total{outcome=\"error\"}"),
            1.0
        );
        assert_eq!(
            sample(&text, "omendb_scan_routes_total{route=\"index_point\"}"),
            1.0
        );
        assert!(sample(&text, "omendb_scan_routes_total{route=\"parquet_delta\"}") >= 1.0);
        assert_eq!(sample(&text, "omendb_index_rows{table=\"t\"}"), 3.0);
        assert_eq!(sample(&text, "omendb_connections_active"), 1.0);
        assert_eq!(sample(&text, "omendb_replication_up"), 1.0);
        assert_eq!(
            sample(&text, "omendb_statement_duration_seconds_count"),
            5.0
        );
        assert_eq!(
            sample(
                &text,
                "omendb_statement_duration_seconds_bucket{le=\"+Inf\"}"
            ),
            5.0
        );
        assert!(sample(&text, "omendb_wal_last_lsn") >= 2.0);
    });
    let missing = http_get(port, "/other");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let (clean, _) = server.stop();
    assert!(clean);
}

#[test]
fn prepared_point_reads_run_on_the_index_and_survive_ddl() {
    let dir = TempDir::new("pg-prepared-key");
    let server = Server::start(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let port = server.metrics_port.expect("metrics address");
    runtime().block_on(async {
        let client = connect(server.port, PASSWORD).await.unwrap();
        client
            .batch_execute(
                "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT); \
                 INSERT INTO t VALUES (1, 'one'), (2, NULL), (3, 'three')",
            )
            .await
            .unwrap();
        let point = client
            .prepare("SELECT * FROM t WHERE id = $1")
            .await
            .unwrap();
        let before = sample(
            &http_get(port, "/metrics"),
            "omendb_scan_routes_total{route=\"index_point\"}",
        );
        for (id, want) in [(1i64, Some(Some("one"))), (2, Some(None)), (4, None)] {
            let rows = client.query(&point, &[&id]).await.unwrap();
            match want {
                Some(v) => {
                    assert_eq!(rows.len(), 1, "id {id}");
                    assert_eq!(rows[0].get::<_, i64>(0), id);
                    assert_eq!(rows[0].get::<_, Option<&str>>(1), v);
                }
                None => assert!(rows.is_empty(), "id {id}"),
            }
        }
        // An INT4 parameter and a range with two parameters take the index too.
        let range = client
            .prepare_typed(
                "SELECT v FROM t WHERE id >= $1 AND id < $2 ORDER BY id",
                &[
                    tokio_postgres::types::Type::INT4,
                    tokio_postgres::types::Type::INT8,
                ],
            )
            .await
            .unwrap();
        let rows = client.query(&range, &[&2i32, &4i64]).await.unwrap();
        let values: Vec<Option<&str>> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(values, [None, Some("three")]);
        let after = sample(
            &http_get(port, "/metrics"),
            "omendb_scan_routes_total{route=\"index_point\"}",
        );
        assert!(after >= before + 3.0, "before {before}, after {after}");

        // A NULL key matches nothing, as `id = NULL` does.
        let rows = client.query(&point, &[&None::<i64>]).await.unwrap();
        assert!(rows.is_empty());

        // The table gains a column: the prepared statement's row type would change.
        client
            .batch_execute("ALTER TABLE t ADD COLUMN w BIGINT")
            .await
            .unwrap();
        let error = client.query(&point, &[&1i64]).await.unwrap_err();
        assert_eq!(
            error.code(),
            Some(&SqlState::FEATURE_NOT_SUPPORTED),
            "{error:?}"
        );
        // Prepared again, it answers with the new column; the connection still works.
        let point = client
            .prepare("SELECT * FROM t WHERE id = $1")
            .await
            .unwrap();
        let row = client.query_one(&point, &[&3i64]).await.unwrap();
        assert_eq!(row.len(), 3);
        assert_eq!(row.get::<_, Option<i64>>(2), None);

        // The table is dropped: a clear error, not a panic or a closed connection.
        client.batch_execute("DROP TABLE t").await.unwrap();
        let error = client.query(&point, &[&3i64]).await.unwrap_err();
        assert!(error.code().is_some(), "{error:?}");
        let rows = client.simple_query("SELECT 1").await.unwrap();
        assert!(!rows.is_empty());
    });
    let (clean, _) = server.stop();
    assert!(clean);
}
