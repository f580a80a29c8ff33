//! Linear models: the only kind of model ALEX uses (paper §3.1), fitted by least squares.
//!
//! A model maps a key to a fractional position. It works on `key - base` (in the key's `u64`
//! order) so that a node whose keys are close together but large in magnitude keeps full `f64`
//! precision. Prediction is monotone non-decreasing in the key, which is what makes every node
//! cover one contiguous key interval per slot.

use crate::key::Key;

/// Below this many points a fit always uses every key.
const FIT_FULL_MAX: usize = 2048;
/// Adaptive sampling starts with this many points and doubles until the slope settles.
const SAMPLE_START: usize = 1024;
/// Relative slope change below which a doubled sample is considered converged.
const SAMPLE_SLOPE_TOLERANCE: f64 = 0.01;

/// `position = slope * (key - base) + intercept`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LinearModel {
    pub base: u64,
    pub slope: f64,
    pub intercept: f64,
}

impl LinearModel {
    /// A model that sends every key to position `at`.
    pub fn constant(at: f64) -> Self {
        Self {
            base: 0,
            slope: 0.0,
            intercept: at,
        }
    }

    /// The fractional position predicted for `key`.
    #[inline(always)]
    pub fn predict<K: Key>(&self, key: K) -> f64 {
        // saturating_sub keeps the map monotone for keys below `base` (they all predict the
        // intercept); no FMA contraction happens in Rust, so doubling the model is exact.
        self.slope * (key.to_ordered_u64().saturating_sub(self.base) as f64) + self.intercept
    }

    /// The slot in `0..len` predicted for `key`; `len` must be at least 1.
    #[inline(always)]
    pub fn slot<K: Key>(&self, key: K, len: usize) -> usize {
        clamp_position(self.predict(key), len)
    }

    /// The same model with every prediction multiplied by `factor`. With `factor = 2.0` this is
    /// exact in floating point, so `slot` of the result is `2 * old` or `2 * old + 1`.
    pub fn scaled(&self, factor: f64) -> Self {
        Self {
            base: self.base,
            slope: self.slope * factor,
            intercept: self.intercept * factor,
        }
    }

    /// Least-squares fit of position `(i - lo) * y_scale` for `keys[i]`, `i` in `lo..hi`,
    /// using every `stride`-th key.
    pub fn fit_strided<K: Key>(
        keys: &[K],
        lo: usize,
        hi: usize,
        stride: usize,
        y_scale: f64,
    ) -> Self {
        debug_assert!(lo <= hi && hi <= keys.len() && stride >= 1);
        let Some(first) = keys.get(lo) else {
            return Self::constant(0.0);
        };
        let base = first.to_ordered_u64();
        // One pass of sums. Keys are measured from the first key and positions start at 0,
        // so the sums are of the node's own spread and `sum_xx - sum_x * mean_x` does not
        // cancel badly.
        let (mut count, mut sum_x, mut sum_y, mut sum_xx, mut sum_xy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in (lo..hi).step_by(stride) {
            let x = (keys[i].to_ordered_u64() - base) as f64;
            let y = (i - lo) as f64 * y_scale;
            count += 1.0;
            sum_x += x;
            sum_y += y;
            sum_xx += x * x;
            sum_xy += x * y;
        }
        let (mean_x, mean_y) = (sum_x / count, sum_y / count);
        let var = sum_xx - sum_x * mean_x;
        let cov = sum_xy - sum_x * mean_y;
        // Sorted keys against increasing positions have non-negative covariance; clamp away
        // rounding noise so the model stays monotone.
        let slope = if var > 0.0 { (cov / var).max(0.0) } else { 0.0 };
        let slope = if slope.is_finite() { slope } else { 0.0 };
        Self {
            base,
            slope,
            intercept: mean_y - slope * mean_x,
        }
    }

    /// Fits positions `(i - lo) * y_scale` for `keys[lo..hi]`. With `sampling`, large inputs
    /// are fitted on a growing strided sample until the slope changes by less than 1% between
    /// doublings (the adaptive sampling of CDFShop, Marcus et al. 2020).
    pub fn fit<K: Key>(keys: &[K], lo: usize, hi: usize, y_scale: f64, sampling: bool) -> Self {
        let n = hi - lo;
        if !sampling || n <= FIT_FULL_MAX {
            return Self::fit_strided(keys, lo, hi, 1, y_scale);
        }
        let mut points = SAMPLE_START;
        let mut model = Self::fit_strided(keys, lo, hi, n / points, y_scale);
        while points < n {
            points *= 2;
            let stride = (n / points).max(1);
            let next = Self::fit_strided(keys, lo, hi, stride, y_scale);
            let change = (next.slope - model.slope).abs();
            model = next;
            if stride == 1 || change <= SAMPLE_SLOPE_TOLERANCE * model.slope.abs() {
                break;
            }
        }
        model
    }
}

/// Clamps a fractional position to a slot in `0..len`; monotone in `position`.
#[inline(always)]
pub(crate) fn clamp_position(position: f64, len: usize) -> usize {
    debug_assert!(len >= 1);
    let last = len - 1;
    if position <= 0.0 {
        0
    } else if position >= last as f64 {
        last
    } else {
        // Truncation is floor for positive values; NaN cannot reach here (comparisons above
        // fail for NaN, and `as` maps NaN to 0 anyway).
        position as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_perfect_line() {
        let keys: Vec<u64> = (0..10_000).map(|i| 1_000 + 3 * i).collect();
        let model = LinearModel::fit(&keys, 0, keys.len(), 1.0, true);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(model.slot(*k, keys.len()), i);
        }
    }

    #[test]
    fn doubling_the_model_refines_slots_exactly() {
        let keys: Vec<u64> = (0..5_000u64).map(|i| i * i * 7 + 11).collect();
        let model = LinearModel::fit(&keys, 0, keys.len(), 64.0 / 5_000.0, false);
        let doubled = model.scaled(2.0);
        for k in keys.iter().copied().chain([0, u64::MAX, 12, 1 << 40]) {
            let old = model.slot(k, 64);
            let new = doubled.slot(k, 128);
            assert!(
                new == 2 * old || new == 2 * old + 1,
                "key {k}: {old} -> {new}"
            );
        }
    }

    #[test]
    fn prediction_is_monotone_at_the_extremes() {
        let keys = [i64::MIN, -5, 0, 7, i64::MAX];
        let model = LinearModel::fit(&keys, 0, keys.len(), 1.0, false);
        for pair in keys.windows(2) {
            assert!(model.predict(pair[0]) <= model.predict(pair[1]));
        }
    }
}
