//! The ALEX report: `AlexMap` against `BTreeMap` and RocksDB on the four distributions, every
//! figure measured in the same run, written as Markdown with SVG plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use omen_alex::{AlexConfig, AlexMap};

use crate::alloc_counter::CountingAllocator;
use crate::datasets::{Dataset, Distribution};
use crate::measure::{best_of, dram_latency_ns, ns_per};
use crate::plot;
use crate::rocks::RocksBaseline;

/// What to run.
#[derive(Clone, Debug)]
pub struct AlexReportOptions {
    /// Keys bulk loaded per distribution.
    pub keys: usize,
    /// Keys inserted afterwards.
    pub inserts: usize,
    /// Lookups per measurement.
    pub lookups: usize,
    /// 100-key range scans per measurement.
    pub scans: usize,
    /// Distributions to run.
    pub distributions: Vec<Distribution>,
    /// Directory for the report and plots.
    pub out: PathBuf,
    /// Scratch directory for RocksDB.
    pub scratch: PathBuf,
}

/// Figures of one structure on one distribution. Missing figures are NaN.
#[derive(Clone, Debug)]
pub struct Figures {
    /// "ALEX", "BTreeMap" or "RocksDB".
    pub structure: &'static str,
    /// Bulk load, seconds.
    pub load_s: f64,
    /// ALEX only: bulk load without sampled model fitting, seconds.
    pub load_unsampled_s: f64,
    /// Independent random lookups, ns each.
    pub lookup_ns: f64,
    /// ALEX only: `get_many` in batches, ns per key.
    pub get_many_ns: f64,
    /// Dependent chain of lookups, ns each.
    pub chain_ns: f64,
    /// One 100-key range scan, ns.
    pub scan_ns: f64,
    /// Inserts per second into the loaded structure.
    pub inserts_per_s: f64,
    /// Bytes per key after the bulk load.
    pub bytes_per_key_loaded: f64,
    /// Bytes per key after the inserts.
    pub bytes_per_key_final: f64,
}

impl Figures {
    fn new(structure: &'static str) -> Self {
        Self {
            structure,
            load_s: f64::NAN,
            load_unsampled_s: f64::NAN,
            lookup_ns: f64::NAN,
            get_many_ns: f64::NAN,
            chain_ns: f64::NAN,
            scan_ns: f64::NAN,
            inserts_per_s: f64::NAN,
            bytes_per_key_loaded: f64::NAN,
            bytes_per_key_final: f64::NAN,
        }
    }
}

/// All figures of one distribution.
pub struct DistributionResult {
    /// Which keys.
    pub distribution: Distribution,
    /// ALEX, BTreeMap, RocksDB, in that order.
    pub figures: Vec<Figures>,
    /// ALEX tree shape after load and after inserts.
    pub alex_shape: String,
}

fn step(bar: &ProgressBar, message: impl Into<String>) {
    bar.set_message(message.into());
    bar.inc(1);
}

/// Runs every measurement and writes `alex.md` plus plots to `options.out`.
pub fn run(options: &AlexReportOptions) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(&options.out)?;
    let bar = ProgressBar::new((options.distributions.len() * 12 + 1) as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    step(&bar, "measuring DRAM latency (pointer chase over 1 GiB)");
    let dram_ns = dram_latency_ns(1 << 30, 5_000_000);
    let mut results = Vec::new();
    for &distribution in &options.distributions {
        results.push(run_distribution(distribution, options, &bar)?);
    }
    bar.finish_with_message("done");
    let markdown = render(options, dram_ns, &results);
    let path = options.out.join("alex.md");
    std::fs::write(&path, markdown)?;
    plot::write_alex_plots(&options.out, &results).map_err(std::io::Error::other)?;
    Ok(path)
}

