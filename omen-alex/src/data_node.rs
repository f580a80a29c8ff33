//! Data nodes: gapped arrays with a linear model (ALEX paper §3.2–3.3).
//!
//! Invariants (checked by `check`):
//! - `keys` is sorted non-decreasing over all slots, occupied or not;
//! - the slot after an occupied slot holding `k != K::MAX` holds a key greater than `k`, so
//!   the last slot holding a key `<= k` is the occupied one: a lookup is one search plus one
//!   bitmap test;
//! - every gap after the last occupied slot holds `K::MAX`, so an append finds the free tail
//!   without scanning the bitmap;
//! - other gaps hold any key that keeps the array sorted: a gap is written with the next
//!   occupied key when a key lands to its right, and a remove leaves it (and its own slot)
//!   stale, which keeps removes O(1) — rewriting the run of gaps on each remove made deleting
//!   ascending keys quadratic in the node's size;
//! - a value is initialised exactly in the slots whose bitmap bit is set; `num_keys` is the
//!   number of set bits.
#![expect(
    unsafe_code,
    reason = "values live in MaybeUninit slots whose occupancy the bitmap records"
)]

use core::mem::{self, MaybeUninit};

use crate::bitmap::Bitmap;
use crate::config::AlexConfig;
use crate::cost::{SHIFT_WEIGHT, search_cost};
use crate::key::Key;
use crate::model::{LinearModel, clamp_position};
use crate::prefetch::prefetch;

/// Link value meaning "no neighbour".
pub(crate) const NO_NODE: u32 = u32::MAX;
/// An append that would shift more slots than this respreads the node instead.
const APPEND_SHIFT_MAX: usize = 16;
/// The smallest gapped array we allocate.
pub(crate) const CAPACITY_MIN: usize = 16;

/// What a data node observed since it was last built or resized; the cost model (§4.2.2)
/// compares it with the cost expected at build time.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct InsertCounters {
    pub inserts: u32,
    /// Inserts that were not appends: only these measure the model (appends land past the
    /// model's domain by definition, §4.5 handles them separately).
    pub model_inserts: u32,
    /// Sum of `search_cost(|predicted slot - final slot|)`, the same measure as
    /// `DataNode::expected_cost`.
    pub search_cost: f32,
    pub shifts: u32,
    /// Inserts of a key larger than every key in the node.
    pub right_appends: u32,
    /// Inserts of a key smaller than every key in the node.
    pub left_appends: u32,
}

impl InsertCounters {
    /// Measured cost per insert, in the units of `DataNode::expected_cost`.
    pub fn cost_per_insert(&self) -> f64 {
        if self.model_inserts == 0 {
            return 0.0;
        }
        (f64::from(self.search_cost) + SHIFT_WEIGHT * f64::from(self.shifts))
            / f64::from(self.model_inserts)
    }
}

/// A leaf of the tree: a gapped array of keys and values with a model predicting slots.
///
/// The fields every lookup reads come first, and the node is aligned to 128 bytes: they sit in
/// one aligned pair of cache lines, which the CPU's spatial prefetcher fetches together.
#[repr(C, align(128))]
pub(crate) struct DataNode<K, V> {
    pub model: LinearModel,
    keys: Box<[K]>,
    values: Box<[MaybeUninit<V>]>,
    bitmap: Bitmap,
    num_keys: usize,
    /// Updated by every insert: kept inside the first 128 bytes with the fields above.
    pub counters: InsertCounters,
    /// Cost per insert predicted when the node was built (search cost + weighted shifts).
    pub expected_cost: f32,
    /// Whether the node holds `K::MAX`, the key that trailing gaps also hold.
    contains_max: bool,
    /// Neighbouring leaves in key order (for range scans).
    pub prev: u32,
    pub next: u32,
}

/// How a rebuilt node spreads its keys over the new gapped array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spread {
    /// Over the whole array (the default of the paper).
    Whole,
    /// Over the left part, leaving the right free: the node sees appends of growing keys.
    LeaveRightFree,
    /// Over the right part, leaving the left free: the node sees inserts of shrinking keys.
    LeaveLeftFree,
}

impl<K: Key, V> DataNode<K, V> {
    /// An unreachable placeholder for a freed arena slot.
    pub fn dead() -> Self {
        Self {
            model: LinearModel::constant(0.0),
            keys: Box::new([]),
            values: Box::new([]),
            bitmap: Bitmap::new(0),
            num_keys: 0,
            contains_max: false,
            prev: NO_NODE,
            next: NO_NODE,
            counters: InsertCounters::default(),
            expected_cost: 0.0,
        }
    }

