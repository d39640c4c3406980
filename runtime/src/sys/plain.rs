//! Which Rust types may live in memory shared between processes ([`Plain`]), which of them
//! accept any bit pattern ([`Numeric`]), and the atomics that may be placed there
//! ([`AtomicCell`]). The markers are `unsafe` traits, so they live beside the raw memory code.
#![allow(unsafe_code)]

use std::sync::atomic::{
    AtomicBool, AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16,
    AtomicU32, AtomicU64, AtomicUsize,
};

/// A type whose values can live in shared memory: [`Value`](crate::Value),
/// [`Array`](crate::Array) and their raw variants hold `Plain` data.
///
/// Implemented for the integers, floats, `bool`, `char`, `()` and arrays of `Plain` types. For
/// your own `#[repr(C)]` structs, derive it: the derive checks the representation, that every
/// field is `Plain` and that the struct has no padding.
///
/// ```
/// #[derive(Clone, Copy, Debug, PartialEq, mp::Plain)]
/// #[repr(C)]
/// struct Particle {
///     pos: [f64; 3],
///     mass: f64,
/// }
///
/// let p = mp::Value::new(Particle { pos: [0.0; 3], mass: 1.5 })?;
/// assert_eq!(p.get()?.mass, 1.5);
/// # Ok::<(), mp::Error>(())
/// ```
///
/// # Safety
///
/// Implementors must be `Copy`, contain no pointers, references or padding, and be valid when
/// all their bytes are zero (new shared memory is zeroed). Bit patterns other than those of
/// values written through `mp`'s typed API need not be valid: a segment is only ever opened as
/// the type it was created with (checked when a handle is received).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot live in shared memory",
    label = "not `mp::Plain`",
    note = "shared memory holds integers, floats, `bool`, `char`, arrays of them, and \
            `#[repr(C)]` structs with `#[derive(mp::Plain)]`",
    note = "for other data (`String`, `Vec`, boxed values) send messages with `mp::Queue` or \
            `mp::Pipe` instead"
)]
pub unsafe trait Plain: Copy + Send + Sync + 'static {}

/// A [`Plain`] type for which every bit pattern is a valid value: the integers and floats.
/// Typed views of raw [`SharedMemory`](crate::SharedMemory) are limited to these, because any
/// process may write any bytes there.
///
/// ```
/// fn takes_numeric<T: mp::Numeric>() {}
/// takes_numeric::<f64>();
/// takes_numeric::<u8>();
/// ```
///
/// # Safety
///
/// Implementors must be [`Plain`] and valid for every bit pattern.
pub unsafe trait Numeric: Plain {}

/// A [`Plain`] integer (or `bool`) with a matching standard atomic type, so that a
/// [`RawValue`](crate::RawValue) or [`RawArray`](crate::RawArray) of it can be updated
/// lock-free.
///
/// ```
/// use std::sync::atomic::Ordering;
///
/// let hits = mp::RawValue::new(0u64)?;
/// hits.atomic().fetch_add(2, Ordering::Relaxed);
/// assert_eq!(hits.get(), 2);
/// # Ok::<(), mp::Error>(())
/// ```
pub trait HasAtomic: Plain {
    /// The standard atomic with the same size and layout (`u64` → `AtomicU64`).
    type Atomic: AtomicCell;
}

/// A standard atomic type that may be placed in shared memory.
///
/// # Safety
///
/// Implementors must be one of the `std::sync::atomic` types: the same size and alignment as
/// their plain integer, valid when zeroed, and usable across processes (lock-free).
pub unsafe trait AtomicCell: Send + Sync + 'static {}

macro_rules! plain {
    ($($t:ty),*) => { $(
        // SAFETY: a primitive without pointers or padding, valid when zeroed.
        unsafe impl Plain for $t {}
    )* };
}
macro_rules! numeric {
    ($($t:ty),*) => { $(
        // SAFETY: every bit pattern is a valid integer or float.
        unsafe impl Numeric for $t {}
    )* };
}
macro_rules! atomic {
    ($($t:ty => $a:ty),*) => { $(
        impl HasAtomic for $t {
            type Atomic = $a;
        }
        // SAFETY: a `std::sync::atomic` type, lock-free on every platform `mp` supports.
        unsafe impl AtomicCell for $a {}
    )* };
}

