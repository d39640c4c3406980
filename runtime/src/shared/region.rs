//! Lock-free typed access to a run of `T`s in a shared mapping: the operations `RawArray`,
//! `RawValue` and typed `SharedMemory` views have in common. Every access is bounds-checked
//! and a copy (or an atomic), never a reference that another process could write through.

use std::ops::{Bound, Range, RangeBounds};

use crate::error::{Error, Result};
use crate::sys::{HasAtomic, Plain, SharedMapping};

/// `len` values of `T` at byte `offset` of `map`.
pub(crate) struct Region<'a, T> {
    pub(crate) map: &'a SharedMapping,
    pub(crate) offset: usize,
    pub(crate) len: usize,
    pub(crate) _type: std::marker::PhantomData<T>,
}

impl<'a, T: Plain> Region<'a, T> {
    pub(crate) fn new(map: &'a SharedMapping, offset: usize, len: usize) -> Self {
        Region {
            map,
            offset,
            len,
            _type: std::marker::PhantomData,
        }
    }

    fn at(&self, index: usize) -> Result<usize> {
        if index < self.len {
            Ok(self.offset + index * size_of::<T>())
        } else {
            Err(Error::OutOfRange {
                index,
                len: self.len,
            })
        }
    }

    fn span(&self, start: usize, count: usize) -> Result<usize> {
        match start.checked_add(count) {
            Some(end) if end <= self.len => Ok(self.offset + start * size_of::<T>()),
            _ => Err(Error::OutOfRange {
                index: start.saturating_add(count),
                len: self.len,
            }),
        }
    }

    pub(crate) fn get(&self, index: usize) -> Result<T> {
        Ok(self.map.read_plain(self.at(index)?))
    }

    pub(crate) fn set(&self, index: usize, value: T) -> Result<()> {
        self.map.write_plain(self.at(index)?, value);
        Ok(())
    }

    pub(crate) fn read(&self, start: usize, dst: &mut [T]) -> Result<()> {
        let off = self.span(start, dst.len())?;
        self.map.read_slice(off, dst);
        Ok(())
    }

    pub(crate) fn write(&self, start: usize, src: &[T]) -> Result<()> {
        let off = self.span(start, src.len())?;
        self.map.write_slice(off, src);
        Ok(())
    }

    pub(crate) fn to_vec(&self) -> Vec<T> {
        if self.len == 0 {
            return Vec::new();
        }
        // Any initialised `T` will do as filler before the bulk copy overwrites it.
        let mut out = vec![self.map.read_plain::<T>(self.offset); self.len];
        self.map.read_slice(self.offset, &mut out);
        out
    }

    pub(crate) fn atomic(&self, index: usize) -> Result<&'a T::Atomic>
    where
        T: HasAtomic,
    {
        Ok(self.map.atomic::<T::Atomic>(self.at(index)?))
    }
}

/// Resolves `range` against `len`: a checked `start..end`.
pub(crate) fn resolve(range: impl RangeBounds<usize>, len: usize) -> Result<Range<usize>> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => len,
    };
    if start > end || end > len {
        return Err(Error::OutOfRange {
            index: end.max(start),
            len,
        });
    }
    Ok(start..end)
}
