//! `Lock` and `RLock`: process-shared mutexes on one futex word each, robust against a holder
//! that dies (the next acquirer gets [`Error::OwnerDied`] and the lock is free again).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::raw::{self, RawMutex};
use super::segment::{Kind, NotSend, Segment, segment_handle};
use crate::error::{Error, Result};

/// A non-recursive lock shared between processes (Python's `multiprocessing.Lock`).
///
/// Clone it, or pass it to a worker as an argument: every copy is the same lock. Acquiring
/// returns a guard that releases on drop. If the holder dies (even by `SIGKILL`), the next
/// acquirer gets [`Error::OwnerDied`] and the lock is free again.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn critical(lock: mp::Lock, log: mp::Queue<String>) -> mp::Result<()> {
///     let _held = lock.acquire()?;
///     log.put(format!("{} inside", mp::current_process().name()))?;
///     Ok(())
/// }
///
/// let lock = mp::Lock::new()?;
/// let log = mp::Queue::new()?;
/// let mut p = mp::spawn(critical, (lock.clone(), log.clone()))?;
/// p.join()??;
/// assert!(log.get()?.ends_with("inside"));
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Clone)]
pub struct Lock {
    seg: Arc<Segment>,
}

/// Holds a [`Lock`] until dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    mutex: RawMutex<'a>,
    _not_send: NotSend,
}

impl Lock {
    /// A new, unlocked lock.
    ///
    /// ```
    /// let lock = mp::Lock::new()?;
    /// assert!(!lock.is_locked());
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn new() -> Result<Lock> {
        Ok(Lock {
            seg: Segment::create(Kind::Lock, 0, 0, 0)?,
        })
    }

    fn raw(&self) -> RawMutex<'_> {
        RawMutex::new(self.seg.word(0))
    }

    fn guard(&self) -> LockGuard<'_> {
        LockGuard {
            mutex: self.raw(),
            _not_send: NotSend::default(),
        }
    }

    /// Waits for the lock and takes it.
    ///
    /// Errors: [`Error::OwnerDied`] when the holder died with it (the lock is free again;
    /// retry), [`Error::Deadlock`] when this thread already holds it.
    ///
    /// ```
    /// let lock = mp::Lock::new()?;
    /// let guard = lock.acquire()?;
    /// assert!(lock.is_locked());
    /// drop(guard);
    /// assert!(!lock.is_locked());
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<LockGuard<'_>> {
        raw::acquire_reporting(self.raw(), None)?;
        Ok(self.guard())
    }

    /// As [`acquire`](Lock::acquire), giving up with [`Error::Timeout`] after `timeout`.
    ///
    /// ```
    /// let lock = mp::Lock::new()?;
    /// let _held = lock.acquire()?;
    /// let other = std::thread::spawn({
    ///     let lock = lock.clone();
    ///     move || matches!(lock.acquire_timeout(std::time::Duration::from_millis(10)), Err(mp::Error::Timeout))
    /// });
    /// assert!(other.join().unwrap());
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>> {
        raw::acquire_reporting(self.raw(), raw::deadline_after(Some(timeout)))?;
        Ok(self.guard())
    }

    /// Takes the lock if it is free, else [`Error::WouldBlock`].
    ///
    /// ```
    /// let lock = mp::Lock::new()?;
    /// let _held = lock.try_acquire()?;
    /// assert!(matches!(lock.try_acquire(), Err(mp::Error::Deadlock)));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<LockGuard<'_>> {
        raw::acquire_reporting(self.raw(), Some(std::time::Instant::now())).map_err(
            |e| match e {
                Error::Timeout => Error::WouldBlock,
                e => e,
            },
        )?;
        Ok(self.guard())
    }

    /// Whether some thread in some process holds the lock right now.
    ///
    /// ```
    /// let lock = mp::Lock::new()?;
    /// let held = lock.acquire()?;
    /// assert!(lock.is_locked());
    /// drop(held);
    /// assert!(!lock.is_locked());
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn is_locked(&self) -> bool {
        self.seg.word(0).load(Ordering::Relaxed) != 0
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &self.is_locked())
            .finish()
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

