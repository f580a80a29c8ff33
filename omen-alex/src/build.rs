//! Bulk loading (ALEX paper §4.3): build a subtree for a sorted key set, choosing at each
//! node between a data node and an internal node with the fanout of lowest expected cost, and
//! merging adjacent slots into one child where that is cheaper (the "fanout tree").

use crate::config::AlexConfig;
use crate::cost::{MomentSums, Moments};
use crate::data_node::{DataNode, NO_NODE, Spread};
use crate::key::Key;
use crate::model::LinearModel;
use crate::nodes::{InternalNode, NodeRef, Nodes};

/// Nodes with at most this many keys are data nodes without further thought.
const SMALL_NODE_KEYS: usize = 64;
/// A data node whose expected search cost exceeds `level_cost + LEAF_SLACK` is worth
/// re-examining as an internal node.
const LEAF_SLACK: f64 = 3.0;
/// A built leaf whose exact cost exceeds the leaf threshold by this much is rebuilt.
const BAD_LEAF_MARGIN: f64 = 2.0;
/// The fanout search stops once a fanout costs this much more per key than the best so far.
const FANOUT_WORSE_BY: f64 = 0.05;
/// ... or after this many doublings that did not lower it.
const FANOUTS_WITHOUT_GAIN_MAX: usize = 3;
/// Past this depth (within one build) a subtree stops splitting, whatever the model quality:
/// keeps pathological inputs from building deep chains.
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

