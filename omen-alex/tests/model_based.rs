//! Model-based property tests: random sequences of insert/remove/get/range/bulk_load run
//! against `AlexMap` and `std::collections::BTreeMap`, on sequential, reverse, uniform,
//! lognormal, clustered, extreme and churning keys; every result must agree, and the tree must pass
//! `check_invariants()` after each sequence. Each distribution runs with the default
//! configuration and with a tiny one (small nodes, fanout 4) that forces expansions, sideways
//! and downward splits within a few hundred operations.

use std::collections::BTreeMap;
use std::ops::Bound;

use omen_alex::{AlexConfig, AlexMap};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
enum Dist {
    Sequential,
    Reverse,
    Uniform,
    Lognormal,
    Clustered,
    Extreme,
    /// Few distinct keys, inserted and removed again and again.
    Churn,
}

/// Turns random bits into a key of the distribution; `step` is the operation's index.
fn key_of(dist: Dist, raw: u64, step: usize) -> i64 {
    match dist {
        Dist::Sequential => step as i64 * 2,
        Dist::Reverse => -(step as i64) * 2,
        Dist::Uniform => raw as i64,
        Dist::Lognormal => {
            // Box-Muller from two 26-bit uniforms: floor(exp(N(0, 2)) * 1e9), as in the paper.
            let u1 = ((raw & 0x3ff_ffff) as f64 + 1.0) / (0x400_0000 as f64 + 1.0);
            let u2 = ((raw >> 26) & 0x3ff_ffff) as f64 / 0x400_0000 as f64;
            let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            ((normal * 2.0).exp() * 1e9).min(9.0e18) as i64
        }
        Dist::Clustered => {
            let cluster = (raw % 6) as i64;
            cluster * (1 << 58) - (1 << 60) + ((raw >> 8) % 2_000) as i64
        }
        Dist::Churn => (raw % 512) as i64 * 3,
        Dist::Extreme => match raw % 6 {
            0 => i64::MIN + (raw >> 8) as i64 % 50,
            1 => i64::MAX - (raw >> 8) as i64 % 50,
            2 => (raw >> 8) as i64 % 100 - 50,
            3 => i64::MIN,
            4 => i64::MAX,
            _ => ((raw >> 8) as i64 % 7) << 61,
        },
    }
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u64),
    /// Remove an existing key (picked by index) or, for odd `raw`, an absent one.
    Remove(u64),
    Get(u64),
    Range(u64, u64, u8),
    BulkLoad(u64, u16),
    FirstLast,
    /// Remove up to `len` consecutive keys from an existing one, ascending or descending:
    /// the pattern of `DELETE ... WHERE id BETWEEN a AND b`.
    RemoveRun(u64, u16, bool),
    /// Insert again a key removed earlier (a gap may still hold it).
    Reinsert(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => any::<u64>().prop_map(Op::Insert),
        3 => any::<u64>().prop_map(Op::Remove),
        3 => any::<u64>().prop_map(Op::Get),
        2 => (any::<u64>(), any::<u64>(), 0u8..4).prop_map(|(a, b, kind)| Op::Range(a, b, kind)),
        1 => Just(Op::FirstLast),
        1 => (any::<u64>(), 0u16..600).prop_map(|(seed, n)| Op::BulkLoad(seed, n)),
        1 => (any::<u64>(), 0u16..300, any::<bool>())
            .prop_map(|(raw, n, descending)| Op::RemoveRun(raw, n, descending)),
        2 => any::<u64>().prop_map(Op::Reinsert),
    ]
}

fn tiny_config() -> AlexConfig {
    let mut config = AlexConfig::default();
    config.data_node_slots_max = 64;
    config.fanout_max = 4;
    config
}

/// A key already in the model (so gets and removes hit), or a fresh one of the distribution.
fn existing_or_new(model: &BTreeMap<i64, u64>, dist: Dist, raw: u64, step: usize) -> i64 {
    if raw.is_multiple_of(2) && !model.is_empty() {
        let index = (raw / 2) as usize % model.len();
        *model.keys().nth(index).unwrap_or(&0)
    } else {
        key_of(dist, raw.rotate_left(17), step)
    }
}

