//! The shared-memory segment behind every synchronisation primitive and shared value: a header
//! page (magic, kind, type fingerprint, element count, then the primitive's futex words) and,
//! for `Value`/`Array`, the data from the second page on. It travels as its descriptor.

use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::Fd;
use crate::error::{Error, Result};
use crate::sys::SharedMapping;

const MAGIC: u32 = u32::from_le_bytes(*b"mpsy");
const OFF_MAGIC: usize = 0;
const OFF_KIND: usize = 4;
const OFF_FINGERPRINT: usize = 8;
const OFF_COUNT: usize = 16;
/// Where the primitive's 32-bit words start.
const OFF_WORDS: usize = 64;
/// How many words a primitive may use.
pub(crate) const MAX_WORDS: usize = 32;
/// Where a shared array's claim table starts (see `shared/array.rs`).
pub(crate) const OFF_TABLE: usize = 1024;
/// Where the data starts: the second page, aligned for any element type.
pub(crate) const DATA: usize = 4096;

/// What a segment holds; checked when a handle is received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    Lock = 1,
    RLock = 2,
    Semaphore = 3,
    Event = 4,
    Condition = 5,
    Barrier = 6,
    Value = 7,
    Array = 8,
    RawValue = 9,
    RawArray = 10,
}

impl Kind {
    fn from_u32(v: u32) -> Option<Kind> {
        use Kind::*;
        [
            Lock, RLock, Semaphore, Event, Condition, Barrier, Value, Array, RawValue, RawArray,
        ]
        .into_iter()
        .find(|k| *k as u32 == v)
    }
}

/// A mapped segment. Shared by clones of a handle through an `Arc`.
pub(crate) struct Segment {
    map: SharedMapping,
    kind: Kind,
    count: usize,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("kind", &self.kind)
            .field("fd", &self.map.fd().as_raw_fd())
            .finish_non_exhaustive()
    }
}

/// A fingerprint of `T` (name, size, alignment), so a handle is opened only as the type it was
/// created with. Both ends are the same binary, so `type_name` agrees.
pub(crate) fn fingerprint<T>() -> u64 {
    // FNV-1a over the name, then the layout.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::any::type_name::<T>()
        .bytes()
        .chain((size_of::<T>() as u64).to_le_bytes())
        .chain((align_of::<T>() as u64).to_le_bytes())
    {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Segment {
    /// A new zeroed segment for `count` elements of `elem_size` bytes (0 for primitives).
    pub(crate) fn create(
        kind: Kind,
        fingerprint: u64,
        count: usize,
        elem_size: usize,
    ) -> Result<Arc<Segment>> {
        let data = count
            .checked_mul(elem_size)
            .and_then(|b| b.checked_add(DATA))
            .ok_or_else(|| {
                Error::InvalidArgument(format!("{count} elements do not fit in memory"))
            })?;
        let len = if elem_size == 0 { DATA } else { data };
        let map = SharedMapping::create("mp-shared", len)
            .map_err(Error::io("cannot create shared memory"))?;
        map.atomic_u64(OFF_FINGERPRINT)
            .store(fingerprint, Ordering::Relaxed);
        map.atomic_u64(OFF_COUNT)
            .store(count as u64, Ordering::Relaxed);
        map.atomic_u32(OFF_KIND)
            .store(kind as u32, Ordering::Relaxed);
        map.atomic_u32(OFF_MAGIC).store(MAGIC, Ordering::Release);
        Ok(Arc::new(Segment { map, kind, count }))
    }

    /// The primitive's `i`-th futex word.
    pub(crate) fn word(&self, i: usize) -> &AtomicU32 {
        assert!(i < MAX_WORDS);
        self.map.atomic_u32(OFF_WORDS + 4 * i)
    }

    /// The mapping (for data and table access).
    pub(crate) fn map(&self) -> &SharedMapping {
        &self.map
    }

    /// The element count given at creation.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Serializes the segment as its descriptor (only inside an `mp` send).
    pub(crate) fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SegmentWire {
            fd: Fd(self.map.fd()),
            len: self.map.len() as u64,
        }
        .serialize(serializer)
    }

    /// Receives a segment and checks that it is a `kind` holding `fingerprint`, with room for
    /// its elements of `elem_size` bytes.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
        kind: Kind,
        fingerprint: u64,
        elem_size: usize,
    ) -> Result<Arc<Segment>, D::Error> {
        use serde::de::Error as _;
        let wire = SegmentWire::<OwnedFd>::deserialize(deserializer)?;
        let Fd(fd) = wire.fd;
        let len = usize::try_from(wire.len)
            .ok()
            .filter(|&l| l >= DATA)
            .ok_or_else(|| D::Error::custom("shared segment length out of range"))?;
        let map = SharedMapping::open(fd, len).map_err(D::Error::custom)?;
        if map.atomic_u32(OFF_MAGIC).load(Ordering::Acquire) != MAGIC {
            return Err(D::Error::custom("descriptor is not an mp shared segment"));
        }
        let found = map.atomic_u32(OFF_KIND).load(Ordering::Relaxed);
        if found != kind as u32 {
            let found = Kind::from_u32(found)
                .map(|k| format!("{k:?}"))
                .unwrap_or_else(|| format!("kind {found}"));
            return Err(D::Error::custom(format!(
                "expected a shared {kind:?}, received a {found}"
            )));
        }
        if map.atomic_u64(OFF_FINGERPRINT).load(Ordering::Relaxed) != fingerprint {
            return Err(D::Error::custom(format!(
                "the shared {kind:?} holds another element type than the receiver expects"
            )));
        }
        let count = map.atomic_u64(OFF_COUNT).load(Ordering::Relaxed);
        let count = usize::try_from(count)
            .ok()
            .filter(|c| {
                c.checked_mul(elem_size)
                    .and_then(|b| b.checked_add(DATA))
                    .is_some_and(|end| end <= len)
            })
            .ok_or_else(|| D::Error::custom("shared segment count out of range"))?;
        Ok(Arc::new(Segment { map, kind, count }))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename = "mp::Shared")]
