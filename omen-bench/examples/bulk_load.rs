//! Times ALEX bulk loads alone, for profiling: `cargo run --release -p omen-bench --example
//! bulk_load -- [keys] [distribution]`.

use std::time::Instant;

use omen_alex::{AlexConfig, AlexMap};
use omen_bench::datasets::{Dataset, Distribution};

fn main() {
    let keys = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let only = std::env::args().nth(2);
    for distribution in Distribution::ALL {
        if only
            .as_deref()
            .is_some_and(|name| name != distribution.name())
        {
            continue;
        }
        let data = Dataset::generate(distribution, keys, 0, 42);
        let pairs: Vec<(u64, u64)> = data.loaded.iter().map(|&k| (k, k)).collect();
        let modes: &[bool] = if std::env::args().nth(3).is_some() {
            &[true]
        } else {
            &[true, false]
        };
        for &sampling in modes {
            let start = Instant::now();
            let map = AlexMap::from_sorted_with_config(
                AlexConfig::default().with_sampling(sampling),
                pairs.iter().copied(),
            );
            let elapsed = start.elapsed();
            match map {
                Ok(map) => println!(
                    "{} sampling={sampling}: {elapsed:?} {:?}",
                    distribution.name(),
                    map.stats()
                ),
                Err(error) => println!("{}: {error}", distribution.name()),
            }
        }
    }
}
