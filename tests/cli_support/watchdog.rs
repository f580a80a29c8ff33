//! A per-binary time limit for the test suite, shared by every crate's integration tests
//! (included with `#[path]`): a hang fails the run instead of holding it until CI's own
//! limit.

use std::time::Duration;

/// How long one test binary may run (the slowest takes about two minutes).
pub const WATCHDOG: Duration = Duration::from_secs(15 * 60);

/// Ends this test process with a failure once it has run for [`WATCHDOG`] (started once, by
/// the first helper that a test uses).
pub fn watchdog() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(|| {
            std::thread::sleep(WATCHDOG);
            eprintln!(
                "this test binary ran for more than {} s: a test hangs; failing the run",
                WATCHDOG.as_secs()
            );
            std::process::exit(101);
        });
    });
}
