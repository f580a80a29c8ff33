//! The cost model (ALEX paper §4.2): the expected cost of a data node is the average number
//! of exponential-search probes a lookup needs plus a weight times the slots an insert shifts.
//! Build decisions (data node or internal node, which fanout, which children to merge) pick
//! the layout with the lowest expected cost, and a node whose measured cost drifts far above
//! its expectation is split instead of expanded.

use crate::key::Key;
use crate::model::LinearModel;

/// Weight of one shifted slot relative to one search probe.
pub(crate) const SHIFT_WEIGHT: f64 = 0.1;

/// A node whose measured cost exceeds `expected * DRIFT_FACTOR + DRIFT_SLACK` is a bad fit.
pub(crate) const DRIFT_FACTOR: f64 = 1.5;
pub(crate) const DRIFT_SLACK: f64 = 0.5;

/// Probes an exponential search needs for a prediction `distance` slots off.
#[inline]
pub(crate) fn search_cost(distance: usize) -> f64 {
    ((distance + 1) as f64).log2()
}

/// Fewer sample points than this in a segment and its cost is guessed instead of measured.
const POINTS_MIN: usize = 4;

/// Total estimated search cost (summed over keys, not averaged) of a data node holding
/// `keys[lo..hi]`, measured on the sample points `i ≡ 0 (mod stride)`.
pub(crate) fn segment_cost<K: Key>(
    keys: &[K],
    lo: usize,
    hi: usize,
    stride: usize,
    density: f64,
) -> f64 {
    let n = hi - lo;
    if n <= 1 {
        return 0.0;
    }
    let first = lo.next_multiple_of(stride);
    let points = if first < hi {
        (hi - first).div_ceil(stride)
    } else {
        0
    };
    if points < POINTS_MIN {
        // Too few points to measure: assume the spread of uniformly random keys, whose rank
        // error against a fitted line grows like sqrt(n).
        return n as f64 * search_cost(((n as f64).sqrt() / 2.0) as usize);
    }
    let model = LinearModel::fit_strided(keys, first, hi, stride, 1.0 / density);
    let scale = 1.0 / density;
    let mut sum = 0.0;
    for (j, i) in (first..hi).step_by(stride).enumerate() {
        let expected = (j * stride) as f64 * scale;
        let distance = (model.predict(keys[i]) - expected).abs();
        sum += (distance + 1.0).log2();
    }
    sum / points as f64 * n as f64
}
