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
//! It cannot fall behind forever. A `SCHED_IDLE` thread on a core that other work keeps busy
//! (a nonstop analytical query, say) never runs, and writers waiting in `throttle` would
//! wait for nothing: so a thread returns to normal priority while the replicator is more
//! than half its lag budget behind, and goes back to idle below an eighth of it.

/// One replicator thread's priority, following the replicator's lag.
pub(crate) struct Priority {
    enabled: bool,
    low: bool,
}

impl Priority {
    /// Lowers the calling thread at once if `enabled` (the `low_priority` option).
    pub(crate) fn start(enabled: bool) -> Self {
        if enabled {
            set_current_thread(true);
        }
        Self {
            enabled,
            low: enabled,
        }
    }

    /// Normal priority while `lag` (WAL records not yet read) is over half of `budget`, low
    /// again once it is under an eighth; a system call only on a change.
    pub(crate) fn follow(&mut self, lag: u64, budget: u64) {
        if !self.enabled {
            return;
        }
        let low = if self.low {
            lag <= budget / 2
        } else {
            lag < budget / 8
        };
        if low != self.low {
            set_current_thread(low);
            self.low = low;
        }
    }
}

/// Switches the calling thread to `SCHED_IDLE` and the idle I/O class (`low`), or back to
/// the normal policy and I/O class. Best effort: a failure (a sandbox that forbids it)
/// leaves the thread as it was, which is correct, only slower for writers or for the
/// replicator.
#[cfg(target_os = "linux")]
#[expect(
    unsafe_code,
    reason = "sched_setscheduler and ioprio_set are C functions"
)]
fn set_current_thread(low: bool) {
    let param = libc::sched_param { sched_priority: 0 };
    let policy = if low {
        libc::SCHED_IDLE
    } else {
        libc::SCHED_OTHER
    };
    // SAFETY: pid 0 is the calling thread; `param` is a valid, initialised sched_param that
    // outlives the call; both policies take priority 0. The call reads nothing else.
    let _ = unsafe { libc::sched_setscheduler(0, policy, &param) };
    // ioprio_set(IOPRIO_WHO_PROCESS, 0 = this thread, class << 13 | level): the idle class,
    // or class 0 ("none": the I/O priority follows the CPU priority, the default).
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: u32 = 13;
    let class = if low { IOPRIO_CLASS_IDLE } else { 0 };
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    let _ = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            class << IOPRIO_CLASS_SHIFT,
        )
    };
}

/// Not Linux: the thread keeps its priority.
#[cfg(not(target_os = "linux"))]
fn set_current_thread(_low: bool) {}
