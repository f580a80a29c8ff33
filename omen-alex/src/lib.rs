//! `omen-alex`: ALEX, an updatable adaptive learned index (Ding et al., "ALEX: An Updatable
//! Adaptive Learned Index", SIGMOD 2020), as an ordered map from integer keys to values.
//!
//! # What it is
//! A tree whose internal nodes route a key with a linear model to one of `2^k` child slots,
//! and whose data nodes are gapped arrays: a linear model predicts the slot of a key, and an
//! exponential search from there finds it. Inserts go to the predicted slot when it is free
//! (model-based inserts), so the model stays accurate; a full node is expanded, or split
//! sideways or downwards, as the cost model decides. Bulk loads choose node fanouts by the
//! same cost model (the fanout tree), fitting models on samples of large inputs.
//!
//! # Invariants
//! - Keys are unique; iteration yields them in strictly increasing order.
//! - Every key is reachable from the root by the models alone: the child slot an internal
//!   node predicts for a key leads to the data node that stores it.
//! - A data node's gapped array is sorted over all slots (gaps copy their right neighbour),
//!   its bitmap marks exactly the occupied slots, and its density stays below `density_max`.
//! - Internal nodes never exceed `fanout_max` slots and double only while they have at most
//!   eight slots per distinct child: a bad model costs search time, never unbounded memory.
//!
//! [`AlexMap::check_invariants`] verifies all of these.
//!
//! # What it is not
//! Not persistent and not internally synchronised: `AlexMap` is `Send + Sync`, reads take
//! `&self` and writes `&mut self`; the caller chooses the lock. Keys are integers only.
//!
//! ```
//! use omen_alex::AlexMap;
//! let mut map = AlexMap::from_sorted((0..1000i64).map(|k| (k * 10, k)))?;
//! assert_eq!(map.get(500), Some(&50));
//! assert_eq!(map.insert(5, -1), None);
//! assert_eq!(map.range(0..=10).map(|(k, _)| k).collect::<Vec<_>>(), vec![0, 5, 10]);
//! map.check_invariants();
//! # Ok::<(), omen_alex::AlexError>(())
//! ```

mod bitmap;
mod build;
mod config;
mod cost;
mod data_node;
mod error;
mod iter;
mod key;
mod map;
mod model;
mod nodes;
mod prefetch;
mod stats;

pub use config::AlexConfig;
pub use error::AlexError;
pub use iter::Range;
pub use key::Key;
pub use map::AlexMap;
pub use stats::AlexStats;

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn data_node_header_fits_one_pair_of_cache_lines() {
        assert_eq!(core::mem::size_of::<data_node::DataNode<u64, u64>>(), 128);
    }

    #[test]
    fn map_is_send_and_sync() {
        assert_send_sync::<AlexMap<i64, String>>();
        assert_send_sync::<AlexMap<u64, Vec<u8>>>();
    }
}
