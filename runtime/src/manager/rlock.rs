//! `RLockProxy`: a re-entrant lock held by a manager (Python's `manager.RLock()`), and the
//! lock on the server's side, [`StoredRLock`]: its operations ([`RLockOp`]), when an acquire
//! must wait and how each applies. The owning thread may acquire it again; it is free when
//! every acquisition is released. As for `LockProxy`, a holder whose connection ends (its
//! process died) frees it, and the next acquirer gets [`Error::OwnerDied`] once. Must not know
//! other kinds, sessions or the store.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::object::{ObjectKind, Out, Pending};
use super::protocol::{Blob, Holder, Reply, Wait};
use super::proxy::{Creator, Named, proxy};
use crate::error::{Error, Result};

proxy! {
    /// A re-entrant lock that lives in a [`Manager`](crate::Manager)'s server process
    /// (Python's `manager.RLock()`).
    ///
    /// The thread that holds it may acquire it again; each acquisition has its guard, and the
    /// lock is free once every guard is dropped. If the process holding it dies, the next
    /// acquirer gets [`Error::OwnerDied`] once, and the lock is free again.
    ///
    /// ```
    /// # mp::guard!();
    /// let manager = mp::Manager::new()?;
    /// let lock = manager.rlock()?;
    /// let outer = lock.acquire()?;
    /// let inner = lock.acquire()?; // the same thread: no deadlock
    /// assert_eq!(lock.count()?, 2);
    /// drop(inner);
    /// assert!(lock.is_locked()?);
    /// drop(outer);
    /// assert!(!lock.is_locked()?);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub struct RLockProxy of StoredRLock, over ();
}

impl Named for RLockProxy {
    fn named(creator: &Creator, name: &str) -> Result<Self> {
        RLockProxy::create(creator, Some(name))
    }
}

/// One acquisition of an [`RLockProxy`]; released when dropped.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct RLockProxyGuard<'a> {
    lock: &'a RLockProxy,
    holder: Holder,
    released: bool,
}

impl RLockProxy {
    /// A new re-entrant lock (named: found if it exists).
    pub(super) fn create(creator: &Creator, name: Option<&str>) -> Result<Self> {
        creator
            .create::<StoredRLock, ()>(name, ())
            .map(RLockProxy::from_handle)
    }

    /// Waits for the lock (at once if this thread holds it).
    pub fn acquire(&self) -> Result<RLockProxyGuard<'_>> {
        self.acquire_wait(Wait::Forever)
    }

    /// Waits at most `timeout` ([`Error::Timeout`]).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<RLockProxyGuard<'_>> {
        self.acquire_wait(Wait::from_timeout(Some(timeout)))
    }

    /// Takes the lock if it is free or this thread holds it ([`Error::WouldBlock`]
    /// otherwise).
    pub fn try_acquire(&self) -> Result<RLockProxyGuard<'_>> {
        self.acquire_wait(Wait::No)
    }

    /// Whether some thread holds the lock now.
    pub fn is_locked(&self) -> Result<bool> {
        self.handle.bool::<StoredRLock>(RLockOp::IsLocked)
    }

    /// How many acquisitions the holding thread has not released (0: free).
    pub fn count(&self) -> Result<usize> {
        self.handle.len::<StoredRLock>(RLockOp::Count)
    }

    fn acquire_wait(&self, wait: Wait) -> Result<RLockProxyGuard<'_>> {
        let holder = Holder::current();
        self.handle
            .done::<StoredRLock>(RLockOp::Acquire { holder, wait })?;
        Ok(RLockProxyGuard {
            lock: self,
            holder,
            released: false,
        })
    }
}

impl RLockProxyGuard<'_> {
    /// Releases this acquisition now, reporting a failure (a manager that is gone) that
    /// dropping the guard would ignore.
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.lock.handle.done::<StoredRLock>(RLockOp::Release {
            holder: self.holder,
        })
    }
}

