//! The node arena: internal and data nodes addressed by `u32` ids, so a child may be shared by
//! several consecutive slots of its parent (ALEX's duplicate pointers, paper §3.4).

use crate::data_node::DataNode;
use crate::model::LinearModel;

/// A child pointer: the top bit tells data node from internal node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NodeRef(u32);

impl NodeRef {
    const DATA_BIT: u32 = 1 << 31;

    pub fn data(id: u32) -> Self {
        assert!(id < Self::DATA_BIT, "too many data nodes");
        Self(id | Self::DATA_BIT)
    }

    pub fn internal(id: u32) -> Self {
        assert!(id < Self::DATA_BIT, "too many internal nodes");
        Self(id)
    }

    #[inline(always)]
    pub fn is_data(self) -> bool {
        self.0 & Self::DATA_BIT != 0
    }

    #[inline(always)]
    pub fn id(self) -> u32 {
        self.0 & !Self::DATA_BIT
    }

    #[inline(always)]
    pub fn index(self) -> usize {
        self.id() as usize
    }
}

/// An internal node: a model routing keys to `children.len()` slots (a power of two). A child
/// covers a run of `2^k` consecutive slots that starts at a multiple of `2^k`.
pub(crate) struct InternalNode {
    pub model: LinearModel,
    pub children: Box<[NodeRef]>,
    /// Number of distinct children (runs of equal pointers).
    pub distinct_children: usize,
}

impl InternalNode {
    /// The run of slots `start..end` that holds the child at `slot`.
    pub fn run_of(&self, slot: usize) -> (usize, usize) {
        let child = self.children[slot];
        let mut start = slot;
        while start > 0 && self.children[start - 1] == child {
            start -= 1;
        }
        let mut end = slot + 1;
        while end < self.children.len() && self.children[end] == child {
            end += 1;
        }
        (start, end)
    }

    /// Doubles the slots: each slot becomes two, and the model's predictions double (exact in
    /// floating point, so every key keeps its child).
    pub fn double(&mut self) {
        self.model = self.model.scaled(2.0);
        self.children = self.children.iter().flat_map(|&c| [c, c]).collect();
    }
}

/// All nodes of one tree.
pub(crate) struct Nodes<K, V> {
    pub internals: Vec<InternalNode>,
    pub datas: Vec<DataNode<K, V>>,
    free_datas: Vec<u32>,
}

impl<K, V> Default for Nodes<K, V> {
    fn default() -> Self {
        Self {
            internals: Vec::new(),
            datas: Vec::new(),
            free_datas: Vec::new(),
        }
    }
}

impl<K: crate::Key, V> Nodes<K, V> {
    pub fn add_data(&mut self, node: DataNode<K, V>) -> u32 {
        if let Some(id) = self.free_datas.pop() {
            self.datas[id as usize] = node;
            id
        } else {
            self.datas.push(node);
            u32::try_from(self.datas.len() - 1).unwrap_or(u32::MAX)
        }
    }

    /// Removes a data node from the arena, leaving a dead placeholder.
    pub fn take_data(&mut self, id: u32) -> DataNode<K, V> {
        self.free_datas.push(id);
        core::mem::replace(&mut self.datas[id as usize], DataNode::dead())
    }

    pub fn add_internal(&mut self, node: InternalNode) -> u32 {
        // Internal nodes are never freed: the tree only grows them (splits), and a bulk load
        // replaces the whole arena.
        self.internals.push(node);
        u32::try_from(self.internals.len() - 1).unwrap_or(u32::MAX)
    }
}
