//! Criterion benchmarks of point lookups, dependent chains, batched lookups and 100-key
//! range scans: `AlexMap` against `BTreeMap` and RocksDB on the four key distributions.
//! `OMEN_BENCH_KEYS` sets the number of keys (default 10,000,000, as in the report).
//! The full report with bulk loads, inserts and memory is `omen-bench alex`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use omen_alex::AlexMap;
use omen_bench::datasets::{Dataset, Distribution};
use omen_bench::rocks::RocksBaseline;

fn keys_from_env() -> usize {
    std::env::var("OMEN_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

fn lookups(c: &mut Criterion) {
    let n = keys_from_env();
    for distribution in Distribution::ALL {
        let data = Dataset::generate(distribution, n, 0, 42);
        let pairs = data.chained_pairs(43);
        let probes = data.probes(1024, 44);
        let start = pairs[0].0;
        let alex = match AlexMap::from_sorted(pairs.iter().copied()) {
            Ok(map) => map,
            Err(error) => panic!("bulk load failed: {error}"),
        };
        let btree: BTreeMap<u64, u64> = pairs.iter().copied().collect();
        let dir = std::env::temp_dir().join(format!("omen-criterion-{}", std::process::id()));
        let rocks = match RocksBaseline::bulk_load(&dir, &pairs) {
            Ok(db) => db,
            Err(error) => panic!("RocksDB bulk load failed: {error}"),
        };
        rocks.warm();

        let mut group = c.benchmark_group(format!("lookup/{}", distribution.name()));
        group.throughput(criterion::Throughput::Elements(probes.len() as u64));
        group.bench_function("alex", |b| {
            b.iter(|| {
                probes
                    .iter()
                    .map(|&k| alex.get(k).copied().unwrap_or(0))
                    .sum::<u64>()
            })
        });
        group.bench_function("alex_get_many", |b| {
            b.iter(|| {
                alex.get_many(&probes)
                    .into_iter()
                    .flatten()
                    .copied()
                    .sum::<u64>()
            })
        });
        group.bench_function("btreemap", |b| {
            b.iter(|| {
                probes
                    .iter()
                    .map(|k| btree.get(k).copied().unwrap_or(0))
                    .sum::<u64>()
            })
        });
        group.bench_function("rocksdb", |b| {
            b.iter(|| {
                probes
                    .iter()
                    .map(|&k| rocks.get(k).unwrap_or(0))
                    .sum::<u64>()
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("chain/{}", distribution.name()));
        group.throughput(criterion::Throughput::Elements(1024));
        let mut key = start;
        group.bench_function("alex", |b| {
            b.iter(|| {
                for _ in 0..1024 {
                    key = alex.get(key).copied().unwrap_or(start);
                }
                black_box(key)
            })
        });
        group.bench_function("btreemap", |b| {
            b.iter(|| {
                for _ in 0..1024 {
                    key = btree.get(&key).copied().unwrap_or(start);
                }
                black_box(key)
            })
        });
        group.bench_function("rocksdb", |b| {
            b.iter(|| {
                for _ in 0..1024 {
                    key = rocks.get(key).unwrap_or(start);
                }
                black_box(key)
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("scan100/{}", distribution.name()));
        let starts = &probes[..64];
        group.throughput(criterion::Throughput::Elements(starts.len() as u64));
        group.bench_function("alex", |b| {
            b.iter(|| {
                starts
                    .iter()
                    .map(|&k| alex.range(k..).take(100).map(|(_, v)| *v).sum::<u64>())
                    .sum::<u64>()
            })
        });
        group.bench_function("btreemap", |b| {
            b.iter(|| {
                starts
                    .iter()
                    .map(|&k| btree.range(k..).take(100).map(|(_, v)| *v).sum::<u64>())
                    .sum::<u64>()
            })
        });
        group.bench_function("rocksdb", |b| {
            b.iter(|| starts.iter().map(|&k| rocks.scan(k, 100)).sum::<u64>())
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = lookups
}
criterion_main!(benches);
