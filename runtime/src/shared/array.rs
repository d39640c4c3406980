//! `Array<T>`: a shared array whose locks cover ranges, so processes can work on disjoint
//! parts in place at the same time (`RawArray<T>`, without a lock, is in `raw_array.rs`).
//!
//! Range locks: the header page holds a table of claims `(owner thread, mode, start, end)`
//! guarded by a robust mutex word. Locking a range takes the mutex, checks the table for a
//! conflicting live claim (one that overlaps, where at least one of the two is exclusive), and
//! either records its own claim or sleeps on a sequence word that every release bumps. A claim whose owner died is dropped from the table; if it overlapped
//! the requested range the caller gets [`Error::OwnerDied`] once (the data may be
//! half-written), like a robust mutex.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut, Range, RangeBounds};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::region::resolve;
use super::shared_lock::{SharedLock, SharedLockGuard};
use crate::error::{Error, Result};
use crate::sync::raw::{self, OWNER_CHECK, RawMutex};
use crate::sync::{DATA, Kind, Lock, NotSend, OFF_TABLE, RLock, Segment, fingerprint};
use crate::sys::{self, Plain};

const TABLE_LOCK: usize = 0;
const SEQ: usize = 1;
const WAITERS: usize = 2;
/// How many ranges may be locked at once (further lockers wait for a free slot).
const MAX_CLAIMS: usize = 64;
const CLAIM_SIZE: usize = 24;

/// An array of a [`Plain`] type in shared memory, with range locks (Python's
/// `multiprocessing.Array`). Clones and copies passed to workers share the memory; passing
/// a 100 MB array to a worker sends one descriptor.
///
/// [`lock`](Array::lock) locks the whole array, [`lock_range`](Array::lock_range) a part; the
/// guard dereferences to a slice for bulk work in place. Locks on disjoint ranges do not
/// wait for each other, so several processes can fill their own parts at memory speed.
/// [`read_range`](Array::read_range) takes a shared lock: any number of readers of
/// overlapping ranges proceed together, and only writers of those ranges wait.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn fill(data: mp::Array<f64>, half: usize) -> mp::Result<()> {
///     let n = data.len() / 2;
///     let mut part = data.lock_range(half * n..(half + 1) * n)?;
///     for (i, x) in part.iter_mut().enumerate() {
///         *x = (half * n + i) as f64;
///     }
///     Ok(())
/// }
///
/// let data = mp::Array::<f64>::new(1000)?;
/// let mut workers: Vec<_> = (0..2)
///     .map(|half| mp::spawn(fill, (data.clone(), half)))
///     .collect::<mp::Result<_>>()?;
/// for w in &mut workers {
///     w.join()??;
/// }
/// assert_eq!(data.get(999)?, 999.0);
/// # Ok::<(), mp::Error>(())
/// ```
///
/// Python's `Array(t, n, lock=l)`, one lock for several arrays and values, is
/// [`with_lock`](Array::with_lock) / [`with_rlock`](Array::with_rlock); `lock=False` is
/// [`RawArray`](crate::RawArray).
pub struct Array<T> {
    pub(super) seg: Arc<Segment>,
    pub(super) _type: PhantomData<T>,
    /// The lock shared with other values, held with every claim (see `shared_lock.rs`).
    pub(super) shared: Option<SharedLock>,
}

/// A locked range of an [`Array`]; dereferences to a slice; unlocks on drop.
#[must_use = "the range is unlocked when the guard is dropped"]
pub struct ArrayGuard<'a, T> {
    claim: Claim<'a, T>,
    data: &'a mut [T],
}

/// A range of an [`Array`] locked for reading (shared with other readers); dereferences to a
/// shared slice; unlocks on drop.
#[must_use = "the range is unlocked when the guard is dropped"]
pub struct ArrayReadGuard<'a, T> {
    claim: Claim<'a, T>,
    data: &'a [T],
}

/// A claim in the table, removed on drop.
struct Claim<'a, T> {
    array: &'a Array<T>,
    slot: usize,
    range: Range<usize>,
    _not_send: NotSend,
    /// Released after the claim is removed (fields drop after `Drop::drop`).
    _shared: Option<SharedLockGuard<'a>>,
}

