//! Support for `mp`'s integration tests: a watchdog so no test can hang.

use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

/// Aborts the whole test binary (failing the test) if not dropped within `limit`.
///
/// `cargo nextest` enforces its own limits too (`.config/nextest.toml`); this one also holds
/// under plain `cargo test`.
#[must_use = "the watchdog is disarmed when dropped"]
pub struct Watchdog {
    _disarm: mpsc::Sender<()>,
}

/// Starts a watchdog for the current test.
pub fn watchdog(limit: Duration) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    let name = std::thread::current().name().unwrap_or("test").to_owned();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            // Straight to the process's stderr: `eprintln!` would go to the test harness's
            // capture of this thread, which the abort throws away.
            let _ = writeln!(
                std::io::stderr(),
                "watchdog: `{name}` did not finish within {limit:?}; aborting"
            );
            std::process::abort();
        }
    });
    Watchdog { _disarm: tx }
}
