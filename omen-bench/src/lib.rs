//! `omen-bench`: OmenDB's benchmarks and the reports that reproduce its headline figures
//! (`alex`: the learned index; `wal`: the write-ahead log; `replicator`: WAL to Parquet;
//! `db` and `sql_bench`: the facade; `suite`: all of them with an index).
//!
//! Baselines (RocksDB, `BTreeMap`) live here and nowhere else, so library users never build
//! them. Every report compares structures within one run on one machine, as ratios, because
//! the machines are shared and absolute timings drift.

pub mod alloc_counter;
pub mod datasets;
pub mod db_bench;
pub mod db_report;
pub mod db_rocks;
pub mod measure;
pub mod plot;
pub mod replicator_bench;
pub mod replicator_report;
pub mod replicator_workload;
pub mod report;
pub mod rocks;
pub mod sql_bench;
pub mod suite;
pub mod usage;
pub mod wal_bench;
pub mod wal_report;
