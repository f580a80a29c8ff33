//! Loom model of the replicator's hand-off between its tail thread, its writer thread and
//! readers, following `replicator.rs` step by step (the real functions also do file I/O,
//! which loom cannot run, so the protocol is modelled here with the same lock scopes):
//!
//! - tail: waits (on the progress condvar) while the `sealed` queue is at its bound; under the
//!   state lock, append rows to the buffer or seal it onto the `sealed` queue; then offer a
//!   token on the bounded channel (outside the lock, dropped when the channel is full: one
//!   token stands for every batch sealed so far);
//! - writer: on a token, repeatedly: under the lock clone the front run of `sealed`; outside
//!   the lock "write the file"; under the lock publish the manifest with the file, pop the
//!   run and wake the tail; until `sealed` is empty;
//! - reader (`snapshot`): under the lock, take the manifest's files, the sealed batches and
//!   the buffer.
//!
//! Checked in every interleaving: a reader sees every row the tail applied before its
//! snapshot exactly once (never in both a file and the delta, never in neither), and files
//! hold rows in order without duplicates.

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use std::collections::VecDeque;

/// The bounded token channel between tail and writer, reduced to what matters here:
/// tokens in flight (at most one: the real channel is bigger, but a full channel drops
/// tokens the same way) and whether the sender is gone.
#[derive(Default)]
struct Tokens {
    queue: Mutex<(u32, bool)>,
    ready: Condvar,
}

impl Tokens {
    /// `try_send`: a full channel drops the token.
    fn try_send(&self) {
        let mut queue = self.queue.lock().expect("lock");
        queue.0 = (queue.0 + 1).min(1);
        drop(queue);
        self.ready.notify_one();
    }

    fn close(&self) {
        self.queue.lock().expect("lock").1 = true;
        self.ready.notify_one();
    }

    /// A token, or `false` once closed and drained.
    fn recv(&self) -> bool {
        let mut queue = self.queue.lock().expect("lock");
        loop {
            if queue.0 > 0 {
                queue.0 -= 1;
                return true;
            }
            if queue.1 {
                return false;
            }
            queue = self.ready.wait(queue).expect("wait");
        }
    }
}

#[derive(Default)]
struct State {
    /// Rows in published files, file by file.
    files: Arc<Vec<Vec<u32>>>,
    sealed: VecDeque<Vec<u32>>,
    buffer: Vec<u32>,
    /// Rows applied by the tail so far.
    applied: u32,
}

/// Sealed batches that may wait before the tail blocks.
const QUEUE_BATCHES: usize = 1;

fn tail(state: &Mutex<State>, room: &Condvar, tokens: &Tokens, rows: u32, seal_every: u32) {
    for row in 1..=rows {
        let sealed = {
            let mut s = state.lock().expect("lock");
            while s.sealed.len() >= QUEUE_BATCHES {
                s = room.wait(s).expect("wait");
            }
            s.buffer.push(row);
            s.applied = row;
            if s.buffer.len() as u32 >= seal_every {
                let batch = std::mem::take(&mut s.buffer);
                s.sealed.push_back(batch);
                true
            } else {
                false
            }
        };
        if sealed {
            tokens.try_send();
        }
    }
}

/// Writes runs until no sealed batch is left (`write_sealed`).
fn write_sealed(state: &Mutex<State>, room: &Condvar) {
    while writer_step(state, room) {}
}

/// Writes one run; `false` if there was none.
fn writer_step(state: &Mutex<State>, room: &Condvar) -> bool {
    let run: Vec<Vec<u32>> = {
        let s = state.lock().expect("lock");
        s.sealed.iter().take(2).cloned().collect()
    };
    if run.is_empty() {
        return false;
    }
    // Outside the lock: sort, encode, write and fsync the file.
    let file: Vec<u32> = run.iter().flatten().copied().collect();
    let mut s = state.lock().expect("lock");
    let mut files = (*s.files).clone();
    files.push(file);
    s.files = Arc::new(files);
    for _ in 0..run.len() {
        s.sealed.pop_front();
    }
    drop(s);
    room.notify_all();
    true
}

