//! Waiting on a 32-bit word in shared memory with futexes: `sys`'s `wait` module on Linux
//! (`park.rs` takes its place with the `portable-sync` feature).

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::thread::futex;

use super::poll::timespec;

/// Blocks until `word` no longer holds `expected`, a wake arrives, or `timeout` passes.
/// The word may live in memory shared between processes (no `FUTEX_PRIVATE_FLAG`).
/// Spurious returns are allowed: callers re-check their condition.
///
/// The word must live in a [`SharedMapping`](super::SharedMapping) made by `create` or `open`
/// (what `park.rs`, the portable twin, needs; a futex takes any word).
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(timespec);
    // EAGAIN (value changed), ETIMEDOUT and EINTR all mean "re-check".
    let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
}

/// Wakes up to `n` waiters blocked on `word` in any process (`u32::MAX`: all of them).
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    // The kernel reads the count as a C `int`: `u32::MAX` would be -1, which wakes just one.
    let n = n.min(i32::MAX as u32);
    let _ = futex::wake(word, futex::Flags::empty(), n);
}
