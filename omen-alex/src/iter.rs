//! Ordered iteration: walk the linked list of data nodes, skipping gaps with the bitmap.

use core::ops::{Bound, RangeBounds};

use crate::data_node::NO_NODE;
use crate::key::Key;
use crate::map::AlexMap;
use crate::nodes::Nodes;

/// An iterator over `(key, &value)` pairs in key order, from [`AlexMap::range`] or
/// [`AlexMap::iter`].
pub struct Range<'a, K, V> {
    nodes: &'a Nodes<K, V>,
    leaf: u32,
    slot: usize,
    end: Bound<K>,
}

impl<K: Key, V> AlexMap<K, V> {
    /// Pairs with keys in `range`, in key order. An empty or inverted range yields nothing.
    pub fn range(&self, range: impl RangeBounds<K>) -> Range<'_, K, V> {
        let end = range.end_bound().cloned();
        let start = range.start_bound().cloned();
        let inverted = match (start, end) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
            _ => false,
        };
        if inverted {
            return Range {
                nodes: &self.nodes,
                leaf: NO_NODE,
                slot: 0,
                end,
            };
        }
        let (leaf, slot) = match start {
            Bound::Unbounded => (self.edge_leaf(false), 0),
            Bound::Included(key) | Bound::Excluded(key) => {
                let leaf = self.leaf_id(key);
                let exclusive = matches!(start, Bound::Excluded(_));
                (
                    leaf,
                    self.nodes.datas[leaf as usize].lower_bound(key, exclusive),
                )
            }
        };
        Range {
            nodes: &self.nodes,
            leaf,
            slot,
            end,
        }
    }

    /// All pairs in key order.
    pub fn iter(&self) -> Range<'_, K, V> {
        self.range(..)
    }
}

impl<'a, K: Key, V> Iterator for Range<'a, K, V> {
    type Item = (K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        while self.leaf != NO_NODE {
            let node = &self.nodes.datas[self.leaf as usize];
            let Some(slot) = node.next_occupied(self.slot) else {
                self.leaf = node.next;
                self.slot = 0;
                continue;
            };
            let key = node.key_at(slot);
            let in_range = match self.end {
                Bound::Included(end) => key <= end,
                Bound::Excluded(end) => key < end,
                Bound::Unbounded => true,
            };
            if !in_range {
                self.leaf = NO_NODE;
                return None;
            }
            self.slot = slot + 1;
            return Some((key, node.value(slot)?));
        }
        None
    }
}

impl<'a, K: Key, V> IntoIterator for &'a AlexMap<K, V> {
    type Item = (K, &'a V);
    type IntoIter = Range<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
