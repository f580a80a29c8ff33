//! Crash test with a real process: a child appends from several threads and prints each
//! acknowledged LSN; the parent kills it with SIGKILL at a random moment (sometimes during
//! its recovery), reopens the log and checks that every acknowledged record is present,
//! intact and in order, and that nothing was invented or duplicated.
//!
//! 200 cycles by default; `OMEN_WAL_CRASH_CYCLES=5000` runs more.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::TempDir;
use omen_wal::{Lsn, SyncMode, Wal, WalOptions};
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "OMEN_WAL_CRASH_CHILD";
const THREADS: u32 = 4;
const RECORDS_PER_CHILD: u64 = 3000;

fn mode_of(cycle: u32) -> SyncMode {
    match cycle % 4 {
        0 => SyncMode::GroupCommit,
        1 => SyncMode::Full,
        2 => SyncMode::Buffered {
            interval: Duration::from_millis(2),
        },
        _ => SyncMode::None,
    }
}

fn options(cycle: u32) -> WalOptions {
    WalOptions {
        segment_size: 64 << 10,
        sync_mode: mode_of(cycle),
        ..WalOptions::default()
    }
}

/// A self-checking payload: who wrote it, and filler derived from that.
fn payload(cycle: u32, thread: u32, seq: u64) -> Vec<u8> {
    let seed = (u64::from(cycle) << 40) ^ (u64::from(thread) << 32) ^ seq;
    let len = (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57) as usize; // 0..128
    let mut bytes = Vec::with_capacity(16 + len);
    bytes.extend_from_slice(&cycle.to_le_bytes());
    bytes.extend_from_slice(&thread.to_le_bytes());
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend((0..len).map(|i| (seed as usize).wrapping_mul(31).wrapping_add(i) as u8));
    bytes
}

/// Decodes a payload, checking its filler: `None` if it is not one we would write.
fn decode(bytes: &[u8]) -> Option<(u32, u32, u64)> {
    let cycle = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
    let thread = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let seq = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    (payload(cycle, thread, seq) == bytes).then_some((cycle, thread, seq))
}

/// The child: appends until killed, printing `ack <lsn> <thread> <seq>` after each append.
#[test]
fn crash_child() {
    let Ok(config) = std::env::var(CHILD_ENV) else {
        return; // not the child: nothing to do in the normal test run
    };
    let mut parts = config.split('|');
    let dir = parts.next().expect("dir").to_string();
    let cycle: u32 = parts.next().expect("cycle").parse().expect("cycle number");
    let wal = Arc::new(Wal::open(&dir, options(cycle)).expect("child open"));
    println!("ready");
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                for seq in 0..RECORDS_PER_CHILD / u64::from(THREADS) {
                    let lsn = wal
                        .append(&payload(cycle, thread, seq))
                        .expect("child append");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {lsn} {thread} {seq}").expect("print");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("child thread");
    }
    // Done early: idle until killed (or give up after a while if the parent is gone).
    std::thread::sleep(Duration::from_secs(20));
}

/// Runs one child and kills it; returns the acknowledged (LSN, thread, seq).
fn run_child(
    dir: &Path,
    cycle: u32,
    kill_after: Duration,
    wait_for_ready: bool,
) -> Vec<(Lsn, u32, u64)> {
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
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest prints "test crash_child ... " on the same line first.
            if line.ends_with("ready") {
                let _ = ready_tx.send(());
            }
            let fields: Vec<&str> = line.split(' ').collect();
            if let ["ack", lsn, thread, seq] = fields[..] {
                // A line cut by the kill fails to parse or is missing its newline; lines()
                // yields a final unterminated line too, so only complete numbers count.
                if let (Ok(lsn), Ok(thread), Ok(seq)) = (lsn.parse(), thread.parse(), seq.parse()) {
                    acks.push((Lsn(lsn), thread, seq));
                }
            }
        }
        acks
    });
    if wait_for_ready {
        let _ = ready_rx.recv_timeout(Duration::from_secs(30));
    }
    std::thread::sleep(kill_after);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    reader.join().expect("stdout reader")
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let cycles: u32 = std::env::var("OMEN_WAL_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = TempDir::new("crash");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC4A5);
    let mut acked: BTreeMap<Lsn, (u32, u32, u64)> = BTreeMap::new();
    let mut checked_up_to = Lsn::ZERO;
    let mut total_acks = 0usize;
    for cycle in 0..cycles {
        let kill_after = Duration::from_micros(rng.random_range(0..25_000));
        let wait_for_ready = rng.random_bool(0.8);
        let acks = run_child(dir.path(), cycle, kill_after, wait_for_ready);
        total_acks += acks.len();
        for (lsn, thread, seq) in acks {
            let previous = acked.insert(lsn, (cycle, thread, seq));
            assert_eq!(
                previous, None,
                "cycle {cycle}: LSN {lsn} acknowledged twice"
            );
        }

        // Reopen and check; the whole log every 25 cycles, the recent part otherwise.
        let wal = Wal::open(dir.path(), options(cycle)).expect("reopen after SIGKILL");
        let from = if cycle % 25 == 24 {
            Lsn(1)
        } else {
            checked_up_to.next()
        };
        let mut last_seq: BTreeMap<(u32, u32), u64> = BTreeMap::new();
        let mut found = 0usize;
        for record in wal.reader(from).expect("reader") {
            let record = record.expect("recovered log reads back");
            let who = decode(&record.payload).unwrap_or_else(|| {
                panic!("cycle {cycle}: LSN {} holds bytes nobody wrote", record.lsn)
            });
            if let Some(&expected) = acked.get(&record.lsn) {
                assert_eq!(
                    who, expected,
                    "cycle {cycle}: LSN {} holds another record",
                    record.lsn
                );
                found += 1;
            }
            // Each writer's records appear once, in the order it wrote them.
            if let Some(&seq) = last_seq.get(&(who.0, who.1)) {
                assert!(who.2 > seq, "cycle {cycle}: {who:?} after seq {seq}");
            }
            last_seq.insert((who.0, who.1), who.2);
        }
        let expected = acked.range(from..).count();
        assert_eq!(
            found, expected,
            "cycle {cycle}: acknowledged records missing after SIGKILL"
        );
        checked_up_to = wal.last_lsn();
        drop(wal);
    }
    assert!(
        total_acks > 1000,
        "the children acknowledged too little to test: {total_acks}"
    );
    eprintln!("{cycles} SIGKILL cycles, {total_acks} acknowledged records all recovered");
}
