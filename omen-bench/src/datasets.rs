//! Key sets for the benchmarks: the four distributions of the ALEX evaluation.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution as _, LogNormal, Normal};

/// A key distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Distribution {
    /// `0..N`; inserts append `N..N+M`.
    Sequential,
    /// Uniform in `[0, 2^63)`.
    Uniform,
    /// `floor(exp(N(0, 2)) * 1e9)`, as in the ALEX paper.
    Lognormal,
    /// Morton codes of 2-D points from a Zipf-weighted mixture of ~4000 Gaussian clusters
    /// (radii 2^8..2^24) plus 3% uniform noise: a stand-in for SOSD `osm_cellids`.
    OsmLike,
}

impl Distribution {
    /// All four, in report order.
    pub const ALL: [Distribution; 4] = [
        Self::Sequential,
        Self::Uniform,
        Self::Lognormal,
        Self::OsmLike,
    ];

    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sequential => "sequential",
            Self::Uniform => "uniform",
            Self::Lognormal => "lognormal",
            Self::OsmLike => "osm-like",
        }
    }
}

/// Keys to bulk load and keys to insert afterwards (distinct from the loaded ones).
pub struct Dataset {
    /// The distribution the keys come from.
    pub distribution: Distribution,
    /// Sorted, unique keys to bulk load.
    pub loaded: Vec<u64>,
    /// Unique keys not in `loaded`, in insertion order.
    pub inserts: Vec<u64>,
}

impl Dataset {
    /// Generates `loaded` keys and `inserts` further keys of `distribution`, reproducibly.
    pub fn generate(distribution: Distribution, loaded: usize, inserts: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        if distribution == Distribution::Sequential {
            return Self {
                distribution,
                loaded: (0..loaded as u64).collect(),
                inserts: (loaded as u64..(loaded + inserts) as u64).collect(),
            };
        }
        let wanted = loaded + inserts;
        let mut keys = Vec::with_capacity(wanted + wanted / 16);
        let osm = OsmLike::new(&mut rng);
        loop {
            let missing = wanted.saturating_sub(keys.len());
            if missing == 0 {
                break;
            }
            let batch = missing + missing / 16 + 16;
            match distribution {
                Distribution::Uniform => {
                    keys.extend((0..batch).map(|_| rng.random_range(0..1u64 << 63)))
                }
                Distribution::Lognormal => {
                    let lognormal = LogNormal::new(0.0, 2.0).unwrap_or_else(|_| unreachable!());
                    keys.extend((0..batch).map(|_| (lognormal.sample(&mut rng) * 1e9) as u64));
                }
                Distribution::OsmLike => keys.extend((0..batch).map(|_| osm.sample(&mut rng))),
                Distribution::Sequential => unreachable!(),
            }
            keys.sort_unstable();
            keys.dedup();
        }
        keys.shuffle(&mut rng);
        keys.truncate(wanted);
        let inserted = keys.split_off(loaded);
        keys.sort_unstable();
        Self {
            distribution,
            loaded: keys,
            inserts: inserted,
        }
    }

    /// The loaded keys with values forming one random cycle (each value is another loaded
    /// key), so that a dependent chain of lookups visits keys in random order.
    pub fn chained_pairs(&self, seed: u64) -> Vec<(u64, u64)> {
        let n = self.loaded.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let mut next = vec![0u64; n];
        for (i, &at) in order.iter().enumerate() {
            next[at] = self.loaded[order[(i + 1) % n]];
        }
        self.loaded.iter().copied().zip(next).collect()
    }

    /// `count` loaded keys drawn uniformly at random.
    pub fn probes(&self, count: usize, seed: u64) -> Vec<u64> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..count)
            .map(|_| self.loaded[rng.random_range(0..self.loaded.len())])
            .collect()
    }
}

/// The osm-like generator: clusters with Zipf weights and log-uniform radii.
struct OsmLike {
    centers: Vec<(f64, f64, f64)>,
    cumulative_weight: Vec<f64>,
}

