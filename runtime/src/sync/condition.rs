//! `Condition`: a lock word plus a sequence word. A waiter reads the sequence, releases the
//! lock and sleeps while the sequence is unchanged; `notify` bumps it and wakes, so a
//! notification between release and sleep is never lost.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::raw::{self, Acquired, RawMutex};
use super::segment::{Kind, NotSend, Segment, segment_handle};
use crate::error::{Error, Result};
use crate::sys;

const LOCK: usize = 0;
const SEQ: usize = 1;

/// A condition variable shared between processes, with its own lock (Python's
/// `multiprocessing.Condition`).
///
/// [`acquire`](Condition::acquire) takes the lock and returns a guard; waiting and notifying
/// are methods of the guard, so they can only happen with the lock held, as Python requires.
/// The state the condition is about lives elsewhere in shared memory (a
/// [`RawValue`](crate::RawValue), say).
///
/// ```
/// # mp::guard!();
/// use std::sync::atomic::Ordering;
///
/// #[mp::worker]
/// fn producer(cond: mp::Condition, ready: mp::RawValue<u32>) -> mp::Result<()> {
///     let guard = cond.acquire()?;
///     ready.atomic().store(1, Ordering::Relaxed);
///     guard.notify_all();
///     Ok(())
/// }
///
/// let cond = mp::Condition::new()?;
/// let ready = mp::RawValue::new(0u32)?;
/// let mut guard = cond.acquire()?;
/// let mut p = mp::spawn(producer, (cond.clone(), ready.clone()))?;
/// guard.wait_for(|| ready.get() == 1)?;
/// drop(guard);
/// p.join()??;
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Clone)]
pub struct Condition {
    seg: Arc<Segment>,
}

/// The held lock of a [`Condition`]; wait and notify through it.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    _not_send: NotSend,
}

impl Condition {
    /// A new condition with its own lock.
    ///
    /// ```
    /// let cond = mp::Condition::new()?;
    /// drop(cond.acquire()?);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn new() -> Result<Condition> {
        Ok(Condition {
            seg: Segment::create(Kind::Condition, 0, 0, 0)?,
        })
    }

    fn mutex(&self) -> RawMutex<'_> {
        RawMutex::new(self.seg.word(LOCK))
    }

    /// Takes the condition's lock. Errors as [`Lock::acquire`](crate::Lock::acquire).
    pub fn acquire(&self) -> Result<ConditionGuard<'_>> {
        raw::acquire_reporting(self.mutex(), None)?;
        Ok(ConditionGuard {
            cond: self,
            _not_send: NotSend::default(),
        })
    }

    /// As [`acquire`](Condition::acquire), giving up with [`Error::Timeout`] after `timeout`.
    ///
    /// ```
    /// let cond = mp::Condition::new()?;
    /// let _g = cond.acquire_timeout(std::time::Duration::from_secs(1))?;
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<ConditionGuard<'_>> {
        raw::acquire_reporting(self.mutex(), raw::deadline_after(Some(timeout)))?;
        Ok(ConditionGuard {
            cond: self,
            _not_send: NotSend::default(),
        })
    }
}

impl ConditionGuard<'_> {
    /// Releases the lock, sleeps until notified or `deadline`, takes the lock again. Returns
    /// whether a notification (or a spurious wake-up) came before the deadline.
    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<bool> {
        let seq = self.cond.seg.word(SEQ);
        let observed = seq.load(Ordering::SeqCst);
        let mutex = self.cond.mutex();
        mutex.unlock();
        let woke = raw::wait_word(seq, observed, deadline);
        // Take the lock back whatever happens: the guard must hold it when this returns.
        match mutex.lock(None)? {
            Acquired::Clean => Ok(woke),
            Acquired::OwnerDied(tid) => {
                tracing::warn!(target: "mp", "condition lock holder (thread {tid}) died");
                Err(Error::OwnerDied { tid })
            }
        }
    }

    /// Releases the lock and sleeps until notified, then takes the lock again. Wake-ups may
    /// be spurious: check the condition in a loop, or use [`wait_for`](Self::wait_for).
    ///
    /// If a process died holding the lock meanwhile, returns [`Error::OwnerDied`] with the
    /// lock held again by this guard.
    pub fn wait(&mut self) -> Result<()> {
        self.wait_until(None).map(drop)
    }

    /// As [`wait`](Self::wait), for at most `timeout`; returns `false` if it timed out.
    ///
    /// ```
    /// let cond = mp::Condition::new()?;
    /// let mut g = cond.acquire()?;
    /// assert!(!g.wait_timeout(std::time::Duration::from_millis(5))?);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        self.wait_until(Some(deadline))
            .map(|woke| woke && Instant::now() < deadline)
    }

    /// Waits until `predicate()` holds (checked with the lock held, first before waiting).
    ///
    /// ```
    /// let cond = mp::Condition::new()?;
    /// let mut g = cond.acquire()?;
    /// g.wait_for(|| true)?; // already true: returns at once
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn wait_for(&mut self, mut predicate: impl FnMut() -> bool) -> Result<()> {
        while !predicate() {
            self.wait_until(None)?;
        }
        Ok(())
    }

    /// As [`wait_for`](Self::wait_for), for at most `timeout`; returns the predicate's last
    /// value (Python's `wait_for(predicate, timeout)`).
    ///
    /// ```
    /// let cond = mp::Condition::new()?;
    /// let mut g = cond.acquire()?;
    /// assert!(!g.wait_for_timeout(|| false, std::time::Duration::from_millis(5))?);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn wait_for_timeout(
        &mut self,
        mut predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if predicate() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            self.wait_until(Some(deadline))?;
        }
    }

    /// Wakes up to `n` waiters (Python's `notify(n)`).
    ///
    /// ```
    /// let cond = mp::Condition::new()?;
    /// cond.acquire()?.notify(1); // nobody waits: nothing happens
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn notify(&self, n: u32) {
        let seq = self.cond.seg.word(SEQ);
        seq.fetch_add(1, Ordering::SeqCst);
        sys::futex_wake(seq, n);
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        self.cond.mutex().unlock();
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("locked", &(self.mutex().owner() != 0))
            .finish()
    }
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConditionGuard")
    }
}

segment_handle!(Condition, Kind::Condition);
