//! [`SmallBytes`]: an encoded value that travels as one byte string, exactly as
//! [`Bytes`](super::Bytes) does, but is held inline, with no allocation of its own, when it is
//! short. The values a manager stores are mostly numbers and short strings: a batch of 10 000
//! of them was 10 000 buffers allocated, sent, decoded into 10 000 more buffers and freed.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest value held inline: what fits beside the tag and the length in the 24 bytes a
/// boxed slice and its tag take anyway.
pub(crate) const INLINE: usize = 22;

/// Encoded bytes, inline up to [`INLINE`] of them, on the heap beyond. Compared, hashed and
/// encoded as the byte string they hold, whichever way they are held.
#[derive(Clone)]
pub(crate) enum SmallBytes {
    Inline { len: u8, data: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl SmallBytes {
    /// A copy of `bytes`.
    #[inline]
    pub(crate) fn from_slice(bytes: &[u8]) -> SmallBytes {
        if bytes.len() <= INLINE {
            let mut data = [0; INLINE];
            data[..bytes.len()].copy_from_slice(bytes);
            SmallBytes::Inline {
                len: bytes.len() as u8,
                data,
            }
        } else {
            SmallBytes::Heap(bytes.into())
        }
    }

    /// The bytes of `buf`: copied inline when short, leaving `buf` (and its capacity) to the
    /// caller; taken from it otherwise, leaving it empty.
    #[inline]
    pub(crate) fn take_from(buf: &mut Vec<u8>) -> SmallBytes {
        if buf.len() <= INLINE {
            SmallBytes::from_slice(buf)
        } else {
            SmallBytes::Heap(std::mem::take(buf).into_boxed_slice())
        }
    }

    /// The bytes as a vector (no copy when they are on the heap).
    pub(crate) fn into_vec(self) -> Vec<u8> {
        match self {
            SmallBytes::Inline { .. } => self.to_vec(),
            SmallBytes::Heap(b) => b.into_vec(),
        }
    }
}

impl Default for SmallBytes {
    fn default() -> SmallBytes {
        SmallBytes::Inline {
            len: 0,
            data: [0; INLINE],
        }
    }
}

impl Deref for SmallBytes {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            SmallBytes::Inline { len, data } => &data[..usize::from(*len)],
            SmallBytes::Heap(b) => b,
        }
    }
}

impl From<Vec<u8>> for SmallBytes {
    fn from(mut v: Vec<u8>) -> SmallBytes {
        SmallBytes::take_from(&mut v)
    }
}

impl From<super::Bytes> for SmallBytes {
    fn from(b: super::Bytes) -> SmallBytes {
        SmallBytes::from(b.0)
    }
}

impl PartialEq for SmallBytes {
    fn eq(&self, other: &SmallBytes) -> bool {
        **self == **other
    }
}

impl Eq for SmallBytes {}

impl Hash for SmallBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl fmt::Debug for SmallBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.len())
    }
}

impl Serialize for SmallBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self)
    }
}

impl<'de> Deserialize<'de> for SmallBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SmallBytes, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SmallBytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<SmallBytes, E> {
                Ok(SmallBytes::from_slice(v))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<SmallBytes, E> {
                Ok(SmallBytes::from(v))
            }
        }
        // Our decoder lends the bytes (`visit_borrowed_bytes`, which reaches `visit_bytes`):
        // a short value is copied inline, a long one into one exact allocation.
        d.deserialize_bytes(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_inline_and_the_type_is_no_larger_than_a_vector() {
        // A stored manager value used to be a `Vec<u8>` and its own allocation; it is 24
        // bytes and no allocation up to `INLINE` bytes.
        assert_eq!(size_of::<SmallBytes>(), 24);
        for len in [0, 1, 8, INLINE] {
            let v: Vec<u8> = (0..len as u8).collect();
            let s = SmallBytes::from_slice(&v);
            assert!(matches!(s, SmallBytes::Inline { .. }), "{len} bytes");
            assert_eq!(&s[..], &v[..]);
        }
        let long: Vec<u8> = (0..=INLINE as u8).collect();
        assert!(matches!(SmallBytes::from_slice(&long), SmallBytes::Heap(_)));
    }

    #[test]
    fn encoded_compared_and_hashed_as_their_bytes() {
        use std::collections::hash_map::DefaultHasher;
        let hash = |s: &SmallBytes| {
            let mut h = DefaultHasher::new();
            s.hash(&mut h);
            h.finish()
        };
        for len in [0, 5, INLINE, INLINE + 1, 1000] {
            let v: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let inline_or_not = SmallBytes::from_slice(&v);
            let mut taken = v.clone();
            let from_vec = SmallBytes::take_from(&mut taken);
            assert_eq!(inline_or_not, from_vec);
            assert_eq!(hash(&inline_or_not), hash(&from_vec));
            // Same wire bytes as `Bytes`, both ways.
            let mut ours = Vec::new();
            super::super::encode(&inline_or_not, &mut ours, &mut Vec::new()).unwrap();
            let mut theirs = Vec::new();
            super::super::encode(
                &super::super::Bytes(v.clone()),
                &mut theirs,
                &mut Vec::new(),
            )
            .unwrap();
            assert_eq!(ours, theirs);
            let back: SmallBytes = super::super::decode(&theirs, Vec::new()).unwrap();
            assert_eq!(&back[..], &v[..]);
            assert_eq!(back.into_vec(), v);
        }
    }

    #[test]
    fn taking_a_short_buffer_keeps_it_for_the_next_value() {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(b"short");
        let s = SmallBytes::take_from(&mut buf);
        assert_eq!(&s[..], b"short");
        assert!(buf.capacity() >= 64);
        buf.clear();
        buf.extend_from_slice(&[7; 100]);
        let s = SmallBytes::take_from(&mut buf);
        assert_eq!(&s[..], &[7; 100]);
        assert!(buf.is_empty());
    }
}
