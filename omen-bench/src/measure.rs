//! Timing helpers: best-of-N wall clock, a DRAM-latency probe, and a sink for results.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Runs `work` `rounds` times and returns the fastest run (the one least disturbed by other
/// load on a shared machine).
pub fn best_of<T>(rounds: usize, mut work: impl FnMut() -> T) -> Duration {
    (0..rounds.max(1))
        .map(|_| {
            let start = Instant::now();
            black_box(work());
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Nanoseconds per operation.
pub fn ns_per(duration: Duration, operations: usize) -> f64 {
    duration.as_secs_f64() * 1e9 / operations.max(1) as f64
}

/// Latency of one dependent load from DRAM: a pointer chase through a random cycle over an
/// array larger than the last-level cache.
pub fn dram_latency_ns(bytes: usize, hops: usize) -> f64 {
    let n = (bytes / 4).max(2);
    let mut next: Vec<u32> = (0..n as u32).collect();
    // Sattolo's algorithm: a uniformly random single cycle.
    let mut rng = StdRng::seed_from_u64(11);
    for i in (1..n).rev() {
        let j = rng.random_range(0..i);
        next.swap(i, j);
    }
    let chase = || {
        let mut at = 0u32;
        for _ in 0..hops {
            at = next[at as usize];
        }
        at
    };
    chase();
    ns_per(best_of(3, chase), hops)
}