plain!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    ()
);
numeric!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
);
atomic!(
    u8 => AtomicU8, u16 => AtomicU16, u32 => AtomicU32, u64 => AtomicU64, usize => AtomicUsize,
    i8 => AtomicI8, i16 => AtomicI16, i32 => AtomicI32, i64 => AtomicI64, isize => AtomicIsize,
    bool => AtomicBool
);

// SAFETY: an array of `Plain` values has no padding between elements and is zero-valid.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}
// SAFETY: an array of always-valid values is always valid.
unsafe impl<T: Numeric, const N: usize> Numeric for [T; N] {}

/// Whether `T` is a primitive integer or float whose `mp` wire encoding is exactly its
/// little-endian bytes (fixed-size integers; `usize`/`isize` travel as 64 bits, so they
/// qualify only where they are 64 bits wide). Decided from the type alone, so a sequence of
/// such values can be copied in one piece instead of element by element.
pub(crate) fn is_wire_numeric<T: 'static>() -> bool {
    use std::any::TypeId;
    let t = TypeId::of::<T>();
    let word = TypeId::of::<usize>() == t || TypeId::of::<isize>() == t;
    let fixed = [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<u128>(),
        TypeId::of::<i8>(),
        TypeId::of::<i16>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
        TypeId::of::<i128>(),
        TypeId::of::<f32>(),
        TypeId::of::<f64>(),
    ]
    .contains(&t);
    cfg!(target_endian = "little") && (fixed || (word && size_of::<usize>() == 8))
}

/// The bytes of `items` when [`is_wire_numeric::<T>`](is_wire_numeric); `None` otherwise.
pub(crate) fn numeric_bytes<T: 'static>(items: &[T]) -> Option<&[u8]> {
    if !is_wire_numeric::<T>() {
        return None;
    }
    // SAFETY: `T` is a primitive integer or float (checked above): no padding, no pointers,
    // every byte initialised. The view covers exactly the slice and borrows it.
    Some(unsafe { std::slice::from_raw_parts(items.as_ptr().cast::<u8>(), size_of_val(items)) })
}

/// A vector of the values whose bytes are `bytes`, when [`is_wire_numeric::<T>`](is_wire_numeric)
/// and `bytes` holds a whole number of them; `None` otherwise.
pub(crate) fn numeric_vec<T: 'static>(bytes: &[u8]) -> Option<Vec<T>> {
    if !is_wire_numeric::<T>() || bytes.len() % size_of::<T>() != 0 {
        return None;
    }
    let n = bytes.len() / size_of::<T>();
    let mut v = Vec::<T>::with_capacity(n);
    prefault(v.as_mut_ptr().cast::<u8>(), bytes.len());
    // SAFETY: `T` is a primitive integer or float, valid for every bit pattern; the vector has
    // room for `n` values, which are exactly `bytes.len()` bytes, all written before `set_len`.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr().cast::<u8>(), bytes.len());
        v.set_len(n);
    }
    Some(v)
}

/// From this size, a fresh buffer about to be filled has its pages faulted in by one call
/// rather than one trap per 4 KiB page.
pub(crate) const PREFAULT_FROM: usize = 4 << 20;

/// Faults in, writable, the pages of `len` bytes at `ptr` (memory of ours about to be written
/// whole), when `len` is at least [`PREFAULT_FROM`]: `madvise(MADV_POPULATE_WRITE)`, one
/// system call for what would be a page fault per page (a 100 MB copy into fresh memory took
/// 50–87 ms instead of 73–129 ms here, interleaved, a loaded machine). An older kernel (before
/// 5.14) refuses the advice, and the pages then fault one by one as before.
pub(crate) fn prefault(ptr: *mut u8, len: usize) {
    if len < PREFAULT_FROM {
        return;
    }
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: `sysconf` has no memory-safety preconditions.
    let page = *PAGE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    });
    let start = (ptr as usize).next_multiple_of(page);
    let end = (ptr as usize + len) / page * page;
    if end <= start {
        return;
    }
    // SAFETY: the whole pages inside `ptr..ptr + len`, memory the caller owns; populating
    // only maps their pages (zero-filled, or unchanged where already present), it never
    // changes what the memory holds.
    let _ = unsafe {
        rustix::mm::madvise(
            start as *mut std::ffi::c_void,
            end - start,
            rustix::mm::Advice::LinuxPopulateWrite,
        )
    };
}

