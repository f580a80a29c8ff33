//! Crash test with a real process: a child runs a mixed workload of SQL statements and Rust
//! API writes (inserts that may hit existing keys, upserts, deletes, range updates, atomic
//! multi-row batches) on a database whose replicator flushes and compacts constantly, and
//! prints each statement's outcome. The parent kills it with SIGKILL at a random moment
//! (sometimes while it is still recovering), reopens the database, and checks that SQL (the
//! Parquet + delta route), SQL key lookups (the index route) and `Db::scan` all equal the
//! model of the acknowledged statements. The one statement in flight at the kill may or may
//! not have committed; nothing else may differ. Some statements are transactions of several
//! statements: each is in the database whole or not at all, including those larger than the
//! transaction memory and than one log record (spilled, and committed as a group of records).
//!
//! 24 cycles by default; `OMENDB_CRASH_CYCLES=200` runs more.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TempDir, rows_text};
use omendb::replicator::ReplicatorOptions;
use omendb::{Db, DbOptions, Value, ValueRef, WriteBatch};
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "OMENDB_CRASH_CHILD";
const KEYS: i64 = 300;

fn options() -> DbOptions {
    DbOptions {
        replicator: ReplicatorOptions {
            max_batch_rows: 40,
            max_batch_age: Duration::from_millis(5),
            compaction_trigger_files: 2,
            compaction_target_rows: 400,
            ..ReplicatorOptions::default()
        },
        // Small enough that a transaction's UPDATE of every row spills its writes and
        // commits as a group of about a dozen records (a kill may cut the group).
        wal: omendb::wal::WalOptions {
            max_record_size: 1024,
            ..omendb::wal::WalOptions::default()
        },
        transaction_memory: 512,
        ..DbOptions::default()
    }
}

/// One statement of the workload.
#[derive(Clone, Debug)]
enum Op {
    /// Rust API insert of one row (fails on an existing key).
    Insert(i64, i64),
    /// SQL INSERT of several rows (fails whole if any key exists or repeats).
    SqlInsert(Vec<(i64, i64)>),
    /// Rust API upsert.
    Upsert(i64, i64),
    /// SQL `UPDATE ... SET v = v + d WHERE id BETWEEN a AND b`.
    SqlAdd(i64, i64, i64),
    /// Rust API delete.
    Delete(i64),
    /// SQL `DELETE ... WHERE id BETWEEN a AND b`.
    SqlDelete(i64, i64),
    /// Rust API batch: inserts and a delete, atomically.
    Batch(Vec<(i64, i64)>, i64),
    /// A transaction of these (none of them a transaction), committed if all succeed.
    Tx(Vec<Op>),
}

/// The workload of `cycle`: the same sequence in the child and in the parent's model.
fn workload(cycle: u32) -> impl Iterator<Item = Op> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(cycle) * 7919 + 1);
    std::iter::from_fn(move || {
        let key = rng.random_range(0..KEYS);
        let v = rng.random_range(-1000..1000);
        let one = |rng: &mut rand::rngs::StdRng| {
            let key = rng.random_range(0..KEYS);
            let v = rng.random_range(-1000..1000);
            match rng.random_range(0..3) {
                0 => Op::SqlAdd(0, KEYS, v % 10),
                1 => Op::SqlInsert(vec![(key, v)]),
                _ => Op::Delete(key),
            }
        };
        if rng.random_range(0..8) == 0 {
            let n = rng.random_range(2..6);
            return Some(Op::Tx((0..n).map(|_| one(&mut rng)).collect()));
        }
        Some(match rng.random_range(0..7) {
            0 => Op::Insert(key, v),
            1 => Op::SqlInsert(
                (0..rng.random_range(1..4))
                    .map(|i| ((key + i * 7) % KEYS, v + i))
                    .collect(),
            ),
            2 => Op::Upsert(key, v),
            3 => Op::SqlAdd(key, key + rng.random_range(0..20), v % 10),
            4 => Op::Delete(key),
            5 => Op::SqlDelete(key, key + rng.random_range(0..4)),
            _ => Op::Batch(
                (1..=rng.random_range(1..4))
                    .map(|i| ((key + i * 11) % KEYS, v - i))
                    .collect(),
                (key + 5) % KEYS,
            ),
        })
    })
}

fn note(v: i64) -> String {
    format!("n{}", v.rem_euclid(97))
}

/// Runs `op` in a transaction.
fn run_in(tx: &mut omendb::Transaction<'_>, op: &Op) -> omendb::Result<()> {
    match op {
        Op::SqlInsert(rows) => {
            let values: Vec<String> = rows
                .iter()
                .map(|(k, v)| format!("({k}, {v}, '{}')", note(*v)))
                .collect();
            tx.sql(&format!("INSERT INTO kv VALUES {}", values.join(", ")))
                .map(drop)
        }
        Op::SqlAdd(a, b, d) => tx
            .sql(&format!(
                "UPDATE kv SET v = v + {d} WHERE id BETWEEN {a} AND {b}"
            ))
            .map(drop),
        Op::Delete(k) => tx.delete("kv", *k),
        other => panic!("not in a transaction: {other:?}"),
    }
}

