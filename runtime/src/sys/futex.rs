//! Waiting on a 32-bit word in shared memory: futexes, or with the `portable-sync` feature the
//! parking tables of `park.rs`.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::thread::futex;

use super::poll::timespec;
use super::shm::PARKING;

/// Blocks until `word` no longer holds `expected`, a wake arrives, or `timeout` passes.
/// The word may live in memory shared between processes (no `FUTEX_PRIVATE_FLAG`).
/// Spurious returns are allowed: callers re-check their condition.
///
/// The word must live in a [`SharedMapping`] made by `create` or `open` (with the
/// `portable-sync` feature, the mapping's parking table serves the wait; see `park.rs`).
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    if PARKING {
        return super::park::wait(word, expected, timeout);
    }
    let ts = timeout.map(timespec);
    // EAGAIN (value changed), ETIMEDOUT and EINTR all mean "re-check".
    let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
}

/// Wakes up to `n` waiters blocked on `word` in any process (`u32::MAX`: all of them).
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) {
    if PARKING {
        return super::park::wake(word, n);
    }
    // The kernel reads the count as a C `int`: `u32::MAX` would be -1, which wakes just one.
    let n = n.min(i32::MAX as u32);
    let _ = futex::wake(word, futex::Flags::empty(), n);
}