    /// Builds a node holding `keys` (strictly increasing) with the next `keys.len()` values.
    pub fn build(
        keys: &[K],
        values: &mut impl Iterator<Item = V>,
        capacity: usize,
        spread: Spread,
        config: &AlexConfig,
    ) -> Self {
        let n = keys.len();
        let capacity = capacity.max(CAPACITY_MIN).max(n);
        let span = match spread {
            Spread::Whole => capacity as f64,
            _ => (n as f64 / config.density_max).min(capacity as f64),
        };
        let mut model = LinearModel::fit(keys, 0, n, span / n.max(1) as f64, config.sampling);
        // Keys go to slots `used`, so the free side stays free even where the model errs.
        let used = match spread {
            Spread::Whole => 0..capacity,
            Spread::LeaveRightFree => 0..(span.ceil() as usize).clamp(n, capacity),
            Spread::LeaveLeftFree => {
                model.intercept += capacity as f64 - span;
                capacity - (span.ceil() as usize).clamp(n, capacity)..capacity
            }
        };
        Self::place(keys, values, model, capacity, used)
    }

    /// Model-based placement (§3.3 "model-based inserts" during bulk load): each key goes to
    /// its predicted slot, or the next free one, leaving room for the keys still to come.
    fn place(
        keys: &[K],
        values: &mut impl Iterator<Item = V>,
        model: LinearModel,
        capacity: usize,
        used: core::ops::Range<usize>,
    ) -> Self {
        let n = keys.len();
        assert!(
            n <= used.len() && used.end <= capacity,
            "slots {used:?} of {capacity} cannot hold {n} keys"
        );
        let mut slot_keys: Vec<K> = Vec::with_capacity(capacity);
        let mut slot_values = Box::<[V]>::new_uninit_slice(capacity);
        let mut bitmap = Bitmap::new(capacity);
        let mut search_sum = 0.0;
        // Runs of consecutive occupied slots, for the expected shifts of an insert: one that
        // lands in a run of `L` slots moves about `L / 4` of them, and lands there with
        // weight `L`.
        let (mut run, mut run_square_sum) = (0usize, 0.0);
        let mut placed = 0;
        for (i, (&key, value)) in keys.iter().zip(values.by_ref()).enumerate() {
            let next_free = slot_keys.len().max(used.start);
            let predicted = model.slot(key, capacity);
            let slot = predicted.max(next_free).min(used.end - (n - i));
            if slot == slot_keys.len() && i > 0 {
                run += 1;
            } else {
                run_square_sum += (run * run) as f64;
                run = 1;
            }
            // Gaps before the key copy it: the gap invariant, written in the same pass.
            slot_keys.resize(slot, key);
            slot_keys.push(key);
            slot_values[slot].write(value);
            bitmap.set(slot);
            search_sum += search_cost(predicted.abs_diff(slot));
            placed += 1;
            if placed == n {
                break;
            }
        }
        assert_eq!(
            placed, n,
            "the value source ran dry while building a data node"
        );
        run_square_sum += (run * run) as f64;
        slot_keys.resize(capacity, K::MAX);
        let (search, shifts) = if n == 0 {
            (0.0, 0.0)
        } else {
            (search_sum / n as f64, run_square_sum / 4.0 / n as f64)
        };
        Self {
            model,
            keys: slot_keys.into_boxed_slice(),
            values: slot_values,
            bitmap,
            num_keys: n,
            contains_max: keys.last() == Some(&K::MAX),
            prev: NO_NODE,
            next: NO_NODE,
            counters: InsertCounters::default(),
            expected_cost: (search + SHIFT_WEIGHT * shifts) as f32,
        }
    }

    pub fn num_keys(&self) -> usize {
        self.num_keys
    }

    pub fn capacity(&self) -> usize {
        self.keys.len()
    }

    /// Whether one more key would push the node past the maximum density.
    pub fn is_full(&self, config: &AlexConfig) -> bool {
        (self.num_keys + 1) as f64 > self.keys.len() as f64 * config.density_max
            || self.num_keys >= self.keys.len()
    }

