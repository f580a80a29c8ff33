//! Lowest CPU priority for the replicator's threads: `SCHED_IDLE` on Linux.
//!
//! Replication is background work. Under the normal policy, even at nice 19, a busy
//! replicator thread delays the wake-up of writers waiting on an fsync (measured: writers
//! lost about 20% to two nice-19 CPU hogs on two cores, 0% to two `SCHED_IDLE` ones). A
//! `SCHED_IDLE` thread runs only when a core would otherwise idle, and is preempted at once
//! when a writer wakes. It cannot fall behind forever: the lag budget (`throttle`) holds
//! writers back when it does.

/// Switches the calling thread to `SCHED_IDLE`. Best effort: a failure (a sandbox that forbids
/// it) leaves the thread at its normal priority, which is correct, only slower for writers.
#[cfg(target_os = "linux")]
#[expect(unsafe_code, reason = "sched_setscheduler is a C function")]
pub(crate) fn lower_current_thread() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid, initialised sched_param that
    // outlives the call; SCHED_IDLE takes priority 0. The call reads nothing else.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
}

/// Not Linux: the thread keeps its priority.
#[cfg(not(target_os = "linux"))]
pub(crate) fn lower_current_thread() {}
