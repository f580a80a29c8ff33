//! Lowest CPU and I/O priority for the replicator's threads: `SCHED_IDLE` and the idle I/O
//! class on Linux.
//!
//! Replication is background work. Under the normal policy, even at nice 19, a busy
//! replicator thread delays the wake-up of writers waiting on an fsync (measured: writers
//! lost about 20% to two nice-19 CPU hogs on two cores, 0% to two `SCHED_IDLE` ones). A
//! `SCHED_IDLE` thread runs only when a core would otherwise idle, and is preempted at once
//! when a writer wakes. Its disk writes compete with the WAL's the same way (about 7–9
//! points of loss with Parquet on the WAL's disk): in the idle I/O class, schedulers that
//! honour priorities (mq-deadline, BFQ) serve the WAL's writes first.
//!
//! It must never be starved where someone waits for it. A `SCHED_IDLE` thread on cores that
//! other work keeps busy (a nonstop analytical query, a compiler) does not run at all, so:
//! - a thread returns to normal priority while the replicator is more than half its lag
//!   budget behind, and goes back to idle below an eighth of it (writers in `throttle`);
//! - a reader that has waited 5 ms for the replicator (`snapshot`, `flush_now`, `throttle`)
//!   raises its threads from outside ([`Boost`]), for as long as it waits: a starved thread
//!   could not raise itself. (Not at once: a waiting reader usually frees the core the threads
//!   need, and raised threads would compete with the writers' cores.) The threads lower
//!   themselves again once nobody waits and the lag is small.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

/// What the replicator's threads and the readers waiting for them share.
#[derive(Default)]
pub(crate) struct Boost {
    /// Kernel thread ids of the tail and the writer (0 until they start).
    tids: [AtomicI32; 2],
    /// Readers waiting now.
    waiters: AtomicU64,
    /// Set when a waiter raised the threads, so that each knows its priority changed.
    raised: [AtomicBool; 2],
}

/// Which replicator thread.
#[derive(Clone, Copy)]
pub(crate) enum Role {
    Tail = 0,
    Writer = 1,
}

impl Boost {
    /// Raises the threads to normal priority and counts the caller as waiting until the
    /// returned guard drops. While still waiting, call [`Boost::raise`] now and then: a
    /// thread that was lowering itself as this was called may have lowered itself after the
    /// raise.
    pub(crate) fn wait(&self) -> BoostGuard<'_> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        self.raise();
        BoostGuard { boost: self }
    }

    /// Raises the threads now (a waiter that keeps waiting calls it again now and then).
    pub(crate) fn raise(&self) {
        for (tid, raised) in self.tids.iter().zip(&self.raised) {
            let tid = tid.load(Ordering::SeqCst);
            if tid != 0 {
                raised.store(true, Ordering::SeqCst);
                set_thread(tid, false);
            }
        }
    }
}

/// A waiter's hold on the replicator's priority.
pub(crate) struct BoostGuard<'a> {
    boost: &'a Boost,
}

impl Drop for BoostGuard<'_> {
    fn drop(&mut self) {
        self.boost.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One replicator thread's priority, following the replicator's lag and its waiters.
pub(crate) struct Priority<'a> {
    enabled: bool,
    low: bool,
    role: Role,
    boost: &'a Boost,
}

impl<'a> Priority<'a> {
    /// Registers the calling thread as `role` and lowers it at once if `enabled` (the
    /// `low_priority` option).
    pub(crate) fn start(enabled: bool, role: Role, boost: &'a Boost) -> Self {
        if enabled {
            boost.tids[role as usize].store(current_tid(), Ordering::SeqCst);
            set_thread(0, true);
        }
        Self {
            enabled,
            low: enabled,
            role,
            boost,
        }
    }

    /// Normal priority while `lag` (WAL records not yet read) is over half of `budget` or a
    /// reader waits; low again once nobody waits and the lag is under an eighth of it. A
    /// system call only on a change.
    pub(crate) fn follow(&mut self, lag: u64, budget: u64) {
        if !self.enabled {
            return;
        }
        if self.boost.raised[self.role as usize].swap(false, Ordering::SeqCst) {
            self.low = false;
        }
        let waited_for = self.boost.waiters.load(Ordering::SeqCst) > 0;
        let low = !waited_for
            && if self.low {
                lag <= budget / 2
            } else {
                lag < budget / 8
            };
        if low != self.low {
            set_thread(0, low);
            self.low = low;
        }
    }
}

/// Runs `work` on the calling thread at the lowest CPU and I/O priority (as the replicator's
/// threads), then returns it to the normal policy: for bulk work that should take only what
/// shorter work leaves (a statement larger than one log record builds its writes so, and is
/// back at normal priority for its commit, which other writers wait for).
pub fn in_background<T>(work: impl FnOnce() -> T) -> T {
    struct Normal;
    impl Drop for Normal {
        fn drop(&mut self) {
            set_thread(0, false);
        }
    }
    set_thread(0, true);
    let _normal = Normal;
    work()
}

