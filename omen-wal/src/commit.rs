//! Group commit: many appenders, one I/O leader at a time, acknowledgements only after the
//! write (or fsync) that covers them.
//!
//! Appenders encode their records into a shared pending buffer under a short lock, which also
//! assigns their LSNs, so the buffer always holds exactly the records after `written`, in LSN
//! order. Whoever then needs its record written (or synced) and finds no I/O in progress
//! becomes the leader: it takes the whole buffer, releases the lock, writes (and syncs), and
//! publishes the new watermarks. Appenders that arrive during that I/O wait; the next leader
//! takes all of them at once, which is where the fsyncs are shared.
//!
//! Invariants (checked by the loom test in `tests/loom_commit.rs`, which compiles this very
//! file against loom's primitives):
//! - `durable <= written < next_lsn`, and `pending` holds the records `written+1 .. next_lsn`.
//! - An appender waiting for durability returns `Ok` only once `durable >= its LSN`, which is
//!   set only after a sync that started after its bytes were written.
//! - After a failed write or sync the committer is poisoned: it never retries, every appender
//!   not yet covered gets an error, and nothing is appended after.
//!
//! This file depends on nothing of the crate but `super::sync` (std or loom primitives).

use std::time::Duration;

use super::sync::{AtomicU64, Condvar, Mutex, MutexGuard, Ordering, PoisonError, SPINS, yield_now};

/// Where committed bytes go: the segment files, or a model of them in tests.
pub(crate) trait Sink {
    /// The sink's error; its text becomes the poison cause.
    type Error: std::fmt::Display;
    /// Writes `bytes`, which hold records `first..=last`, after everything written before.
    fn write(&mut self, bytes: &[u8], first: u64, last: u64) -> Result<(), Self::Error>;
    /// Makes everything written so far durable.
    fn sync(&mut self) -> Result<(), Self::Error>;
}

/// What an appender waits for before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Its own write and fsync, started after any earlier I/O finished (`SyncMode::Full`).
    OwnSync,
    /// Any fsync that covers it (`SyncMode::GroupCommit`).
    SharedSync,
    /// A write that covers it, without fsync (`SyncMode::Buffered`, `SyncMode::None`).
    Written,
}

/// Why an append or sync failed.
#[derive(Debug)]
pub(crate) enum CommitError<E> {
    /// This call's own I/O failed; the committer is now poisoned.
    Sink(E),
    /// An earlier I/O failure poisoned the committer.
    Poisoned(String),
    /// The committer was closed.
    Closed,
}

struct State {
    pending: Vec<u8>,
    spare: Vec<u8>,
    next_lsn: u64,
    written: u64,
    durable: u64,
    io_busy: bool,
    poison: Option<String>,
    closed: bool,
    /// `Wait::OwnSync` appenders take the I/O in ticket order, so that none starves.
    own_sync_tickets: u64,
    own_sync_serving: u64,
}

impl State {
    fn check_usable<E>(&self) -> Result<(), CommitError<E>> {
        if let Some(cause) = &self.poison {
            return Err(CommitError::Poisoned(cause.clone()));
        }
        if self.closed {
            return Err(CommitError::Closed);
        }
        Ok(())
    }
}

/// The group-commit state machine over a [`Sink`].
pub(crate) struct Committer<S> {
    state: Mutex<State>,
    changed: Condvar,
    sink: Mutex<S>,
    written: AtomicU64,
    durable: AtomicU64,
}

