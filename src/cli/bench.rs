//! `omendb bench`: runs the benchmark suite (`omen-bench all`) and writes `bench-report/`.
//!
//! The suite lives in its own binary, `omen-bench`, because its baselines (RocksDB's C++
//! library, DuckDB through Python) must not become dependencies of the database: this
//! command finds that binary next to its own (a `cargo build --release --workspace` puts
//! both in `target/release/`) and runs it with the terminal attached.

use std::path::PathBuf;
use std::process::Command;

use super::{BenchArgs, CliError};

/// Runs `omen-bench all` with the given scale and output directory.
pub fn run(args: BenchArgs) -> Result<(), CliError> {
    let bench = omen_bench_path()?;
    let scale = match args.scale {
        super::BenchScale::Small => "small",
        super::BenchScale::Full => "full",
    };
    let status = Command::new(&bench)
        .arg("all")
        .args(["--scale", scale])
        .arg("--out")
        .arg(&args.out)
        .status()
        .map_err(|source| CliError::Io {
            op: format!("run {}", bench.display()),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "the benchmark suite failed ({status}); what ran is in {}",
            args.out.join("README.md").display()
        )))
    }
}

/// `omen-bench` next to this executable.
fn omen_bench_path() -> Result<PathBuf, CliError> {
    let exe = std::env::current_exe().map_err(|source| CliError::Io {
        op: "find the omendb executable".to_string(),
        source,
    })?;
    let name = format!("omen-bench{}", std::env::consts::EXE_SUFFIX);
    let candidate = exe.with_file_name(&name);
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(CliError::Usage(format!(
            "omendb bench runs the benchmark binary {name}, which is not next to {} \
             (it is built separately so that its RocksDB and DuckDB baselines stay out of the \
             database): build it with `cargo build --release -p omen-bench`, then run \
             `target/release/omendb bench` (or `cargo run --release -- bench`)",
            exe.display()
        )))
    }
}