const CLUSTERS: usize = 4000;
const COORDINATE_MAX: f64 = 4_294_967_295.0;

impl OsmLike {
    fn new(rng: &mut StdRng) -> Self {
        let mut centers = Vec::with_capacity(CLUSTERS);
        let mut cumulative_weight = Vec::with_capacity(CLUSTERS);
        let mut total = 0.0;
        for rank in 0..CLUSTERS {
            let x = rng.random_range(0.0..COORDINATE_MAX);
            let y = rng.random_range(0.0..COORDINATE_MAX);
            let radius = 2f64.powf(rng.random_range(8.0..24.0));
            centers.push((x, y, radius));
            total += 1.0 / (rank + 1) as f64;
            cumulative_weight.push(total);
        }
        Self {
            centers,
            cumulative_weight,
        }
    }

    fn sample(&self, rng: &mut StdRng) -> u64 {
        let (x, y) = if rng.random_bool(0.03) {
            (
                rng.random_range(0.0..COORDINATE_MAX),
                rng.random_range(0.0..COORDINATE_MAX),
            )
        } else {
            let total = self.cumulative_weight.last().copied().unwrap_or(1.0);
            let pick = rng.random_range(0.0..total);
            let cluster = self
                .cumulative_weight
                .partition_point(|&w| w < pick)
                .min(CLUSTERS - 1);
            let (cx, cy, radius) = self.centers[cluster];
            let normal = Normal::new(0.0, radius).unwrap_or_else(|_| unreachable!());
            (cx + normal.sample(rng), cy + normal.sample(rng))
        };
        morton(
            x.clamp(0.0, COORDINATE_MAX) as u32,
            y.clamp(0.0, COORDINATE_MAX) as u32,
        )
    }
}

/// Interleaves the bits of `x` (even positions) and `y` (odd positions): a Z-order code.
pub fn morton(x: u32, y: u32) -> u64 {
    fn spread(v: u32) -> u64 {
        let mut v = u64::from(v);
        v = (v | (v << 16)) & 0x0000_FFFF_0000_FFFF;
        v = (v | (v << 8)) & 0x00FF_00FF_00FF_00FF;
        v = (v | (v << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
        v = (v | (v << 2)) & 0x3333_3333_3333_3333;
        v = (v | (v << 1)) & 0x5555_5555_5555_5555;
        v
    }
    spread(x) | (spread(y) << 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_are_sorted_unique_and_disjoint() {
        for distribution in Distribution::ALL {
            let data = Dataset::generate(distribution, 20_000, 2_000, 7);
            assert_eq!(data.loaded.len(), 20_000);
            assert_eq!(data.inserts.len(), 2_000);
            assert!(
                data.loaded.windows(2).all(|w| w[0] < w[1]),
                "{distribution:?}"
            );
            let mut inserts = data.inserts.clone();
            inserts.sort_unstable();
            inserts.dedup();
            assert_eq!(inserts.len(), 2_000);
            assert!(
                inserts
                    .iter()
                    .all(|k| data.loaded.binary_search(k).is_err())
            );
        }
    }

    #[test]
    fn morton_interleaves_bits() {
        assert_eq!(morton(0b11, 0), 0b0101);
        assert_eq!(morton(0, 0b11), 0b1010);
        assert_eq!(morton(u32::MAX, u32::MAX), u64::MAX);
    }

    #[test]
    fn chained_values_form_one_cycle() {
        let data = Dataset::generate(Distribution::Uniform, 1_000, 0, 3);
        let pairs: std::collections::HashMap<u64, u64> =
            data.chained_pairs(5).into_iter().collect();
        let mut key = data.loaded[0];
        for _ in 0..999 {
            key = pairs[&key];
            assert_ne!(key, data.loaded[0]);
        }
        assert_eq!(pairs[&key], data.loaded[0]);
    }
}
