//! `SemaphoreProxy`: a counting semaphore held by a manager (Python's `manager.Semaphore()`
//! and `manager.BoundedSemaphore()`), and the semaphore on the server's side,
//! [`StoredSemaphore`]: its operations ([`SemaphoreOp`]), when an acquire must wait and how
//! each applies. The server records which connection took each permit: when a connection
//! ends (its process died) its permits come back, as a dead holder's `LockProxy` is freed.
//! Must not know other kinds, sessions or the store.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::object::{ObjectKind, Out, Pending};
use super::protocol::{Blob, Reply, Wait};
use super::proxy::{Creator, Named, proxy};
use crate::error::{Error, Result};

proxy! {
    /// A counting semaphore that lives in a [`Manager`](crate::Manager)'s server process
    /// (Python's `manager.Semaphore(value)`; [`Manager::bounded_semaphore`](crate::Manager::bounded_semaphore)
    /// makes Python's `BoundedSemaphore`, which refuses to go above its initial value).
    ///
    /// A permit is taken with a guard that gives it back when dropped ([`forget`](SemaphoreProxyGuard::forget)
    /// keeps it taken; [`release`](SemaphoreProxy::release) adds one, as Python's `release()`).
    /// A permit taken by a process that dies, or whose every proxy to the semaphore is
    /// dropped, comes back: nothing waits forever for a dead holder.
    ///
    /// ```
    /// # mp::guard!();
    /// let manager = mp::Manager::new()?;
    /// let slots = manager.semaphore(2)?;
    /// let a = slots.acquire()?;
    /// let _b = slots.acquire()?;
    /// assert!(matches!(slots.try_acquire(), Err(mp::Error::WouldBlock)));
    /// drop(a);
    /// assert_eq!(slots.get_value()?, 1);
    ///
    /// let bounded = manager.bounded_semaphore(1)?;
    /// assert!(matches!(bounded.release(), Err(mp::Error::TooManyReleases)));
    /// # Ok::<(), mp::Error>(())
    /// ```
    #[doc(alias = "BoundedSemaphore")]
    pub struct SemaphoreProxy of StoredSemaphore, over ();
}

impl Named for SemaphoreProxy {
    /// A named semaphore created here starts with one permit, unbounded.
    fn named(creator: &Creator, name: &str) -> Result<Self> {
        SemaphoreProxy::create(creator, Some(name), 1, false)
    }
}

/// A permit taken from a [`SemaphoreProxy`]; given back when dropped.
#[must_use = "the permit is given back when the guard is dropped"]
#[derive(Debug)]
pub struct SemaphoreProxyGuard<'a> {
    sem: &'a SemaphoreProxy,
    released: bool,
}

impl SemaphoreProxy {
    /// A new semaphore (named: found if it exists) with `value` permits; `bounded`: releases
    /// above `value` fail.
    pub(super) fn create(
        creator: &Creator,
        name: Option<&str>,
        value: u32,
        bounded: bool,
    ) -> Result<Self> {
        creator
            .create::<StoredSemaphore, ()>(name, (value, bounded))
            .map(SemaphoreProxy::from_handle)
    }

    /// Waits for a permit.
    pub fn acquire(&self) -> Result<SemaphoreProxyGuard<'_>> {
        self.acquire_wait(Wait::Forever)
    }

    /// Waits at most `timeout` ([`Error::Timeout`]).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphoreProxyGuard<'_>> {
        self.acquire_wait(Wait::from_timeout(Some(timeout)))
    }

    /// Takes a permit if one is free ([`Error::WouldBlock`] otherwise).
    pub fn try_acquire(&self) -> Result<SemaphoreProxyGuard<'_>> {
        self.acquire_wait(Wait::No)
    }

    /// Adds a permit (Python's `release()` without a guard: the signalling pattern). A
    /// bounded semaphore refuses to go above its initial value ([`Error::TooManyReleases`]).
    pub fn release(&self) -> Result<()> {
        self.handle
            .done::<StoredSemaphore>(SemaphoreOp::Release { pid: me() })
    }

    /// The number of free permits now.
    pub fn get_value(&self) -> Result<usize> {
        self.handle.len::<StoredSemaphore>(SemaphoreOp::Value)
    }

    fn acquire_wait(&self, wait: Wait) -> Result<SemaphoreProxyGuard<'_>> {
        self.handle
            .done::<StoredSemaphore>(SemaphoreOp::Acquire { pid: me(), wait })?;
        Ok(SemaphoreProxyGuard {
            sem: self,
            released: false,
        })
    }
}

