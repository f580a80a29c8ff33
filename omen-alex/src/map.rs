//! [`AlexMap`]: the tree of internal and data nodes and its operations (ALEX paper §3–4).

use core::mem;

use crate::build::Builder;
use crate::config::AlexConfig;
use crate::cost::{DRIFT_FACTOR, DRIFT_SLACK};
use crate::data_node::{CAPACITY_MIN, DataNode, NO_NODE, Spread};
use crate::error::AlexError;
use crate::key::Key;
use crate::model::LinearModel;
use crate::nodes::{InternalNode, NodeRef, Nodes};
use crate::prefetch::prefetch;

/// A node needs at least this many keys before it is split rather than expanded.
const SPLIT_KEYS_MIN: usize = 64;
/// Inserts a node must see before its measured cost is trusted (§4.2.2).
const DRIFT_INSERTS_MIN: u32 = 16;
/// An internal node may double while its slots number at most this many per distinct child
/// (or 64 slots in all): this is what bounds the memory of internal nodes under bad models.
const SLOTS_PER_CHILD_MAX: usize = 8;
/// Lookups `get_many` keeps in flight at once.
const BATCH: usize = 16;

/// Where the keys of the last leaf that run past its ancestors' slots go (see
/// `AlexMap::plan_right_edge`).
struct EdgePlan {
    /// The node that takes them.
    target: EdgeTarget,
    /// That node's model (for a new node, the old one's scaled to two slots).
    model: LinearModel,
    /// The node's slot count after the change.
    slots: usize,
    /// The moved keys fill slots `first..slots`.
    first: usize,
    /// Keys before this index stay in the leaf's place; the rest move.
    cut: usize,
}

enum EdgeTarget {
    /// An internal node on the right edge, which splits its last child's slots or doubles.
    Existing(u32),
    /// A new internal node of two slots put in place of `node` (which sat in `run` of its
    /// parent, or was the root), with `node` in its first slot.
    Above {
        node: NodeRef,
        run: Option<(u32, usize, usize)>,
    },
}

/// An ordered map from integer keys to values, indexed by an adaptive learned index (ALEX).
///
/// Reads take `&self` and may run concurrently from many threads; writes take `&mut self`.
pub struct AlexMap<K, V> {
    pub(crate) config: AlexConfig,
    pub(crate) nodes: Nodes<K, V>,
    pub(crate) root: NodeRef,
    pub(crate) len: usize,
}

impl<K: Key, V> Default for AlexMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Key, V> AlexMap<K, V> {
    /// An empty map with the default configuration.
    pub fn new() -> Self {
        Self::empty(AlexConfig::default())
    }

    /// An empty map with `config`.
    pub fn with_config(config: AlexConfig) -> Result<Self, AlexError> {
        config.validate()?;
        Ok(Self::empty(config))
    }

    fn empty(config: AlexConfig) -> Self {
        let mut nodes = Nodes::default();
        let root = Builder::new(&mut nodes, &config, core::iter::empty()).build(&[], false);
        Self {
            config,
            nodes,
            root,
            len: 0,
        }
    }

