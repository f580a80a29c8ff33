//! `omen-bench`: OmenDB's benchmarks and the reports that reproduce its headline figures
//! (`alex`: the learned index; `wal`: the write-ahead log).
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
pub mod wal_bench;
pub mod wal_report;