fn run_distribution(
    distribution: Distribution,
    options: &AlexReportOptions,
    bar: &ProgressBar,
) -> std::io::Result<DistributionResult> {
    let name = distribution.name();
    step(
        bar,
        format!(
            "{name}: generating {} + {} keys",
            options.keys, options.inserts
        ),
    );
    let data = Dataset::generate(distribution, options.keys, options.inserts, 42);
    let pairs = data.chained_pairs(43);
    let probes = data.probes(options.lookups, 44);
    let scan_starts = data.probes(options.scans, 45);
    let n = pairs.len();

    // ALEX.
    let mut alex = Figures::new("ALEX");
    step(bar, format!("{name}: ALEX bulk load without sampling"));
    let unsampled_config = AlexConfig::default().with_sampling(false);
    // Every bulk load gets its own copy of the pairs, made before the clock starts, as a
    // caller handing over a Vec would.
    let owned = pairs.clone();
    let start = Instant::now();
    let unsampled =
        AlexMap::from_sorted_with_config(unsampled_config, owned).map_err(std::io::Error::other)?;
    alex.load_unsampled_s = start.elapsed().as_secs_f64();
    drop(black_box(unsampled));
    step(bar, format!("{name}: ALEX bulk load with sampling"));
    // Bulk loads are timed twice and the faster counts (the first run also warms the
    // allocator, so fresh-page zeroing by the kernel does not dominate).
    let owned = pairs.clone();
    let start = Instant::now();
    let warm_up = AlexMap::from_sorted(owned).map_err(std::io::Error::other)?;
    let first_load = start.elapsed();
    drop(warm_up);
    // Measured before the copy: the load consumes it, so the difference is the structure.
    let before = CountingAllocator::live_bytes();
    let owned = pairs.clone();
    let start = Instant::now();
    let mut map = AlexMap::from_sorted(owned).map_err(std::io::Error::other)?;
    alex.load_s = start.elapsed().min(first_load).as_secs_f64();
    alex.bytes_per_key_loaded =
        CountingAllocator::live_bytes().saturating_sub(before) as f64 / n as f64;
    let shape_loaded = map.stats();
    step(bar, format!("{name}: ALEX lookups"));
    alex.lookup_ns = ns_per(
        best_of(3, || {
            probes
                .iter()
                .map(|&k| map.get(k).copied().unwrap_or(0))
                .fold(0u64, u64::wrapping_add)
        }),
        probes.len(),
    );
    alex.get_many_ns = ns_per(
        best_of(3, || {
            probes
                .chunks(4096)
                .map(|c| {
                    map.get_many(c)
                        .into_iter()
                        .flatten()
                        .fold(0u64, |a, v| a.wrapping_add(*v))
                })
                .fold(0u64, u64::wrapping_add)
        }),
        probes.len(),
    );
    alex.chain_ns = ns_per(
        best_of(3, || {
            chase(|k| map.get(k).copied(), pairs[0].0, probes.len())
        }),
        probes.len(),
    );
    alex.scan_ns = ns_per(
        best_of(3, || {
            scan_starts
                .iter()
                .map(|&k| {
                    map.range(k..)
                        .take(100)
                        .fold(0u64, |a, (_, v)| a.wrapping_add(*v))
                })
                .fold(0u64, u64::wrapping_add)
        }),
        scan_starts.len(),
    );
    step(bar, format!("{name}: ALEX inserts"));
    let start = Instant::now();
    for &k in &data.inserts {
        map.insert(k, k);
    }
    alex.inserts_per_s = data.inserts.len() as f64 / start.elapsed().as_secs_f64();
    alex.bytes_per_key_final =
        CountingAllocator::live_bytes().saturating_sub(before) as f64 / map.len() as f64;
    let shape_final = map.stats();
    drop(map);

    // BTreeMap.
    let mut btree = Figures::new("BTreeMap");
    step(bar, format!("{name}: BTreeMap"));
    let owned = pairs.clone();
    let start = Instant::now();
    let warm_up: BTreeMap<u64, u64> = owned.into_iter().collect();
    let first_load = start.elapsed();
    drop(warm_up);
    let before = CountingAllocator::live_bytes();
    let owned = pairs.clone();
    let start = Instant::now();
    let mut tree: BTreeMap<u64, u64> = owned.into_iter().collect();
    btree.load_s = start.elapsed().min(first_load).as_secs_f64();
    btree.bytes_per_key_loaded =
        CountingAllocator::live_bytes().saturating_sub(before) as f64 / n as f64;
    btree.lookup_ns = ns_per(
        best_of(3, || {
            probes
                .iter()
                .map(|k| tree.get(k).copied().unwrap_or(0))
                .fold(0u64, u64::wrapping_add)
        }),
        probes.len(),
    );
    btree.chain_ns = ns_per(
        best_of(3, || {
            chase(|k| tree.get(&k).copied(), pairs[0].0, probes.len())
        }),
        probes.len(),
    );
    btree.scan_ns = ns_per(
        best_of(3, || {
            scan_starts
                .iter()
                .map(|&k| {
                    tree.range(k..)
                        .take(100)
                        .fold(0u64, |a, (_, v)| a.wrapping_add(*v))
                })
                .fold(0u64, u64::wrapping_add)
        }),
        scan_starts.len(),
    );
    let start = Instant::now();
    for &k in &data.inserts {
        tree.insert(k, k);
    }
    btree.inserts_per_s = data.inserts.len() as f64 / start.elapsed().as_secs_f64();
    btree.bytes_per_key_final =
        CountingAllocator::live_bytes().saturating_sub(before) as f64 / tree.len() as f64;
    drop(tree);

    // RocksDB.
    let mut rocks = Figures::new("RocksDB");
    step(bar, format!("{name}: RocksDB bulk load (SST ingest)"));
    let dir = options.scratch.join(format!("rocks-{name}"));
    let start = Instant::now();
    let db = RocksBaseline::bulk_load(&dir, &pairs).map_err(std::io::Error::other)?;
    rocks.load_s = start.elapsed().as_secs_f64();
    step(bar, format!("{name}: RocksDB warm-up and lookups"));
    db.warm();
    rocks.bytes_per_key_loaded = db.memory_bytes() as f64 / n as f64;
    let rocks_lookups = probes.len().min(1_000_000);
    rocks.lookup_ns = ns_per(
        best_of(2, || {
            probes[..rocks_lookups]
                .iter()
                .map(|&k| db.get(k).unwrap_or(0))
                .fold(0u64, u64::wrapping_add)
        }),
        rocks_lookups,
    );
    rocks.chain_ns = ns_per(
        best_of(2, || chase(|k| db.get(k), pairs[0].0, rocks_lookups)),
        rocks_lookups,
    );
    rocks.scan_ns = ns_per(
        best_of(2, || {
            scan_starts
                .iter()
                .map(|&k| db.scan(k, 100))
                .fold(0u64, u64::wrapping_add)
        }),
        scan_starts.len(),
    );
    step(bar, format!("{name}: RocksDB inserts"));
    let start = Instant::now();
    for &k in &data.inserts {
        db.put(k, k).map_err(std::io::Error::other)?;
    }
    rocks.inserts_per_s = data.inserts.len() as f64 / start.elapsed().as_secs_f64();
    rocks.bytes_per_key_final = db.memory_bytes() as f64 / (n + data.inserts.len()) as f64;
    drop(db);
    step(bar, format!("{name}: done"));

    let alex_shape = format!(
        "after load: depth {}, {} internal / {} data nodes, avg search distance {:.2} (max {}), index {:.1} MiB; \
         after inserts: depth {}, {} internal / {} data nodes, avg search distance {:.2} (max {}), index {:.1} MiB",
        shape_loaded.depth,
        shape_loaded.internal_nodes,
        shape_loaded.data_nodes,
        shape_loaded.avg_search_distance,
        shape_loaded.max_search_distance,
        shape_loaded.index_bytes as f64 / 1048576.0,
        shape_final.depth,
        shape_final.internal_nodes,
        shape_final.data_nodes,
        shape_final.avg_search_distance,
        shape_final.max_search_distance,
        shape_final.index_bytes as f64 / 1048576.0,
    );
    Ok(DistributionResult {
        distribution,
        figures: vec![alex, btree, rocks],
        alex_shape,
    })
}

