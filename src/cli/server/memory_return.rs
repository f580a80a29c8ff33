//! Gives the memory that finished queries freed back to the system.
//!
//! glibc's `malloc` keeps freed memory in its arenas for reuse: after a hash join that failed
//! at its memory limit, the idle server held 0.95 to 2.9 GB, of which `malloc_trim(0)` gave
//! back all but 105 MB. A thread of the server checks once a second how much freed memory
//! `malloc` holds and, when it has grown by [`TRIM_GROWTH`] since the last check that
//! trimmed, returns it (`malloc_trim`).
//!
//! Invariant: freed memory beyond [`TRIM_GROWTH`] is returned within about a second; memory in
//! use is never touched (`malloc_trim` only releases free pages).

#![cfg_attr(
    all(target_os = "linux", target_env = "gnu"),
    expect(
        unsafe_code,
        reason = "glibc's mallinfo2 and malloc_trim are C functions"
    )
)]

use std::time::Duration;

/// Freed memory held by `malloc` that is worth returning.
const TRIM_GROWTH: usize = 64 << 20;

/// How often the freed memory is looked at.
const PERIOD: Duration = Duration::from_secs(1);

/// Starts the thread (see the module docs); it runs as long as the process.
pub fn spawn() {
    let started = std::thread::Builder::new()
        .name("omendb-memory-return".into())
        .spawn(|| {
            let mut trimmed_at = 0;
            loop {
                std::thread::sleep(PERIOD);
                trimmed_at = return_freed(trimmed_at);
            }
        });
    if let Err(error) = started {
        tracing::warn!(%error, "could not start the thread that returns freed memory");
    }
}

/// Returns freed memory if `malloc` holds [`TRIM_GROWTH`] more of it than `trimmed_at`;
/// answers the amount to compare with next time.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_freed(trimmed_at: usize) -> usize {
    let free = freed_bytes();
    if free > trimmed_at.saturating_add(TRIM_GROWTH) {
        // SAFETY: `malloc_trim` takes no pointers and is thread-safe (it locks each arena).
        unsafe { libc::malloc_trim(0) };
        return free;
    }
    // Reused memory is resident again: later frees count from here.
    free.min(trimmed_at)
}

/// The bytes `malloc` holds free in its arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn freed_bytes() -> usize {
    // SAFETY: `mallinfo2` takes no arguments, is thread-safe and returns a plain struct.
    let info = unsafe { libc::mallinfo2() };
    info.fordblks
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_freed(trimmed_at: usize) -> usize {
    trimmed_at
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn freed_small_allocations_are_counted_and_returned() {
        // Many small blocks come from an arena (large ones are mapped and unmapped apart).
        let blocks: Vec<Vec<u8>> = (0..1_000_000).map(|i| vec![i as u8; 120]).collect();
        let before = freed_bytes();
        drop(blocks);
        let after = freed_bytes();
        assert!(after > before + TRIM_GROWTH, "freed: {before} -> {after}");
        let next = return_freed(before);
        assert!(next > before + TRIM_GROWTH, "trimmed at {next}");
        assert!(return_freed(next) <= next, "nothing new freed: no trim");
    }
}
