//! The cost model (ALEX paper §4.2): the expected cost of a data node is the average number
//! of exponential-search steps a lookup needs (log2 of the model's error) plus a weight times
//! the slots an insert shifts. Build decisions (data node or internal node, which fanout,
//! which neighbouring slots share a child) pick the layout with the lowest expected cost, and
//! a node whose measured cost drifts far above its expectation is split instead of expanded.
//!
//! Bulk load estimates the error of a would-be node in one pass: the residual of a
//! least-squares line follows from the first and second moments of (key, position), and the
//! moments of two neighbouring segments combine exactly (Chan et al.'s parallel formulas), so
//! the whole fanout tree is costed from one scan of the sample.

use crate::key::Key;

/// Weight of one shifted slot relative to one search step.
pub(crate) const SHIFT_WEIGHT: f64 = 0.1;

/// A node whose measured cost exceeds `expected * DRIFT_FACTOR + DRIFT_SLACK` is a bad fit.
pub(crate) const DRIFT_FACTOR: f64 = 1.5;
pub(crate) const DRIFT_SLACK: f64 = 0.5;

/// Fewer sample points than this in a segment and its error is guessed instead of measured.
const POINTS_MIN: f64 = 4.0;

/// `log2(x)` for `x >= 1`, within 0.09: exact at powers of two, linear in between. Costs are
/// estimates, and the libm call dominated bulk-load profiles.
#[inline(always)]
pub(crate) fn fast_log2(x: f64) -> f64 {
    debug_assert!(x >= 1.0);
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as f64 - 1023.0;
    let mantissa = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    exponent + mantissa - 1.0
}

/// Search steps for a prediction `distance` slots off.
#[inline(always)]
pub(crate) fn search_cost(distance: usize) -> f64 {
    fast_log2((distance + 1) as f64)
}

/// First and second moments of sample points `(x, y)`, centred for numerical stability.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Moments {
    pub points: f64,
    mean_x: f64,
    mean_y: f64,
    m2_x: f64,
    m2_y: f64,
    c_xy: f64,
}

impl Moments {
    /// Moments of `(key - base, i * y_scale)` for the sample indices `i ≡ 0 (mod stride)` in
    /// `lo..hi`.
    pub fn of<K: Key>(
        keys: &[K],
        lo: usize,
        hi: usize,
        stride: usize,
        base: u64,
        y_scale: f64,
    ) -> Self {
        let mut sums = MomentSums::default();
        for i in (lo.next_multiple_of(stride)..hi).step_by(stride) {
            sums.push(
                keys[i].to_ordered_u64().wrapping_sub(base) as f64,
                i as f64 * y_scale,
            );
        }
        sums.finish()
    }

    /// The moments of the union of two disjoint point sets.
    pub fn merge(&self, other: &Self) -> Self {
        if self.points == 0.0 {
            return *other;
        }
        if other.points == 0.0 {
            return *self;
        }
        let n = self.points + other.points;
        let dx = other.mean_x - self.mean_x;
        let dy = other.mean_y - self.mean_y;
        let weight = self.points * other.points / n;
        Self {
            points: n,
            mean_x: self.mean_x + dx * other.points / n,
            mean_y: self.mean_y + dy * other.points / n,
            m2_x: self.m2_x + other.m2_x + dx * dx * weight,
            m2_y: self.m2_y + other.m2_y + dy * dy * weight,
            c_xy: self.c_xy + other.c_xy + dx * dy * weight,
        }
    }

    /// Root-mean-square residual of the least-squares line through the points.
    pub fn rms_error(&self) -> f64 {
        if self.points < 2.0 {
            return 0.0;
        }
        let residual = if self.m2_x > 0.0 {
            self.m2_y - self.c_xy * self.c_xy / self.m2_x
        } else {
            self.m2_y
        };
        (residual.max(0.0) / self.points).sqrt()
    }

    /// Total expected search cost of a data node of `keys` keys with these sample moments.
    pub fn node_cost(&self, keys: usize) -> f64 {
        if keys <= 1 {
            return 0.0;
        }
        let error = if self.points < POINTS_MIN {
            // Too few points to measure: assume the spread of uniformly random keys, whose
            // rank error against a fitted line grows like sqrt(n).
            (keys as f64).sqrt() / 2.0
        } else {
            self.rms_error()
        };
        keys as f64 * fast_log2(error + 1.0)
    }
}

/// Running sums for `Moments`, taken relative to the first point so they do not cancel.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MomentSums {
    origin: (f64, f64),
    n: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    syy: f64,
    sxy: f64,
}

impl MomentSums {
    #[inline(always)]
    pub fn push(&mut self, x: f64, y: f64) {
        if self.n == 0.0 {
            self.origin = (x, y);
        }
        let (x, y) = (x - self.origin.0, y - self.origin.1);
        self.n += 1.0;
        self.sx += x;
        self.sy += y;
        self.sxx += x * x;
        self.syy += y * y;
        self.sxy += x * y;
    }

    pub fn finish(&self) -> Moments {
        let n = self.n;
        if n == 0.0 {
            return Moments::default();
        }
        Moments {
            points: n,
            mean_x: self.origin.0 + self.sx / n,
            mean_y: self.origin.1 + self.sy / n,
            m2_x: (self.sxx - self.sx * self.sx / n).max(0.0),
            m2_y: (self.syy - self.sy * self.sy / n).max(0.0),
            c_xy: self.sxy - self.sx * self.sy / n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_log2_is_close() {
        for x in [1.0, 1.5, 2.0, 3.0, 7.9, 1024.0, 1e6, 1e12] {
            assert!((fast_log2(x) - f64::log2(x)).abs() < 0.09, "{x}");
        }
        assert_eq!(fast_log2(1.0), 0.0);
    }

    #[test]
    fn merged_moments_equal_moments_of_the_union() {
        let keys: Vec<u64> = (0..1000u64)
            .map(|i| (1 << 60) + i * i * 13 + (i % 7) * 1000)
            .collect();
        let base = keys[0];
        let whole = Moments::of(&keys, 0, 1000, 1, base, 1.0 / 0.7);
        let merged = Moments::of(&keys, 0, 377, 1, base, 1.0 / 0.7).merge(&Moments::of(
            &keys,
            377,
            1000,
            1,
            base,
            1.0 / 0.7,
        ));
        assert!((whole.rms_error() - merged.rms_error()).abs() < 1e-6 * whole.rms_error().max(1.0));
        let line: Vec<u64> = (0..1000u64).map(|i| 5 + 3 * i).collect();
        assert!(Moments::of(&line, 0, 1000, 1, 5, 1.0).rms_error() < 1e-6);
    }
}
