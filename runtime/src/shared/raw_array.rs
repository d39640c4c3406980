//! `RawArray<T>`: an array of `Plain` values in shared memory without a lock (Python's
//! `RawArray`): element and bulk copies, and atomics for integer elements.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use super::region::Region;
use crate::error::Result;
use crate::sync::{DATA, Kind, Segment, fingerprint, typed_segment_handle};
use crate::sys::{HasAtomic, Plain};

/// An array of a [`Plain`] type in shared memory without a lock (Python's `RawArray`, or
/// `Array(..., lock=False)`): element and bulk copies, and atomics for integer elements.
/// Nothing stops two processes writing the same element at once; use [`Array`](crate::Array) for that.
///
/// ```
/// use std::sync::atomic::Ordering;
///
/// let hist = mp::RawArray::<u64>::new(4)?;
/// hist.atomic(2)?.fetch_add(1, Ordering::Relaxed);
/// hist.write(0, &[7])?;
/// assert_eq!(hist.to_vec(), [7, 0, 1, 0]);
/// # Ok::<(), mp::Error>(())
/// ```
pub struct RawArray<T> {
    seg: Arc<Segment>,
    _type: PhantomData<T>,
}

impl<T: Plain> RawArray<T> {
    /// A shared array of `len` zeroed elements.
    ///
    /// ```
    /// assert_eq!(mp::RawArray::<f32>::new(2)?.to_vec(), [0.0, 0.0]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn new(len: usize) -> Result<RawArray<T>> {
        Ok(RawArray {
            seg: Segment::create(Kind::RawArray, fingerprint::<T>(), len, size_of::<T>())?,
            _type: PhantomData,
        })
    }

    /// A shared array holding a copy of `values`.
    ///
    /// ```
    /// assert_eq!(mp::RawArray::from_slice(&[1u8, 2])?.to_vec(), [1, 2]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn from_slice(values: &[T]) -> Result<RawArray<T>> {
        let array = Self::new(values.len())?;
        array.seg.map().write_slice(DATA, values);
        Ok(array)
    }

    fn region(&self) -> Region<'_, T> {
        Region::new(self.seg.map(), DATA, self.seg.count())
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.seg.count()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the element at `index`.
    ///
    /// ```
    /// let a = mp::RawArray::from_slice(&[5, 6])?;
    /// assert_eq!(a.get(1)?, 6);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn get(&self, index: usize) -> Result<T> {
        self.region().get(index)
    }

    /// Overwrites the element at `index`.
    ///
    /// ```
    /// let a = mp::RawArray::from_slice(&[5, 6])?;
    /// a.set(0, 9)?;
    /// assert_eq!(a.to_vec(), [9, 6]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        self.region().set(index, value)
    }

    /// Copies elements from `start` into `dst` (bulk; one `memcpy`).
    ///
    /// ```
    /// let a = mp::RawArray::from_slice(&[1, 2, 3, 4])?;
    /// let mut two = [0; 2];
    /// a.read(1, &mut two)?;
    /// assert_eq!(two, [2, 3]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn read(&self, start: usize, dst: &mut [T]) -> Result<()> {
        self.region().read(start, dst)
    }

    /// Copies `src` into the array from `start` (bulk; one `memcpy`).
    ///
    /// ```
    /// let a = mp::RawArray::<u16>::new(4)?;
    /// a.write(2, &[8, 9])?;
    /// assert_eq!(a.to_vec(), [0, 0, 8, 9]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn write(&self, start: usize, src: &[T]) -> Result<()> {
        self.region().write(start, src)
    }

    /// A copy of all elements.
    pub fn to_vec(&self) -> Vec<T> {
        self.region().to_vec()
    }

    /// The element at `index` as its standard atomic type, for lock-free updates.
    pub fn atomic(&self, index: usize) -> Result<&T::Atomic>
    where
        T: HasAtomic,
    {
        self.region().atomic(index)
    }
}

impl<T> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.seg.count())
            .finish()
    }
}

typed_segment_handle!(RawArray, Kind::RawArray);