/// The values whose bytes are `bytes` (a trailing part of a value is ignored), read in place,
/// when [`is_wire_numeric::<T>`](is_wire_numeric); `None` otherwise. The iterator knows its
/// length exactly, so collecting it writes values without a check each.
pub(crate) fn numeric_values<T: 'static>(
    bytes: &[u8],
) -> Option<impl ExactSizeIterator<Item = T> + '_> {
    if !is_wire_numeric::<T>() {
        return None;
    }
    let n = bytes.len() / size_of::<T>();
    let start = bytes.as_ptr().cast::<T>();
    Some((0..n).map(move |i| {
        // SAFETY: `T` is a primitive integer or float (checked above), valid for every bit
        // pattern; `i < n`, so value `i` lies whole within `bytes`, which the iterator
        // borrows (an unaligned read).
        unsafe { std::ptr::read_unaligned(start.add(i)) }
    }))
}

/// A vector of numbers (see [`is_wire_numeric`]) filled by runs of bytes copied to their
/// place in any order (a pool `map`'s results, chunk by chunk as they arrive), with no zeroing
/// first: [`NumericFill::finish`] hands the values over only once every one of them has been
/// written exactly once.
pub(crate) struct NumericFill<T> {
    /// Length 0; the values are written into its spare capacity.
    values: Vec<T>,
    /// The runs written so far, as `start -> end` (value indices), never overlapping.
    written: std::collections::BTreeMap<usize, usize>,
    /// The values written so far (the runs' total length).
    count: usize,
    /// The room asked for: runs end by this many values.
    room: usize,
}

