//! The lock a `Value` or `Array` may share with other values (Python's `Value(t, v, lock=l)`):
//! a `Lock` or an `RLock` that travels with the value, taken before the value's own lock.
//!
//! Order: the shared lock first, then the value's own lock word (or the array's claim). Every
//! handle of such a value carries the shared lock, so the own lock is only ever contended by
//! the thread that holds the shared one: with an `RLock` one thread may hold guards of several
//! values at once, and a second guard of the *same* value is refused ([`Error::Deadlock`]),
//! which keeps the guards' `&mut` exclusive.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::sync::{Lock, LockGuard, RLock, RLockGuard};

/// A lock shared between several values.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) enum SharedLock {
    Lock(Lock),
    RLock(RLock),
}

/// Holds a [`SharedLock`] until dropped.
pub(crate) enum SharedLockGuard<'a> {
    Lock(#[allow(dead_code)] LockGuard<'a>),
    RLock(#[allow(dead_code)] RLockGuard<'a>),
}

impl SharedLock {
    /// Takes the lock, waiting until `deadline` (`None`: forever; errors as
    /// [`Lock::acquire`], with `Timeout` at the deadline).
    pub(crate) fn acquire(&self, deadline: Option<Instant>) -> Result<SharedLockGuard<'_>> {
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        Ok(match (self, timeout) {
            (SharedLock::Lock(l), None) => SharedLockGuard::Lock(l.acquire()?),
            (SharedLock::Lock(l), Some(t)) => SharedLockGuard::Lock(l.acquire_timeout(t)?),
            (SharedLock::RLock(l), None) => SharedLockGuard::RLock(l.acquire()?),
            (SharedLock::RLock(l), Some(t)) => SharedLockGuard::RLock(l.acquire_timeout(t)?),
        })
    }
}

impl std::fmt::Debug for SharedLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SharedLock::Lock(l) => l.fmt(f),
            SharedLock::RLock(l) => l.fmt(f),
        }
    }
}
