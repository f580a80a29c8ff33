//! The real `psql` client against `omendb serve`: a script that creates, inserts, updates,
//! selects, aggregates, reads timestamp, date and bool values and runs a bad statement prints
//! what PostgreSQL would print, and the bad statement's error (with its SQLSTATE) does not end
//! the session.
//!
//! Needs `psql` (`scripts/install-test-deps.sh` installs postgresql-client).

// The binary exists only with the `cli` feature (`cargo test --no-default-features` skips this).
#![allow(clippy::unwrap_used)]

mod cli_support;

use std::process::Command;

use cli_support::{PASSWORD, Server, TempDir};

const SCRIPT: &str = "\
\\set VERBOSITY verbose
CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, qty INT, price DOUBLE);
INSERT INTO items VALUES (1, 'apple', 3, 0.5), (2, 'pear', 5, 0.75), (3, 'fig', 7, 2.0);
UPDATE items SET qty = qty + 10 WHERE id = 2;
SELECT id, name, qty, price FROM items ORDER BY id;
SELECT COUNT(*) AS n, SUM(qty) AS total, MAX(price) AS top FROM items;
SELEC oops FROM items;
DELETE FROM items WHERE qty > 6;
SELECT name FROM items;
SELECT CAST('2024-01-02 03:04:05' AS TIMESTAMP) AS ts, CAST('2024-01-02' AS DATE) AS d, 1 < 2 AS ok;
";

const EXPECTED: &str = "\
CREATE TABLE
INSERT 0 3
UPDATE 1
 id | name  | qty | price 
----+-------+-----+-------
  1 | apple |   3 |   0.5
  2 | pear  |  15 |  0.75
  3 | fig   |   7 |     2
(3 rows)

 n | total | top 
---+-------+-----
 3 |    25 |   2
(1 row)

DELETE 2
 name  
-------
 apple
(1 row)

         ts          |     d      | ok 
---------------------+------------+----
 2024-01-02 03:04:05 | 2024-01-02 | t
(1 row)

";

#[test]
fn psql_script_output_matches_postgres() {
    let dir = TempDir::new("psql");
    let script = dir.path().join("script.sql");
    std::fs::write(&script, SCRIPT).unwrap();
    let server = Server::start(&dir.path().join("db"), &[]);
    let output = Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-U", "omendb", "-d", "omendb"])
        .args(["-p", &server.port.to_string()])
        .arg("-f")
        .arg(&script)
        .env("PGPASSWORD", PASSWORD)
        .env("PGSSLMODE", "prefer")
        .output()
        .expect("psql is installed (scripts/install-test-deps.sh)");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stdout, EXPECTED, "stderr: {stderr}");
    // One error, for line 7, with the syntax error's SQLSTATE.
    assert_eq!(stderr.matches("ERROR").count(), 1, "{stderr}");
    assert!(stderr.contains(":7: ERROR:  42601:"), "{stderr}");

    // A wrong password is refused.
    let output = Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-U",
            "omendb",
            "-d",
            "omendb",
            "-c",
            "SELECT 1",
        ])
        .args(["-p", &server.port.to_string()])
        .env("PGPASSWORD", "not the password")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .to_lowercase()
            .contains("password authentication failed"),
        "{stderr}"
    );

    let (clean, stderr) = server.stop();
    assert!(clean, "{stderr}");
}
