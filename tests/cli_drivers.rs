//! The driver matrix: psql, psycopg 3, asyncpg, SQLAlchemy 2, pandas, node-postgres and
//! pgjdbc connect to a real `omendb serve` with their default settings and run a script of
//! DDL, parameterised inserts and selects, a prepared statement reused 100 times, an error
//! followed by a good query, NULLs and every type, asserting every result
//! (`tests/drivers/`). The clients come from `scripts/install-test-deps.sh`.

#![allow(clippy::unwrap_used)]

mod cli_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use cli_support::{PASSWORD, Server, TempDir};

fn drivers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

/// Runs a driver script against `server`; panics with its output if it fails.
fn run(server: &Server, what: &str, command: &mut Command) {
    let output = command
        .env("OMENDB_PORT", server.port.to_string())
        .env("OMENDB_PASSWORD", PASSWORD)
        .env_remove("OMENDB_USER")
        .output()
        .unwrap_or_else(|e| {
            panic!("{what}: cannot run it ({e}); install the drivers: scripts/install-test-deps.sh")
        });
    assert!(
        output.status.success(),
        "{what} failed (install the drivers with scripts/install-test-deps.sh):\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_driver_runs_its_script_with_default_settings() {
    let dir = TempDir::new("drivers");
    let server = Server::start(dir.path(), &[]);
    for driver in ["psycopg", "asyncpg", "sqlalchemy", "pandas"] {
        run(
            &server,
            driver,
            Command::new("python3")
                .arg(drivers().join("python_drivers.py"))
                .arg(driver),
        );
    }
    let node_modules = std::env::var_os("OMENDB_DRIVERS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/omendb-drivers"))
        })
        .unwrap()
        .join("node_modules");
    run(
        &server,
        "node-postgres",
        Command::new("node")
            .arg(drivers().join("node_pg.js"))
            .env("NODE_PATH", &node_modules),
    );
    run(
        &server,
        "pgjdbc",
        Command::new("java")
            .args(["-cp", "/usr/share/java/postgresql.jar"])
            .arg(drivers().join("Pgjdbc.java")),
    );
    // psql: a script with a prepared statement, an error, then a good query.
    let script = "CREATE TABLE psql_t (id BIGINT PRIMARY KEY, name TEXT);\n\
                  PREPARE ins (BIGINT, TEXT) AS INSERT INTO psql_t VALUES ($1, $2);\n\
                  EXECUTE ins (1, 'a');\nEXECUTE ins (2, NULL);\n\
                  SELECT * FROM no_such_table;\n\
                  SELECT count(*), count(name) FROM psql_t;\n";
    let output = Command::new("psql")
        .args([
            "-X",
            "-At",
            "-h",
            "127.0.0.1",
            "-U",
            "omendb",
            "-d",
            "omendb",
        ])
        .args(["-p", &server.port.to_string(), "-c", script])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("psql (scripts/install-test-deps.sh installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // psql -c runs the script as one simple query: it stops at the error.
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no_such_table"),
        "{output:?}"
    );
    let output = Command::new("psql")
        .args([
            "-X",
            "-At",
            "-h",
            "127.0.0.1",
            "-U",
            "omendb",
            "-d",
            "omendb",
        ])
        .args(["-p", &server.port.to_string()])
        .args(["-c", "SELECT count(*), count(name) FROM psql_t"])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .unwrap();
    // One transaction: the error applies none of its writes (the CREATE TABLE before them is
    // not transactional in OmenDB and stays; PostgreSQL would roll it back too).
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "0|0",
        "{stdout}"
    );
    let (clean, stderr) = server.stop();
    assert!(clean, "{stderr}");
}