impl<S: Sink> Committer<S> {
    /// A committer whose next record gets `next_lsn`; everything before is written and durable.
    pub(crate) fn new(sink: S, next_lsn: u64) -> Self {
        assert!(next_lsn >= 1, "LSNs start at 1");
        Self {
            state: Mutex::new(State {
                pending: Vec::new(),
                spare: Vec::new(),
                next_lsn,
                written: next_lsn - 1,
                durable: next_lsn - 1,
                io_busy: false,
                poison: None,
                closed: false,
                own_sync_tickets: 0,
                own_sync_serving: 0,
            }),
            changed: Condvar::new(),
            sink: Mutex::new(sink),
            written: AtomicU64::new(next_lsn - 1),
            durable: AtomicU64::new(next_lsn - 1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The highest LSN handed to the sink.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// The highest LSN known durable.
    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// The LSN the next record will get.
    pub(crate) fn next_lsn(&self) -> u64 {
        self.lock().next_lsn
    }

    /// The poison cause, if an I/O failure poisoned the committer.
    pub(crate) fn poison(&self) -> Option<String> {
        self.lock().poison.clone()
    }

    /// Appends `records` records, which `encode` writes into the buffer given the first LSN,
    /// and waits as `wait` says. Returns the first LSN.
    pub(crate) fn append(
        &self,
        records: u64,
        encode: impl FnOnce(&mut Vec<u8>, u64),
        wait: Wait,
    ) -> Result<u64, CommitError<S::Error>> {
        assert!(records > 0, "an append holds at least one record");
        let mut state = self.lock();
        if wait == Wait::OwnSync {
            // Wait for the I/O to be ours, in turn, so that our sync is ours alone.
            let ticket = state.own_sync_tickets;
            state.own_sync_tickets += 1;
            while (state.io_busy || state.own_sync_serving != ticket)
                && state.poison.is_none()
                && !state.closed
            {
                state = self.wait(state);
            }
        }
        state.check_usable()?;
        let first = state.next_lsn;
        let len_before = state.pending.len();
        encode(&mut state.pending, first);
        debug_assert!(state.pending.len() > len_before, "encode wrote nothing");
        state.next_lsn += records;
        let last = state.next_lsn - 1;
        match wait {
            Wait::OwnSync => {
                debug_assert!(!state.io_busy);
                let mut state = self.lead(state, true)?;
                state.own_sync_serving += 1;
                drop(state);
                self.changed.notify_all();
                Ok(first)
            }
            Wait::SharedSync => self.wait_until(state, last, true).map(|()| first),
            Wait::Written => self.wait_until(state, last, false).map(|()| first),
        }
    }

    /// Writes and syncs everything appended so far; returns the durable LSN.
    pub(crate) fn sync(&self) -> Result<u64, CommitError<S::Error>> {
        let state = self.lock();
        if let Some(cause) = &state.poison {
            return Err(CommitError::Poisoned(cause.clone()));
        }
        let target = state.next_lsn - 1;
        self.wait_until(state, target, true)?;
        Ok(target)
    }

    /// Syncs, then refuses further appends. Readers waiting for records wake up.
    pub(crate) fn close(&self) -> Result<u64, CommitError<S::Error>> {
        let result = self.sync();
        let mut state = self.lock();
        state.closed = true;
        drop(state);
        self.changed.notify_all();
        result
    }

    /// Waits until the written (or durable) watermark reaches `lsn`, the committer is closed
    /// or poisoned, or `timeout` passes. Returns whether the watermark reached `lsn`.
    pub(crate) fn wait_for(&self, lsn: u64, durable: bool, timeout: Duration) -> bool {
        let mut state = self.lock();
        loop {
            let reached = if durable {
                state.durable
            } else {
                state.written
            };
            if reached >= lsn {
                return true;
            }
            if state.closed || state.poison.is_some() {
                return false;
            }
            let (guard, result) = self
                .changed
                .wait_timeout(state, timeout)
                .unwrap_or_else(PoisonError::into_inner);
            state = guard;
            if result.timed_out() {
                let reached = if durable {
                    state.durable
                } else {
                    state.written
                };
                return reached >= lsn;
            }
        }
    }

    fn wait_until<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        lsn: u64,
        synced: bool,
    ) -> Result<(), CommitError<S::Error>> {
        let mut spun = false;
        loop {
            let reached = if synced { state.durable } else { state.written };
            if reached >= lsn {
                return Ok(());
            }
            if let Some(cause) = &state.poison {
                return Err(CommitError::Poisoned(cause.clone()));
            }
            if !state.io_busy {
                state = self.lead(state, synced)?;
            } else if !synced && !spun {
                // A write takes microseconds: yield a few times before sleeping, so that
                // many appenders on few cores do not pay a futex sleep and wake-up each.
                spun = true;
                drop(state);
                for _ in 0..SPINS {
                    yield_now();
                    if self.written.load(Ordering::Acquire) >= lsn {
                        return Ok(());
                    }
                }
                state = self.lock();
            } else {
                state = self.wait(state);
            }
        }
    }

    /// Becomes the I/O leader: writes every pending record, syncs if asked, publishes the
    /// watermarks and wakes the waiters. On failure, poisons the committer.
    fn lead<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        sync: bool,
    ) -> Result<MutexGuard<'a, State>, CommitError<S::Error>> {
        debug_assert!(!state.io_busy);
        state.io_busy = true;
        let spare = std::mem::take(&mut state.spare);
        let mut batch = std::mem::replace(&mut state.pending, spare);
        let first = state.written + 1;
        let last = state.next_lsn - 1;
        let must_sync = sync && state.durable < last;
        drop(state);

        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        let mut result = Ok(());
        if !batch.is_empty() {
            result = sink.write(&batch, first, last);
        }
        if must_sync && result.is_ok() {
            result = sink.sync();
        }
        drop(sink);

        let mut state = self.lock();
        state.io_busy = false;
        batch.clear();
        state.spare = batch;
        let outcome = match result {
            Ok(()) => {
                state.written = last;
                self.written.store(last, Ordering::Release);
                if must_sync {
                    state.durable = last;
                    self.durable.store(last, Ordering::Release);
                }
                Ok(state)
            }
            Err(error) => {
                state.poison = Some(error.to_string());
                drop(state);
                Err(CommitError::Sink(error))
            }
        };
        self.changed.notify_all();
        outcome
    }
}
