//! `Semaphore` and `BoundedSemaphore`: a counter word in shared memory, decremented by CAS,
//! with a waiter count so that a release makes a system call only when someone sleeps.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::raw;
use super::segment::{Kind, Segment, segment_handle};
use crate::error::{Error, Result};
use crate::sys;

const VALUE: usize = 0;
const WAITERS: usize = 1;
/// The bound, or `u32::MAX` for an unbounded semaphore.
const BOUND: usize = 2;
const UNBOUNDED: u32 = u32::MAX;

/// A counting semaphore shared between processes (Python's `multiprocessing.Semaphore`).
///
/// `acquire` takes one permit (waiting while there is none) and returns a guard that gives it
/// back on drop; [`SemaphoreGuard::forget`] keeps it taken, [`release`](Semaphore::release)
/// adds one. A process that dies holding permits does not return them (as in Python).
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn download(slots: mp::Semaphore, id: u32) -> mp::Result<u32> {
///     let _slot = slots.acquire()?; // at most 2 downloads at a time
///     Ok(id)
/// }
///
/// let slots = mp::Semaphore::new(2)?;
/// let mut ps: Vec<_> = (0..4)
///     .map(|id| mp::spawn(download, (slots.clone(), id)))
///     .collect::<mp::Result<_>>()?;
/// for (id, p) in ps.iter_mut().enumerate() {
///     assert_eq!(p.join()??, id as u32);
/// }
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    seg: Arc<Segment>,
}

/// One permit of a [`Semaphore`], released on drop.
#[must_use = "the permit is released when the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
}

impl Semaphore {
    /// A semaphore with `value` permits.
    ///
    /// ```
    /// let sem = mp::Semaphore::new(3)?;
    /// assert_eq!(sem.get_value(), 3);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn new(value: u32) -> Result<Semaphore> {
        Self::create(value, UNBOUNDED)
    }

    fn create(value: u32, bound: u32) -> Result<Semaphore> {
        if value == UNBOUNDED {
            return Err(Error::InvalidArgument(format!(
                "a semaphore's value must be below {UNBOUNDED}"
            )));
        }
        let seg = Segment::create(Kind::Semaphore, 0, 0, 0)?;
        seg.word(VALUE).store(value, Ordering::Relaxed);
        seg.word(BOUND).store(bound, Ordering::Release);
        Ok(Semaphore { seg })
    }

    fn try_take(&self) -> bool {
        let value = self.seg.word(VALUE);
        let mut cur = value.load(Ordering::Relaxed);
        while cur > 0 {
            match value.compare_exchange_weak(cur, cur - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
        false
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> Result<SemaphoreGuard<'_>> {
        let value = self.seg.word(VALUE);
        let waiters = self.seg.word(WAITERS);
        loop {
            if self.try_take() {
                return Ok(SemaphoreGuard { sem: self });
            }
            waiters.fetch_add(1, Ordering::SeqCst);
            let waited = if value.load(Ordering::SeqCst) == 0 {
                raw::wait_word(value, 0, deadline)
            } else {
                true
            };
            waiters.fetch_sub(1, Ordering::SeqCst);
            if !waited {
                return Err(Error::Timeout);
            }
        }
    }

    /// Takes a permit, waiting while there is none.
    ///
    /// ```
    /// let sem = mp::Semaphore::new(1)?;
    /// let permit = sem.acquire()?;
    /// assert_eq!(sem.get_value(), 0);
    /// drop(permit);
    /// assert_eq!(sem.get_value(), 1);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<SemaphoreGuard<'_>> {
        self.acquire_until(None)
    }

    /// As [`acquire`](Semaphore::acquire), giving up with [`Error::Timeout`] after `timeout`.
    ///
    /// ```
    /// let sem = mp::Semaphore::new(0)?;
    /// let err = sem.acquire_timeout(std::time::Duration::from_millis(5)).unwrap_err();
    /// assert!(matches!(err, mp::Error::Timeout));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphoreGuard<'_>> {
        self.acquire_until(raw::deadline_after(Some(timeout)))
    }

    /// Takes a permit if one is free, else [`Error::WouldBlock`].
    ///
    /// ```
    /// let sem = mp::Semaphore::new(1)?;
    /// let _p = sem.try_acquire()?;
    /// assert!(matches!(sem.try_acquire(), Err(mp::Error::WouldBlock)));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<SemaphoreGuard<'_>> {
        if self.try_take() {
            Ok(SemaphoreGuard { sem: self })
        } else {
            Err(Error::WouldBlock)
        }
    }

    /// Adds a permit (Python's `release()` without a matching `acquire` in this scope).
    /// A [`BoundedSemaphore`] refuses to go above its initial value with
    /// [`Error::TooManyReleases`].
    ///
    /// ```
    /// let sem = mp::Semaphore::new(0)?;
    /// sem.release()?;
    /// assert_eq!(sem.get_value(), 1);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn release(&self) -> Result<()> {
        let value = self.seg.word(VALUE);
        let bound = self.seg.word(BOUND).load(Ordering::Relaxed);
        let mut cur = value.load(Ordering::Relaxed);
        loop {
            if cur >= bound.min(UNBOUNDED - 1) {
                return Err(Error::TooManyReleases);
            }
            match value.compare_exchange_weak(cur, cur + 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if self.seg.word(WAITERS).load(Ordering::SeqCst) > 0 {
            sys::futex_wake(value, 1);
        }
        Ok(())
    }

    /// The number of free permits right now.
    pub fn get_value(&self) -> u32 {
        self.seg.word(VALUE).load(Ordering::Relaxed)
    }

    fn bound(&self) -> Option<u32> {
        let b = self.seg.word(BOUND).load(Ordering::Acquire);
        (b != UNBOUNDED).then_some(b)
    }
}

impl SemaphoreGuard<'_> {
    /// Keeps the permit taken: dropping the guard no longer releases it.
    ///
    /// ```
    /// let sem = mp::Semaphore::new(1)?;
    /// sem.acquire()?.forget();
    /// assert_eq!(sem.get_value(), 0);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // Cannot exceed a bound: this permit was taken from the semaphore.
        let _ = self.sem.release();
    }
}

/// A [`Semaphore`] that refuses to be released above its initial value (Python's
/// `BoundedSemaphore`); it dereferences to [`Semaphore`] for everything else.
///
/// ```
/// let sem = mp::BoundedSemaphore::new(1)?;
/// let permit = sem.acquire()?;
/// drop(permit);
/// assert!(matches!(sem.release(), Err(mp::Error::TooManyReleases)));
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    sem: Semaphore,
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` permits, never more.
    ///
    /// ```
    /// let sem = mp::BoundedSemaphore::new(2)?;
    /// assert_eq!(sem.get_value(), 2);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn new(value: u32) -> Result<BoundedSemaphore> {
        Ok(BoundedSemaphore {
            sem: Semaphore::create(value, value)?,
        })
    }
}

impl std::ops::Deref for BoundedSemaphore {
    type Target = Semaphore;
    fn deref(&self) -> &Semaphore {
        &self.sem
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.get_value())
            .field("bound", &self.bound())
            .finish()
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BoundedSemaphore").field(&self.sem).finish()
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SemaphoreGuard")
    }
}

impl Serialize for BoundedSemaphore {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.sem.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for BoundedSemaphore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let sem = Semaphore::deserialize(deserializer)?;
        if sem.bound().is_none() {
            return Err(serde::de::Error::custom(
                "expected a BoundedSemaphore, received an unbounded Semaphore",
            ));
        }
        Ok(BoundedSemaphore { sem })
    }
}

segment_handle!(Semaphore, Kind::Semaphore);
