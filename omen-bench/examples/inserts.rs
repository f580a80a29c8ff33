//! Times 10% inserts into a bulk-loaded ALEX, for profiling: `cargo run --release -p
//! omen-bench --example inserts -- [keys] [distribution]`.

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
        let data = Dataset::generate(distribution, keys, keys / 10, 42);
        let pairs: Vec<(u64, u64)> = data.loaded.iter().map(|&k| (k, k)).collect();
        let mut config = AlexConfig::default();
        if let Some(density) = std::env::var("DENSITY").ok().and_then(|v| v.parse().ok()) {
            config.density_init = density;
            config.density_min = density;
        }
        let Ok(mut map) = AlexMap::from_sorted_with_config(config, pairs) else {
            return;
        };
        let probes = data.probes(2_000_000, 44);
        for _ in 0..2 {
            let start = Instant::now();
            let sum = probes
                .iter()
                .map(|&k| map.get(k).copied().unwrap_or(0))
                .fold(0u64, u64::wrapping_add);
            let lookup = start.elapsed().as_secs_f64() * 1e9 / probes.len() as f64;
            let start = Instant::now();
            let sum2 = probes
                .chunks(4096)
                .map(|c| {
                    map.get_many(c)
                        .into_iter()
                        .flatten()
                        .fold(0u64, |a, v| a.wrapping_add(*v))
                })
                .fold(0u64, u64::wrapping_add);
            let many = start.elapsed().as_secs_f64() * 1e9 / probes.len() as f64;
            println!(
                "{}: lookup {lookup:.1} ns, get_many {many:.1} ns ({})",
                distribution.name(),
                sum == sum2
            );
        }
        let start = Instant::now();
        for &k in &probes {
            map.insert(k, k);
        }
        println!(
            "updates of existing keys: {:.0} ns",
            start.elapsed().as_secs_f64() * 1e9 / probes.len() as f64
        );
        let rounds: usize = std::env::var("ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        eprintln!("inserting");
        let start = Instant::now();
        for round in 0..rounds {
            if round > 0 {
                for &k in &data.inserts {
                    map.remove(k);
                }
            }
            for &k in &data.inserts {
                map.insert(k, k);
            }
        }
        let elapsed = start.elapsed();
        println!(
            "{}: {:.0} ns/insert {:?}",
            distribution.name(),
            elapsed.as_secs_f64() * 1e9 / (data.inserts.len() * rounds) as f64,
            map.stats()
        );
    }
}