#[serde(bound(
    serialize = "Fd<F>: Serialize",
    deserialize = "Fd<F>: Deserialize<'de>"
))]
struct SegmentWire<F> {
    fd: Fd<F>,
    len: u64,
}

/// Implements `Serialize`/`Deserialize` for a handle `$ty { seg }` to a segment of `$kind`:
/// it travels as the segment's descriptor.
macro_rules! segment_handle {
    ($ty:ident, $kind:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.seg.serialize(serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Ok($ty {
                    seg: $crate::sync::Segment::deserialize(deserializer, $kind, 0, 0)?,
                })
            }
        }
    };
}

/// As `segment_handle!`, for a typed handle `$ty<T> { seg, _type }` holding `Plain` elements;
/// also implements `Clone` (a clone shares the memory).
macro_rules! typed_segment_handle {
    ($ty:ident, $kind:expr) => {
        impl<T> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty {
                    seg: self.seg.clone(),
                    _type: std::marker::PhantomData,
                }
            }
        }

        impl<T> serde::Serialize for $ty<T> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.seg.serialize(serializer)
            }
        }

        impl<'de, T: $crate::sys::Plain> serde::Deserialize<'de> for $ty<T> {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let seg = $crate::sync::Segment::deserialize(
                    deserializer,
                    $kind,
                    $crate::sync::fingerprint::<T>(),
                    size_of::<T>(),
                )?;
                Ok($ty {
                    seg,
                    _type: std::marker::PhantomData,
                })
            }
        }
    };
}

pub(crate) use {segment_handle, typed_segment_handle};

/// Keeps a type `!Send` (lock guards stay on the thread that locked).
pub(crate) type NotSend = std::marker::PhantomData<*const ()>;

#[cfg(test)]
mod tests {
    use crate::sys;
    use crate::wire::Channel;

    fn channel_pair() -> (Channel, Channel) {
        let (a, b) = sys::socketpair_stream().unwrap();
        (Channel::new(a), Channel::new(b))
    }

    #[test]
    fn a_handle_is_received_only_as_its_kind_and_type() {
        let (tx, rx) = channel_pair();
        tx.send(&crate::Lock::new().unwrap()).unwrap();
        let err = rx
            .recv_frame(None)
            .unwrap()
            .decode::<crate::Semaphore>()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("expected a shared Semaphore, received a Lock"),
            "{err}"
        );

        tx.send(&crate::Value::new(1u32).unwrap()).unwrap();
        let err = rx
            .recv_frame(None)
            .unwrap()
            .decode::<crate::Value<u64>>()
            .unwrap_err();
        assert!(err.to_string().contains("another element type"), "{err}");

        tx.send(&crate::Array::from_slice(&[1u8, 2, 3]).unwrap())
            .unwrap();
        let back: crate::Array<u8> = rx.recv_frame(None).unwrap().decode().unwrap();
        assert_eq!(back.to_vec().unwrap(), [1, 2, 3]);
    }
}
