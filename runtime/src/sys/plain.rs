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