    /// The slot holding `key`, if present.
    #[inline]
    pub fn find(&self, key: K) -> Option<usize> {
        let start = self.model.slot(key, self.keys.len());
        self.prefetch_slot(start);
        self.find_from(key, start)
    }

    /// Starts loading the occupancy word and the value of `slot` while the key search runs:
    /// the search usually ends within a few slots of where it starts.
    #[inline(always)]
    pub fn prefetch_slot(&self, slot: usize) {
        prefetch(self.bitmap.word_address(slot));
        let value = self.values.as_ptr().wrapping_add(slot);
        prefetch(value);
        // A value wider than 16 bytes (a row stored in the slot) may end in the next line.
        if std::mem::size_of::<V>() > 16 {
            prefetch(
                value
                    .cast::<u8>()
                    .wrapping_add(std::mem::size_of::<V>() - 1),
            );
        }
    }

    /// Slot of the predicted position of `key` (for prefetching).
    #[inline(always)]
    pub fn predicted_slot(&self, key: K) -> usize {
        self.model.slot(key, self.keys.len())
    }

    /// Address of a slot's key, for a prefetch hint.
    #[inline(always)]
    pub fn key_address(&self, slot: usize) -> *const K {
        self.keys.as_ptr().wrapping_add(slot)
    }

    #[inline]
    pub fn find_from(&self, key: K, start: usize) -> Option<usize> {
        if self.keys.is_empty() {
            return None;
        }
        if key == K::MAX {
            // Gaps at the end also hold K::MAX: the real one is the first occupied slot
            // holding it.
            if !self.contains_max {
                return None;
            }
            let lower = exponential_search(&self.keys, start, |k| k < key);
            let slot = self.bitmap.next_set(lower)?;
            return (self.keys[slot] == key).then_some(slot);
        }
        let upper = exponential_search(&self.keys, start, |k| k <= key);
        let slot = upper.checked_sub(1)?;
        // A gap may still hold a removed key.
        (self.keys[slot] == key && self.bitmap.get(slot)).then_some(slot)
    }

    /// The value of `key`, if present.
    #[inline]
    pub fn get(&self, key: K) -> Option<&V> {
        self.value(self.find(key)?)
    }

    #[inline]
    pub fn get_from(&self, key: K, start: usize) -> Option<&V> {
        self.value(self.find_from(key, start)?)
    }

    pub fn get_mut(&mut self, key: K) -> Option<&mut V> {
        let slot = self.find(key)?;
        if !self.bitmap.get(slot) {
            return None;
        }
        // SAFETY: the bitmap bit is set, so the value in this slot is initialised.
        Some(unsafe { self.values[slot].assume_init_mut() })
    }

    /// The value in an occupied slot.
    #[inline(always)]
    pub fn value(&self, slot: usize) -> Option<&V> {
        if !self.bitmap.get(slot) {
            debug_assert!(false, "a lookup landed on gap slot {slot}");
            return None;
        }
        // SAFETY: the bitmap bit is set, so the value in this slot is initialised.
        Some(unsafe { self.values[slot].assume_init_ref() })
    }

    /// The key in a slot (occupied or a gap).
    #[inline(always)]
    pub fn key_at(&self, slot: usize) -> K {
        self.keys[slot]
    }

    /// The first occupied slot at or after `from`.
    #[inline]
    pub fn next_occupied(&self, from: usize) -> Option<usize> {
        self.bitmap.next_set(from)
    }

    /// The last occupied slot before `before`.
    #[inline]
    pub fn prev_occupied(&self, before: usize) -> Option<usize> {
        self.bitmap.prev_set(before)
    }

    /// The first slot whose key is `>= key` (or `> key` when `exclusive`); may be a gap or
    /// `capacity()`.
    pub fn lower_bound(&self, key: K, exclusive: bool) -> usize {
        if self.keys.is_empty() {
            return 0;
        }
        let start = self.predicted_slot(key);
        if exclusive {
            exponential_search(&self.keys, start, |k| k <= key)
        } else {
            exponential_search(&self.keys, start, |k| k < key)
        }
    }

