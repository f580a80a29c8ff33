//! `omendb bench` runs the separate `omen-bench` binary; without it, it says how to build it.

mod cli_support;

use cli_support::TempDir;

#[test]
fn bench_without_the_benchmark_binary_says_how_to_build_it() {
    let dir = TempDir::new("cli-bench");
    // A copy of omendb with no omen-bench next to it.
    std::fs::create_dir_all(&dir.0).expect("create the test directory");
    let exe = dir.0.join("omendb");
    std::fs::copy(env!("CARGO_BIN_EXE_omendb"), &exe).expect("copy the binary");
    let output = std::process::Command::new(&exe)
        .args(["bench", "--scale", "small", "--out"])
        .arg(dir.0.join("report"))
        .output()
        .expect("run omendb bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cargo build --release -p omen-bench"),
        "unhelpful error: {stderr}"
    );
    assert!(!dir.0.join("report").exists(), "nothing ran");
}

#[test]
fn bench_rejects_an_unknown_scale() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_omendb"))
        .args(["bench", "--scale", "huge"])
        .output()
        .expect("run omendb bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("small") && stderr.contains("full"),
        "{stderr}"
    );
}