fn run(dist: Dist, config: AlexConfig, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut map: AlexMap<i64, u64> = AlexMap::with_config(config).expect("valid config");
    let mut model = BTreeMap::new();
    let mut removed: Vec<i64> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Insert(raw) => {
                let key = key_of(dist, raw, step);
                prop_assert_eq!(
                    map.insert(key, raw),
                    model.insert(key, raw),
                    "insert {}",
                    key
                );
            }
            Op::Remove(raw) => {
                let key = existing_or_new(&model, dist, raw, step);
                prop_assert_eq!(map.remove(key), model.remove(&key), "remove {}", key);
                removed.push(key);
            }
            Op::RemoveRun(raw, len, descending) => {
                if model.is_empty() {
                    continue;
                }
                let first = *model.keys().nth(raw as usize % model.len()).unwrap_or(&0);
                let mut run: Vec<i64> = model
                    .range(first..)
                    .map(|(k, _)| *k)
                    .take(len.into())
                    .collect();
                if descending {
                    run.reverse();
                }
                for key in run {
                    prop_assert_eq!(map.remove(key), model.remove(&key), "remove {}", key);
                    removed.push(key);
                }
            }
            Op::Reinsert(raw) => {
                let Some(&key) = removed.get(raw as usize % removed.len().max(1)) else {
                    continue;
                };
                prop_assert_eq!(
                    map.insert(key, raw),
                    model.insert(key, raw),
                    "reinsert {}",
                    key
                );
                prop_assert_eq!(map.get(key), Some(&raw), "get after reinsert {}", key);
            }
            Op::Get(raw) => {
                let key = existing_or_new(&model, dist, raw, step);
                prop_assert_eq!(map.get(key), model.get(&key), "get {}", key);
                prop_assert_eq!(map.get_many(&[key, key]), vec![model.get(&key); 2]);
            }
            Op::Range(a, b, kind) => {
                let (a, b) = (
                    existing_or_new(&model, dist, a, step),
                    existing_or_new(&model, dist, b, step),
                );
                let (start, end) = match kind {
                    0 => (Bound::Included(a), Bound::Excluded(b)),
                    1 => (Bound::Included(a), Bound::Included(b)),
                    2 => (Bound::Excluded(a), Bound::Unbounded),
                    _ => (Bound::Unbounded, Bound::Included(b)),
                };
                let empty = match (start, end) {
                    (Bound::Included(s), Bound::Included(e)) => s > e,
                    (Bound::Included(s), Bound::Excluded(e)) => s >= e,
                    _ => false,
                };
                let got: Vec<(i64, u64)> = map
                    .range((start, end))
                    .map(|(k, v)| (k, *v))
                    .take(300)
                    .collect();
                let want: Vec<(i64, u64)> = if empty {
                    Vec::new()
                } else {
                    model
                        .range((start, end))
                        .map(|(k, v)| (*k, *v))
                        .take(300)
                        .collect()
                };
                prop_assert_eq!(got, want, "range {:?}..{:?}", start, end);
            }
            Op::FirstLast => {
                prop_assert_eq!(map.first(), model.first_key_value().map(|(k, v)| (*k, v)));
                prop_assert_eq!(map.last(), model.last_key_value().map(|(k, v)| (*k, v)));
            }
            Op::BulkLoad(seed, n) => {
                let mut keys: Vec<i64> = (0..n as usize)
                    .map(|i| {
                        key_of(
                            dist,
                            seed.wrapping_mul(i as u64 + 1).rotate_left(i as u32 % 64),
                            i,
                        )
                    })
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                model = keys.iter().map(|&k| (k, k as u64)).collect();
                map.bulk_load(keys.iter().map(|&k| (k, k as u64)))
                    .expect("sorted unique input");
            }
        }
        prop_assert_eq!(map.len(), model.len());
        if std::env::var_os("ALEX_CHECK_EACH_STEP").is_some() {
            eprintln!("step {step}: {op:?}");
            map.check_invariants();
        }
    }
    map.check_invariants();
    let got: Vec<(i64, u64)> = map.iter().map(|(k, v)| (k, *v)).collect();
    let want: Vec<(i64, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
    prop_assert_eq!(got, want);
    Ok(())
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..800)
}

macro_rules! distribution_tests {
    ($($name:ident: $dist:expr,)*) => {
        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
            $(
                #[test]
                fn $name(ops in ops(), tiny in any::<bool>()) {
                    let config = if tiny { tiny_config() } else { AlexConfig::default() };
                    run($dist, config, &ops)?;
                }
            )*
        }
    };
}

distribution_tests! {
    agrees_with_btreemap_on_sequential_keys: Dist::Sequential,
    agrees_with_btreemap_on_reverse_keys: Dist::Reverse,
    agrees_with_btreemap_on_uniform_keys: Dist::Uniform,
    agrees_with_btreemap_on_lognormal_keys: Dist::Lognormal,
    agrees_with_btreemap_on_clustered_keys: Dist::Clustered,
    agrees_with_btreemap_on_extreme_keys: Dist::Extreme,
    agrees_with_btreemap_on_churning_keys: Dist::Churn,
}