/// How cost estimates sample a node's keys: every `stride`-th key, at position `i * y_scale`,
/// with keys measured from `base`.
#[derive(Clone, Copy)]
struct Sample {
    stride: usize,
    base: u64,
    y_scale: f64,
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
        self.build_at(keys, force_internal, 0, None)
    }

    /// `data_cost`, when the caller knows it, is the cost per key of one data node over
    /// `keys` (saves a pass over them).
    fn build_at(
        &mut self,
        keys: &[K],
        force_internal: bool,
        depth: usize,
        data_cost: Option<f64>,
    ) -> NodeRef {
        let n = keys.len();
        let fits_data = n <= self.config.data_node_keys_max();
        if n <= 1 || depth >= DEPTH_MAX || (!force_internal && n <= SMALL_NODE_KEYS) {
            return self.leaf_as_is(keys);
        }
        let sample = Sample {
            stride: cost_stride(n, self.config.sampling),
            base: keys[0].to_ordered_u64(),
            y_scale: 1.0 / self.config.density_init,
        };
        let data_cost = match data_cost {
            _ if !fits_data => f64::INFINITY,
            Some(cost) => cost,
            None => {
                Moments::of(keys, 0, n, sample.stride, sample.base, sample.y_scale).node_cost(n)
                    / n as f64
            }
        };
        if !force_internal && data_cost <= self.config.level_cost + LEAF_SLACK {
            return self.leaf(keys, depth);
        }
        let (fanout, model, fanout_cost) = self.best_fanout(keys, sample);
        if !force_internal && data_cost <= self.config.level_cost + fanout_cost {
            return self.leaf(keys, depth);
        }
        let bounds = slot_bounds(keys, &model, fanout, sample.stride);
        let largest = bounds.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        if largest == n {
            // The model cannot separate these keys (all land in one slot): a data node with a
            // poor model is the honest answer; exponential search still finds every key.
            return self.leaf_as_is(keys);
        }
        let slot_moments: Vec<Moments> = bounds
            .windows(2)
            .map(|w| Moments::of(keys, w[0], w[1], sample.stride, sample.base, sample.y_scale))
            .collect();
        let mut blocks = Vec::new();
        self.plan(&bounds, &slot_moments, 0, fanout, &mut blocks);
        if force_internal && blocks.len() == 1 {
            // A forced split must separate the keys: plan the two halves on their own.
            blocks.clear();
            self.plan(&bounds, &slot_moments, 0, fanout / 2, &mut blocks);
            self.plan(&bounds, &slot_moments, fanout / 2, fanout / 2, &mut blocks);
        }
        let children = self.build_blocks(keys, &bounds, &blocks, depth);
        debug_assert_eq!(children.len(), fanout);
        let id = self.nodes.add_internal(InternalNode {
            model,
            children: children.into_boxed_slice(),
            distinct_children: blocks.len(),
        });
        NodeRef::internal(id)
    }

    /// Children for the slots `first..fanout` of an internal node with `model` over `fanout`
    /// slots (a power of two), planned as in a bulk load: adjacent slots merge where that is
    /// cheaper, within the aligned power-of-two runs the range splits into (`[f, 2f)`,
    /// `[2f, 4f)`, ... for a power of two `f`). Every key must route into those slots.
    /// Returns one reference per slot and the number of distinct children.
    ///
    /// This is how a node that grows to the right to take appended keys (domain expansion)
    /// fills its new slots: spread like a bulk load, not as one subtree hung off its last
    /// slot, which would deepen the right edge by a level per expansion.
    pub fn build_region(
        &mut self,
        keys: &[K],
        model: &LinearModel,
        fanout: usize,
        first: usize,
    ) -> (Vec<NodeRef>, usize) {
        debug_assert!(fanout.is_power_of_two() && first < fanout);
        // The largest aligned run at each start: its lowest set bit (a child must cover 2^k
        // slots starting at a multiple of 2^k), which never passes `fanout`.
        let mut runs = Vec::new();
        let mut start = first;
        while start < fanout {
            let len = if start == 0 {
                fanout
            } else {
                1 << start.trailing_zeros()
            };
            runs.push((start, len));
            start += len;
        }
        if keys.is_empty() {
            let mut children = Vec::with_capacity(fanout - first);
            for &(_, len) in &runs {
                let leaf = self.leaf_as_is(keys);
                children.extend(std::iter::repeat_n(leaf, len));
            }
            return (children, runs.len());
        }
        let stride = cost_stride(keys.len(), self.config.sampling);
        let base = keys[0].to_ordered_u64();
        let y_scale = 1.0 / self.config.density_init;
        let bounds = slot_bounds(keys, model, fanout, stride);
        debug_assert!(bounds[first] == 0 && bounds[fanout] == keys.len());
        let slot_moments: Vec<Moments> = bounds
            .windows(2)
            .map(|w| Moments::of(keys, w[0], w[1], stride, base, y_scale))
            .collect();
        let mut blocks = Vec::new();
        for (start, len) in runs {
            self.plan(&bounds, &slot_moments, start, len, &mut blocks);
        }
        let children = self.build_blocks(keys, &bounds, &blocks, 0);
        (children, blocks.len())
    }

    /// One child per planned block, repeated over the block's slots.
    fn build_blocks(
        &mut self,
        keys: &[K],
        bounds: &[usize],
        blocks: &[Block],
        depth: usize,
    ) -> Vec<NodeRef> {
        let mut children = Vec::with_capacity(blocks.iter().map(|b| b.len).sum());
        for block in blocks {
            let part = &keys[bounds[block.start]..bounds[block.start + block.len]];
            let leaf_is_fine = part.len() <= self.config.data_node_keys_max()
                && block.cost_per_key <= self.config.level_cost + LEAF_SLACK;
            let child = if leaf_is_fine {
                self.leaf(part, depth + 1)
            } else {
                self.build_at(part, false, depth + 1, Some(block.cost_per_key))
            };
            children.extend(std::iter::repeat_n(child, block.len));
        }
        children
    }

    /// Creates a data node over `keys`. Cost estimates come from samples, which can miss a
    /// few outlying keys that wreck a model; the node's exact cost is known once its keys are
    /// placed, so a node that fits far worse than promised is rebuilt as a subtree.
    fn leaf(&mut self, keys: &[K], depth: usize) -> NodeRef {
        let capacity = self
            .config
            .capacity_for(keys.len(), self.config.density_init);
        let mut node =
            DataNode::build(keys, &mut self.values, capacity, Spread::Whole, self.config);
        let too_costly =
            f64::from(node.expected_cost) > self.config.level_cost + LEAF_SLACK + BAD_LEAF_MARGIN;
        if !too_costly || keys.len() <= 4 * SMALL_NODE_KEYS || depth >= DEPTH_MAX {
            return self.push_leaf(node);
        }
        let (keys, values) = node.drain_sorted();
        let mut inner = Builder::new(&mut *self.nodes, self.config, values.into_iter());
        let subtree = inner.build_at(&keys, true, depth + 1, Some(f64::from(node.expected_cost)));
        let (first, last) = (inner.first_leaf, inner.last_leaf);
        drop(inner);
        self.nodes.datas[first as usize].prev = self.last_leaf;
        if self.last_leaf == NO_NODE {
            self.first_leaf = first;
        } else {
            self.nodes.datas[self.last_leaf as usize].next = first;
        }
        self.last_leaf = last;
        subtree
    }

    /// Creates a data node over `keys` whatever its cost.
    fn leaf_as_is(&mut self, keys: &[K]) -> NodeRef {
        let capacity = self
            .config
            .capacity_for(keys.len(), self.config.density_init);
        let node = DataNode::build(keys, &mut self.values, capacity, Spread::Whole, self.config);
        self.push_leaf(node)
    }

    /// Appends a data node to the arena and the leaf list.
    fn push_leaf(&mut self, mut node: DataNode<K, V>) -> NodeRef {
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

    /// Tries power-of-two fanouts from 2 up, until the cost per key clearly rises, and returns
    /// the one whose children (one data node per slot) cost least, with its model and cost.
    fn best_fanout(&self, keys: &[K], sample: Sample) -> (usize, LinearModel, f64) {
        let n = keys.len();
        let limit = self
            .config
            .fanout_max
            .min((n / 16).next_power_of_two())
            .max(2);
        // The sample is gathered once into a small contiguous array that every fanout scans,
        // and the model is fitted once: a least-squares fit of `rank * fanout / n` is the fit
        // of `rank / n` scaled by `fanout`.
        let sampled: Vec<K> = keys.iter().step_by(sample.stride).copied().collect();
        let unit_model = internal_model(keys, 1, self.config.sampling);
        let mut best: Option<(usize, LinearModel, f64)> = None;
        let mut fanout = 2;
        let mut without_gain = 0;
        while fanout <= limit {
            let model = unit_model.scaled(fanout as f64);
            let cost = self.slot_costs(&sampled, n, &model, fanout, sample) / n as f64;
            match &best {
                Some(b) if cost >= b.2 => {
                    without_gain += 1;
                    if cost > b.2 + FANOUT_WORSE_BY || without_gain >= FANOUTS_WITHOUT_GAIN_MAX {
                        break;
                    }
                }
                _ => {
                    best = Some((fanout, model, cost));
                    without_gain = 0;
                }
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

    /// Total cost of one data node per slot, from the sample points only: consecutive sample
    /// points routed to the same slot form that slot's segment.
    fn slot_costs(
        &self,
        sampled: &[K],
        n: usize,
        model: &LinearModel,
        fanout: usize,
        sample: Sample,
    ) -> f64 {
        let mut total = 0.0;
        let mut sums = MomentSums::default();
        let mut segment_slot = sampled.first().map_or(0, |k| model.slot(*k, fanout));
        let mut segment_start = 0;
        for (j, &key) in sampled.iter().enumerate() {
            let i = j * sample.stride;
            let slot = model.slot(key, fanout);
            if slot != segment_slot {
                total += self.segment_cost(&sums.finish(), i - segment_start);
                sums = MomentSums::default();
                segment_slot = slot;
                segment_start = i;
            }
            sums.push(
                key.to_ordered_u64().wrapping_sub(sample.base) as f64,
                i as f64 * sample.y_scale,
            );
        }
        total + self.segment_cost(&sums.finish(), n - segment_start)
    }

    /// Total expected cost of a data node of `keys` keys; oversized nodes pay one more level,
    /// since they will become internal nodes.
    fn segment_cost(&self, moments: &Moments, keys: usize) -> f64 {
        let search = moments.node_cost(keys);
        if keys > self.config.data_node_keys_max() {
            search + self.config.level_cost * keys as f64
        } else {
            search + self.config.data_node_cost
        }
    }

    /// The fanout tree: for slots `start..start + len`, either one child over all of them or
    /// the best plans of the two halves, whichever costs less. Appends the chosen blocks and
    /// returns the cost and the moments of the whole range.
    fn plan(
        &self,
        bounds: &[usize],
        slot_moments: &[Moments],
        start: usize,
        len: usize,
        out: &mut Vec<Block>,
    ) -> (f64, Moments) {
        let n = bounds[start + len] - bounds[start];
        if len == 1 {
            let moments = slot_moments[start];
            let cost = self.segment_cost(&moments, n);
            out.push(Block {
                start,
                len,
                cost_per_key: cost / n.max(1) as f64,
            });
            return (cost, moments);
        }
        let mark = out.len();
        let half = len / 2;
        let (left_cost, left) = self.plan(bounds, slot_moments, start, half, out);
        let (right_cost, right) = self.plan(bounds, slot_moments, start + half, half, out);
        let moments = left.merge(&right);
        let split = left_cost + right_cost;
        if n <= self.config.data_node_keys_max() {
            let merged = self.segment_cost(&moments, n);
            if merged <= split {
                out.truncate(mark);
                out.push(Block {
                    start,
                    len,
                    cost_per_key: merged / n.max(1) as f64,
                });
                return (merged, moments);
            }
        }
        (split, moments)
    }
}

/// Sample stride for cost estimates: every key below 8K keys, then up to one in 32.
fn cost_stride(n: usize, sampling: bool) -> usize {
    if sampling { (n >> 12).clamp(1, 32) } else { 1 }
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
/// Walks every `stride`-th key and binary-searches only the short windows where the slot
/// changes, so the work is O(n / stride + fanout * log stride) and the reads are sequential.
fn slot_bounds<K: Key>(
    keys: &[K],
    model: &LinearModel,
    fanout: usize,
    stride: usize,
) -> Vec<usize> {
    let n = keys.len();
    let mut bounds = Vec::with_capacity(fanout + 1);
    bounds.push(0);
    let mut previous = 0; // index of the last sampled key
    let mut previous_slot = model.slot(keys[0], fanout);
    // Slots before the first key's are empty and start at 0.
    bounds.resize(previous_slot + 1, 0);
    let mut next = stride;
    loop {
        let (index, slot) = if next < n {
            (next, model.slot(keys[next], fanout))
        } else {
            (n, fanout)
        };
        // Slots previous_slot + 1 ..= slot start inside keys[previous + 1..=index].
        for boundary in previous_slot + 1..=slot.min(fanout - 1) {
            let window_start = (*bounds.last().unwrap_or(&0)).max(previous + 1);
            let window = &keys[window_start..index.min(n)];
            bounds
                .push(window_start + window.partition_point(|k| model.slot(*k, fanout) < boundary));
        }
        if index >= n {
            break;
        }
        previous = index;
        previous_slot = previous_slot.max(slot);
        next += stride;
    }
    while bounds.len() < fanout {
        bounds.push(n);
    }
    bounds.push(n);
    debug_assert!(bounds.windows(2).all(|w| w[0] <= w[1]));
    bounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_slot_bounds_match_a_full_scan() {
        let keys: Vec<u64> = (0..10_000u64).map(|i| i * i + (i % 13) * 7).collect();
        for fanout in [2usize, 16, 256, 4096] {
            let model = internal_model(&keys, fanout, false);
            let mut expected = vec![0usize];
            for slot in 1..fanout {
                expected.push(keys.partition_point(|k| model.slot(*k, fanout) < slot));
            }
            expected.push(keys.len());
            for stride in [1usize, 3, 32] {
                assert_eq!(
                    slot_bounds(&keys, &model, fanout, stride),
                    expected,
                    "fanout {fanout} stride {stride}"
                );
            }
        }
    }
}
