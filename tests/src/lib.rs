//! Support for `mp`'s integration tests: a watchdog so no test can hang.

pub mod public_worker;

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

/// Whether process `pid` has ended: no longer exists, or is a zombie waiting to be reaped.
pub fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // `pid (comm) state ...`: the comm may hold spaces, so read after the last ')'.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// A value whose encoding always fails with "this value refuses to be encoded".
#[derive(Debug)]
pub struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

impl<'de> serde::Deserialize<'de> for Unencodable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unencodable)
    }
}
