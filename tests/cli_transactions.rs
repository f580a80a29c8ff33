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