const EXCLUSIVE: u32 = 0;
const SHARED: u32 = 1;

impl<T> Array<T> {
    /// Tells sleeping lockers that the claim table changed.
    fn wake(&self) {
        self.seg.word(SEQ).fetch_add(1, Ordering::SeqCst);
        if self.seg.word(WAITERS).load(Ordering::SeqCst) > 0 {
            sys::futex_wake(self.seg.word(SEQ), u32::MAX);
        }
    }
}

impl<T: Plain> Array<T> {
    /// A shared array of `len` zeroed elements (Python's `Array('d', 10)`).
    ///
    /// ```
    /// let a = mp::Array::<i32>::new(3)?;
    /// assert_eq!(a.to_vec()?, [0, 0, 0]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn new(len: usize) -> Result<Array<T>> {
        Ok(Array {
            seg: Segment::create(Kind::Array, fingerprint::<T>(), len, size_of::<T>())?,
            _type: PhantomData,
            shared: None,
        })
    }

    /// A shared array of `len` zeroed elements guarded by `lock`, which other arrays and
    /// values may share (Python's `Array(t, n, lock=l)`): every range lock, read lock, `get`
    /// and `set` takes `lock` first and holds it with the range, so ranges no longer proceed
    /// in parallel. The lock travels with the array. With a [`Lock`], a thread holds one
    /// guard at a time; see [`with_rlock`](Array::with_rlock).
    ///
    /// ```
    /// let lock = mp::Lock::new()?;
    /// let xs = mp::Array::<f64>::with_lock(4, &lock)?;
    /// let total = mp::Value::with_lock(0.0f64, &lock)?;
    /// xs.set(1, 2.5)?;
    /// total.set(2.5)?;
    /// assert_eq!(xs.get(1)?, total.get()?);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn with_lock(len: usize, lock: &Lock) -> Result<Array<T>> {
        let mut array = Self::new(len)?;
        array.shared = Some(SharedLock::Lock(lock.clone()));
        Ok(array)
    }

    /// A shared array of `len` zeroed elements guarded by the re-entrant `lock`, which other
    /// arrays and values may share: holding the `RLock` (or a guard of one of them), a thread
    /// may lock the others too, for one critical section over all of them. Overlapping
    /// guards of the same array in one thread are [`Error::Deadlock`], as without it.
    ///
    /// ```
    /// let lock = mp::RLock::new()?;
    /// let xs = mp::Array::<u32>::with_rlock(3, &lock)?;
    /// let count = mp::Value::with_rlock(0u32, &lock)?;
    /// {
    ///     let mut all = xs.lock()?;
    ///     all[0] = 7;
    ///     *count.lock()? += 1; // still inside the same critical section
    /// }
    /// assert_eq!((xs.get(0)?, count.get()?), (7, 1));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn with_rlock(len: usize, lock: &RLock) -> Result<Array<T>> {
        let mut array = Self::new(len)?;
        array.shared = Some(SharedLock::RLock(lock.clone()));
        Ok(array)
    }

    /// A shared array holding a copy of `values` (Python's `Array('i', [0, 1, 2])`).
    ///
    /// ```
    /// let a = mp::Array::from_slice(&[1, 2, 3])?;
    /// assert_eq!(a.to_vec()?, [1, 2, 3]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn from_slice(values: &[T]) -> Result<Array<T>> {
        let array = Self::new(values.len())?;
        array.seg.map().write_slice(DATA, values);
        Ok(array)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.seg.count()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Byte offsets of claim `i`'s owner word (its mode word follows) and its bounds.
    fn claim(&self, i: usize) -> (usize, usize) {
        (OFF_TABLE + i * CLAIM_SIZE, OFF_TABLE + i * CLAIM_SIZE + 8)
    }

    fn claim_owner(&self, i: usize) -> &std::sync::atomic::AtomicU32 {
        self.seg.map().atomic_u32(self.claim(i).0)
    }

    fn claim_range(&self, i: usize) -> Range<usize> {
        let off = self.claim(i).1;
        let start = self.seg.map().atomic_u64(off).load(Ordering::Relaxed) as usize;
        let end = self.seg.map().atomic_u64(off + 8).load(Ordering::Relaxed) as usize;
        start..end
    }

    fn lock_until(
        &self,
        range: Range<usize>,
        mode: u32,
        deadline: Option<Instant>,
    ) -> Result<Claim<'_, T>> {
        let shared = match &self.shared {
            Some(lock) => Some(lock.acquire(deadline)?),
            None => None,
        };
        let me = sys::gettid();
        let table = RawMutex::new(self.seg.word(TABLE_LOCK));
        // When to check the owners of conflicting claims; set on the first wait, so the
        // uncontended path reads no clock. Under a shared lock, a claim of another thread is
        // a dead one (every holder holds the shared lock): check at once.
        let mut next_check: Option<Instant> = shared.as_ref().map(|_| Instant::now());
        let mut died = None;
        loop {
            let check_owners = next_check.is_some_and(|c| Instant::now() >= c);
            if check_owners {
                next_check = Some(Instant::now() + OWNER_CHECK);
            }
            if let raw::Acquired::OwnerDied(tid) = table.lock(deadline)? {
                // Table updates are single stores, owner last: the table is consistent.
                tracing::warn!(target: "mp", "array table holder (thread {tid}) died");
            }
            let mut conflict = false;
            let mut free = None;
            for i in 0..MAX_CLAIMS {
                let owner = self.claim_owner(i).load(Ordering::Relaxed);
                if owner == 0 {
                    free = free.or(Some(i));
                    continue;
                }
                let theirs = self.claim_range(i);
                let their_mode = self
                    .seg
                    .map()
                    .atomic_u32(self.claim(i).0 + 4)
                    .load(Ordering::Relaxed);
                let overlaps = theirs.start < range.end
                    && range.start < theirs.end
                    && (mode == EXCLUSIVE || their_mode == EXCLUSIVE);
                if check_owners && owner != me && !sys::thread_alive(owner) {
                    self.claim_owner(i).store(0, Ordering::Relaxed);
                    free = free.or(Some(i));
                    // Under a shared lock the death was reported by that lock: silent.
                    if overlaps && shared.is_none() {
                        died = Some(owner);
                    } else {
                        tracing::warn!(target: "mp", "array range holder (thread {owner}) died");
                    }
                    continue;
                }
                if overlaps {
                    if owner == me {
                        table.unlock();
                        return Err(Error::Deadlock);
                    }
                    conflict = true;
                }
            }
            if let Some(tid) = died {
                table.unlock();
                self.wake();
                tracing::warn!(target: "mp", "array range holder (thread {tid}) died; range recovered");
                return Err(Error::OwnerDied { tid });
            }
            if let (false, Some(slot)) = (conflict, free) {
                let (owner, bounds) = self.claim(slot);
                let map = self.seg.map();
                map.atomic_u64(bounds)
                    .store(range.start as u64, Ordering::Relaxed);
                map.atomic_u64(bounds + 8)
                    .store(range.end as u64, Ordering::Relaxed);
                map.atomic_u32(owner + 4).store(mode, Ordering::Relaxed);
                map.atomic_u32(owner).store(me, Ordering::Relaxed);
                table.unlock();
                return Ok(Claim {
                    array: self,
                    slot,
                    range,
                    _not_send: NotSend::default(),
                    _shared: shared,
                });
            }
            // Wait for a release, re-checking owners now and then.
            let seq = self.seg.word(SEQ);
            let observed = seq.load(Ordering::SeqCst);
            table.unlock();
            let waiters = self.seg.word(WAITERS);
            waiters.fetch_add(1, Ordering::SeqCst);
            let check_at = *next_check.get_or_insert_with(|| Instant::now() + OWNER_CHECK);
            let wake_by = Some(deadline.map_or(check_at, |d| d.min(check_at)));
            let waited = raw::wait_word(seq, observed, wake_by);
            waiters.fetch_sub(1, Ordering::SeqCst);
            if !waited && deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout);
            }
        }
    }

    fn write_guard<'a>(&'a self, claim: Claim<'a, T>) -> ArrayGuard<'a, T> {
        let range = claim.range.clone();
        #[allow(unsafe_code)]
        // SAFETY: the segment holds `len` elements of `T` from `DATA` (created so, or checked
        // on receipt); `range` is within them (resolved against `len`). The exclusive claim
        // excludes every other locker of an overlapping range until the guard, which borrows
        // `self`, drops and removes it.
        let data = unsafe {
            self.seg
                .map()
                .slice_mut::<T>(DATA + range.start * size_of::<T>(), range.len())
        };
        ArrayGuard { claim, data }
    }

    fn read_guard<'a>(&'a self, claim: Claim<'a, T>) -> ArrayReadGuard<'a, T> {
        let range = claim.range.clone();
        #[allow(unsafe_code)]
        // SAFETY: as in `write_guard`; the shared claim excludes every exclusive (writing)
        // claim on an overlapping range while the guard lives.
        let data = unsafe {
            self.seg
                .map()
                .slice::<T>(DATA + range.start * size_of::<T>(), range.len())
        };
        ArrayReadGuard { claim, data }
    }

    /// Locks the whole array (Python's `with arr.get_lock():`); the guard dereferences to
    /// the elements as a mutable slice.
    ///
    /// ```
    /// let a = mp::Array::from_slice(&[3, 1, 2])?;
    /// a.lock()?.sort();
    /// assert_eq!(a.to_vec()?, [1, 2, 3]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    #[doc(alias = "get_lock")]
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>> {
        Ok(self.write_guard(self.lock_until(0..self.len(), EXCLUSIVE, None)?))
    }

    /// Locks the elements in `range`; waits only for holders of overlapping ranges.
    ///
    /// Errors: [`Error::OutOfRange`] for a range outside the array, [`Error::Deadlock`] if
    /// this thread holds an overlapping range, [`Error::OwnerDied`] once if a process died
    /// holding an overlapping range (it is free again).
    ///
    /// ```
    /// let a = mp::Array::<u8>::new(10)?;
    /// let mut left = a.lock_range(..5)?;
    /// let mut right = a.lock_range(5..)?; // disjoint: no waiting
    /// left.fill(1);
    /// right.fill(2);
    /// drop((left, right));
    /// assert_eq!(a.to_vec()?, [1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn lock_range(&self, range: impl RangeBounds<usize>) -> Result<ArrayGuard<'_, T>> {
        let claim = self.lock_until(resolve(range, self.len())?, EXCLUSIVE, None)?;
        Ok(self.write_guard(claim))
    }

    /// As [`lock_range`](Array::lock_range), giving up with [`Error::Timeout`] after
    /// `timeout`.
    ///
    /// ```
    /// let a = mp::Array::<u8>::new(4)?;
    /// let _all = a.lock()?;
    /// let other = std::thread::spawn({
    ///     let a = a.clone();
    ///     move || matches!(a.lock_range_timeout(0..1, std::time::Duration::from_millis(10)), Err(mp::Error::Timeout))
    /// });
    /// assert!(other.join().unwrap());
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn lock_range_timeout(
        &self,
        range: impl RangeBounds<usize>,
        timeout: Duration,
    ) -> Result<ArrayGuard<'_, T>> {
        let deadline = raw::deadline_after(Some(timeout));
        let claim = self.lock_until(resolve(range, self.len())?, EXCLUSIVE, deadline)?;
        Ok(self.write_guard(claim))
    }

    /// Locks the elements in `range` for reading: other readers of overlapping ranges
    /// proceed at the same time; writers of overlapping ranges wait (and it waits for them).
    ///
    /// ```
    /// let a = mp::Array::from_slice(&[1, 2, 3, 4])?;
    /// let left = a.read_range(..3)?;
    /// let right = a.read_range(1..)?; // overlapping readers: no waiting
    /// assert_eq!(left.iter().sum::<i32>() + right.iter().sum::<i32>(), 15);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn read_range(&self, range: impl RangeBounds<usize>) -> Result<ArrayReadGuard<'_, T>> {
        let claim = self.lock_until(resolve(range, self.len())?, SHARED, None)?;
        Ok(self.read_guard(claim))
    }

    /// As [`read_range`](Array::read_range), giving up with [`Error::Timeout`] after
    /// `timeout`.
    ///
    /// ```
    /// let a = mp::Array::<u8>::new(4)?;
    /// assert_eq!(a.read_range_timeout(.., std::time::Duration::from_secs(1))?.len(), 4);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn read_range_timeout(
        &self,
        range: impl RangeBounds<usize>,
        timeout: Duration,
    ) -> Result<ArrayReadGuard<'_, T>> {
        let deadline = raw::deadline_after(Some(timeout));
        let claim = self.lock_until(resolve(range, self.len())?, SHARED, deadline)?;
        Ok(self.read_guard(claim))
    }

    /// The element at `index`, read under a lock of that element (Python's `arr[i]`).
    ///
    /// ```
    /// let a = mp::Array::from_slice(&[10, 20])?;
    /// assert_eq!(a.get(1)?, 20);
    /// assert!(matches!(a.get(2), Err(mp::Error::OutOfRange { index: 2, len: 2 })));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn get(&self, index: usize) -> Result<T> {
        self.check_index(index)?;
        let claim = self.lock_until(index..index + 1, SHARED, None)?;
        Ok(self.read_guard(claim).data[0])
    }

    /// Sets the element at `index` under a lock of that element (Python's `arr[i] = x`).
    ///
    /// ```
    /// let a = mp::Array::from_slice(&[1, 2, 3])?;
    /// a.set(0, 99)?;
    /// assert_eq!(a.to_vec()?, [99, 2, 3]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        self.check_index(index)?;
        let claim = self.lock_until(index..index + 1, EXCLUSIVE, None)?;
        self.write_guard(claim).data[0] = value;
        Ok(())
    }

    fn check_index(&self, index: usize) -> Result<()> {
        if index < self.len() {
            Ok(())
        } else {
            Err(Error::OutOfRange {
                index,
                len: self.len(),
            })
        }
    }

    /// A copy of all elements, taken under a read lock of the whole array (Python's
    /// `arr[:]`).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.read_range(..)?.to_vec())
    }
}

