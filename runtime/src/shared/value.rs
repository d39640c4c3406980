//! `Value<T>` (one `Plain` value with a robust lock) and `RawValue<T>` (without a lock, with
//! lock-free atomics for integers), each in its own shared segment: header page, then the data.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::shared_lock::{SharedLock, SharedLockGuard};
use crate::error::{Error, Result};
use crate::sync::raw::{self, RawMutex};
use crate::sync::{DATA, Kind, NotSend, Segment, fingerprint, typed_segment_handle};
use crate::sync::{Lock, RLock};
use crate::sys::{HasAtomic, Plain};

/// One value of a [`Plain`] type in shared memory, with a lock (Python's
/// `multiprocessing.Value`). Clones and copies passed to workers share the memory: the
/// value itself is never copied between processes.
///
/// Read and write it with [`get`](Value::get) / [`set`](Value::set), or hold the lock across
/// a read-modify-write with [`lock`](Value::lock), whose guard dereferences to the value.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn worker(val: mp::Value<f64>) -> mp::Result<()> {
///     val.set(3.14)
/// }
///
/// let val = mp::Value::new(0.0)?;
/// mp::spawn(worker, val.clone())?.join()??;
/// assert_eq!(val.get()?, 3.14);
/// # Ok::<(), mp::Error>(())
/// ```
///
/// Python's `Value(t, v, lock=l)`, one lock for several values, is
/// [`with_lock`](Value::with_lock) / [`with_rlock`](Value::with_rlock); `lock=False` is
/// [`RawValue`].
pub struct Value<T> {
    seg: Arc<Segment>,
    _type: PhantomData<T>,
    /// The lock shared with other values, taken before the own one (see `shared_lock.rs`).
    shared: Option<SharedLock>,
}

/// The locked value of a [`Value`]; dereferences to `T`; unlocks on drop.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ValueGuard<'a, T> {
    mutex: RawMutex<'a>,
    data: &'a mut T,
    _not_send: NotSend,
    /// Released after `mutex` (fields drop after `Drop::drop`).
    _shared: Option<SharedLockGuard<'a>>,
}

