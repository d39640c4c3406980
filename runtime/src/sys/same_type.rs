//! Telling at run time that a generic value is one of a few concrete types, and using it as
//! that type: how the codec moves a `Vec<u8>` (or a vector of numbers) in one copy wherever
//! it sits inside a value, though serde hands it over as a generic `T`.
//!
//! Types are compared with `typeid::of`, which erases lifetimes; that comparison proves two
//! types equal only when the concrete side has no lifetime parameters, which is what
//! [`Exact`] promises. This module must not grow an `Exact` impl for a type with lifetimes.
#![allow(unsafe_code)]

use std::any::TypeId;
use std::mem::ManuallyDrop;

/// A type without lifetime parameters: `typeid::of::<T>() == TypeId::of::<Self>()` then means
/// that `T` *is* `Self`.
///
/// # Safety
///
/// Implemented only for types without lifetime parameters (checked by the list below).
pub(crate) unsafe trait Exact: 'static {}

macro_rules! exact {
    ($($t:ty),*) => { $(
        // SAFETY: vectors and boxed slices of primitive numbers hold no lifetimes.
        unsafe impl Exact for Vec<$t> {}
        // SAFETY: as above.
        unsafe impl Exact for Box<[$t]> {}
    )* };
}
exact!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
);

/// The identity of `T` with its lifetimes erased (for comparing a generic type, such as a
/// serde visitor, with one recorded earlier).
#[inline(always)]
pub(crate) fn erased_type_id<T: ?Sized>() -> TypeId {
    typeid::of::<T>()
}

/// Whether `T` is `U`.
#[inline(always)]
pub(crate) fn is_same<T: ?Sized, U: Exact>() -> bool {
    typeid::of::<T>() == TypeId::of::<U>()
}

/// `value` as a `U`, when `T` is `U`.
#[inline(always)]
pub(crate) fn as_exact<T: ?Sized, U: Exact>(value: &T) -> Option<&U> {
    if !is_same::<T, U>() {
        return None;
    }
    // SAFETY: `T` is `U` (equal erased ids, and `U` has no lifetimes to erase), so `T` is sized
    // and the pointer, cast to its own type, points to a valid `U` for the borrow's lifetime.
    Some(unsafe { &*std::ptr::from_ref(value).cast::<U>() })
}

/// `value` as a `T`, when `T` is `U`; handed back otherwise.
#[inline(always)]
pub(crate) fn from_exact<U: Exact, T>(value: U) -> Result<T, U> {
    if !is_same::<T, U>() {
        return Err(value);
    }
    let value = ManuallyDrop::new(value);
    // SAFETY: `T` is `U` (as in `as_exact`); the value is read out once and, being in a
    // `ManuallyDrop`, not dropped here, so ownership moves to the result.
    Ok(unsafe { std::ptr::read(std::ptr::from_ref::<U>(&value).cast::<T>()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_type_converts() {
        let v = vec![1u8, 2];
        assert_eq!(as_exact::<_, Vec<u8>>(&v), Some(&v));
        assert!(as_exact::<_, Vec<u16>>(&v).is_none());
        assert!(as_exact::<str, Vec<u8>>("ab").is_none());
        let back: Vec<u8> = from_exact::<Vec<u8>, Vec<u8>>(v.clone()).unwrap();
        assert_eq!(back, v);
        assert!(from_exact::<Vec<u8>, String>(v).is_err());
        assert_ne!(erased_type_id::<&'static str>(), erased_type_id::<str>());
    }
}