fn snapshot(state: &Mutex<State>) -> (u32, Vec<u32>) {
    let s = state.lock().expect("lock");
    let mut seen: Vec<u32> = s.files.iter().flatten().copied().collect();
    seen.extend(s.sealed.iter().flatten().copied());
    seen.extend(s.buffer.iter().copied());
    (s.applied, seen)
}

fn check(applied: u32, mut seen: Vec<u32>) {
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=applied).collect::<Vec<_>>(),
        "each applied row exactly once"
    );
}

#[test]
fn readers_see_each_row_exactly_once_while_the_writer_publishes() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let state = Arc::new(Mutex::new(State::default()));
        let tokens = Arc::new(Tokens::default());
        let room = Arc::new(Condvar::new());
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (state, done, tokens, room) = (
                Arc::clone(&state),
                Arc::clone(&done),
                Arc::clone(&tokens),
                Arc::clone(&room),
            );
            loom::thread::spawn(move || {
                while tokens.recv() {
                    write_sealed(&state, &room);
                }
                done.store(true, Ordering::SeqCst);
            })
        };
        let reader = {
            let state = Arc::clone(&state);
            loom::thread::spawn(move || {
                let (applied, seen) = snapshot(&state);
                check(applied, seen);
            })
        };
        tail(&state, &room, &tokens, 3, 1);
        tokens.close();
        reader.join().expect("reader");
        writer.join().expect("writer");
        assert!(done.load(Ordering::SeqCst));
        let (applied, seen) = snapshot(&state);
        check(applied, seen);
        let s = state.lock().expect("lock");
        assert!(s.sealed.is_empty(), "the writer drained every sealed batch");
        let in_files: Vec<u32> = s.files.iter().flatten().copied().collect();
        assert_eq!(in_files, [1, 2, 3], "files hold rows in order, once");
    });
}

/// The caught-up tail's sleep (`tail_idle`) and a reader's wake-up (`wake_tail` in
/// `wait_read`), with the real code's steps: the tail reads the wake sequence, finds no
/// record, then under the state lock sleeps unless the sequence moved; the reader, under the
/// lock, sees the record unread, bumps the sequence and notifies. Here the tail sleeps with
/// no timeout, so a lost wake-up is a deadlock that loom reports: in every interleaving the
/// reader must get the record read without waiting for a poll.
#[test]
fn a_reader_never_loses_its_wake_up_of_the_idle_tail() {
    use loom::sync::atomic::AtomicU64;
    loom::model(|| {
        struct Shared {
            state: Mutex<u32>, // read_lsn
            tail_wake: Condvar,
            progress: Condvar,
            wake_seq: AtomicU64,
            durable: AtomicU64, // the log's durable watermark
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(0),
            tail_wake: Condvar::new(),
            progress: Condvar::new(),
            wake_seq: AtomicU64::new(0),
            durable: AtomicU64::new(0),
        });
        let tail = {
            let shared = Arc::clone(&shared);
            loom::thread::spawn(move || {
                loop {
                    let seq = shared.wake_seq.load(Ordering::SeqCst);
                    if shared.durable.load(Ordering::SeqCst) == 0 {
                        // tail_idle
                        let state = shared.state.lock().expect("lock");
                        if shared.wake_seq.load(Ordering::SeqCst) == seq {
                            drop(shared.tail_wake.wait(state).expect("wait"));
                        }
                        continue;
                    }
                    *shared.state.lock().expect("lock") = 1;
                    shared.progress.notify_all();
                    return;
                }
            })
        };
        // A committer makes the record durable; a snapshot then waits for the tail.
        shared.durable.store(1, Ordering::SeqCst);
        let mut state = shared.state.lock().expect("lock");
        while *state < 1 {
            shared.wake_seq.fetch_add(1, Ordering::SeqCst);
            shared.tail_wake.notify_all();
            state = shared.progress.wait(state).expect("wait");
        }
        drop(state);
        tail.join().expect("tail");
    });
}