impl<T: Plain> Value<T> {
    /// A new shared value holding `value`.
    ///
    /// ```
    /// let v = mp::Value::new(7u32)?;
    /// assert_eq!(v.get()?, 7);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn new(value: T) -> Result<Value<T>> {
        let seg = Segment::create(Kind::Value, fingerprint::<T>(), 1, size_of::<T>())?;
        seg.map().write_plain(DATA, value);
        Ok(Value {
            seg,
            _type: PhantomData,
            shared: None,
        })
    }

    /// A new shared value guarded by `lock`, which other values may share (Python's
    /// `Value(t, v, lock=l)`): locking any of them takes `lock`, so one critical section
    /// covers them all. The lock travels with the value to other processes.
    ///
    /// With a [`Lock`], one thread holds at most one of the values at a time (locking a second
    /// is [`Error::Deadlock`]); use [`with_rlock`](Value::with_rlock) to hold several.
    ///
    /// ```
    /// let lock = mp::Lock::new()?;
    /// let a = mp::Value::with_lock(1u32, &lock)?;
    /// let b = mp::Value::with_lock(2u32, &lock)?;
    /// let held = a.lock()?;
    /// assert!(lock.is_locked());
    /// assert!(matches!(b.lock(), Err(mp::Error::Deadlock))); // the same lock, this thread
    /// drop(held);
    /// assert_eq!(b.get()?, 2);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn with_lock(value: T, lock: &Lock) -> Result<Value<T>> {
        let mut v = Self::new(value)?;
        v.shared = Some(SharedLock::Lock(lock.clone()));
        Ok(v)
    }

    /// A new shared value guarded by the re-entrant `lock`, which other values may share
    /// (Python's default: `Value` locks are `RLock`s). Holding the `RLock`, or a guard of one
    /// value, a thread may lock the others too, so an update of several values is atomic for
    /// every process; a second guard of the same value is [`Error::Deadlock`].
    ///
    /// ```
    /// let lock = mp::RLock::new()?;
    /// let from = mp::Value::with_rlock(10i64, &lock)?;
    /// let to = mp::Value::with_rlock(0i64, &lock)?;
    /// {
    ///     let _transfer = lock.acquire()?; // one critical section for both
    ///     *from.lock()? -= 4;
    ///     *to.lock()? += 4;
    /// }
    /// assert_eq!((from.get()?, to.get()?), (6, 4));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn with_rlock(value: T, lock: &RLock) -> Result<Value<T>> {
        let mut v = Self::new(value)?;
        v.shared = Some(SharedLock::RLock(lock.clone()));
        Ok(v)
    }

    // Always inlined, with the shared-lock path out of line: an uncontended lock and unlock
    // is a few nanoseconds, and a call that returns the guard through memory made it 1.5×
    // (`mp-bench shared`, "Value += 1, 1 proc": 0.037 µs against 0.025).
    #[inline(always)]
    fn lock_until(&self, deadline: Option<Instant>) -> Result<ValueGuard<'_, T>> {
        let mutex = RawMutex::new(self.seg.word(0));
        let shared = match &self.shared {
            None => {
                raw::acquire_reporting(mutex, deadline)?;
                None
            }
            Some(lock) => Some(lock_under_shared(mutex, lock, deadline)?),
        };
        #[allow(unsafe_code)]
        // SAFETY: the segment holds one `T` at `DATA` (created so, or checked on receipt by
        // type fingerprint and size). Every access to it goes through this lock, which we now
        // hold until the guard, which borrows `self`, drops.
        let data = unsafe { &mut self.seg.map().slice_mut::<T>(DATA, 1)[0] };
        Ok(ValueGuard {
            mutex,
            data,
            _not_send: NotSend::default(),
            _shared: shared,
        })
    }

    /// Takes the value's lock (Python's `with val.get_lock():`); the guard dereferences to
    /// the value. Errors as [`Lock::acquire`](crate::Lock::acquire).
    ///
    /// ```
    /// let counter = mp::Value::new(0u64)?;
    /// {
    ///     let mut n = counter.lock()?;
    ///     *n += 1; // read-modify-write under the lock
    /// }
    /// assert_eq!(counter.get()?, 1);
    /// # Ok::<(), mp::Error>(())
    /// ```
    #[doc(alias = "get_lock")]
    pub fn lock(&self) -> Result<ValueGuard<'_, T>> {
        self.lock_until(None)
    }

    /// As [`lock`](Value::lock), giving up with [`Error::Timeout`](crate::Error::Timeout)
    /// after `timeout`.
    ///
    /// ```
    /// let v = mp::Value::new(1i32)?;
    /// let g = v.lock_timeout(std::time::Duration::from_secs(1))?;
    /// assert_eq!(*g, 1);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ValueGuard<'_, T>> {
        self.lock_until(raw::deadline_after(Some(timeout)))
    }

    /// The value, read under the lock (Python's `val.value`).
    pub fn get(&self) -> Result<T> {
        Ok(*self.lock()?)
    }

    /// Replaces the value, under the lock (Python's `val.value = x`).
    ///
    /// ```
    /// let v = mp::Value::new(false)?;
    /// v.set(true)?;
    /// assert!(v.get()?);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn set(&self, value: T) -> Result<()> {
        *self.lock()? = value;
        Ok(())
    }

    /// Applies `f` to the value under the lock and returns its result.
    ///
    /// ```
    /// let v = mp::Value::new(10u32)?;
    /// let before = v.update(|x| std::mem::replace(x, *x * 2))?;
    /// assert_eq!((before, v.get()?), (10, 20));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        Ok(f(&mut *self.lock()?))
    }
}

impl<T> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.data
    }
}

impl<T> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.data
    }
}