impl<T> ArrayGuard<'_, T> {
    /// The range of the array this guard holds.
    ///
    /// ```
    /// let a = mp::Array::<u8>::new(8)?;
    /// assert_eq!(a.lock_range(2..4)?.range(), 2..4);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn range(&self) -> Range<usize> {
        self.claim.range.clone()
    }
}

impl<T> ArrayReadGuard<'_, T> {
    /// The range of the array this guard holds.
    ///
    /// ```
    /// let a = mp::Array::<u8>::new(8)?;
    /// assert_eq!(a.read_range(2..)?.range(), 2..8);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn range(&self) -> Range<usize> {
        self.claim.range.clone()
    }
}

impl<T> Deref for ArrayReadGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.data
    }
}

impl<T> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.data
    }
}

impl<T> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.data
    }
}

impl<T> Drop for Claim<'_, T> {
    fn drop(&mut self) {
        let array = self.array;
        let table = RawMutex::new(array.seg.word(TABLE_LOCK));
        // The table lock orders the removal with other lockers' scans. Without a deadline
        // `lock` cannot fail, and a dead previous holder leaves the table consistent.
        let _ = table.lock(None);
        array
            .seg
            .map()
            .atomic_u32(OFF_TABLE + self.slot * CLAIM_SIZE)
            .store(0, Ordering::Release);
        table.unlock();
        array.wake();
    }
}

impl<T> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.seg.count())
            .finish()
    }
}

impl<T> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("range", &self.claim.range)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for ArrayReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayReadGuard")
            .field("range", &self.claim.range)
            .finish_non_exhaustive()
    }
}
