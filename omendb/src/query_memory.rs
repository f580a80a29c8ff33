//! The memory of SQL queries: each query has a pool of its own (`DbOptions::sql_memory_limit`),
//! and every query's pool also takes what it grants from one pool of the database
//! (`DbOptions::sql_total_memory`), so queries together hold a bounded amount however many
//! run or wait (a client's suspended portals each keep their sorted rows: 4 portals of a
//! 1 GB sort took 5.3 GB). Past either limit a query's sorts and aggregations spill, and its
//! other operators fail with `ResourcesExhausted`.
//!
//! Invariant: what a query pool has granted is granted in the shared pool too, and given
//! back to both together.

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
    TrackConsumersPool,
};

/// One query's pool, within the database's (see the module docs).
#[derive(Debug)]
pub(crate) struct QueryPool {
    own: TrackConsumersPool<GreedyMemoryPool>,
    shared: Arc<GreedyMemoryPool>,
}

impl QueryPool {
    /// A pool of `limit` bytes taking its memory from `shared`.
    pub(crate) fn new(limit: usize, shared: &Arc<GreedyMemoryPool>) -> Self {
        let top_consumers = NonZeroUsize::new(5).unwrap_or(NonZeroUsize::MIN);
        Self {
            own: TrackConsumersPool::new(GreedyMemoryPool::new(limit), top_consumers),
            shared: Arc::clone(shared),
        }
    }
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "query pool ({} within all queries' {})",
            self.own, self.shared
        )
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "omendb_query_pool"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.own.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.own.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.own.grow(reservation, additional);
        self.shared.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.own.shrink(reservation, shrink);
        self.shared.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.own.try_grow(reservation, additional)?;
        if let Err(error) = self.shared.try_grow(reservation, additional) {
            self.own.shrink(reservation, additional);
            return Err(error);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.own.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.own.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_gets_no_more_than_its_limit_nor_than_all_queries_have_left() {
        let shared = Arc::new(GreedyMemoryPool::new(100));
        let first: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(60, &shared));
        let second: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(60, &shared));
        let a = MemoryConsumer::new("a").register(&first);
        let b = MemoryConsumer::new("b").register(&second);
        assert!(a.try_grow(61).is_err(), "past its own limit");
        a.try_grow(60).expect("within both");
        assert!(b.try_grow(41).is_err(), "past what all queries have left");
        assert_eq!(
            (second.reserved(), shared.reserved()),
            (0, 60),
            "a refusal takes nothing"
        );
        b.try_grow(40).expect("what is left");
        assert_eq!(shared.reserved(), 100);
        drop(a);
        assert_eq!(shared.reserved(), 40, "given back with the query");
        b.try_grow(20).expect("room again");
    }
}
