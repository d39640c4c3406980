//! `LockProxy` and `EventProxy`: a lock and an event held by a manager (Python's
//! `manager.Lock()` / `manager.Event()`). A lock is held by a thread of a client process; when
//! that process's connection ends while it holds the lock, the server frees it and tells the
//! next acquirer ([`Error::OwnerDied`]).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::handle::Handle;
use super::protocol::{Holder, Kind, Op, Reply, Wait, unexpected};
use crate::error::{Error, Result};
use crate::sys;

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
pub struct LockProxy {
    pub(super) handle: Arc<Handle>,
    pub(super) _type: PhantomData<()>,
}

super::proxy_impls!(LockProxy, Kind::Lock, ());

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
        match self.handle.op(Op::LockIsLocked)? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    fn acquire_wait(&self, wait: Wait) -> Result<LockProxyGuard<'_>> {
        let holder = me();
        super::done(self.handle.op(Op::LockAcquire { holder, wait })?)?;
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
        super::done(self.lock.handle.op(Op::LockRelease {
            holder: self.holder,
        })?)
    }
}

impl Drop for LockProxyGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.lock.handle.op(Op::LockRelease {
                holder: self.holder,
            });
        }
    }
}

/// An event that lives in a [`Manager`](crate::Manager)'s server process (Python's
/// `manager.Event()`).
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn signal(ready: mp::EventProxy) -> mp::Result<()> {
///     ready.set()
/// }
///
/// let manager = mp::Manager::new()?;
/// let ready = manager.event()?;
/// assert!(!ready.wait_timeout(std::time::Duration::from_millis(10))?);
/// mp::spawn(signal, ready.clone())?.join()??;
/// assert!(ready.wait_timeout(std::time::Duration::from_secs(5))?);
/// # Ok::<(), mp::Error>(())
/// ```
pub struct EventProxy {
    pub(super) handle: Arc<Handle>,
    pub(super) _type: PhantomData<()>,
}

super::proxy_impls!(EventProxy, Kind::Event, ());

impl EventProxy {
    /// Sets the flag, waking every waiter.
    pub fn set(&self) -> Result<()> {
        super::done(self.handle.op(Op::EventSet)?)
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        super::done(self.handle.op(Op::EventClear)?)
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        self.bool(Op::EventIsSet)
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<()> {
        match self.bool(Op::EventWait {
            wait: Wait::Forever,
        })? {
            true => Ok(()),
            false => Err(Error::Malformed(
                "the manager ended an unbounded wait unset".into(),
            )),
        }
    }

    /// Waits at most `timeout`; whether the flag was set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.bool(Op::EventWait {
            wait: Wait::For(timeout),
        })
    }

    fn bool(&self, op: Op) -> Result<bool> {
        match self.handle.op(op)? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }
}