fn me() -> u32 {
    crate::sys::getpid()
}

impl SemaphoreProxyGuard<'_> {
    /// Gives the permit back now, reporting a failure (a manager that is gone) that dropping
    /// the guard would ignore.
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.sem.release()
    }

    /// Keeps the permit taken: dropping the guard no longer gives it back (it comes back
    /// when this process's connections to the manager end).
    pub fn forget(mut self) {
        self.released = true;
    }
}

impl Drop for SemaphoreProxyGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.sem.release();
        }
    }
}

/// An operation on a semaphore.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum SemaphoreOp {
    Acquire { pid: u32, wait: Wait },
    Release { pid: u32 },
    Value,
}

/// A semaphore as the server keeps it.
#[derive(Debug)]
pub(crate) struct StoredSemaphore {
    value: u64,
    /// The initial value, for a bounded semaphore.
    bound: Option<u64>,
    /// The permits taken: by which process, on which connection.
    taken: Vec<(u32, u64)>,
}

impl ObjectKind for StoredSemaphore {
    const NAME: &'static str = "semaphore";
    type Op = SemaphoreOp;
    /// The initial value, and whether it is also the bound.
    type Init = (u32, bool);

    fn new((value, bounded): (u32, bool)) -> Result<StoredSemaphore> {
        Ok(StoredSemaphore {
            value: value.into(),
            bound: bounded.then_some(value.into()),
            taken: Vec::new(),
        })
    }

    fn for_each_value(&mut self, _f: &mut dyn FnMut(&mut Blob)) {}

    fn incoming(_op: &SemaphoreOp) -> Vec<u64> {
        Vec::new()
    }

    fn must_wait(&self, op: &SemaphoreOp, _conn: u64) -> Option<Pending> {
        match op {
            SemaphoreOp::Acquire { wait, .. } if self.value == 0 => {
                Some(Pending::or_fail(*wait, Error::WouldBlock))
            }
            _ => None,
        }
    }

    fn apply(
        &mut self,
        op: SemaphoreOp,
        conn: u64,
        _dropped: &mut Vec<u64>,
    ) -> Result<(Reply, Out)> {
        let reply = match op {
            SemaphoreOp::Value => Reply::Len(self.value),
            SemaphoreOp::Acquire { pid, .. } => {
                if self.value == 0 {
                    return Err(Error::WouldBlock);
                }
                self.value -= 1;
                self.taken.push((pid, conn));
                Reply::Done
            }
            SemaphoreOp::Release { pid } => {
                if self.bound.is_some_and(|b| self.value >= b) {
                    return Err(Error::TooManyReleases);
                }
                self.value += 1;
                // The releaser's own permit if it holds one; otherwise (a permit released by
                // another process, the signalling pattern) the oldest, so that a permit is
                // never given back twice when its taker's connection ends.
                let at = self.taken.iter().rposition(|&(p, _)| p == pid);
                if let Some(at) = at.or((!self.taken.is_empty()).then_some(0)) {
                    self.taken.remove(at);
                }
                Reply::Done
            }
        };
        Ok((reply, Out::Copied))
    }

    fn release_held_by(&mut self, conn: u64) -> bool {
        let before = self.taken.len();
        self.taken.retain(|&(_, c)| c != conn);
        let freed = (before - self.taken.len()) as u64;
        self.value += freed;
        if let Some(b) = self.bound {
            self.value = self.value.min(b);
        }
        freed > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::object::apply_keeping_refs;

    #[test]
    fn a_dead_connections_permits_come_back() {
        let mut s = StoredSemaphore::new((2, true)).unwrap();
        let acquire = |pid| SemaphoreOp::Acquire {
            pid,
            wait: Wait::No,
        };
        s.apply(acquire(1), 10, &mut Vec::new()).unwrap();
        s.apply(acquire(2), 20, &mut Vec::new()).unwrap();
        assert!(s.must_wait(&acquire(3), 30).is_some());
        assert!(s.release_held_by(10));
        assert!(!s.release_held_by(10));
        assert!(s.must_wait(&acquire(3), 30).is_none());
        apply_keeping_refs(&mut s, SemaphoreOp::Release { pid: 2 }).unwrap();
        let e = apply_keeping_refs(&mut s, SemaphoreOp::Release { pid: 2 }).unwrap_err();
        assert!(matches!(e, Error::TooManyReleases), "{e}");
    }
}