fn run(db: &Db, op: &Op) -> omendb::Result<()> {
    let row = |k: i64, v: i64| vec![Value::Int64(k), Value::Int64(v), Value::Utf8(note(v))];
    let sql = |text: String| db.sql(&text).map(drop);
    match op {
        Op::Insert(k, v) => db
            .write(WriteBatch::new().insert("kv", row(*k, *v)))
            .map(drop),
        Op::Upsert(k, v) => db
            .write(WriteBatch::new().upsert("kv", row(*k, *v)))
            .map(drop),
        Op::Delete(k) => db.write(WriteBatch::new().delete("kv", *k)).map(drop),
        Op::Batch(rows, delete) => {
            let mut batch = WriteBatch::new();
            for (k, v) in rows {
                batch.insert("kv", row(*k, *v));
            }
            batch.delete("kv", *delete);
            db.write(&batch).map(drop)
        }
        Op::SqlInsert(rows) => {
            let values: Vec<String> = rows
                .iter()
                .map(|(k, v)| format!("({k}, {v}, '{}')", note(*v)))
                .collect();
            sql(format!("INSERT INTO kv VALUES {}", values.join(", ")))
        }
        Op::SqlAdd(a, b, d) => sql(format!(
            "UPDATE kv SET v = v + {d} WHERE id BETWEEN {a} AND {b}"
        )),
        Op::SqlDelete(a, b) => sql(format!("DELETE FROM kv WHERE id BETWEEN {a} AND {b}")),
        Op::Tx(ops) => {
            let mut tx = db.begin();
            for op in ops {
                run_in(&mut tx, op)?;
            }
            tx.commit().map(drop)
        }
    }
}

/// The acknowledged state: key to (v, note).
type Model = BTreeMap<i64, (i64, String)>;

/// Applies `op` to `model`; `false` if the database must refuse it (it then changes nothing).
fn apply(model: &mut Model, op: &Op) -> bool {
    match op {
        Op::Insert(k, v) => {
            if model.contains_key(k) {
                return false;
            }
            model.insert(*k, (*v, note(*v)));
        }
        Op::Upsert(k, v) => {
            model.insert(*k, (*v, note(*v)));
        }
        Op::Delete(k) => {
            model.remove(k);
        }
        Op::SqlInsert(rows) | Op::Batch(rows, _) => {
            let mut next = model.clone();
            for (k, v) in rows {
                if next.insert(*k, (*v, note(*v))).is_some() {
                    return false;
                }
            }
            if let Op::Batch(_, delete) = op {
                next.remove(delete);
            }
            *model = next;
        }
        Op::SqlAdd(a, b, d) => {
            for (_, (v, _)) in model.range_mut(a..=b) {
                *v += d;
            }
        }
        Op::SqlDelete(a, b) => {
            let keys: Vec<i64> = model.range(a..=b).map(|(k, _)| *k).collect();
            for k in keys {
                model.remove(&k);
            }
        }
        Op::Tx(ops) => {
            let mut next = model.clone();
            if !ops.iter().all(|op| apply(&mut next, op)) {
                return false;
            }
            *model = next;
        }
    }
    true
}

/// The child: opens the database and runs the workload until killed, printing
/// `begin <n>` before statement n and `ok <n>` or `err <n>` after it.
#[test]
fn crash_child() {
    let Ok(config) = std::env::var(CHILD_ENV) else {
        return; // not the child: nothing to do in the normal test run
    };
    let (dir, cycle) = config.split_once('|').expect("dir|cycle");
    let cycle: u32 = cycle.parse().expect("cycle number");
    let db = Db::open(dir, options()).expect("child open");
    db.sql("CREATE TABLE IF NOT EXISTS kv (id BIGINT PRIMARY KEY, v BIGINT NOT NULL, note TEXT)")
        .expect("create");
    println!("ready");
    for (n, op) in workload(cycle).enumerate().take(20_000) {
        println!("begin {n}");
        let outcome = if run(&db, &op).is_ok() { "ok" } else { "err" };
        println!("{outcome} {n}");
    }
    std::thread::sleep(Duration::from_secs(20));
}

/// What the parent learned from one child: the outcome of each finished statement, and
/// whether one more had begun.
struct Outcomes {
    finished: Vec<bool>,
    in_flight: bool,
}

