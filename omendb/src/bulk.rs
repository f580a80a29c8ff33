//! Bulk statements (larger than one log record) run at the lowest priority: the calling
//! thread at `SCHED_IDLE`, and their SQL on a runtime of their own whose threads are idle too,
//! so they take only the CPU that shorter statements leave. Their commit, which other writers
//! wait for, runs at normal priority.

use crate::Db;

thread_local! {
    /// Whether this thread runs a bulk statement ([`Db::in_bulk`]).
    static IN_BULK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Db {
    /// Runs `work` as bulk work: on this thread at `SCHED_IDLE`, and the SQL it runs on the
    /// bulk runtime, whose threads are idle too.
    pub(crate) fn in_bulk<T>(&self, work: impl FnOnce() -> T) -> T {
        crate::planning::with_flag(&IN_BULK, || omen_replicator::in_background(work))
    }

    /// The runtime SQL runs on from this thread: the bulk one inside [`Db::in_bulk`].
    pub(crate) fn sql_runtime(&self) -> &tokio::runtime::Runtime {
        if IN_BULK.get() {
            &self.bulk_runtime
        } else {
            &self.runtime
        }
    }
}