    /// Builds a map from pairs sorted by strictly increasing key (the paper's bulk load).
    pub fn from_sorted(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self, AlexError> {
        Self::from_sorted_with_config(AlexConfig::default(), pairs)
    }

    /// Like [`from_sorted`](Self::from_sorted), with `config`.
    pub fn from_sorted_with_config(
        config: AlexConfig,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, AlexError> {
        let mut map = Self::with_config(config)?;
        map.bulk_load(pairs)?;
        Ok(map)
    }

    /// Replaces the contents with `pairs`, which must be sorted by strictly increasing key.
    /// On error the map is unchanged and the error names the first offending position.
    pub fn bulk_load(&mut self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<(), AlexError> {
        // Collecting a `Vec`'s own iterator reuses its buffer, so callers that hand over a
        // `Vec` pay for no copy of the values.
        let pairs: Vec<(K, V)> = pairs.into_iter().collect();
        let mut keys: Vec<K> = Vec::with_capacity(pairs.len());
        for (position, &(key, _)) in pairs.iter().enumerate() {
            if let Some(&previous) = keys.last() {
                if key < previous {
                    return Err(AlexError::Unsorted {
                        position,
                        key: format!("{key:?}"),
                    });
                }
                if key == previous {
                    return Err(AlexError::Duplicate {
                        position,
                        key: format!("{key:?}"),
                    });
                }
            }
            keys.push(key);
        }
        let mut nodes = Nodes::default();
        let values = pairs.into_iter().map(|(_, value)| value);
        let root = Builder::new(&mut nodes, &self.config, values).build(&keys, false);
        self.nodes = nodes;
        self.root = root;
        self.len = keys.len();
        Ok(())
    }

    /// The configuration this map was built with.
    pub fn config(&self) -> &AlexConfig {
        &self.config
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        *self = Self::empty(self.config.clone());
    }

    /// The data node whose key range holds `key`: one model evaluation per level (§3.4).
    #[inline(always)]
    pub(crate) fn leaf_id(&self, key: K) -> u32 {
        let mut node = self.root;
        while !node.is_data() {
            let inner = &self.nodes.internals[node.index()];
            node = inner.children[inner.model.slot(key, inner.children.len())];
        }
        node.id()
    }

    /// Like `leaf_id`, also returning the parent internal node and the slot taken in it.
    fn path(&self, key: K) -> (u32, Option<(u32, usize)>) {
        let mut node = self.root;
        let mut parent = None;
        while !node.is_data() {
            let inner = &self.nodes.internals[node.index()];
            let slot = inner.model.slot(key, inner.children.len());
            parent = Some((node.id(), slot));
            node = inner.children[slot];
        }
        (node.id(), parent)
    }

    /// The value stored for `key`.
    #[inline]
    pub fn get(&self, key: K) -> Option<&V> {
        self.nodes.datas[self.leaf_id(key) as usize].get(key)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: K) -> bool {
        self.get(key).is_some()
    }

    /// A mutable reference to the value stored for `key`.
    pub fn get_mut(&mut self, key: K) -> Option<&mut V> {
        let leaf = self.leaf_id(key);
        self.nodes.datas[leaf as usize].get_mut(key)
    }

    /// Looks up many keys at once, in the order given. Lookups proceed in batches whose
    /// memory accesses are issued together (software prefetch), so their cache misses
    /// overlap instead of following one another.
    pub fn get_many(&self, keys: &[K]) -> Vec<Option<&V>> {
        let mut out = Vec::with_capacity(keys.len());
        for batch in keys.chunks(BATCH) {
            let mut leaves = [0u32; BATCH];
            for (leaf, &key) in leaves.iter_mut().zip(batch) {
                *leaf = self.leaf_id(key);
                prefetch(&self.nodes.datas[*leaf as usize] as *const DataNode<K, V>);
            }
            let mut starts = [0usize; BATCH];
            for ((start, leaf), &key) in starts.iter_mut().zip(&leaves).zip(batch) {
                let node = &self.nodes.datas[*leaf as usize];
                *start = node.predicted_slot(key);
                prefetch(node.key_address(*start));
                node.prefetch_slot(*start);
            }
            for ((start, leaf), &key) in starts.iter().zip(&leaves).zip(batch) {
                out.push(self.nodes.datas[*leaf as usize].get_from(key, *start));
            }
        }
        out
    }

    /// Inserts `key`, returning the value it replaced, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        loop {
            let (leaf, parent) = self.path(key);
            let node = &mut self.nodes.datas[leaf as usize];
            if node.is_full(&self.config) {
                if let Some(old) = node.get_mut(key) {
                    return Some(mem::replace(old, value));
                }
                self.grow(leaf, parent);
                continue;
            }
            let old = node.insert(key, value, &self.config);
            if old.is_none() {
                self.len += 1;
            }
            return old;
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: K) -> Option<V> {
        let leaf = self.leaf_id(key);
        let node = &mut self.nodes.datas[leaf as usize];
        let value = node.remove(key)?;
        self.len -= 1;
        // Give memory back when deletes leave a node mostly empty.
        let sparse =
            (node.num_keys() as f64) < node.capacity() as f64 * self.config.density_min / 3.0;
        if sparse && node.capacity() > 4 * CAPACITY_MIN {
            let capacity = self
                .config
                .capacity_for(node.num_keys(), self.config.density_init);
            self.rebuild_leaf(leaf, capacity);
        }
        Some(value)
    }

    /// Makes room in a full data node (§4.2): expand it, or split it when it would outgrow
    /// the size limit or its measured cost has drifted far above the cost its model promised.
    fn grow(&mut self, leaf: u32, parent: Option<(u32, usize)>) {
        let config = &self.config;
        let node = &self.nodes.datas[leaf as usize];
        let n = node.num_keys();
        let capacity = config
            .capacity_for(n + 1, config.density_min)
            .max(((n + 2) as f64 / config.density_max).ceil() as usize);
        let counters = node.counters;
        let drifted = counters.model_inserts >= DRIFT_INSERTS_MIN
            && counters.cost_per_insert()
                > f64::from(node.expected_cost) * DRIFT_FACTOR + DRIFT_SLACK;
        let oversized = capacity > config.data_node_slots_max;
        if oversized || (drifted && n >= SPLIT_KEYS_MIN) {
            self.split(leaf, parent);
        } else {
            self.rebuild_leaf(leaf, capacity);
        }
    }

    /// Rebuilds a data node with a new capacity and a retrained model. A node that mostly
    /// saw appends keeps its free space on the side the appends arrive at.
    fn rebuild_leaf(&mut self, leaf: u32, capacity: usize) {
        let node = &mut self.nodes.datas[leaf as usize];
        let counters = node.counters;
        let spread = if u64::from(counters.right_appends) * 2 > u64::from(counters.inserts) {
            Spread::LeaveRightFree
        } else if u64::from(counters.left_appends) * 2 > u64::from(counters.inserts) {
            Spread::LeaveLeftFree
        } else {
            Spread::Whole
        };
        node.rebuild(capacity, spread, &self.config);
    }

    /// Splits a data node (§4.2.2): sideways into two halves of the slots it covers in its
    /// parent (doubling the parent first if it covers one slot and the parent may grow), or
    /// else downwards into a new subtree.
    fn split(&mut self, leaf: u32, parent: Option<(u32, usize)>) {
        let mut old = self.nodes.take_data(leaf);
        let (prev, next) = (old.prev, old.next);
        let (keys, values) = old.drain_sorted();
        drop(old);
        let Some((parent, slot)) = parent else {
            let mut builder = Builder::new(&mut self.nodes, &self.config, values.into_iter());
            let root = builder.build(&keys, true);
            let (first, last) = (builder.first_leaf, builder.last_leaf);
            drop(builder);
            self.root = root;
            self.link(prev, first, last, next);
            return;
        };
        let (mut start, mut end) = self.nodes.internals[parent as usize].run_of(slot);
        let edge = (next == NO_NODE).then(|| self.plan_right_edge(&keys, prev));
        if let Some(plan) = edge.flatten() {
            self.grow_right_edge(plan, &keys, values, prev, (parent, start, end));
            return;
        }
        let inner = &mut self.nodes.internals[parent as usize];
        let fanout = inner.children.len();
        // Keys past the parent's domain (only the last child can hold them: the model clamps
        // them to the last slot) get new slots of their own: the parent's slot array doubles
        // to the right with the model unchanged, so every other key keeps its slot. This is
        // the paper's domain expansion (§4.5), which keeps append workloads shallow.
        let beyond = keys.len() - keys.partition_point(|k| inner.model.predict(*k) < fanout as f64);
        if end == fanout && beyond > 0 && fanout * 2 <= self.config.fanout_max {
            let cut = keys.len() - beyond;
            let model = inner.model;
            let mut builder = Builder::new(&mut self.nodes, &self.config, values.into_iter());
            let kept = builder.build(&keys[..cut], false);
            let (added, distinct) = builder.build_region(&keys[cut..], &model, 2 * fanout, fanout);
            let (first, last) = (builder.first_leaf, builder.last_leaf);
            drop(builder);
            let inner = &mut self.nodes.internals[parent as usize];
            let mut children = core::mem::take(&mut inner.children).into_vec();
            children[start..end].fill(kept);
            children.extend(added);
            inner.children = children.into_boxed_slice();
            inner.distinct_children += distinct;
            self.link(prev, first, last, next);
            return;
        }
        if end - start == 1 {
            let room = (inner.distinct_children * SLOTS_PER_CHILD_MAX).max(64);
            if fanout * 2 <= self.config.fanout_max && fanout * 2 <= room {
                inner.double();
                (start, end) = (2 * start, 2 * start + 2);
            }
        }
        let (model, fanout) = (inner.model, inner.children.len());
        let mut builder = Builder::new(&mut self.nodes, &self.config, values.into_iter());
        if end - start >= 2 {
            let mid = start + (end - start) / 2;
            let cut = keys.partition_point(|k| model.slot(*k, fanout) < mid);
            let left = builder.build(&keys[..cut], false);
            let right = builder.build(&keys[cut..], false);
            let (first, last) = (builder.first_leaf, builder.last_leaf);
            drop(builder);
            let inner = &mut self.nodes.internals[parent as usize];
            inner.children[start..mid].fill(left);
            inner.children[mid..end].fill(right);
            inner.distinct_children += 1;
            self.link(prev, first, last, next);
        } else {
            let child = builder.build(&keys, true);
            let (first, last) = (builder.first_leaf, builder.last_leaf);
            drop(builder);
            self.nodes.internals[parent as usize].children[start] = child;
            self.link(prev, first, last, next);
        }
    }

    /// Makes room for appends at the right edge (ALEX §4.5, domain expansion). When the last
    /// leaf fills, the keys of it that some ancestor routes past the old right-edge subtree
    /// move up to that ancestor, spread like a bulk load: into new slots when the ancestor
    /// grows to the right to take keys past its domain (or, at `fanout_max`, into a new node
    /// put above it), or into the upper half of the slots the edge subtree covers there. The
    /// highest such ancestor wins. Without this, each full node on the right edge splits its
    /// last child downwards, and an append-only load builds a chain as deep as the data is
    /// long; with it, depth grows with the logarithm of the key range.
    ///
    /// `keys` are the drained keys of the last leaf (sorted) and `prev` the leaf before it.
    /// Moving keys is only sound when no earlier leaf holds keys that would route to their
    /// new place: leaves are in key order, so the last earlier key decides.
    fn plan_right_edge(&self, keys: &[K], prev: u32) -> Option<EdgePlan> {
        let last_key = *keys.last()?;
        let earlier = self.last_key_from(prev);
        let fanout_max = self.config.fanout_max;
        let cut_at = |model: &LinearModel, slots: usize, first: usize| {
            let stays = |k: K| model.slot(k, slots) < first;
            let cut = keys.partition_point(|k| stays(*k));
            (cut < keys.len() && (cut > 0 || earlier.is_none_or(stays))).then_some(cut)
        };
        // Slots a node needs for `last_key` to have its own: the paper's expansion factor.
        let slots_for = |model: &LinearModel| {
            let position = model.predict(last_key).clamp(0.0, fanout_max as f64);
            (position as usize + 1).next_power_of_two().min(fanout_max)
        };
        let mut run = None;
        let mut node = self.root;
        while !node.is_data() {
            let inner = &self.nodes.internals[node.index()];
            let fanout = inner.children.len();
            let (start, end) = inner.run_of(fanout - 1);
            // Keys past this node's domain: it grows to the right until the last key has a
            // slot of its own, or, when that would pass `fanout_max`, a new node goes above
            // it. (Keys left clamped into the last slot would end up in a subtree there,
            // spread over several leaves, and no later move could take them out.)
            if inner.model.predict(last_key) >= fanout as f64 {
                let needed = slots_for(&inner.model);
                if needed > fanout
                    && inner.model.predict(last_key) < needed as f64
                    && let Some(cut) = cut_at(&inner.model, needed, fanout)
                {
                    return Some(EdgePlan {
                        target: EdgeTarget::Existing(node.id()),
                        model: inner.model,
                        slots: needed,
                        first: fanout,
                        cut,
                    });
                }
                let model = inner.model.scaled(1.0 / fanout as f64);
                let slots = slots_for(&model).max(2);
                if let Some(cut) = cut_at(&model, slots, 1) {
                    return Some(EdgePlan {
                        target: EdgeTarget::Above { node, run },
                        model,
                        slots,
                        first: 1,
                        cut,
                    });
                }
            }
            // Keys in the upper half of the slots the edge subtree covers move up here.
            let mid = start + (end - start) / 2;
            if end - start >= 2
                && let Some(cut) = cut_at(&inner.model, fanout, mid)
            {
                return Some(EdgePlan {
                    target: EdgeTarget::Existing(node.id()),
                    model: inner.model,
                    slots: fanout,
                    first: mid,
                    cut,
                });
            }
            run = Some((node.id(), start, end));
            node = inner.children[fanout - 1];
        }
        None
    }

    /// Carries out an [`EdgePlan`] for the drained last leaf, which sat in `run` of its
    /// parent.
    fn grow_right_edge(
        &mut self,
        plan: EdgePlan,
        keys: &[K],
        values: Vec<V>,
        prev: u32,
        run: (u32, usize, usize),
    ) {
        let mut builder = Builder::new(&mut self.nodes, &self.config, values.into_iter());
        let kept = builder.build(&keys[..plan.cut], false);
        let (moved, distinct) =
            builder.build_region(&keys[plan.cut..], &plan.model, plan.slots, plan.first);
        let (first, last) = (builder.first_leaf, builder.last_leaf);
        drop(builder);
        let (parent, start, end) = run;
        self.nodes.internals[parent as usize].children[start..end].fill(kept);
        match plan.target {
            EdgeTarget::Existing(id) => {
                let inner = &mut self.nodes.internals[id as usize];
                let mut children = core::mem::take(&mut inner.children).into_vec();
                children.truncate(plan.first);
                children.extend(moved);
                debug_assert_eq!(children.len(), plan.slots);
                inner.children = children.into_boxed_slice();
                inner.distinct_children += distinct;
            }
            EdgeTarget::Above { node, run } => {
                let mut children = vec![node];
                children.extend(moved);
                let id = self.nodes.add_internal(InternalNode {
                    model: plan.model,
                    children: children.into_boxed_slice(),
                    distinct_children: 1 + distinct,
                });
                match run {
                    Some((parent, start, end)) => self.nodes.internals[parent as usize].children
                        [start..end]
                        .fill(NodeRef::internal(id)),
                    None => self.root = NodeRef::internal(id),
                }
            }
        }
        self.link(prev, first, last, NO_NODE);
    }

    /// The largest key in `leaf` or the leaves before it.
    fn last_key_from(&self, mut leaf: u32) -> Option<K> {
        while leaf != NO_NODE {
            let node = &self.nodes.datas[leaf as usize];
            if let Some(slot) = node.prev_occupied(node.capacity()) {
                return Some(node.key_at(slot));
            }
            leaf = node.prev;
        }
        None
    }

    /// Connects a run of new leaves `first..=last` between `prev` and `next`.
    fn link(&mut self, prev: u32, first: u32, last: u32, next: u32) {
        let datas = &mut self.nodes.datas;
        datas[first as usize].prev = prev;
        if prev != NO_NODE {
            datas[prev as usize].next = first;
        }
        datas[last as usize].next = next;
        if next != NO_NODE {
            datas[next as usize].prev = last;
        }
    }

    /// The leftmost or rightmost data node.
    pub(crate) fn edge_leaf(&self, rightmost: bool) -> u32 {
        let mut node = self.root;
        while !node.is_data() {
            let children = &self.nodes.internals[node.index()].children;
            node = if rightmost {
                children[children.len() - 1]
            } else {
                children[0]
            };
        }
        node.id()
    }

    /// The smallest key and its value.
    pub fn first(&self) -> Option<(K, &V)> {
        self.iter().next()
    }

    /// The largest key and its value.
    pub fn last(&self) -> Option<(K, &V)> {
        let mut leaf = self.edge_leaf(true);
        while leaf != NO_NODE {
            let node = &self.nodes.datas[leaf as usize];
            if let Some(slot) = node.prev_occupied(node.capacity()) {
                return Some((node.key_at(slot), node.value(slot)?));
            }
            leaf = node.prev;
        }
        None
    }
}