impl<T: 'static> NumericFill<T> {
    /// Room for `n` values, when `T` is a wire number; `None` otherwise.
    pub(crate) fn new(n: usize) -> Option<NumericFill<T>> {
        (is_wire_numeric::<T>() && size_of::<T>() > 0).then(|| NumericFill {
            values: Vec::with_capacity(n),
            written: std::collections::BTreeMap::new(),
            count: 0,
            room: n,
        })
    }

    /// Copies `bytes`, whole values, to values `first..`; false (and nothing written) when
    /// they are not whole values, do not fit in the room asked for, or overlap a run written
    /// before.
    pub(crate) fn place(&mut self, first: usize, bytes: &[u8]) -> bool {
        let size = size_of::<T>();
        if bytes.len() % size != 0 {
            return false;
        }
        let n = bytes.len() / size;
        let Some(end) = first.checked_add(n) else {
            return false;
        };
        if end > self.room {
            return false;
        }
        if n == 0 {
            return true;
        }
        let before = self.written.range(..=first).next_back();
        let after = self.written.range(first..).next();
        if before.is_some_and(|(_, &e)| e > first) || after.is_some_and(|(&s, _)| s < end) {
            return false;
        }
        let room = self.values.spare_capacity_mut();
        // SAFETY: `T` is a primitive integer or float (checked by `new`), valid for every bit
        // pattern; the vector's length is 0, so its spare capacity is values `0..capacity`,
        // which holds `0..room`, where `first..end` lies (checked above). `bytes` holds
        // exactly `n` values' bytes and cannot overlap memory the vector owns exclusively.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                room.as_mut_ptr().add(first).cast::<u8>(),
                bytes.len(),
            );
        }
        self.written.insert(first, end);
        self.count += n;
        true
    }

    /// The values written, when they are exactly `0..k` for some `k` (every value once);
    /// `None` when a gap is left.
    pub(crate) fn finish(mut self) -> Option<Vec<T>> {
        let end = self.written.last_key_value().map_or(0, |(_, &e)| e);
        if end != self.count {
            return None;
        }
        // SAFETY: the runs never overlap (checked by `place`), lie within `0..end` and add up
        // to `end` values: every value of `0..end` has been written, within the capacity.
        unsafe { self.values.set_len(end) };
        Some(self.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fixed_layout_primitives_are_wire_numeric() {
        assert!(is_wire_numeric::<u64>() && is_wire_numeric::<f32>() && is_wire_numeric::<i8>());
        assert!(!is_wire_numeric::<bool>() && !is_wire_numeric::<char>());
        assert!(!is_wire_numeric::<(u32, u32)>() && !is_wire_numeric::<[u8; 4]>());
        assert!(numeric_bytes(&[String::new()]).is_none());
    }

    #[test]
    fn bytes_round_trip() {
        let v = [1.5f64, -2.0, f64::MAX];
        let bytes = numeric_bytes(&v).unwrap();
        assert_eq!(&bytes[8..16], &(-2.0f64).to_le_bytes());
        assert_eq!(numeric_vec::<f64>(bytes).unwrap(), v);
        assert_eq!(numeric_values::<f64>(bytes).unwrap().collect::<Vec<_>>(), v);
        let odd: Vec<u16> = numeric_values(&bytes[1..]).unwrap().collect();
        assert_eq!(
            (odd.len(), odd[3]),
            (11, u16::from_le_bytes([bytes[7], bytes[8]]))
        );
        assert!(numeric_values::<bool>(bytes).is_none());
        assert!(
            numeric_vec::<u32>(&[1, 2, 3]).is_none(),
            "not a whole number of values"
        );
    }

    #[test]
    fn fills_hand_over_only_whole_prefixes() {
        let bytes = |v: &[u32]| numeric_bytes(v).unwrap().to_vec();
        let mut fill = NumericFill::<u32>::new(6).unwrap();
        assert!(fill.place(3, &bytes(&[3, 4, 5])));
        assert!(!fill.place(2, &bytes(&[9, 9])), "overlaps the run at 3");
        assert!(
            !fill.place(5, &bytes(&[9, 9])),
            "overlaps the run at 3, and past the room"
        );
        assert!(!fill.place(0, &[1, 2, 3]), "not whole values");
        assert!(fill.place(0, &bytes(&[0, 1, 2])));
        assert!(!fill.place(0, &bytes(&[7])), "written already");
        assert!(fill.place(6, &[]));
        assert_eq!(fill.finish().unwrap(), [0, 1, 2, 3, 4, 5]);

        let mut gap = NumericFill::<u64>::new(4).unwrap();
        assert!(gap.place(2, numeric_bytes(&[2u64]).unwrap()));
        assert!(gap.finish().is_none(), "values 0 and 1 never written");
        assert_eq!(NumericFill::<u64>::new(4).unwrap().finish().unwrap(), []);
        assert!(NumericFill::<bool>::new(3).is_none());
    }

    #[test]
    fn prefaulting_keeps_what_memory_holds() {
        // Unaligned, page-straddling ranges of memory already written, and large copies.
        let mut held: Vec<u8> = (0..(PREFAULT_FROM + 3 * 4096 + 17))
            .map(|i| (i % 253) as u8)
            .collect();
        let before = held.clone();
        for (start, len) in [(1, PREFAULT_FROM), (4095, PREFAULT_FROM + 2), (0, 100)] {
            prefault(held[start..].as_mut_ptr(), len);
        }
        assert!(held == before);
        let big: Vec<u8> = (0..PREFAULT_FROM * 2 + 5)
            .map(|i| (i % 241) as u8)
            .collect();
        assert!(numeric_vec::<u8>(&big[3..]).unwrap() == big[3..]);
        let words: Vec<u64> = (0..(PREFAULT_FROM as u64 / 8 + 9)).collect();
        assert!(numeric_vec::<u64>(numeric_bytes(&words).unwrap()).unwrap() == words);
    }
}