/// A re-entrant lock shared between processes (Python's `multiprocessing.RLock`): the thread
/// holding it may acquire it again; it is released when every guard is dropped.
///
/// ```
/// let lock = mp::RLock::new()?;
/// let outer = lock.acquire()?;
/// let inner = lock.acquire()?; // the same thread: no deadlock
/// assert_eq!(lock.depth(), 2);
/// drop(inner);
/// drop(outer);
/// assert_eq!(lock.depth(), 0);
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Clone)]
pub struct RLock {
    seg: Arc<Segment>,
}

/// Holds one level of an [`RLock`] until dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    _not_send: NotSend,
}

impl RLock {
    /// A new, unlocked re-entrant lock.
    ///
    /// ```
    /// let lock = mp::RLock::new()?;
    /// assert_eq!(lock.depth(), 0);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn new() -> Result<RLock> {
        Ok(RLock {
            seg: Segment::create(Kind::RLock, 0, 0, 0)?,
        })
    }

    fn acquire_until(&self, deadline: Option<std::time::Instant>) -> Result<RLockGuard<'_>> {
        let count = self.seg.word(1);
        if RawMutex::new(self.seg.word(0)).held_by_me() {
            // Only the owner touches the count while it holds the lock.
            count.fetch_add(1, Ordering::Relaxed);
        } else {
            raw::acquire_reporting(RawMutex::new(self.seg.word(0)), deadline)?;
            count.store(1, Ordering::Relaxed);
        }
        Ok(RLockGuard {
            lock: self,
            _not_send: NotSend::default(),
        })
    }

    /// Takes the lock (again, if this thread holds it). Errors as [`Lock::acquire`], except
    /// that re-acquiring is allowed.
    ///
    /// ```
    /// let lock = mp::RLock::new()?;
    /// let _a = lock.acquire()?;
    /// let _b = lock.acquire()?;
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<RLockGuard<'_>> {
        self.acquire_until(None)
    }

    /// As [`acquire`](RLock::acquire), giving up with [`Error::Timeout`] after `timeout`.
    ///
    /// ```
    /// let lock = mp::RLock::new()?;
    /// let _a = lock.acquire_timeout(std::time::Duration::from_secs(1))?;
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<RLockGuard<'_>> {
        self.acquire_until(raw::deadline_after(Some(timeout)))
    }

    /// Takes the lock if it is free or held by this thread, else [`Error::WouldBlock`].
    ///
    /// ```
    /// let lock = mp::RLock::new()?;
    /// let _a = lock.try_acquire()?;
    /// let _b = lock.try_acquire()?;
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<RLockGuard<'_>> {
        self.acquire_until(Some(std::time::Instant::now()))
            .map_err(|e| match e {
                Error::Timeout => Error::WouldBlock,
                e => e,
            })
    }

    /// Whether some thread in some process holds the lock right now (Python's
    /// `RLock._is_owned` asks about the caller; [`depth`](RLock::depth) does that).
    ///
    /// ```
    /// let lock = mp::RLock::new()?;
    /// assert!(!lock.is_locked());
    /// let held = lock.acquire()?;
    /// assert!(lock.is_locked());
    /// drop(held);
    /// assert!(!lock.is_locked());
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn is_locked(&self) -> bool {
        self.seg.word(0).load(Ordering::Relaxed) != 0
    }

    /// How many times the calling thread holds the lock (0 if it does not).
    pub fn depth(&self) -> u32 {
        if RawMutex::new(self.seg.word(0)).held_by_me() {
            self.seg.word(1).load(Ordering::Relaxed)
        } else {
            0
        }
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let count = self.lock.seg.word(1);
        if count.fetch_sub(1, Ordering::Relaxed) == 1 {
            RawMutex::new(self.lock.seg.word(0)).unlock();
        }
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("depth", &self.depth())
            .finish()
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RLockGuard")
    }
}

segment_handle!(Lock, Kind::Lock);
segment_handle!(RLock, Kind::RLock);
