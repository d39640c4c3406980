//! `ArrayGuard` and `ArrayReadGuard`: a locked range of an `Array`, as the slice its holder
//! works on, and the claim it holds (taken and released in `array.rs`). Must not read or
//! change the claim table.

use std::fmt;
use std::ops::{Deref, DerefMut, Range};

use super::array::Claim;

/// A locked range of an [`Array`](crate::Array); dereferences to a slice; unlocks on drop.
#[must_use = "the range is unlocked when the guard is dropped"]
pub struct ArrayGuard<'a, T> {
    pub(super) claim: Claim<'a, T>,
    pub(super) data: &'a mut [T],
}

/// A range of an [`Array`](crate::Array) locked for reading (shared with other readers);
/// dereferences to a shared slice; unlocks on drop.
#[must_use = "the range is unlocked when the guard is dropped"]
pub struct ArrayReadGuard<'a, T> {
    pub(super) claim: Claim<'a, T>,
    pub(super) data: &'a [T],
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