fn run_child(dir: &Path, cycle: u32, kill_after: Duration, wait_for_ready: bool) -> Outcomes {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}|{cycle}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut outcomes = Outcomes {
            finished: Vec::new(),
            in_flight: false,
        };
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.ends_with("ready") {
                let _ = ready_tx.send(());
                continue;
            }
            let Some((word, n)) = line.split_once(' ') else {
                continue;
            };
            // A line cut by the kill does not parse; the statement then counts as in flight.
            let Ok(n) = n.parse::<usize>() else { continue };
            match word {
                "begin" if n == outcomes.finished.len() => outcomes.in_flight = true,
                "ok" | "err" if n == outcomes.finished.len() => {
                    outcomes.finished.push(word == "ok");
                    outcomes.in_flight = false;
                }
                _ => {}
            }
        }
        outcomes
    });
    if wait_for_ready {
        let _ = ready_rx.recv_timeout(Duration::from_secs(60));
    }
    std::thread::sleep(kill_after);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    reader.join().expect("stdout reader")
}

/// The table as SQL over Parquet + delta, SQL by key (index), and `Db::scan` see it.
fn views(db: &Db) -> [Model; 3] {
    let parse = |rows: Vec<Vec<String>>| -> Model {
        rows.into_iter()
            .map(|r| {
                let k = r[0].parse().expect("id");
                let v = r[1].parse().expect("v");
                (k, (v, r[2].clone()))
            })
            .collect()
    };
    let sql = |text: &str| rows_text(&db.sql(text).expect("query").batches);
    let scanned = sql("SELECT id, v, note FROM kv");
    let by_key = sql(&format!(
        "SELECT id, v, note FROM kv WHERE id BETWEEN 0 AND {KEYS}"
    ));
    let api = db
        .scan("kv", ..)
        .expect("scan")
        .into_iter()
        .map(|row| {
            let (Some(ValueRef::Int64(v)), Some(ValueRef::Utf8(note))) =
                (row.value(1), row.value(2))
            else {
                panic!("row {row:?}");
            };
            (row.key(), (v, note.to_string()))
        })
        .collect();
    [parse(scanned), parse(by_key), api]
}

#[test]
fn acknowledged_statements_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let cycles: u32 = std::env::var("OMENDB_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(24);
    let dir = TempDir::new("crash");
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut model = Model::new();
    let (mut acknowledged, mut refused, mut in_flight_applied) = (0usize, 0usize, 0usize);
    for cycle in 0..cycles {
        // Every fifth child is killed early, often while still opening (replaying the log).
        let early = cycle % 5 == 4;
        let kill_after = if early {
            Duration::from_millis(rng.random_range(0..150))
        } else {
            Duration::from_millis(rng.random_range(30..400))
        };
        let outcomes = run_child(&dir.0, cycle, kill_after, !early);
        let mut ops = workload(cycle);
        for (n, ok) in outcomes.finished.iter().enumerate() {
            let op = ops.next().expect("op");
            let accepted = apply(&mut model, &op);
            assert_eq!(
                accepted, *ok,
                "cycle {cycle}, statement {n} ({op:?}): the database said {ok}, the model {accepted}"
            );
            acknowledged += usize::from(*ok);
            refused += usize::from(!*ok);
        }
        let db = Db::open(&dir.0, options()).expect("reopen after SIGKILL");
        if db.schema("kv").is_err() {
            assert!(
                model.is_empty() && outcomes.finished.is_empty(),
                "the table vanished"
            );
            db.close().expect("close");
            continue;
        }
        let seen = views(&db);
        let mut candidates = vec![model.clone()];
        if outcomes.in_flight {
            let mut with = model.clone();
            if apply(&mut with, &ops.next().expect("in-flight op")) {
                candidates.push(with);
            }
        }
        let matched = candidates
            .iter()
            .position(|c| seen.iter().all(|view| view == c))
            .unwrap_or_else(|| {
                let diff: Vec<String> = seen
                    .iter()
                    .zip(["SQL scan", "SQL by key", "Db::scan"])
                    .map(|(view, name)| {
                        let missing = model.iter().filter(|(k, v)| view.get(k) != Some(v)).count();
                        let extra = view.keys().filter(|k| !model.contains_key(k)).count();
                        format!(
                            "{name}: {} rows, {missing} differ or missing, {extra} extra",
                            view.len()
                        )
                    })
                    .collect();
                panic!(
                    "cycle {cycle}: after {} statements ({} in flight) the database differs \
                     from the acknowledged state ({} rows): {diff:?}",
                    outcomes.finished.len(),
                    outcomes.in_flight,
                    model.len()
                )
            });
        if matched == 1 {
            model = candidates.swap_remove(1);
            in_flight_applied += 1;
        }
        db.close().expect("close");
    }
    eprintln!(
        "{cycles} cycles: {acknowledged} statements acknowledged, {refused} refused, \
         {in_flight_applied} in-flight statements found committed, {} rows at the end",
        model.len()
    );
    assert!(acknowledged > 100, "the children did too little work");
}