/// Takes `mutex` (a value's own lock) under the lock it shares with other values.
fn lock_under_shared<'a>(
    mutex: RawMutex<'a>,
    lock: &'a SharedLock,
    deadline: Option<Instant>,
) -> Result<SharedLockGuard<'a>> {
    let shared = lock.acquire(deadline)?;
    if mutex.held_by_me() {
        return Err(Error::Deadlock);
    }
    // Under the shared lock, a holder of the own lock other than us is dead (its death was
    // reported by the shared lock): take it over silently.
    if mutex.take_over_dead().is_none() {
        mutex.lock(deadline)?;
    }
    Ok(shared)
}

impl<T> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

/// One value of a [`Plain`] type in shared memory, without a lock (Python's `RawValue`, or
/// `Value(..., lock=False)`). Reads and writes are copies: concurrent writers of a multi-word
/// `T` can interleave. For integers, [`atomic`](RawValue::atomic) gives a lock-free atomic.
///
/// ```
/// use std::sync::atomic::Ordering;
///
/// let flag = mp::RawValue::new(0u32)?;
/// flag.set(5);
/// flag.atomic().fetch_add(1, Ordering::SeqCst);
/// assert_eq!(flag.get(), 6);
/// # Ok::<(), mp::Error>(())
/// ```
pub struct RawValue<T> {
    seg: Arc<Segment>,
    _type: PhantomData<T>,
}

impl<T: Plain> RawValue<T> {
    /// A new shared value holding `value`.
    ///
    /// ```
    /// let v = mp::RawValue::new(1.5f32)?;
    /// assert_eq!(v.get(), 1.5);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn new(value: T) -> Result<RawValue<T>> {
        let seg = Segment::create(Kind::RawValue, fingerprint::<T>(), 1, size_of::<T>())?;
        seg.map().write_plain(DATA, value);
        Ok(RawValue {
            seg,
            _type: PhantomData,
        })
    }

    /// A copy of the value.
    pub fn get(&self) -> T {
        self.seg.map().read_plain(DATA)
    }

    /// Overwrites the value.
    pub fn set(&self, value: T) {
        self.seg.map().write_plain(DATA, value)
    }

    /// The value as its standard atomic type, for lock-free updates across processes.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    ///
    /// let n = mp::RawValue::new(0i64)?;
    /// n.atomic().fetch_sub(3, Ordering::Relaxed);
    /// assert_eq!(n.get(), -3);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn atomic(&self) -> &T::Atomic
    where
        T: HasAtomic,
    {
        self.seg.map().atomic::<T::Atomic>(DATA)
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never block in `Debug`: show the value only if the lock is free.
        match self.lock_until(Some(Instant::now())) {
            Ok(v) => f.debug_tuple("Value").field(&*v).finish(),
            Err(_) => f.write_str("Value(<locked>)"),
        }
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}

impl<T: fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValueGuard").field(&*self.data).finish()
    }
}

/// A value's own segment, as it travels (the shared lock travels beside it).
struct Own<T> {
    seg: Arc<Segment>,
    _type: PhantomData<T>,
}

typed_segment_handle!(Own, Kind::Value);

#[derive(Serialize, Deserialize)]
#[serde(rename = "mp::Value", bound(serialize = "", deserialize = "T: Plain"))]
struct ValueWire<T> {
    value: Own<T>,
    shared: Option<SharedLock>,
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            seg: self.seg.clone(),
            _type: PhantomData,
            shared: self.shared.clone(),
        }
    }
}

impl<T> Serialize for Value<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ValueWire {
            value: Own::<T> {
                seg: self.seg.clone(),
                _type: PhantomData,
            },
            shared: self.shared.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de, T: Plain> Deserialize<'de> for Value<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = ValueWire::<T>::deserialize(deserializer)?;
        Ok(Value {
            seg: wire.value.seg,
            _type: PhantomData,
            shared: wire.shared,
        })
    }
}
typed_segment_handle!(RawValue, Kind::RawValue);
