//! Transactions through `omendb serve`, as issue 30 found them broken: each example, sent by a
//! real client (tokio-postgres, psql, or raw protocol messages for a pipeline), checked by what
//! a second connection sees.

#![allow(clippy::unwrap_used)]

mod cli_support;

use std::io::Write;
use std::process::Command;

use cli_support::{
    PASSWORD, Server, TempDir, code, connect, message, raw_login, read_message, runtime,
};
use tokio_postgres::Client;

async fn ids(client: &Client) -> Vec<i64> {
    client
        .query("SELECT id FROM tx ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// `SHOW name`'s value.
async fn setting(client: &Client, name: &str) -> Option<String> {
    client
        .simple_query(&format!("SHOW {name}"))
        .await
        .unwrap()
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
}

fn psql(port: u16, sql: &str) -> (String, String) {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "omendb",
            "-d",
            "omendb",
        ])
        .args(["-X", "-v", "VERBOSITY=verbose", "-c", sql])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("psql (scripts/install-test-deps.sh installs it)");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn blocks_scripts_and_pipelines_apply_all_or_nothing() {
    let dir = TempDir::new("transactions");
    let server = Server::start(&dir.path().join("db"), &[]);
    runtime().block_on(async {
        let client = connect(server.port).await;
        let other = connect(server.port).await;
        client
            .batch_execute("CREATE TABLE tx (id BIGINT PRIMARY KEY, v BIGINT)")
            .await
            .unwrap();

        // A failed block: its write is not applied, and COMMIT says ROLLBACK.
        let (out, err) = psql(
            server.port,
            "BEGIN; INSERT INTO tx VALUES (1, 1); SELECT 1/0; COMMIT",
        );
        assert!(err.contains("22012"), "{out}{err}");
        assert_eq!(ids(&other).await, Vec::<i64>::new());
        client.batch_execute("BEGIN").await.unwrap();
        client
            .execute("INSERT INTO tx VALUES (1, 1)", &[])
            .await
            .unwrap();
        let error = client.simple_query("SELECT 1/0").await.unwrap_err();
        assert_eq!(code(&error), "22012");
        client.batch_execute("COMMIT").await.unwrap();
        assert_eq!(ids(&other).await, Vec::<i64>::new());

        // Several writes in a block: invisible to others until COMMIT, then all there.
        client.batch_execute("BEGIN").await.unwrap();
        client
            .execute("INSERT INTO tx VALUES (1, 1)", &[])
            .await
            .unwrap();
        client
            .execute("INSERT INTO tx VALUES (2, 2)", &[])
            .await
            .unwrap();
        client
            .execute("UPDATE tx SET v = v + 10 WHERE id = 1", &[])
            .await
            .unwrap();
        let own = client
            .query_one("SELECT v FROM tx WHERE id = $1", &[&1i64])
            .await
            .unwrap();
        assert_eq!(own.get::<_, i64>(0), 11, "the block reads its own write");
        assert_eq!(ids(&other).await, Vec::<i64>::new());
        client.batch_execute("COMMIT").await.unwrap();
        assert_eq!(ids(&other).await, [1, 2]);

        // A simple Query of several statements is one transaction.
        let error = client
            .batch_execute("INSERT INTO tx VALUES (3, 3); INSERT INTO tx VALUES (3, 4)")
            .await
            .unwrap_err();
        assert_eq!(code(&error), "23505");
        assert_eq!(ids(&other).await, [1, 2]);
        let (out, err) = psql(server.port, "INSERT INTO tx VALUES (3, 3); SELECT 1/0");
        assert!(err.contains("22012"), "{out}{err}");
        assert_eq!(ids(&other).await, [1, 2]);

        // ROLLBACK, and a disconnect inside a block, apply nothing.
        client.batch_execute("BEGIN; DELETE FROM tx").await.unwrap();
        client.batch_execute("ROLLBACK").await.unwrap();
        {
            let leaving = connect(server.port).await;
            leaving
                .batch_execute("BEGIN; DELETE FROM tx WHERE id = 1")
                .await
                .unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(ids(&other).await, [1, 2]);

        // Savepoints undo what follows them, and recover a failed block.
        client
            .batch_execute(
                "BEGIN; INSERT INTO tx VALUES (4, 4); SAVEPOINT a; INSERT INTO tx VALUES (5, 5)",
            )
            .await
            .unwrap();
        let error = client.simple_query("SELECT 1/0").await.unwrap_err();
        assert_eq!(code(&error), "22012");
        client
            .batch_execute("ROLLBACK TO a; INSERT INTO tx VALUES (6, 6); COMMIT")
            .await
            .unwrap();
        assert_eq!(ids(&other).await, [1, 2, 4, 6]);

        // Schema changes are not transactional: inside a block one is applied at once, with a
        // warning that says so, and stays after ROLLBACK.
        let (out, err) = psql(
            server.port,
            "BEGIN; CREATE TABLE kept (id BIGINT PRIMARY KEY); INSERT INTO kept VALUES (1); \
             ROLLBACK",
        );
        assert!(
            err.contains("WARNING") && err.contains("not transactional"),
            "{out}{err}"
        );
        let kept = other.query("SELECT id FROM kept", &[]).await.unwrap();
        assert!(kept.is_empty());

        // First committer wins: the second gets 40001, nothing of it applied.
        client
            .batch_execute("BEGIN; UPDATE tx SET v = 100 WHERE id = 1")
            .await
            .unwrap();
        other
            .batch_execute(
                "BEGIN; UPDATE tx SET v = 200 WHERE id = 1; UPDATE tx SET v = 200 WHERE id = 2",
            )
            .await
            .unwrap();
        client.batch_execute("COMMIT").await.unwrap();
        let error = other.batch_execute("COMMIT").await.unwrap_err();
        assert_eq!(code(&error), "40001", "{error}");
        other.batch_execute("ROLLBACK").await.unwrap();
        let rows = other
            .query("SELECT v FROM tx WHERE id IN (1, 2) ORDER BY id", &[])
            .await
            .unwrap();
        let values: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(values, [100, 2]);

        // A session idle in a block past idle_in_transaction_session_timeout is closed, and
        // its transaction rolled back.
        let idle = connect(server.port).await;
        idle.batch_execute(
            "SET idle_in_transaction_session_timeout = '300ms'; BEGIN; DELETE FROM tx",
        )
        .await
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        assert!(idle.simple_query("COMMIT").await.is_err());
        assert_eq!(ids(&other).await, [1, 2, 4, 6]);
    });

    // An extended-protocol pipeline up to Sync is one transaction: INSERT, then a failing
    // statement, then Sync applies nothing; INSERT, INSERT, Sync applies both; Terminate
    // before Sync applies nothing.
    let pipeline = |statements: &[&str], sync: bool| {
        let mut socket = raw_login(server.port).unwrap();
        let mut bytes = Vec::new();
        for sql in statements {
            let mut parse = vec![0u8];
            parse.extend_from_slice(sql.as_bytes());
            parse.extend_from_slice(&[0, 0, 0]);
            bytes.extend(message(b'P', &parse));
            bytes.extend(message(b'B', &[0, 0, 0, 0, 0, 0, 0, 0]));
            bytes.extend(message(b'E', &[0, 0, 0, 0, 0]));
        }
        if sync {
            bytes.extend(message(b'S', &[]));
        } else {
            bytes.extend(message(b'X', &[]));
        }
        socket.write_all(&bytes).unwrap();
        let mut kinds = Vec::new();
        while let Ok((kind, _)) = read_message(&mut socket) {
            kinds.push(kind);
            if kind == b'Z' {
                break;
            }
        }
        kinds
    };
    let kinds = pipeline(&["INSERT INTO tx VALUES (10, 10)", "SELECT 1/0"], true);
    assert!(kinds.contains(&b'E') && kinds.ends_with(b"Z"), "{kinds:?}");
    let kinds = pipeline(
        &[
            "INSERT INTO tx VALUES (11, 11)",
            "INSERT INTO tx VALUES (12, 12)",
        ],
        true,
    );
    assert!(!kinds.contains(&b'E'), "{kinds:?}");
    pipeline(&["INSERT INTO tx VALUES (13, 13)"], false);
    std::thread::sleep(std::time::Duration::from_millis(200));
    runtime().block_on(async {
        let other = connect(server.port).await;
        assert_eq!(ids(&other).await, [1, 2, 4, 6, 11, 12]);
    });
}

/// Sends one simple Query over a raw connection; returns the SQLSTATEs of its errors, the
/// command tags, and the status byte of its ReadyForQuery.
fn simple(socket: &mut std::net::TcpStream, sql: &str) -> (Vec<String>, Vec<String>, u8) {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    socket.write_all(&message(b'Q', &body)).unwrap();
    let (mut codes, mut tags) = (Vec::new(), Vec::new());
    loop {
        let (kind, body) = read_message(socket).unwrap();
        match kind {
            b'E' => {
                let code = body
                    .split(|&b| b == 0)
                    .find_map(|field| field.strip_prefix(b"C"))
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .unwrap_or_default();
                codes.push(code);
            }
            b'C' => tags.push(String::from_utf8_lossy(&body[..body.len() - 1]).into_owned()),
            b'Z' => return (codes, tags, body[0]),
            _ => {}
        }
    }
}

#[test]
fn parse_and_settings_in_blocks_answer_as_postgresql() {
    let dir = TempDir::new("transaction-parse");
    let server = Server::start(&dir.path().join("db"), &[]);
    runtime().block_on(async {
        let client = connect(server.port).await;
        client
            .batch_execute("CREATE TABLE tx (id BIGINT PRIMARY KEY, v BIGINT)")
            .await
            .unwrap();
        client.batch_execute("BEGIN").await.unwrap();
        assert!(client.batch_execute("SELECT 1/0").await.is_err());
        // Parse (a prepared statement) of anything else: 25P02, as PostgreSQL.
        let refused = client.prepare("SELECT id FROM tx").await.unwrap_err();
        assert_eq!(code(&refused), "25P02");
        // ROLLBACK, parsed and run through the extended protocol, ends the block.
        let rollback = client.prepare("ROLLBACK").await.unwrap();
        client.execute(&rollback, &[]).await.unwrap();
        assert!(client.prepare("SELECT id FROM tx").await.is_ok());

        // ROLLBACK TO undoes the settings changed since its savepoint, as PostgreSQL.
        let show = |name: &'static str| {
            let client = &client;
            async move { setting(client, name).await.unwrap() }
        };
        client
            .batch_execute(
                "BEGIN; SET application_name = 'outer'; SAVEPOINT s; \
                 SET application_name = 'inner'; SET LOCAL statement_timeout = '5s'; \
                 SET app.x = 'y'",
            )
            .await
            .unwrap();
        assert_eq!(show("app.x").await, "y");
        client.batch_execute("ROLLBACK TO s").await.unwrap();
        assert_eq!(show("application_name").await, "outer");
        assert_eq!(show("statement_timeout").await, "0");
        client
            .batch_execute("SAVEPOINT t; RESET ALL; RELEASE t; SAVEPOINT u")
            .await
            .unwrap();
        assert_ne!(show("application_name").await, "outer");
        client.batch_execute("ROLLBACK TO u; COMMIT").await.unwrap();
        assert_ne!(
            show("application_name").await,
            "outer",
            "RESET ALL was released"
        );
    });
    // A second Parse of a named statement: 42P05 (the first stays), as PostgreSQL.
    let mut socket = raw_login(server.port).unwrap();
    let mut bytes = Vec::new();
    for sql in ["s1\0SELECT 1\0\0\0", "s1\0SELECT 2\0\0\0"] {
        bytes.extend(message(b'P', sql.as_bytes()));
        bytes.extend(message(b'S', &[]));
    }
    socket.write_all(&bytes).unwrap();
    let mut kinds = Vec::new();
    let mut errors = Vec::new();
    while kinds.iter().filter(|&&k| k == b'Z').count() < 2 {
        let (kind, body) = read_message(&mut socket).unwrap();
        if kind == b'E' {
            errors.push(String::from_utf8_lossy(&body).into_owned());
        }
        kinds.push(kind);
    }
    assert_eq!(kinds, b"1ZEZ", "{errors:?}");
    assert!(errors[0].contains("42P05"), "{errors:?}");
}

#[test]
fn block_states_answer_as_postgresql() {
    let dir = TempDir::new("transaction-states");
    let server = Server::start(&dir.path().join("db"), &[]);
    let mut raw = raw_login(server.port).unwrap();
    let q = |raw: &mut std::net::TcpStream, sql: &str| simple(raw, sql);
    q(
        &mut raw,
        "CREATE TABLE tx (id BIGINT PRIMARY KEY, v BIGINT)",
    );

    // An error of a statement the server answers itself fails the block too.
    for bad in [
        "ROLLBACK TO nosuch",
        "SET statement_timeout = 'oops'",
        "SHOW nosuch",
        "EXECUTE nosuch",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    ] {
        assert_eq!(q(&mut raw, "BEGIN").2, b'T');
        q(&mut raw, "INSERT INTO tx VALUES (1, 1)");
        let (codes, _, status) = q(&mut raw, bad);
        assert!(
            !codes.is_empty() && status == b'E',
            "{bad}: {codes:?} {status}"
        );
        let (codes, _, _) = q(&mut raw, "INSERT INTO tx VALUES (2, 2)");
        assert_eq!(codes, ["25P02"], "{bad}");
        let (codes, _, _) = q(&mut raw, "RELEASE s");
        assert_eq!(codes, ["25P02"], "{bad}");
        let (_, tags, status) = q(&mut raw, "COMMIT");
        assert_eq!(
            (tags, status),
            (vec!["ROLLBACK".to_string()], b'I'),
            "{bad}"
        );
    }
    let (_, tags, _) = q(&mut raw, "SELECT count(*) FROM tx");
    assert_eq!(tags, ["SELECT 1"]);

    // ROLLBACK TO a savepoint recovers the block: back to T.
    q(&mut raw, "BEGIN; SAVEPOINT a; SELECT 1/0");
    let (codes, _, status) = q(&mut raw, "ROLLBACK TO a");
    assert_eq!((codes.len(), status), (0, b'T'));
    q(&mut raw, "ROLLBACK");

    // ABORT is ROLLBACK, as in PostgreSQL (also of a failed block, and in a script).
    q(&mut raw, "BEGIN; INSERT INTO tx VALUES (9, 9)");
    let (codes, tags, status) = q(&mut raw, "ABORT");
    assert_eq!(
        (codes.len(), tags, status),
        (0, vec!["ROLLBACK".to_string()], b'I')
    );
    q(&mut raw, "BEGIN; SELECT 1/0");
    let (codes, tags, status) = q(&mut raw, "abort work");
    assert_eq!(
        (codes.len(), tags, status),
        (0, vec!["ROLLBACK".to_string()], b'I')
    );
    let (codes, _, status) = q(
        &mut raw,
        "BEGIN; INSERT INTO tx VALUES (9, 9); ABORT TRANSACTION",
    );
    assert_eq!((codes.len(), status), (0, b'I'));
    let (_, tags, _) = q(&mut raw, "SELECT id FROM tx WHERE id = 9");
    assert_eq!(tags, ["SELECT 0"], "nothing of the aborted blocks applied");

    // Savepoint commands outside a block: 25P01.
    assert_eq!(q(&mut raw, "RELEASE a").0, ["25P01"]);
    assert_eq!(q(&mut raw, "ROLLBACK TO a").0, ["25P01"]);

    // READ ONLY blocks and default_transaction_read_only refuse writes (25006).
    let (codes, _, _) = q(&mut raw, "BEGIN READ ONLY; INSERT INTO tx VALUES (3, 3)");
    assert_eq!(codes, ["25006"]);
    q(&mut raw, "ROLLBACK");
    q(&mut raw, "BEGIN; SET TRANSACTION READ ONLY");
    assert_eq!(q(&mut raw, "DELETE FROM tx").0, ["25006"]);
    q(&mut raw, "ROLLBACK");
    q(&mut raw, "SET default_transaction_read_only = on");
    assert_eq!(q(&mut raw, "INSERT INTO tx VALUES (3, 3)").0, ["25006"]);
    assert_eq!(
        q(
            &mut raw,
            "BEGIN READ WRITE; INSERT INTO tx VALUES (3, 3); COMMIT"
        )
        .0
        .len(),
        0
    );
    q(&mut raw, "SET default_transaction_read_only = off");

    // SET is undone by ROLLBACK; SET LOCAL ends with its block.
    q(&mut raw, "BEGIN; SET statement_timeout = 77; ROLLBACK");
    q(&mut raw, "BEGIN; SET LOCAL extra_float_digits = 2; COMMIT");
    q(&mut raw, "BEGIN; SET application_name = 'kept'; COMMIT");
    runtime().block_on(async {
        let client = connect(server.port).await;
        // A failed COMMIT ends the block (status I), as in PostgreSQL: psycopg's retry loop
        // begins a new one.
        client
            .batch_execute("INSERT INTO tx VALUES (1, 1)")
            .await
            .unwrap();
        assert_eq!(
            q(&mut raw, "BEGIN; UPDATE tx SET v = 5 WHERE id = 1").2,
            b'T'
        );
        client
            .batch_execute("UPDATE tx SET v = 6 WHERE id = 1")
            .await
            .unwrap();
        let (codes, _, status) = q(&mut raw, "COMMIT");
        assert_eq!((codes, status), (vec!["40001".to_string()], b'I'));
        assert_eq!(
            q(&mut raw, "BEGIN; UPDATE tx SET v = 7 WHERE id = 1; COMMIT")
                .0
                .len(),
            0
        );
        let v = client
            .query_one("SELECT v FROM tx WHERE id = 1", &[])
            .await
            .unwrap();
        assert_eq!(v.get::<_, i64>(0), 7);
    });
    let show = |raw: &mut std::net::TcpStream, name: &str| {
        let mut body = format!("SHOW {name}").into_bytes();
        body.push(0);
        raw.write_all(&message(b'Q', &body)).unwrap();
        let mut value = String::new();
        loop {
            let (kind, body) = read_message(raw).unwrap();
            if kind == b'D' {
                value = String::from_utf8_lossy(&body[6..]).into_owned();
            }
            if kind == b'Z' {
                return value;
            }
        }
    };
    assert_eq!(show(&mut raw, "statement_timeout"), "0");
    assert_eq!(show(&mut raw, "extra_float_digits"), "1");
    assert_eq!(show(&mut raw, "application_name"), "kept");

    // A portal ends with its block: it cannot return rows the block rolled back.
    q(&mut raw, "BEGIN; INSERT INTO tx VALUES (99, 99)");
    let mut bytes = message(b'P', b"\0SELECT id FROM tx ORDER BY id\0\0\0");
    bytes.extend(message(b'B', b"c1\0\0\0\0\0\0\0\0"));
    bytes.extend(message(b'E', b"c1\0\0\0\0\x01"));
    bytes.extend(message(b'S', &[]));
    raw.write_all(&bytes).unwrap();
    while read_message(&mut raw).unwrap().0 != b'Z' {}
    q(&mut raw, "ROLLBACK");
    let mut bytes = message(b'E', b"c1\0\0\0\0\0");
    bytes.extend(message(b'S', &[]));
    raw.write_all(&bytes).unwrap();
    let mut error = None;
    loop {
        let (kind, body) = read_message(&mut raw).unwrap();
        if kind == b'D' {
            panic!("the portal returned a row after its block rolled back");
        }
        if kind == b'E' {
            error = Some(String::from_utf8_lossy(&body).into_owned());
        }
        if kind == b'Z' {
            break;
        }
    }
    assert!(error.is_some_and(|e| e.contains("C34000")));

    // The second attack: READ ONLY cannot be left through a savepoint; SET TRANSACTION in a
    // multi-statement query applies to it; SERIALIZABLE is refused however it is asked for;
    // a block's own CREATE TABLE is readable in it.
    assert_eq!(
        q(
            &mut raw,
            "BEGIN READ ONLY; SAVEPOINT s; SET TRANSACTION READ WRITE"
        )
        .0,
        ["25001"]
    );
    q(&mut raw, "ROLLBACK");
    assert_eq!(
        q(
            &mut raw,
            "SET TRANSACTION READ ONLY; INSERT INTO tx VALUES (50, 50)"
        )
        .0,
        ["25006"]
    );
    assert_eq!(
        q(
            &mut raw,
            "SET default_transaction_isolation = 'serializable'"
        )
        .0,
        ["0A000"]
    );
    let (codes, tags, _) = q(
        &mut raw,
        "BEGIN; CREATE TABLE fresh (id BIGINT PRIMARY KEY); INSERT INTO fresh VALUES (1); \
         SELECT * FROM fresh; SELECT count(*) FROM fresh WHERE id > 0; COMMIT",
    );
    assert!(codes.is_empty(), "{codes:?} {tags:?}");
    assert_eq!(tags[tags.len() - 3..], ["SELECT 1", "SELECT 1", "COMMIT"]);

    // Autocommit statements over the extended protocol (Parse, Bind, Execute, Sync) never
    // fail with 40001, however they contend: each runs on its own, as a simple Query's. One
    // client sends each Sync 30 ms after its Execute (a slow or loaded client), or splits the
    // Sync itself across two writes: the server learns from the whole next message, not from
    // a timer or a part of it, that the statement is the last.
    q(
        &mut raw,
        "CREATE TABLE counter (id BIGINT PRIMARY KEY, v BIGINT); INSERT INTO counter VALUES (1, 0)",
    );
    let port = server.port;
    let late_sync = std::thread::spawn(move || {
        let mut socket = raw_login(port).unwrap();
        for round in 0..20 {
            let mut bytes = message(b'P', b"\0UPDATE counter SET v = v + 1 WHERE id = 1\0\0\0");
            bytes.extend(message(b'B', b"\0\0\0\0\0\0\0\0"));
            bytes.extend(message(b'E', b"\0\0\0\0\0"));
            let sync = message(b'S', &[]);
            let split = if round % 2 == 0 { 0 } else { 3 };
            bytes.extend(&sync[..split]);
            socket.write_all(&bytes).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(30));
            socket.write_all(&sync[split..]).unwrap();
            loop {
                let (kind, body) = read_message(&mut socket).unwrap();
                assert_ne!(kind, b'E', "{}", String::from_utf8_lossy(&body));
                if kind == b'Z' {
                    break;
                }
            }
        }
    });
    runtime().block_on(async {
        let setup = connect(server.port).await;
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let port = server.port;
                tokio::spawn(async move {
                    let client = connect(port).await;
                    for _ in 0..100 {
                        client
                            .execute("UPDATE counter SET v = v + 1 WHERE id = $1", &[&1i64])
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.unwrap();
        }
        late_sync.join().unwrap();
        let v = setup
            .query_one("SELECT v FROM counter WHERE id = 1", &[])
            .await
            .unwrap();
        assert_eq!(v.get::<_, i64>(0), 320);
    });

    // The third attack: Execute's max_rows at the extremes (2^31 - 1 aborted the process on an
    // 85 GB allocation; a negative one panicked and left the client waiting).
    for max_rows in [i32::MAX, -1, i32::MIN] {
        let mut bytes = message(b'P', b"\0SELECT 7\0\0\0");
        bytes.extend(message(b'B', b"\0\0\0\0\0\0\0\0"));
        let mut execute = vec![0u8];
        execute.extend_from_slice(&max_rows.to_be_bytes());
        bytes.extend(message(b'E', &execute));
        bytes.extend(message(b'S', &[]));
        raw.write_all(&bytes).unwrap();
        let mut kinds = Vec::new();
        loop {
            let (kind, _) = read_message(&mut raw).unwrap();
            kinds.push(kind);
            if kind == b'Z' {
                break;
            }
        }
        assert_eq!(kinds, b"12DCZ", "max_rows {max_rows}");
    }
    // A simple Query holds at most 1000 statements.
    assert_eq!(q(&mut raw, &"SELECT 1;".repeat(1001)).0, ["54000"]);
    assert_eq!(q(&mut raw, &"SELECT 1;".repeat(1000)).0.len(), 0);
    // A query that fails while it streams, after a pipeline's write without Sync: the
    // implicit transaction ends with it (nothing applied), and the session is idle for real.
    let mut bytes = message(b'P', b"\0INSERT INTO tx VALUES (620, 620)\0\0\0");
    bytes.extend(message(b'B', b"\0\0\0\0\0\0\0\0"));
    bytes.extend(message(b'E', b"\0\0\0\0\0"));
    raw.write_all(&bytes).unwrap();
    let (codes, _, status) = q(
        &mut raw,
        "SELECT 10 / (v - 30000) FROM generate_series(1, 40000) AS s(v)",
    );
    assert!(
        codes.contains(&"22012".to_string()) && status == b'I',
        "{codes:?}"
    );
    let (codes, _, status) = q(&mut raw, "SELECT count(*) FROM tx WHERE id = 620");
    assert_eq!((codes.len(), status), (0, b'I'), "{codes:?}");

    // Startup options apply, as in PostgreSQL (`PGOPTIONS`, `options=-c ...`).
    runtime().block_on(async {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(server.port)
            .user("omendb")
            .password(PASSWORD)
            .dbname("omendb")
            .options(
                "-c statement_timeout=123 --idle-in-transaction-session-timeout=500 \
                 -c application_name=a\\ b",
            )
            .application_name("startup-app")
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let value = |name: &'static str| setting(&client, name);
        assert_eq!(value("statement_timeout").await.as_deref(), Some("123ms"));
        assert_eq!(
            value("idle_in_transaction_session_timeout")
                .await
                .as_deref(),
            Some("500ms")
        );
        // `options` come after the startup parameters, as PostgreSQL applies them.
        assert_eq!(value("application_name").await.as_deref(), Some("a b"));
        // A setting a SET would refuse fails the connection (FATAL, with SET's SQLSTATE).
        for (options, expected) in [
            ("-c nosuch_setting=1", "42704"),
            ("-c statement_timeout=soon", "22023"),
            ("-c server_version=1", "55P02"),
        ] {
            let refused = tokio_postgres::Config::new()
                .host("127.0.0.1")
                .port(server.port)
                .user("omendb")
                .password(PASSWORD)
                .dbname("omendb")
                .options(options)
                .connect(tokio_postgres::NoTls)
                .await
                .err()
                .unwrap_or_else(|| panic!("{options} was accepted"));
            assert_eq!(code(&refused), expected, "{options}: {refused}");
        }
    });
}

/// Issue 30's bank: 4 connections move money between 1,000 accounts, retrying on 40001; the
/// total is constant in every snapshot, read by an aggregate and by point reads in one block,
/// and after a restart.
#[test]
fn transfers_over_the_wire_keep_the_total_in_every_snapshot() {
    const ACCOUNTS: i64 = 1000;
    const TOTAL: i64 = 100 * ACCOUNTS;
    let dir = TempDir::new("transactions-bank");
    let db_dir = dir.path().join("db");
    let server = Server::start(&db_dir, &[]);
    let port = server.port;
    runtime().block_on(async {
        let setup = connect(port).await;
        setup
            .batch_execute("CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT)")
            .await
            .unwrap();
        setup
            .batch_execute(&format!(
                "INSERT INTO accounts SELECT x, 100 FROM generate_series(1, {ACCOUNTS}) AS g(x)"
            ))
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let movers: Vec<_> = (0..4i64)
            .map(|worker| {
                tokio::spawn(async move {
                    let client = connect(port).await;
                    let (mut committed, mut retried) = (0, 0);
                    let mut i = 0i64;
                    while std::time::Instant::now() < deadline {
                        i += 1;
                        let from = (worker * 7919 + i * 104_729) % ACCOUNTS + 1;
                        let to = (from + 1 + i % 17) % ACCOUNTS + 1;
                        let transfer = async {
                            client.batch_execute("BEGIN").await?;
                            client
                                .execute(
                                    "UPDATE accounts SET balance = balance - 3 WHERE id = $1",
                                    &[&from],
                                )
                                .await?;
                            client
                                .execute(
                                    "UPDATE accounts SET balance = balance + 3 WHERE id = $1",
                                    &[&to],
                                )
                                .await?;
                            client.batch_execute("COMMIT").await
                        };
                        match transfer.await {
                            Ok(()) => committed += 1,
                            Err(error) => {
                                assert_eq!(code(&error), "40001", "{error}");
                                client.batch_execute("ROLLBACK").await.unwrap();
                                retried += 1;
                            }
                        }
                    }
                    (committed, retried)
                })
            })
            .collect();
        let reader = connect(port).await;
        let mut snapshots = 0;
        while std::time::Instant::now() < deadline {
            let total: i64 = reader
                .query_one("SELECT sum(balance)::BIGINT FROM accounts", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(total, TOTAL, "an aggregate saw half a transfer");
            // One block: point reads of a sample and an aggregate read one snapshot.
            reader.batch_execute("BEGIN").await.unwrap();
            let before: i64 = reader
                .query_one("SELECT sum(balance)::BIGINT FROM accounts", &[])
                .await
                .unwrap()
                .get(0);
            let mut by_key = 0i64;
            for id in 1..=ACCOUNTS {
                let row = reader
                    .query_one("SELECT balance FROM accounts WHERE id = $1", &[&id])
                    .await
                    .unwrap();
                by_key += row.get::<_, i64>(0);
            }
            reader.batch_execute("COMMIT").await.unwrap();
            assert_eq!((before, by_key), (TOTAL, TOTAL), "a block's snapshot moved");
            snapshots += 1;
        }
        let mut committed = 0;
        for mover in movers {
            committed += mover.await.unwrap().0;
        }
        assert!(
            committed > 50 && snapshots > 0,
            "{committed} transfers, {snapshots} snapshots"
        );
    });
    let (clean, log) = server.stop();
    assert!(clean, "{log}");
    let server = Server::start(&db_dir, &[]);
    runtime().block_on(async {
        let client = connect(server.port).await;
        let total: i64 = client
            .query_one("SELECT sum(balance)::BIGINT FROM accounts", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(total, TOTAL, "after a restart");
    });
}

/// `ROLLBACK TO` any savepoint of a block whose writes spilled to disk, older ones too, as
/// PostgreSQL allows; `RELEASE` keeps the writes.
#[test]
fn rollback_to_any_savepoint_works_after_the_block_spilled() {
    let dir = TempDir::new("transaction-savepoints-spilled");
    let config = dir.path().join("omendb.toml");
    std::fs::write(&config, "[server]\ntransaction_memory_mb = 1\n").unwrap();
    let server = Server::start_with_config(&dir.path().join("db"), &config, &[]);
    let mut raw = raw_login(server.port).unwrap();
    let q = |raw: &mut std::net::TcpStream, sql: &str| {
        let (codes, tags, status) = simple(raw, sql);
        assert!(codes.is_empty(), "{sql}: {codes:?}");
        (tags, status)
    };
    let count = |raw: &mut std::net::TcpStream| {
        let (tags, _) = q(raw, "SELECT count(*) FROM big");
        tags
    };
    q(&mut raw, "CREATE TABLE big (id BIGINT PRIMARY KEY, v TEXT)");
    q(&mut raw, "BEGIN; INSERT INTO big VALUES (-1, 'first')");
    q(&mut raw, "SAVEPOINT a");
    // 3 MB: spills three times past the 1 MiB budget.
    q(
        &mut raw,
        "INSERT INTO big SELECT value, repeat('x', 100) FROM generate_series(1, 30000) AS s(value)",
    );
    q(&mut raw, "SAVEPOINT b; SAVEPOINT c");
    q(&mut raw, "UPDATE big SET v = 'y' WHERE id <= 20000");
    q(&mut raw, "RELEASE c; ROLLBACK TO b");
    let sum = |raw: &mut std::net::TcpStream| {
        let mut body = b"SELECT count(*), sum(length(v)) FROM big".to_vec();
        body.push(0);
        raw.write_all(&message(b'Q', &body)).unwrap();
        let mut row = Vec::new();
        loop {
            let (kind, body) = read_message(raw).unwrap();
            if kind == b'D' {
                // Two text columns: a 4-byte length, then the text.
                let mut at = 2;
                while at + 4 <= body.len() {
                    let len = i32::from_be_bytes(body[at..at + 4].try_into().unwrap()) as usize;
                    row.push(String::from_utf8_lossy(&body[at + 4..at + 4 + len]).into_owned());
                    at += 4 + len;
                }
            }
            if kind == b'Z' {
                return row;
            }
        }
    };
    assert_eq!(
        sum(&mut raw),
        ["30001", "3000005"],
        "back at b: the insert, not the update"
    );
    q(&mut raw, "DELETE FROM big WHERE id > 0");
    q(&mut raw, "ROLLBACK TO a");
    let (_, status) = q(&mut raw, "SELECT 1");
    assert_eq!(status, b'T', "the block goes on");
    assert_eq!(sum(&mut raw), ["1", "5"], "back at a: the first row alone");
    // Again, after the rollback: the savepoint stays.
    q(
        &mut raw,
        "INSERT INTO big SELECT value, repeat('z', 100) FROM generate_series(1, 30000) AS s(value)",
    );
    q(
        &mut raw,
        "ROLLBACK TO a; INSERT INTO big VALUES (7, 'seven'); COMMIT",
    );
    let mut other = raw_login(server.port).unwrap();
    assert_eq!(count(&mut other), ["SELECT 1"]);
    assert_eq!(sum(&mut other), ["2", "10"], "the first row and the last");
}
