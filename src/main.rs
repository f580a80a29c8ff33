//! The `omendb` binary: `omendb demo`, `omendb sql` (an interactive shell), and `omendb serve`
//! (the PostgreSQL wire protocol). Built with the default-on cargo feature `cli`; see
//! `docs/cli.md`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Counts what each SQL query holds, so that one past its limit fails instead of taking the
/// machine's memory (`omendb::MeteredAllocator`).
#[global_allocator]
static ALLOCATOR: omendb::MeteredAllocator = omendb::MeteredAllocator;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("omendb: {error}");
            ExitCode::FAILURE
        }
    }
}
