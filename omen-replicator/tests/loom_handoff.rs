//! Loom model of the replicator's hand-off between its tail thread, its writer thread and
//! readers, following `replicator.rs` step by step (the real functions also do file I/O,
//! which loom cannot run, so the protocol is modelled here with the same lock scopes):
//!
//! - tail: under the state lock, append rows to the buffer or seal it onto the `sealed`
//!   queue; then send a token on the bounded channel (outside the lock);
//! - writer: on a token, under the lock clone the front run of `sealed`; outside the lock
//!   "write the file"; under the lock publish the manifest with the file and pop the run;
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
/// tokens in flight and whether the sender is gone.
#[derive(Default)]
struct Tokens {
    queue: Mutex<(u32, bool)>,
    ready: Condvar,
}

impl Tokens {
    fn send(&self) {
        self.queue.lock().expect("lock").0 += 1;
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

fn tail(state: &Mutex<State>, tokens: &Tokens, rows: u32, seal_every: u32) {
    for row in 1..=rows {
        let sealed = {
            let mut s = state.lock().expect("lock");
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
            tokens.send();
        }
    }
}

fn writer_step(state: &Mutex<State>) {
    let run: Vec<Vec<u32>> = {
        let s = state.lock().expect("lock");
        s.sealed.iter().take(2).cloned().collect()
    };
    if run.is_empty() {
        return;
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
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (state, done, tokens) =
                (Arc::clone(&state), Arc::clone(&done), Arc::clone(&tokens));
            loom::thread::spawn(move || {
                while tokens.recv() {
                    writer_step(&state);
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
        tail(&state, &tokens, 3, 1);
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
