//! Bulk loading (ALEX paper §4.3): build a subtree for a sorted key set, choosing at each
//! node between a data node and an internal node with the fanout of lowest expected cost, and
//! merging adjacent slots into one child where that is cheaper (the "fanout tree").

use crate::config::AlexConfig;
use crate::cost::segment_cost;
use crate::data_node::{DataNode, NO_NODE, Spread};
use crate::key::Key;
use crate::model::LinearModel;
use crate::nodes::{InternalNode, NodeRef, Nodes};

/// Nodes with at most this many keys are data nodes without further thought.
const SMALL_NODE_KEYS: usize = 64;
/// A data node whose expected probes exceed `level_cost + LEAF_SLACK` is worth re-examining.
const LEAF_SLACK: f64 = 3.0;
/// Cost charged per data node, so that near-empty neighbours merge into one node.
const NODE_COST: f64 = 8.0;
/// Past this depth a subtree stops splitting, whatever the model quality: keeps pathological
/// inputs from building deep chains.
const DEPTH_MAX: usize = 24;

/// Builds subtrees, creating data nodes in key order and linking them into a list.
pub(crate) struct Builder<'a, K, V, I> {
    nodes: &'a mut Nodes<K, V>,
    config: &'a AlexConfig,
    values: I,
    /// First and last data node created, in key order (`NO_NODE` before any).
    pub first_leaf: u32,
    pub last_leaf: u32,
}

/// One child of a planned internal node: slots `start..start + len` and its estimated cost.
struct Block {
    start: usize,
    len: usize,
    cost_per_key: f64,
}

impl<'a, K: Key, V, I: Iterator<Item = V>> Builder<'a, K, V, I> {
    pub fn new(nodes: &'a mut Nodes<K, V>, config: &'a AlexConfig, values: I) -> Self {
        Self {
            nodes,
            config,
            values,
            first_leaf: NO_NODE,
            last_leaf: NO_NODE,
        }
    }

    /// Builds a subtree over `keys` (strictly increasing), taking values from the source in
    /// order. With `force_internal`, the root of the subtree is an internal node unless the
    /// keys cannot be separated by any model.
    pub fn build(&mut self, keys: &[K], force_internal: bool) -> NodeRef {
        self.build_at(keys, force_internal, 0)
    }

    fn build_at(&mut self, keys: &[K], force_internal: bool, depth: usize) -> NodeRef {
        let n = keys.len();
        let fits_data = n <= self.config.data_node_keys_max();
        if n <= 1 || depth >= DEPTH_MAX || (!force_internal && n <= SMALL_NODE_KEYS) {
            return self.leaf(keys);
        }
        let stride = cost_stride(n, self.config.sampling);
        let data_cost = if fits_data {
            segment_cost(keys, 0, n, stride, self.config.density_init) / n as f64
        } else {
            f64::INFINITY
        };
        if !force_internal && data_cost <= self.config.level_cost + LEAF_SLACK {
            return self.leaf(keys);
        }
        let (fanout, model, fanout_cost) = self.best_fanout(keys, stride);
        if !force_internal && data_cost <= self.config.level_cost + fanout_cost {
            return self.leaf(keys);
        }
        let bounds = slot_bounds(keys, &model, fanout);
        let largest = bounds.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        if largest == n {
            // The model cannot separate these keys (all land in one slot): a data node with a
            // poor model is the honest answer; exponential search still finds every key.
            return self.leaf(keys);
        }
        let mut blocks = Vec::new();
        self.plan(keys, &bounds, 0, fanout, stride, &mut blocks);
        if force_internal && blocks.len() == 1 {
            // A forced split must separate the keys: plan the two halves on their own.
            blocks.clear();
            self.plan(keys, &bounds, 0, fanout / 2, stride, &mut blocks);
            self.plan(keys, &bounds, fanout / 2, fanout / 2, stride, &mut blocks);
        }
        let mut children = Vec::with_capacity(fanout);
        for block in &blocks {
            let part = &keys[bounds[block.start]..bounds[block.start + block.len]];
            let leaf_is_fine = part.len() <= self.config.data_node_keys_max()
                && block.cost_per_key <= self.config.level_cost + LEAF_SLACK;
            let child = if leaf_is_fine {
                self.leaf(part)
            } else {
                self.build_at(part, false, depth + 1)
            };
            children.extend(std::iter::repeat_n(child, block.len));
        }
        debug_assert_eq!(children.len(), fanout);
        let id = self.nodes.add_internal(InternalNode {
            model,
            children: children.into_boxed_slice(),
            distinct_children: blocks.len(),
        });
        NodeRef::internal(id)
    }

    /// Creates a data node over `keys` and appends it to the leaf list.
    fn leaf(&mut self, keys: &[K]) -> NodeRef {
        let capacity = self
            .config
            .capacity_for(keys.len(), self.config.density_init);
        let mut node =
            DataNode::build(keys, &mut self.values, capacity, Spread::Whole, self.config);
        node.prev = self.last_leaf;
        let id = self.nodes.add_data(node);
        if self.last_leaf == NO_NODE {
            self.first_leaf = id;
        } else {
            self.nodes.datas[self.last_leaf as usize].next = id;
        }
        self.last_leaf = id;
        NodeRef::data(id)
    }

