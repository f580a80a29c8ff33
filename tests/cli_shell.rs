//! `omendb sql`: statements from `-c`, a file and standard input print psql-like results
//! (tables, row counts, write tags), backslash commands describe tables, bad SQL is reported
//! without stopping the script; and an interactive session in a pseudo-terminal.

// The binary exists only with the `cli` feature (`cargo test --no-default-features` skips this).
#![allow(clippy::unwrap_used)]

mod cli_support;

use std::io::Write;
use std::process::{Command, Stdio};

use cli_support::{OMENDB, TempDir};

fn sql(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(OMENDB)
        .arg("sql")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn runs_commands_files_and_stdin() {
    let dir = TempDir::new("shell");
    let (ok, out, err) = sql(
        dir.path(),
        &[
            "-c",
            "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT NOT NULL, qty INT); \
             INSERT INTO t VALUES (1, 'a', 10), (2, 'b', 20), (3, 'c', NULL); \
             UPDATE t SET qty = 25 WHERE id = 2",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(out, "CREATE TABLE\nINSERT 3\nUPDATE 1\n");

    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        "-- a comment\nSELECT id, name, qty\n  FROM t\n  ORDER BY id;\n\\d t\nSELEC 1;\n\
         SELECT SUM(qty) AS total FROM t;\n\\d\n",
    )
    .unwrap();
    let (ok, out, err) = sql(dir.path(), &[script.to_str().unwrap()], None);
    assert!(!ok, "a failed statement makes the exit status non-zero");
    assert!(err.contains("ERROR: SQL error"), "{err}");
    let expected = "\
+----+------+-----+
| id | name | qty |
+----+------+-----+
| 1  | a    | 10  |
| 2  | b    | 25  |
| 3  | c    |     |
+----+------+-----+
(3 rows)
Table \"t\"
 column | type   | nullable | key
--------+--------+----------+-------------
 id     | BIGINT | no       | PRIMARY KEY
 name   | TEXT   | no       |
 qty    | INT    | yes      |
+-------+
| total |
+-------+
| 35    |
+-------+
(1 row)
 table | columns | rows
-------+---------+------
 t     | 3       | 3
";
    assert_eq!(out, expected);

    let (ok, out, err) = sql(
        dir.path(),
        &["--timing"],
        Some("DELETE FROM t\n WHERE id = 3;\nEXPLAIN SELECT * FROM t WHERE id = 1;\n"),
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("DELETE 1\nTime: "), "{out}");
    assert!(
        out.contains("omendb_route"),
        "EXPLAIN shows the route: {out}"
    );
}

#[test]
fn interactive_session_in_a_pseudo_terminal() {
    let dir = TempDir::new("shell-pty");
    let command = format!("{OMENDB} sql --dir {}", dir.path().display());
    let mut session = rexpect::spawn(&command, Some(60_000)).unwrap();
    // Each line is sent once the prompt for it is up: the line editor switches the terminal
    // to raw mode when it shows a prompt, and input typed before that may be dropped (this
    // test once timed out on a loaded machine that way).
    const PROMPT: &str = "omendb=> ";
    session.exp_string(PROMPT).unwrap();
    session
        .send_line("CREATE TABLE p (id BIGINT PRIMARY KEY, v TEXT);")
        .unwrap();
    session.exp_string("CREATE TABLE").unwrap();
    session.exp_string(PROMPT).unwrap();
    // A statement over two lines: the continuation prompt, then the result.
    session.send_line("INSERT INTO p VALUES").unwrap();
    session.exp_string("omendb-> ").unwrap();
    session.send_line("(1, 'x'), (2, 'y');").unwrap();
    session.exp_string("INSERT 2").unwrap();
    session.exp_string(PROMPT).unwrap();
    session.send_line("\\timing").unwrap();
    session.exp_string("Timing is on.").unwrap();
    session.exp_string(PROMPT).unwrap();
    session.send_line("SELECT COUNT(*) AS n FROM p;").unwrap();
    session.exp_string("(1 row)").unwrap();
    session.exp_string("Time: ").unwrap();
    session.exp_string(PROMPT).unwrap();
    session.send_line("SELEC nonsense;").unwrap();
    session.exp_string("ERROR").unwrap();
    session.exp_string(PROMPT).unwrap();
    session.send_line("\\d").unwrap();
    session.exp_string("columns").unwrap();
    session.exp_string(PROMPT).unwrap();
    session.send_line("\\q").unwrap();
    session.exp_eof().unwrap();
}