impl Drop for RLockProxyGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.lock.handle.op::<StoredRLock>(RLockOp::Release {
                holder: self.holder,
            });
        }
    }
}

/// An operation on a re-entrant lock.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RLockOp {
    Acquire { holder: Holder, wait: Wait },
    Release { holder: Holder },
    IsLocked,
    Count,
}

/// A re-entrant lock as the server keeps it.
#[derive(Debug)]
pub(crate) struct StoredRLock {
    /// The thread holding it, the connection of its first acquisition, and how many
    /// acquisitions it has not released.
    holder: Option<(Holder, u64, u64)>,
    /// The holder that vanished with the lock: the next acquirer is told.
    abandoned_by: Option<Holder>,
}

impl ObjectKind for StoredRLock {
    const NAME: &'static str = "rlock";
    type Op = RLockOp;
    type Init = ();

    fn new((): ()) -> Result<StoredRLock> {
        Ok(StoredRLock {
            holder: None,
            abandoned_by: None,
        })
    }

    fn for_each_value(&mut self, _f: &mut dyn FnMut(&mut Blob)) {}

    fn incoming(_op: &RLockOp) -> Vec<u64> {
        Vec::new()
    }

    fn must_wait(&self, op: &RLockOp, _conn: u64) -> Option<Pending> {
        match (op, self.holder) {
            (RLockOp::Acquire { holder: me, wait }, Some((h, _, _))) if h != *me => {
                Some(Pending::or_fail(*wait, Error::WouldBlock))
            }
            _ => None,
        }
    }

    fn apply(&mut self, op: RLockOp, conn: u64, _dropped: &mut Vec<u64>) -> Result<(Reply, Out)> {
        let reply = match op {
            RLockOp::IsLocked => Reply::Bool(self.holder.is_some()),
            RLockOp::Count => Reply::Len(self.holder.map_or(0, |(_, _, n)| n)),
            RLockOp::Acquire { holder: me, .. } => match &mut self.holder {
                Some((h, _, n)) if *h == me => {
                    *n += 1;
                    Reply::Done
                }
                Some(_) => return Err(Error::WouldBlock),
                None => {
                    if let Some(dead) = self.abandoned_by.take() {
                        return Err(Error::OwnerDied { tid: dead.tid });
                    }
                    self.holder = Some((me, conn, 1));
                    Reply::Done
                }
            },
            RLockOp::Release { holder: me } => match &mut self.holder {
                Some((h, _, n)) if *h == me => {
                    *n -= 1;
                    if *n == 0 {
                        self.holder = None;
                    }
                    Reply::Done
                }
                _ => {
                    return Err(Error::InvalidArgument(
                        "release of a manager rlock that this thread does not hold".to_owned(),
                    ));
                }
            },
        };
        Ok((reply, Out::Copied))
    }

    fn release_held_by(&mut self, conn: u64) -> bool {
        match self.holder {
            Some((h, c, _)) if c == conn => {
                self.holder = None;
                self.abandoned_by = Some(h);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::object::apply_keeping_refs;

    #[test]
    fn the_holder_reenters_and_frees_after_the_last_release() {
        let me = Holder { pid: 1, tid: 1 };
        let other = Holder { pid: 2, tid: 2 };
        let mut l = StoredRLock::new(()).unwrap();
        let acquire = |h| RLockOp::Acquire {
            holder: h,
            wait: Wait::No,
        };
        apply_keeping_refs(&mut l, acquire(me)).unwrap();
        apply_keeping_refs(&mut l, acquire(me)).unwrap();
        assert!(l.must_wait(&acquire(other), 0).is_some());
        apply_keeping_refs(&mut l, RLockOp::Release { holder: me }).unwrap();
        assert!(l.must_wait(&acquire(other), 0).is_some());
        apply_keeping_refs(&mut l, RLockOp::Release { holder: me }).unwrap();
        assert!(l.must_wait(&acquire(other), 0).is_none());
        assert!(apply_keeping_refs(&mut l, RLockOp::Release { holder: me }).is_err());
    }
}