    /// Inserts `key`, returning the previous value if it was present. The node must not be
    /// full when the key is new (`is_full` is false), so a gap exists.
    pub fn insert(&mut self, key: K, value: V, config: &AlexConfig) -> Option<V> {
        let capacity = self.keys.len();
        let predicted = self.model.predict(key);
        let start = clamp_position(predicted, capacity);
        self.prefetch_slot(start);
        let lower = exponential_search(&self.keys, start, |k| k < key);
        let next = self.occupied_at_or_after(lower);
        if let Some(slot) = next
            && self.keys[slot] == key
            && self.bitmap.get(slot)
        {
            // SAFETY: the bitmap bit is set, so the value in this slot is initialised.
            let old = unsafe { self.values[slot].assume_init_mut() };
            return Some(mem::replace(old, value));
        }
        assert!(self.num_keys < capacity, "insert into a full data node");
        // Slots lower..end are gaps; lower - 1 (if any) holds a smaller key, end a larger one.
        let end = next.unwrap_or(capacity);
        let is_right_append = end == capacity && lower > 0;
        let is_left_append = lower == 0 && end < capacity;
        let counters = &mut self.counters;
        counters.right_appends = counters
            .right_appends
            .saturating_add(u32::from(is_right_append));
        counters.left_appends = counters
            .left_appends
            .saturating_add(u32::from(is_left_append));
        let (slot, shifts) = if lower < end {
            let slot = if is_right_append && predicted >= (capacity - 1) as f64 {
                lower // pack appends so the free tail is not wasted
            } else if is_left_append && predicted < 1.0 {
                end - 1
            } else {
                start.clamp(lower, end - 1)
            };
            (slot, 0)
        } else if (is_right_append || is_left_append)
            && self.shift_distance(lower) > APPEND_SHIFT_MAX
        {
            // Appends ran out of free space on their side: rather than shifting ever longer
            // runs, respread the keys to leave that side free, then insert.
            let spread = if is_right_append {
                Spread::LeaveRightFree
            } else {
                Spread::LeaveLeftFree
            };
            if self.capacity() > self.num_keys + 1 {
                self.rebuild(self.capacity(), spread, config);
                return self.insert(key, value, config);
            }
            self.make_room(lower)
        } else {
            self.make_room(lower)
        };
        if !is_right_append && !is_left_append {
            let counters = &mut self.counters;
            counters.model_inserts = counters.model_inserts.saturating_add(1);
            counters.search_cost += search_cost(start.abs_diff(slot)) as f32;
            counters.shifts = counters
                .shifts
                .saturating_add(u32::try_from(shifts).unwrap_or(u32::MAX));
        }
        self.keys[slot] = key;
        self.values[slot].write(value);
        self.bitmap.set(slot);
        self.num_keys += 1;
        self.contains_max |= key == K::MAX;
        // Gaps between `lower` and the new key now copy it.
        for gap in lower..slot {
            self.keys[gap] = key;
        }
        // Gaps to its right may still hold this key from an earlier remove: the slot after
        // an occupied one must hold a greater key.
        if end < capacity {
            let next_key = self.keys[end];
            for gap in slot + 1..end {
                if self.keys[gap] != key {
                    break;
                }
                self.keys[gap] = next_key;
            }
        }
        self.counters.inserts = self.counters.inserts.saturating_add(1);
        None
    }

    /// The first occupied slot at or after a lower-bound position `lower`. The free tail holds
    /// `K::MAX`, so an append learns that nothing follows without scanning the bitmap (a free
    /// tail can span thousands of words).
    #[inline]
    fn occupied_at_or_after(&self, lower: usize) -> Option<usize> {
        let key = *self.keys.get(lower)?;
        if key == K::MAX && !self.contains_max {
            return None;
        }
        self.bitmap.next_set(lower)
    }

    /// Slots `make_room(lower)` would shift.
    fn shift_distance(&self, lower: usize) -> usize {
        let right = self.bitmap.next_clear(lower).map(|r| r - lower);
        let left = self.bitmap.prev_clear(lower).map(|l| lower - 1 - l);
        right.into_iter().chain(left).min().unwrap_or(usize::MAX)
    }

    /// Rebuilds the node in place with `capacity` slots, a retrained model and the given
    /// spread of its keys; the leaf links are kept.
    pub fn rebuild(&mut self, capacity: usize, spread: Spread, config: &AlexConfig) {
        let (keys, values) = self.drain_sorted();
        let mut rebuilt = Self::build(&keys, &mut values.into_iter(), capacity, spread, config);
        rebuilt.prev = self.prev;
        rebuilt.next = self.next;
        *self = rebuilt;
    }

