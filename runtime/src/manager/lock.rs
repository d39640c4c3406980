//! `LockProxy`: a lock held by a manager (Python's `manager.Lock()`), and the lock on the
//! server's side, [`StoredLock`]: its operations ([`LockOp`]), when an acquire must wait and
//! how each applies. A lock is held by a thread of a client process; when that process's
//! connection ends while it holds the lock, the server frees it and tells the next acquirer
//! ([`Error::OwnerDied`]). Must not know other kinds, sessions or the store.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::object::{ObjectKind, Out, Pending};
use super::protocol::{Blob, Holder, Reply, Wait};
use super::proxy::{Creator, Named, proxy};
use crate::error::{Error, Result};
use crate::sys;

proxy! {
    /// A lock that lives in a [`Manager`](crate::Manager)'s server process (Python's
    /// `manager.Lock()`), usable from processes on other machines too.
    ///
    /// It is held by the calling thread until the guard is dropped; acquiring it again on the same
    /// thread is [`Error::Deadlock`]. If the process holding it dies, the next acquirer gets
    /// [`Error::OwnerDied`] once, and the lock is free again.
    ///
    /// ```
    /// # mp::guard!();
    /// let manager = mp::Manager::new()?;
    /// let lock = manager.lock()?;
    /// let guard = lock.acquire()?;
    /// assert!(lock.is_locked()?);
    /// assert!(matches!(lock.acquire(), Err(mp::Error::Deadlock)));
    /// drop(guard);
    /// assert!(lock.try_acquire().is_ok());
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub struct LockProxy of StoredLock, over ();
}

impl Named for LockProxy {
    fn named(creator: &Creator, name: &str) -> Result<Self> {
        LockProxy::create(creator, Some(name))
    }
}

/// Holds a [`LockProxy`]; releases it when dropped.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct LockProxyGuard<'a> {
    lock: &'a LockProxy,
    holder: Holder,
    released: bool,
}

fn me() -> Holder {
    Holder {
        pid: sys::getpid(),
        tid: sys::gettid(),
    }
}

impl LockProxy {
    /// A new lock (named: found if it exists).
    pub(super) fn create(creator: &Creator, name: Option<&str>) -> Result<Self> {
        creator
            .create::<StoredLock, ()>(name, ())
            .map(LockProxy::from_handle)
    }

    /// Waits for the lock.
    pub fn acquire(&self) -> Result<LockProxyGuard<'_>> {
        self.acquire_wait(Wait::Forever)
    }

    /// Waits at most `timeout` ([`Error::Timeout`]).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockProxyGuard<'_>> {
        self.acquire_wait(Wait::from_timeout(Some(timeout)))
    }

    /// Takes the lock if it is free ([`Error::WouldBlock`] otherwise).
    pub fn try_acquire(&self) -> Result<LockProxyGuard<'_>> {
        self.acquire_wait(Wait::No)
    }

    /// Whether some thread holds the lock now.
    pub fn is_locked(&self) -> Result<bool> {
        self.handle.bool::<StoredLock>(LockOp::IsLocked)
    }

    fn acquire_wait(&self, wait: Wait) -> Result<LockProxyGuard<'_>> {
        let holder = me();
        self.handle
            .done::<StoredLock>(LockOp::Acquire { holder, wait })?;
        Ok(LockProxyGuard {
            lock: self,
            holder,
            released: false,
        })
    }
}

impl LockProxyGuard<'_> {
    /// Releases the lock now, reporting a failure (a manager that is gone) that dropping the
    /// guard would ignore.
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.lock.handle.done::<StoredLock>(LockOp::Release {
            holder: self.holder,
        })
    }
}

impl Drop for LockProxyGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.lock.handle.op::<StoredLock>(LockOp::Release {
                holder: self.holder,
            });
        }
    }
}

/// An operation on a lock.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum LockOp {
    Acquire { holder: Holder, wait: Wait },
    Release { holder: Holder },
    IsLocked,
}

/// A lock as the server keeps it.
#[derive(Debug)]
pub(crate) struct StoredLock {
    /// The thread holding it, and the connection it acquired it on.
    holder: Option<(Holder, u64)>,
    /// The holder that vanished with the lock: the next acquirer is told.
    abandoned_by: Option<Holder>,
}

impl ObjectKind for StoredLock {
    const NAME: &'static str = "lock";
    type Op = LockOp;
    type Init = ();

    fn new((): ()) -> Result<StoredLock> {
        Ok(StoredLock {
            holder: None,
            abandoned_by: None,
        })
    }

    fn for_each_value(&mut self, _f: &mut dyn FnMut(&mut Blob)) {}

    fn incoming(_op: &LockOp) -> Vec<u64> {
        Vec::new()
    }

    fn must_wait(&self, op: &LockOp, _conn: u64) -> Option<Pending> {
        match (op, self.holder) {
            // Held by another thread (by this one: a deadlock, see `apply`).
            (LockOp::Acquire { holder: me, wait }, Some((h, _))) if h != *me => {
                Some(Pending::or_fail(*wait, Error::WouldBlock))
            }
            _ => None,
        }
    }

    fn apply(&mut self, op: LockOp, conn: u64, _dropped: &mut Vec<u64>) -> Result<(Reply, Out)> {
        let reply = match op {
            LockOp::IsLocked => Reply::Bool(self.holder.is_some()),
            LockOp::Acquire { holder: me, .. } => match self.holder {
                Some((h, _)) if h == me => return Err(Error::Deadlock),
                Some(_) => return Err(Error::WouldBlock),
                None => {
                    if let Some(dead) = self.abandoned_by.take() {
                        return Err(Error::OwnerDied { tid: dead.tid });
                    }
                    self.holder = Some((me, conn));
                    Reply::Done
                }
            },
            LockOp::Release { holder: me } => match self.holder {
                Some((h, _)) if h == me => {
                    self.holder = None;
                    Reply::Done
                }
                _ => {
                    return Err(Error::InvalidArgument(
                        "release of a manager lock that this thread does not hold".to_owned(),
                    ));
                }
            },
        };
        Ok((reply, Out::Copied))
    }

    fn release_held_by(&mut self, conn: u64) -> bool {
        match self.holder {
            Some((h, c)) if c == conn => {
                self.holder = None;
                self.abandoned_by = Some(h);
                true
            }
            _ => false,
        }
    }
}