    /// Tries every power-of-two fanout and returns the one whose children (one data node per
    /// slot) have the lowest expected cost per key, with its model and that cost.
    fn best_fanout(&self, keys: &[K], stride: usize) -> (usize, LinearModel, f64) {
        let n = keys.len();
        let limit = self
            .config
            .fanout_max
            .min((n / 16).next_power_of_two())
            .max(2);
        let mut best: Option<(usize, LinearModel, f64)> = None;
        let mut fanout = 2;
        while fanout <= limit {
            let model = internal_model(keys, fanout, self.config.sampling);
            let cost = self.slot_costs(keys, &model, fanout, stride) / n as f64;
            if best.as_ref().is_none_or(|b| cost < b.2) {
                best = Some((fanout, model, cost));
            }
            fanout *= 2;
        }
        best.unwrap_or_else(|| {
            (
                2,
                internal_model(keys, 2, self.config.sampling),
                f64::INFINITY,
            )
        })
    }

    /// Total cost of one data node per slot, measured on the sample points only: consecutive
    /// sample points routed to the same slot form that slot's segment.
    fn slot_costs(&self, keys: &[K], model: &LinearModel, fanout: usize, stride: usize) -> f64 {
        let n = keys.len();
        let mut total = 0.0;
        let mut segment_start = 0;
        let mut segment_slot = model.slot(keys[0], fanout);
        let mut i = stride;
        loop {
            let slot = if i < n {
                model.slot(keys[i], fanout)
            } else {
                usize::MAX
            };
            if slot != segment_slot {
                let end = i.min(n);
                total += self.node_cost(keys, segment_start, end, stride);
                if i >= n {
                    break;
                }
                segment_start = i;
                segment_slot = slot;
            }
            i += stride;
        }
        total
    }

    /// Total expected cost of a data node over `keys[lo..hi]`; oversized nodes pay one more
    /// level, since they will become internal nodes.
    fn node_cost(&self, keys: &[K], lo: usize, hi: usize, stride: usize) -> f64 {
        let n = hi - lo;
        let search = segment_cost(keys, lo, hi, stride, self.config.density_init);
        if n > self.config.data_node_keys_max() {
            search + self.config.level_cost * n as f64
        } else {
            search + NODE_COST
        }
    }

    /// The fanout tree: for slots `start..start + len`, either one child over all of them or
    /// the best plans of the two halves, whichever costs less. Appends the chosen blocks.
    fn plan(
        &self,
        keys: &[K],
        bounds: &[usize],
        start: usize,
        len: usize,
        stride: usize,
        out: &mut Vec<Block>,
    ) -> f64 {
        let (lo, hi) = (bounds[start], bounds[start + len]);
        let n = hi - lo;
        let merged = if len == 1 || n <= self.config.data_node_keys_max() {
            self.node_cost(keys, lo, hi, stride)
        } else {
            f64::INFINITY
        };
        let block = Block {
            start,
            len,
            cost_per_key: if n == 0 { 0.0 } else { merged / n as f64 },
        };
        if len == 1 || n == 0 {
            out.push(block);
            return merged;
        }
        let mark = out.len();
        let half = len / 2;
        let split = self.plan(keys, bounds, start, half, stride, out)
            + self.plan(keys, bounds, start + half, half, stride, out);
        if merged <= split {
            out.truncate(mark);
            out.push(block);
            merged
        } else {
            split
        }
    }
}

/// Sample stride for cost estimates: every key below 128K keys, then up to one in 32.
fn cost_stride(n: usize, sampling: bool) -> usize {
    if sampling { (n >> 16).clamp(1, 32) } else { 1 }
}

/// The model of an internal node with `fanout` slots: a least-squares fit of the keys' CDF,
/// ignoring the outer 1/64 of keys on each side so that a few outliers cannot squeeze every
/// other key into one slot.
pub(crate) fn internal_model<K: Key>(keys: &[K], fanout: usize, sampling: bool) -> LinearModel {
    let n = keys.len();
    let trim = if n >= 256 { n / 64 } else { 0 };
    let scale = fanout as f64 / n as f64;
    let mut model = LinearModel::fit(keys, trim, n - trim, scale, sampling);
    model.intercept += trim as f64 * scale;
    model
}

/// `bounds[s]..bounds[s + 1]` are the indices of the keys the model routes to slot `s`.
fn slot_bounds<K: Key>(keys: &[K], model: &LinearModel, fanout: usize) -> Vec<usize> {
    let mut bounds = Vec::with_capacity(fanout + 1);
    bounds.push(0);
    let mut lo = 0;
    for slot in 1..fanout {
        lo += keys[lo..].partition_point(|k| model.slot(*k, fanout) < slot);
        bounds.push(lo);
    }
    bounds.push(keys.len());
    bounds
}