    /// Opens a free slot for a key that belongs just before slot `lower` (which is occupied,
    /// or `capacity()`), by shifting toward the nearer gap. Returns the free slot and the
    /// number of slots shifted.
    fn make_room(&mut self, lower: usize) -> (usize, usize) {
        let right = self.bitmap.next_clear(lower);
        let left = self.bitmap.prev_clear(lower);
        let go_right = match (left, right) {
            (Some(l), Some(r)) => r - lower <= lower - 1 - l,
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (None, None) => unreachable!("make_room on a full data node"),
        };
        if let (true, Some(r)) = (go_right, right) {
            // Slots lower..r move one to the right; r was a gap.
            self.keys[lower..=r].rotate_right(1);
            self.values[lower..=r].rotate_right(1);
            self.bitmap.set(r);
            (lower, r - lower)
        } else {
            let l = left.unwrap_or_default();
            // Slots l+1..lower move one to the left; l was a gap. Gaps before l copied the
            // key that now sits at l, so they stay correct.
            self.keys[l..lower].rotate_left(1);
            self.values[l..lower].rotate_left(1);
            self.bitmap.set(l);
            (lower - 1, lower - 1 - l)
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: K) -> Option<V> {
        let slot = self.find(key)?;
        if !self.bitmap.get(slot) {
            return None;
        }
        // SAFETY: the bit is set, so the value is initialised; clearing the bit right after
        // makes this slot uninitialised in the bitmap's eyes, so it is never read again.
        let value = unsafe { self.values[slot].assume_init_read() };
        self.bitmap.clear(slot);
        self.num_keys -= 1;
        if key == K::MAX {
            self.contains_max = false;
        }
        // The slot and the gaps before it keep the removed key (see the module doc), unless
        // they now start the free tail, which must hold K::MAX.
        let was_last = key == K::MAX
            || self
                .keys
                .get(slot + 1)
                .is_none_or(|&next| next == K::MAX && !self.contains_max);
        if was_last {
            let mut gap = slot;
            loop {
                self.keys[gap] = K::MAX;
                if gap == 0 || self.bitmap.get(gap - 1) {
                    break;
                }
                gap -= 1;
            }
        }
        Some(value)
    }

    /// Moves every key and value out, in key order, leaving the node empty.
    pub fn drain_sorted(&mut self) -> (Vec<K>, Vec<V>) {
        let mut keys = Vec::with_capacity(self.num_keys);
        let mut values = Vec::with_capacity(self.num_keys);
        let mut slot = 0;
        while let Some(s) = self.bitmap.next_set(slot) {
            keys.push(self.keys[s]);
            // SAFETY: the bit is set so the value is initialised; the bitmap is cleared below
            // before anything else can observe the slot, so the value is read exactly once.
            values.push(unsafe { self.values[s].assume_init_read() });
            slot = s + 1;
        }
        self.bitmap.clear_all();
        self.num_keys = 0;
        self.contains_max = false;
        (keys, values)
    }

    /// Sum and maximum of |predicted slot - actual slot| over the keys.
    pub fn search_distances(&self) -> (u64, usize) {
        let (mut sum, mut max) = (0u64, 0usize);
        let mut slot = 0;
        while let Some(s) = self.bitmap.next_set(slot) {
            let distance = self.predicted_slot(self.keys[s]).abs_diff(s);
            sum += distance as u64;
            max = max.max(distance);
            slot = s + 1;
        }
        (sum, max)
    }

    /// Heap bytes of the gapped key and value arrays.
    pub fn slot_bytes(&self) -> usize {
        self.keys.len() * (mem::size_of::<K>() + mem::size_of::<V>())
    }

    /// Heap bytes of the structure apart from keys and values.
    pub fn bitmap_bytes(&self) -> usize {
        self.bitmap.heap_bytes()
    }

    /// Checks the invariants of the module doc, panicking with a description on failure.
    pub fn check(&self, id: u32) {
        let capacity = self.keys.len();
        assert!(
            capacity >= CAPACITY_MIN,
            "data node {id}: capacity {capacity} below minimum"
        );
        assert_eq!(
            self.bitmap.count_ones(),
            self.num_keys,
            "data node {id}: bitmap count differs from num_keys"
        );
        for pair in self.keys.windows(2) {
            assert!(
                pair[0] <= pair[1],
                "data node {id}: slot keys not sorted: {pair:?}"
            );
        }
        let holds_max = self
            .bitmap
            .prev_set(capacity)
            .is_some_and(|s| self.keys[s] == K::MAX);
        assert_eq!(
            self.contains_max, holds_max,
            "data node {id}: contains_max flag is stale"
        );
        let last = self.bitmap.prev_set(capacity);
        let tail = last.map_or(0, |s| s + 1);
        assert!(
            self.keys[tail..].iter().all(|&k| k == K::MAX),
            "data node {id}: a gap of the free tail after slot {tail} does not hold K::MAX"
        );
        let mut slot = 0;
        while let Some(s) = self.bitmap.next_set(slot) {
            let key = self.keys[s];
            if key != K::MAX
                && let Some(&next) = self.keys.get(s + 1)
            {
                assert!(
                    next > key,
                    "data node {id}: slot {} after occupied slot {s} holds {next:?}, not above {key:?}",
                    s + 1
                );
            }
            assert_eq!(
                self.find(key),
                Some(s),
                "data node {id}: key {key:?} not found by its model"
            );
            slot = s + 1;
        }
    }
}

impl<K, V> Drop for DataNode<K, V> {
    fn drop(&mut self) {
        if !mem::needs_drop::<V>() {
            return;
        }
        let mut slot = 0;
        while let Some(s) = self.bitmap.next_set(slot) {
            // SAFETY: set bits mark initialised values, and each is dropped once here.
            unsafe { self.values[s].assume_init_drop() };
            slot = s + 1;
        }
    }
}

/// The first index whose key fails `before` (keys must be partitioned: all passing keys come
/// first), searching exponentially outward from `start` (§3.2: exponential search finds the
/// key in O(log error) steps).
#[inline(always)]
fn exponential_search<K: Copy>(keys: &[K], start: usize, before: impl Fn(K) -> bool) -> usize {
    let n = keys.len();
    debug_assert!(start < n);
    let mut step = 1;
    if before(keys[start]) {
        let mut low = start; // before(keys[low]) holds
        loop {
            let high = start + step;
            if high >= n {
                return low + 1 + keys[low + 1..].partition_point(|k| before(*k));
            }
            if !before(keys[high]) {
                return low + 1 + keys[low + 1..high].partition_point(|k| before(*k));
            }
            low = high;
            step *= 2;
        }
    } else {
        let mut high = start; // !before(keys[high])
        loop {
            if step > start {
                return keys[..high].partition_point(|k| before(*k));
            }
            let low = start - step;
            if before(keys[low]) {
                return low + 1 + keys[low + 1..high].partition_point(|k| before(*k));
            }
            high = low;
            step *= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(keys: &[u64]) -> DataNode<u64, u64> {
        let config = AlexConfig::default();
        let mut values = keys.iter().copied();
        DataNode::build(keys, &mut values, 64, Spread::Whole, &config)
    }

    #[test]
    fn a_key_inserted_left_of_its_stale_copies_raises_them() {
        let keys: Vec<u64> = (0..16).map(|i| i * 10).collect();
        let mut node = node(&keys);
        let slot = node.find(80).expect("built with 80");
        assert!(
            slot > 0 && !node.bitmap.get(slot - 1),
            "a gap run before 80"
        );
        assert_eq!(node.remove(80), Some(80));
        node.check(0);
        assert_eq!(
            node.key_at(slot),
            80,
            "the removed key stays as a stale copy"
        );
        // A model that now predicts one slot further left (as after shifts or a retrain).
        node.model.intercept -= 1.0;
        assert_eq!(node.insert(80, 8, &AlexConfig::default()), None);
        assert_eq!(node.get(80), Some(&8));
        assert_eq!(node.find(80), Some(slot - 1));
        node.check(0);
    }

    #[test]
    fn removing_ascending_keys_leaves_gaps_stale_and_the_tail_max() {
        let keys: Vec<u64> = (0..40).collect();
        let mut node = node(&keys);
        for key in 0..20 {
            assert_eq!(node.remove(key), Some(key));
            assert_eq!(node.get(key), None);
            node.check(0);
        }
        for key in (20..40).rev() {
            assert_eq!(node.remove(key), Some(key));
            node.check(0);
        }
        assert!((0..node.capacity()).all(|s| node.key_at(s) == u64::MAX));
        for key in [5, 3, 30, 4] {
            assert_eq!(node.insert(key, key, &AlexConfig::default()), None);
            node.check(0);
        }
        assert_eq!(node.get(4), Some(&4));
    }
}