/// Moves the calling thread to the lowest CPU and I/O priority for good: for the threads of
/// a pool that runs only bulk work (a runtime's `on_thread_start`).
pub fn lower_current_thread() {
    set_thread(0, true);
}

/// The calling thread's kernel id.
#[cfg(target_os = "linux")]
#[expect(unsafe_code, reason = "gettid is a C function")]
fn current_tid() -> i32 {
    // SAFETY: gettid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::gettid() }
}

#[cfg(not(target_os = "linux"))]
fn current_tid() -> i32 {
    0
}

/// Switches thread `tid` (0: the calling thread) to `SCHED_IDLE` and the idle I/O class
/// (`low`), or back to the normal policy and I/O class. Best effort: a failure (a sandbox
/// that forbids it) leaves the thread as it was, which is correct, only slower for writers or
/// for the replicator.
#[cfg(target_os = "linux")]
#[expect(
    unsafe_code,
    reason = "sched_setscheduler and ioprio_set are C functions"
)]
fn set_thread(tid: i32, low: bool) {
    let param = libc::sched_param { sched_priority: 0 };
    let policy = if low {
        libc::SCHED_IDLE
    } else {
        libc::SCHED_OTHER
    };
    // SAFETY: `tid` is 0 (the calling thread) or a thread id of this process; `param` is a
    // valid, initialised sched_param that outlives the call; both policies take priority 0.
    // The call reads nothing else. (A thread that has exited makes it fail with ESRCH.)
    let _ = unsafe { libc::sched_setscheduler(tid, policy, &param) };
    // ioprio_set(IOPRIO_WHO_PROCESS, tid, class << 13 | level): the idle class, or class 0
    // ("none": the I/O priority follows the CPU priority, the default).
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: u32 = 13;
    let class = if low { IOPRIO_CLASS_IDLE } else { 0 };
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    let _ = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            libc::c_long::from(tid),
            class << IOPRIO_CLASS_SHIFT,
        )
    };
}

/// Not Linux: the thread keeps its priority.
#[cfg(not(target_os = "linux"))]
fn set_thread(_tid: i32, _low: bool) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Work in the background runs at `SCHED_IDLE` (where the sandbox allows it) and the
    /// thread is back at the normal policy after it, also when the work panics.
    #[test]
    fn background_work_runs_idle_and_the_thread_returns_to_normal() {
        let inside = in_background(|| policy_of(0));
        assert!(
            inside == libc::SCHED_IDLE || inside == libc::SCHED_OTHER,
            "{inside}"
        );
        assert_eq!(policy_of(0), libc::SCHED_OTHER);
        let panicked = std::panic::catch_unwind(|| in_background(|| panic!("bulk work failed")));
        assert!(panicked.is_err());
        assert_eq!(policy_of(0), libc::SCHED_OTHER);
    }

    #[expect(unsafe_code, reason = "sched_getscheduler is a C function")]
    fn policy_of(tid: i32) -> i32 {
        // SAFETY: takes a thread id, reads no memory of ours.
        unsafe { libc::sched_getscheduler(tid) }
    }

    /// A thread lowers itself; a waiter raises it from outside; once nobody waits (and the
    /// lag is small) it lowers itself again. Skipped where the sandbox forbids SCHED_IDLE.
    #[test]
    fn waiters_raise_an_idle_thread_from_outside() {
        let boost = Boost::default();
        let (to_thread, from_main) = std::sync::mpsc::channel::<()>();
        let (to_main, from_thread) = std::sync::mpsc::channel::<i32>();
        let boost = &boost;
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut priority = Priority::start(true, Role::Tail, boost);
                to_main.send(current_tid()).expect("send");
                // Step 2: told that the waiter has gone, follow the (small) lag.
                from_main.recv().expect("recv");
                priority.follow(0, 100);
                to_main.send(0).expect("send");
                from_main.recv().expect("recv");
            });
            let tid = from_thread.recv().expect("tid");
            if policy_of(tid) != libc::SCHED_IDLE {
                eprintln!("SCHED_IDLE not allowed here: skipped");
                to_thread.send(()).expect("send");
                let _ = from_thread.recv();
                to_thread.send(()).expect("send");
                return;
            }
            let guard = boost.wait();
            assert_eq!(policy_of(tid), libc::SCHED_OTHER, "raised by the waiter");
            drop(guard);
            to_thread.send(()).expect("send");
            from_thread.recv().expect("followed");
            assert_eq!(policy_of(tid), libc::SCHED_IDLE, "low again");
            to_thread.send(()).expect("send");
        });
    }
}