/// Follows values as keys `hops` times from `start`: each lookup waits for the previous one.
fn chase(mut get: impl FnMut(u64) -> Option<u64>, start: u64, hops: usize) -> u64 {
    let mut key = start;
    for _ in 0..hops {
        match get(key) {
            Some(next) => key = next,
            None => return u64::MAX,
        }
    }
    key
}

fn cell(value: f64, decimals: usize) -> String {
    if value.is_nan() {
        "–".to_string()
    } else {
        format!("{value:.decimals$}")
    }
}

fn render(options: &AlexReportOptions, dram_ns: f64, results: &[DistributionResult]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# ALEX vs BTreeMap vs RocksDB\n");
    let _ = writeln!(
        md,
        "Generated by `cargo run --release -p omen-bench -- alex --keys {}` on {} ({} CPUs). \
         {} keys bulk loaded per distribution, 8-byte values, then {} inserts; {} random lookups, \
         {} range scans of 100 keys. All figures from the same run. One DRAM miss (pointer chase \
         over 1 GiB): **{dram_ns:.0} ns**.\n",
        options.keys,
        std::env::consts::ARCH,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        options.keys,
        options.inserts,
        options.lookups,
        options.scans,
    );
    let _ = writeln!(
        md,
        "![lookups](lookup.svg) ![inserts](inserts.svg) ![memory](bytes_per_key.svg)\n"
    );
    for result in results {
        let _ = writeln!(md, "## {}\n", result.distribution.name());
        let _ = writeln!(
            md,
            "| structure | bulk load s | lookup ns | get_many ns/key | chain ns | 100-key scan ns | inserts/s | bytes/key loaded | bytes/key after inserts |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for f in &result.figures {
            let load = if f.load_unsampled_s.is_nan() {
                cell(f.load_s, 3)
            } else {
                format!(
                    "{} (unsampled {})",
                    cell(f.load_s, 3),
                    cell(f.load_unsampled_s, 3)
                )
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                f.structure,
                load,
                cell(f.lookup_ns, 1),
                cell(f.get_many_ns, 1),
                cell(f.chain_ns, 1),
                cell(f.scan_ns, 0),
                cell(f.inserts_per_s, 0),
                cell(f.bytes_per_key_loaded, 1),
                cell(f.bytes_per_key_final, 1),
            );
        }
        let (alex, btree, rocks) = (&result.figures[0], &result.figures[1], &result.figures[2]);
        let _ = writeln!(
            md,
            "\nRatios: lookups {:.1}x faster than RocksDB and {:.2}x faster than BTreeMap; get_many {:.2}x single lookups; \
             chain {:.2}x one DRAM miss; inserts {:.2}x BTreeMap's rate; bytes/key after inserts {:.2}x BTreeMap's.\n",
            rocks.lookup_ns / alex.lookup_ns,
            btree.lookup_ns / alex.lookup_ns,
            alex.lookup_ns / alex.get_many_ns,
            alex.chain_ns / dram_ns,
            alex.inserts_per_s / btree.inserts_per_s,
            alex.bytes_per_key_final / btree.bytes_per_key_final,
        );
        let _ = writeln!(md, "ALEX shape: {}\n", result.alex_shape);
    }
    let _ = writeln!(
        md,
        "Method: lookups, chains and scans report the best of 3 runs (RocksDB: 2); bulk loads of ALEX and BTreeMap the best of 2, from an owned Vec of pairs. RocksDB data was \
         ingested as one SST file, then read once to warm a block cache sized for all of it (bloom \
         filters 10 bits/key, no compression); RocksDB inserts skip the WAL, as the in-memory \
         structures have none. Heap pages: {}. Bytes per key count live heap bytes (a counting global allocator) \
         for ALEX and BTreeMap; for RocksDB, block cache usage plus table readers and memtables.",
        match std::env::var("GLIBC_TUNABLES") {
            Ok(tunables) if tunables.contains("hugetlb=1") =>
                "transparent huge pages for every structure (GLIBC_TUNABLES=glibc.malloc.hugetlb=1)"
                    .to_string(),
            _ => "4 KiB (run without huge pages)".to_string(),
        }
    );
    md
}

/// Default scratch directory for RocksDB files.
pub fn default_scratch() -> PathBuf {
    std::env::temp_dir().join(format!("omen-bench-{}", std::process::id()))
}

/// Default report directory.
pub fn default_out() -> PathBuf {
    Path::new("bench-report").to_path_buf()
}
