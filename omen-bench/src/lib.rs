//! `omen-bench`: OmenDB's benchmarks and the report that reproduces its headline figures.
//!
//! Baselines (RocksDB, `BTreeMap`) live here and nowhere else, so library users never build
//! them. Every report compares structures within one run on one machine, as ratios, because
//! the machines are shared and absolute timings drift.

pub mod alloc_counter;
pub mod datasets;
pub mod measure;
pub mod plot;
pub mod report;
pub mod rocks;
