//! Shape and size of the tree, and the structural invariant check used by the tests.

use core::mem;

use crate::data_node::{DataNode, NO_NODE};
use crate::key::Key;
use crate::map::AlexMap;
use crate::nodes::{InternalNode, NodeRef};

/// Shape and memory of an [`AlexMap`], from [`AlexMap::stats`].
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct AlexStats {
    /// Number of keys.
    pub keys: usize,
    /// Levels from the root to the deepest data node (a lone data node has depth 1).
    pub depth: usize,
    /// Internal nodes.
    pub internal_nodes: usize,
    /// Data nodes (leaves).
    pub data_nodes: usize,
    /// Slots of all gapped arrays (occupied or not).
    pub slots: usize,
    /// Mean |predicted slot - actual slot| over all keys.
    pub avg_search_distance: f64,
    /// Largest |predicted slot - actual slot|.
    pub max_search_distance: usize,
    /// Bytes of the index structure apart from the key and value slots: internal nodes and
    /// their child arrays, data node headers and bitmaps.
    pub index_bytes: usize,
    /// Bytes of the whole structure: `index_bytes` plus every key and value slot.
    pub total_bytes: usize,
}

impl AlexStats {
    /// Bytes of the whole structure per key.
    pub fn bytes_per_key(&self) -> f64 {
        self.total_bytes as f64 / self.keys.max(1) as f64
    }
}

impl<K: Key, V> AlexMap<K, V> {
    /// Walks the tree and reports its shape and memory use.
    pub fn stats(&self) -> AlexStats {
        let mut stats = AlexStats {
            keys: self.len,
            ..AlexStats::default()
        };
        let mut distance_sum = 0u64;
        let mut stack = vec![(self.root, 1usize)];
        let mut seen_data = std::collections::HashSet::new();
        let mut index_bytes = self.nodes.internals.capacity() * mem::size_of::<InternalNode>()
            + self.nodes.datas.capacity() * mem::size_of::<DataNode<K, V>>();
        let mut slot_bytes = 0;
        while let Some((node, depth)) = stack.pop() {
            stats.depth = stats.depth.max(depth);
            if node.is_data() {
                if !seen_data.insert(node.id()) {
                    continue;
                }
                let data = &self.nodes.datas[node.index()];
                stats.data_nodes += 1;
                stats.slots += data.capacity();
                let (sum, max) = data.search_distances();
                distance_sum += sum;
                stats.max_search_distance = stats.max_search_distance.max(max);
                index_bytes += data.bitmap_bytes();
                slot_bytes += data.slot_bytes();
            } else {
                let inner = &self.nodes.internals[node.index()];
                stats.internal_nodes += 1;
                index_bytes += inner.children.len() * mem::size_of::<NodeRef>();
                let mut previous = None;
                for &child in inner.children.iter() {
                    if previous != Some(child) {
                        stack.push((child, depth + 1));
                        previous = Some(child);
                    }
                }
            }
        }
        stats.avg_search_distance = distance_sum as f64 / self.len.max(1) as f64;
        stats.index_bytes = index_bytes;
        stats.total_bytes = index_bytes + slot_bytes;
        stats
    }

    /// Walks the whole tree and panics, with a description, at the first broken invariant:
    /// every internal node has a power-of-two number of slots, each child covers an aligned
    /// power-of-two run of them and is reachable once; every data node keeps its gapped-array
    /// invariants; every key is routed by the models from the root to the node that holds it;
    /// the leaf list visits all data nodes in key order with strictly increasing keys; and the
    /// key count matches. Meant for tests: it costs O(n log n).
    pub fn check_invariants(&self) {
        let mut leaves_in_order = Vec::new();
        self.check_subtree(self.root, &mut leaves_in_order);
        // The leaf list must visit exactly the leaves of the tree, in order.
        let mut leaf = self.edge_leaf(false);
        let mut previous = NO_NODE;
        let mut listed = Vec::new();
        while leaf != NO_NODE {
            let node = &self.nodes.datas[leaf as usize];
            assert_eq!(node.prev, previous, "data node {leaf}: prev link broken");
            listed.push(leaf);
            previous = leaf;
            leaf = node.next;
            assert!(
                listed.len() <= leaves_in_order.len(),
                "leaf list longer than the tree (a cycle?)"
            );
        }
        assert_eq!(
            listed, leaves_in_order,
            "leaf list differs from the tree's leaves in key order"
        );
        let mut count = 0;
        let mut last_key: Option<K> = None;
        for (key, _) in self.iter() {
            assert!(
                last_key.is_none_or(|last| last < key),
                "keys out of order: {last_key:?} then {key:?}"
            );
            assert!(
                self.get(key).is_some(),
                "key {key:?} iterated but not found by get"
            );
            last_key = Some(key);
            count += 1;
        }
        assert_eq!(
            count, self.len,
            "iteration yields {count} keys but len is {}",
            self.len
        );
    }

    fn check_subtree(&self, node: NodeRef, leaves: &mut Vec<u32>) {
        if node.is_data() {
            let data = &self.nodes.datas[node.index()];
            data.check(node.id());
            let mut slot = 0;
            while let Some(s) = data.next_occupied(slot) {
                let key = data.key_at(s);
                assert_eq!(
                    self.leaf_id(key),
                    node.id(),
                    "key {key:?} in data node {} is routed elsewhere",
                    node.id()
                );
                slot = s + 1;
            }
            leaves.push(node.id());
            return;
        }
        let inner = &self.nodes.internals[node.index()];
        let fanout = inner.children.len();
        assert!(
            fanout >= 2 && fanout.is_power_of_two(),
            "internal node {}: fanout {fanout}",
            node.id()
        );
        assert!(
            fanout <= self.config.fanout_max,
            "internal node {}: fanout {fanout} over the limit",
            node.id()
        );
        let mut start = 0;
        let mut distinct = 0;
        while start < fanout {
            let child = inner.children[start];
            let (run_start, run_end) = inner.run_of(start);
            let run = run_end - run_start;
            assert!(
                run.is_power_of_two() && run_start % run == 0,
                "internal node {}: child covers slots {run_start}..{run_end}, not an aligned power of two",
                node.id()
            );
            distinct += 1;
            self.check_subtree(child, leaves);
            start = run_end;
        }
        assert_eq!(
            distinct,
            inner.distinct_children,
            "internal node {}: distinct child count",
            node.id()
        );
    }
}
