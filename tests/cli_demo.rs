//! `omendb demo` at a small size: loads, runs the mixed workload, prints per-kind routes and
//! latencies and the tier statistics, and its summary confirms analytics saw every write.

// The binary exists only with the `cli` feature (`cargo test --no-default-features` skips this).
#![allow(clippy::unwrap_used)]

mod cli_support;

use std::process::Command;

use cli_support::{OMENDB, TempDir};

#[test]
fn demo_runs_and_its_summary_checks_freshness() {
    let dir = TempDir::new("demo");
    for run in 0..2 {
        // Twice on the same directory: the demo replaces its tables.
        let output = Command::new(OMENDB)
            .args([
                "demo",
                "--rows",
                "3000",
                "--ops",
                "60",
                "--no-progress",
                "--dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(output.status.success(), "run {run}: {stdout}\n{stderr}");
        assert!(
            stdout.contains(
                "demo complete: orders=3000 customers=300 reads=60 updates=60 analytics=3 \
                 fresh=yes"
            ),
            "{stdout}"
        );
        for kind in ["point read", "update", "analytical"] {
            let line = stdout.lines().find(|l| l.starts_with(kind)).unwrap();
            assert!(line.contains("p50=") && line.contains("p99=") && line.contains("route: "));
        }
        assert!(stdout.contains("Parquet tier: "), "{stdout}");
    }
}
