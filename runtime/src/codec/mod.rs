//! The wire format, in one place: its encoder (`ser.rs`) and decoder (`de.rs`), size-limited
//! encoding and decoding, the bulk paths for sequences of numbers, and the side table through
//! which OS handles inside values travel next to the bytes (`SCM_RIGHTS`, in `fds.rs`), and
//! the byte strings that hold encoded values (`Bytes`; `SmallBytes`, inline when short). It
//! knows nothing of frames, sockets or rings (that is `wire/`).
//!
//! The format is bincode 2's with fixed-size little-endian integers, byte for byte: integers
//! and floats are their little-endian bytes (`usize` as 64 bits), `bool` one byte, `char` its
//! UTF-8, strings, byte strings, sequences and maps a `u64` length then their contents,
//! `Option` a tag byte, enum variants a `u32` index, structs and tuples their fields in order.
//! Switching the format (postcard, wincode) means changing this module only.
//!
//! # Performance
//!
//! Copied in one piece, wherever they sit inside a value (an argument, a result, a queue item,
//! a field of a struct, an `Option`, an enum variant, a map's value): `String` and `&str`,
//! `serde_bytes` types, and `Vec<T>` and `Box<[T]>` for `T` any of `u8`, `i8`, `u16`, ...,
//! `u128`, `i128`, `usize`, `isize`, `f32`, `f64` (on little-endian machines). Everything else
//! is encoded value by value; among what still takes that slower path: arrays (`[u8; N]`),
//! `VecDeque`, `Vec<bool>`, `Vec<char>`, vectors of tuples or structs (each element visited),
//! and a `&Vec<u8>` or `&[u8]` borrowed inside a value (the encoder sees only the reference;
//! wrap it in `serde_bytes::Bytes` to have it copied in one piece).

mod de;
mod fds;
#[cfg(test)]
mod format_tests;
mod ser;
mod small_bytes;

use std::os::fd::{OwnedFd, RawFd};

use serde::Serialize;
use serde::de::DeserializeOwned;

use self::de::Decoder;
use self::fds::{FD_SOURCE, FdTable};
pub use self::fds::{Fd, fd};
pub(crate) use self::fds::{collecting_fds, in_send, take_fds};
use self::ser::{Encoder, SizeSink, SliceSink, VecSink};
pub(crate) use self::small_bytes::SmallBytes;
use crate::error::{Error, Result};
use crate::sys;

/// The largest message `mp` sends or accepts (4 GiB - 1: frame lengths are 32-bit).
pub const MAX_MESSAGE: u64 = u32::MAX as u64;

/// Why encoding or decoding stopped: the serializer's or a type's own message.
#[derive(Debug)]
pub(crate) struct Fault(pub(crate) String);

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fault {}

impl serde::ser::Error for Fault {
    fn custom<M: std::fmt::Display>(message: M) -> Self {
        Fault(message.to_string())
    }
}

impl serde::de::Error for Fault {
    fn custom<M: std::fmt::Display>(message: M) -> Self {
        Fault(message.to_string())
    }
}

/// Encodes `value` into `buf` (appending). Handles inside the value record their descriptors
/// in `fds`, which the caller sends next to the bytes.
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
    fds: &mut Vec<RawFd>,
) -> Result<()> {
    encode_within(value, buf, fds, MAX_MESSAGE)
}

/// [`encode`], appending at most `limit` bytes: the encoder stops with [`Error::TooLarge`] at
/// the first write that would go past it, so a value far above the limit (or one that never
/// ends) costs no more than `limit` bytes and the time to write them.
pub(crate) fn encode_within<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
    fds: &mut Vec<RawFd>,
    limit: u64,
) -> Result<()> {
    collecting_fds(fds, || encode_collected(value, buf, limit))
}

/// [`encode_within`] inside [`collecting_fds`], which receives the descriptors.
pub(crate) fn encode_collected<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
    limit: u64,
) -> Result<()> {
    let start = buf.len();
    encode_refusing(value, buf, limit).map_err(|(e, _)| {
        if matches!(e, Error::TooLarge { .. }) {
            // A value refused for its size gives back what the buffer grew to for it.
            buf.shrink_to(start.max(64 * 1024));
        }
        e
    })
}

/// [`encode_within`], telling on failure how large the write was that the limit refused (0
/// for other errors): one large write is a bulk value, which the caller may rather encode
/// straight into a buffer of its own.
pub(crate) fn encode_or_refuse<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
    fds: &mut Vec<RawFd>,
    limit: u64,
) -> std::result::Result<(), (Error, usize)> {
    collecting_fds(fds, || encode_refusing(value, buf, limit))
}

/// Encodes `value` at the end of `buf`, the descriptors going to whoever collects them.
fn encode_refusing<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
    limit: u64,
) -> std::result::Result<(), (Error, usize)> {
    let start = buf.len();
    let limit = limit.min(MAX_MESSAGE);
    let mut encoder = Encoder {
        sink: VecSink {
            end: start.saturating_add(usize::try_from(limit).unwrap_or(usize::MAX)),
            buf,
            over: None,
            refused: 0,
        },
    };
    let result = encoder.value(value);
    let VecSink {
        buf, over, refused, ..
    } = encoder.sink;
    if let Some(over) = over {
        // What was written is of no use. (The capacity stays: a caller that tried a small
        // limit first encodes again into the same, warm buffer.)
        buf.truncate(start);
        let error = Error::TooLarge {
            len: limit + over,
            limit,
        };
        return Err((error, refused));
    }
    result.map_err(|Fault(message)| (Error::Encode(message), 0))
}

/// How many bytes `value` encodes to, if at most `limit` ([`Error::TooLarge`] otherwise):
/// the size of a buffer to encode it into with [`encode_to_slice`]. Handles inside the value
/// are visited but not recorded.
pub(crate) fn measure<T: Serialize + ?Sized>(value: &T, limit: u64) -> Result<usize> {
    let mut encoder = Encoder { sink: SizeSink(0) };
    let result = collecting_fds(&mut Vec::new(), || encoder.value(value));
    result.map_err(|Fault(message)| Error::Encode(message))?;
    let len = encoder.sink.0;
    if len as u64 > limit {
        return Err(Error::TooLarge {
            len: len as u64,
            limit,
        });
    }
    Ok(len)
}

/// Encodes `value` into exactly `out` (sized by [`measure`]), recording the descriptors of the
/// handles inside it in `fds`. A value that encodes to another size than it measured (a
/// `Serialize` that is not deterministic) is an [`Error::Encode`].
pub(crate) fn encode_to_slice<T: Serialize + ?Sized>(
    value: &T,
    out: &mut [u8],
    fds: &mut Vec<RawFd>,
) -> Result<()> {
    let len = out.len();
    let mut encoder = Encoder {
        sink: SliceSink { buf: out, at: 0 },
    };
    let result = collecting_fds(fds, || encoder.value(value));
    result.map_err(|Fault(message)| Error::Encode(message))?;
    if encoder.sink.at != len {
        return Err(Error::Encode(
            "the value encoded to fewer bytes than it measured".to_owned(),
        ));
    }
    Ok(())
}

/// Decodes a `T` from exactly `bytes`, giving handles inside it the received descriptors.
///
/// Decoding is limited: no length inside the message can make the decoder allocate more than
/// the message's size (see [`decode_from`]). Descriptors no handle claimed are closed.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T> {
    let table = FdTable {
        fds: fds.into_iter().map(Some).collect(),
    };
    let previous = FD_SOURCE.with(|s| s.replace(Some(table)));
    let result = decode_from::<T>(bytes);
    FD_SOURCE.with(|s| s.replace(previous));
    let (value, used) = result?;
    if used != bytes.len() {
        return Err(Error::Decode(format!(
            "{} trailing bytes after the value",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// Decodes a `T` that carries no handles from the start of `bytes`; returns it and the number
/// of bytes it took.
pub(crate) fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize)> {
    decode_from(bytes)
}

/// Decodes a `T` from the start of `bytes`: the value and the number of bytes it took. No
/// length inside the message makes the decoder reserve more than the bytes that remain.
fn decode_from<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize)> {
    let mut decoder = Decoder::new(bytes);
    let value = T::deserialize(&mut decoder).map_err(|Fault(message)| Error::Decode(message))?;
    Ok((value, bytes.len() - decoder.input.len()))
}

/// Encodes `items` exactly as a `Vec<T>` of them, in two parts: what is appended to `buf`,
/// then the returned tail, which the caller sends as it is right after `buf`. For the
/// primitive integers and floats the encoding *is* a length and the values' little-endian
/// bytes, so the tail is the slice's own memory and nothing is visited element by element
/// (a million `u64` task arguments are one copy); for other types everything goes into `buf`
/// and the tail is empty.
pub(crate) fn encode_seq<'a, T: Serialize + 'static>(
    items: &'a [T],
    buf: &mut Vec<u8>,
    fds: &mut Vec<RawFd>,
) -> Result<&'a [u8]> {
    match sys::numeric_bytes(items) {
        Some(bytes) => {
            encode_seq_len(items.len(), buf);
            Ok(bytes)
        }
        None => encode(items, buf, fds).map(|()| &[][..]),
    }
}

/// Appends what precedes the values of a sequence of `count` of them: its length. Followed by
/// the values' bytes, that is the encoding of a sequence of primitive numbers.
pub(crate) fn encode_seq_len(count: usize, buf: &mut Vec<u8>) {
    buf.extend_from_slice(&(count as u64).to_le_bytes());
}

/// About how many bytes one `T` takes on the wire: exact for the primitive integers and
/// floats, otherwise the size of the first of `sample` (`None` without one, or if it cannot be
/// encoded here). Only a hint, for choosing how many values to send together.
pub(crate) fn size_hint<T: Serialize + 'static>(sample: &[T]) -> Option<usize> {
    if sys::is_wire_numeric::<T>() {
        return Some(size_of::<T>());
    }
    let mut buf = Vec::new();
    encode(sample.first()?, &mut buf, &mut Vec::new()).ok()?;
    Some(buf.len())
}

/// Decodes a `Vec<T>` from exactly `bytes` (the counterpart of [`encode_seq`], and of encoding
/// a `Vec<T>` or `&[T]`): one copy for the primitive integers and floats, [`decode`] otherwise.
pub(crate) fn decode_seq<T: DeserializeOwned + 'static>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<Vec<T>> {
    if !sys::is_wire_numeric::<T>() {
        return decode(bytes, fds);
    }
    numeric_body::<T>(bytes).map(|body| sys::numeric_vec(body).expect("numeric, whole values"))
}

/// The values' bytes of a sequence of `T` encoded in `bytes` (checked to hold exactly the
/// count it announces), when `T` is a primitive integer or float (`None` otherwise: the
/// caller decodes with [`decode_seq`]): numbers copied from there need no decoding.
pub(crate) fn numeric_seq<T: 'static>(bytes: &[u8]) -> Option<Result<&[u8]>> {
    sys::is_wire_numeric::<T>().then(|| numeric_body::<T>(bytes))
}

/// The values' bytes of an encoded sequence of `T` (a `u64` count, then the values), checked
/// to hold exactly the count it announces.
fn numeric_body<T>(bytes: &[u8]) -> Result<&[u8]> {
    let Some((count, body)) = bytes.split_first_chunk::<8>() else {
        return Err(Error::Decode(format!(
            "a sequence needs an 8-byte length, the message has {} bytes",
            bytes.len()
        )));
    };
    let count = u64::from_le_bytes(*count);
    let fits = count
        .checked_mul(size_of::<T>() as u64)
        .is_some_and(|need| need == body.len() as u64);
    if !fits {
        return Err(Error::Decode(format!(
            "a sequence announces {count} values of {} bytes, the message holds {} bytes",
            size_of::<T>(),
            body.len()
        )));
    }
    Ok(body)
}

/// Encoded bytes that travel as one byte string (a copy, not an element-wise sequence): the
/// values a manager stores, and auth keys.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct Bytes(pub(crate) Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(
                self,
                v: Vec<u8>,
            ) -> std::result::Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        let mut fds = Vec::new();
        encode(
            &(7u32, "seven".to_string(), vec![1.5f64, 2.5]),
            &mut buf,
            &mut fds,
        )
        .unwrap();
        assert!(fds.is_empty());
        let v: (u32, String, Vec<f64>) = decode(&buf, Vec::new()).unwrap();
        assert_eq!(v, (7, "seven".to_string(), vec![1.5, 2.5]));
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut buf = Vec::new();
        encode(&1u8, &mut buf, &mut Vec::new()).unwrap();
        buf.push(0);
        assert!(matches!(
            decode::<u8>(&buf, Vec::new()),
            Err(Error::Decode(_))
        ));
    }

    #[test]
    fn lying_length_does_not_allocate() {
        // A string (and vectors) claiming a huge length in a 9-byte message.
        let mut buf = vec![253u8];
        buf.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert!(matches!(
            decode::<String>(&buf, Vec::new()),
            Err(Error::Decode(_))
        ));
        assert!(matches!(
            decode::<Vec<u8>>(&buf, Vec::new()),
            Err(Error::Decode(_))
        ));
        assert!(matches!(
            decode::<Vec<u64>>(&buf, Vec::new()),
            Err(Error::Decode(_))
        ));
    }

    #[test]
    fn bytes_travel_as_one_string() {
        let mut buf = Vec::new();
        encode(&Bytes(vec![1, 2, 3]), &mut buf, &mut Vec::new()).unwrap();
        assert_eq!(buf, [3, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
        let back: Bytes = decode(&buf, Vec::new()).unwrap();
        assert_eq!(&back[..], [1, 2, 3]);
    }

    /// The bulk path writes and reads exactly serde's bytes, so either side may use either.
    fn seq_matches_serde<T>(items: Vec<T>)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Copy + 'static,
    {
        let (mut plain, mut bulk) = (Vec::new(), Vec::new());
        encode(&items, &mut plain, &mut Vec::new()).unwrap();
        let tail = encode_seq(&items, &mut bulk, &mut Vec::new()).unwrap();
        bulk.extend_from_slice(tail);
        assert_eq!(plain, bulk, "{}", std::any::type_name::<T>());
        assert_eq!(decode_seq::<T>(&plain, Vec::new()).unwrap(), items);
        if let Some(body) = numeric_seq::<T>(&plain) {
            assert_eq!(body.unwrap(), sys::numeric_bytes(&items).unwrap());
        }
    }

    #[test]
    fn bulk_sequences_are_serde_sequences() {
        seq_matches_serde(vec![0u8, 1, 255]);
        seq_matches_serde(vec![1u16, u16::MAX]);
        seq_matches_serde(vec![7u32, 0xdead_beef]);
        seq_matches_serde(vec![0u64, 1, u64::MAX]);
        seq_matches_serde(vec![u128::MAX, 3]);
        seq_matches_serde(vec![-1i8, 5]);
        seq_matches_serde(vec![-300i16]);
        seq_matches_serde(vec![i32::MIN, 2]);
        seq_matches_serde(vec![-1i64, i64::MAX]);
        seq_matches_serde(vec![i128::MIN]);
        seq_matches_serde(vec![usize::MAX, 0]);
        seq_matches_serde(vec![isize::MIN]);
        seq_matches_serde(vec![1.5f32, -0.0, f32::INFINITY]);
        seq_matches_serde(vec![std::f64::consts::PI, f64::MIN_POSITIVE]);
        seq_matches_serde(vec![true, false]); // the element-wise path
        seq_matches_serde(vec![('a', 1u8)]);
    }

    #[test]
    fn size_hints() {
        assert_eq!(size_hint::<u32>(&[]), Some(4));
        assert_eq!(size_hint::<String>(&[]), None);
        assert_eq!(size_hint(&["abc".to_string()]), Some(8 + 3));
        assert_eq!(size_hint(&[(1u64, 2u64)]), Some(16));
    }

    #[test]
    fn bulk_decoding_checks_the_count() {
        let mut buf = Vec::new();
        encode(&vec![1u64, 2, 3], &mut buf, &mut Vec::new()).unwrap();
        assert!(decode_seq::<u64>(&buf[..buf.len() - 1], Vec::new()).is_err());
        let mut longer = buf.clone();
        longer.extend_from_slice(&[0; 8]);
        assert!(decode_seq::<u64>(&longer, Vec::new()).is_err());
        let mut huge = buf.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_seq::<u64>(&huge, Vec::new()).is_err());
        assert!(decode_seq::<u32>(&buf[..4], Vec::new()).is_err());
        assert!(numeric_seq::<u64>(&buf[..buf.len() - 8]).unwrap().is_err());
        assert!(numeric_seq::<bool>(&buf).is_none());
    }

    #[test]
    fn encoding_stops_at_the_limit() {
        use serde::ser::SerializeSeq;
        use std::cell::Cell;
        // `n` zeros as `u64`, produced one by one, counting how many the encoder took.
        struct Zeros<'a>(u64, &'a Cell<u64>);
        impl Serialize for Zeros<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0 as usize))?;
                for _ in 0..self.0 {
                    self.1.set(self.1.get() + 1);
                    seq.serialize_element(&0u64)?;
                }
                seq.end()
            }
        }
        let pulled = Cell::new(0);
        let mut buf = vec![1, 2, 3];
        // 2^40 elements (8 TiB) against 1 MiB: would not end without the early stop.
        let e = encode_within(&Zeros(1 << 40, &pulled), &mut buf, &mut Vec::new(), 1 << 20);
        assert!(
            matches!(e, Err(Error::TooLarge { len, limit: 0x10_0000 }) if len > 0x10_0000),
            "{e:?}"
        );
        assert!(pulled.get() <= (1 << 17) + 1, "{}", pulled.get());
        assert_eq!(buf, [1, 2, 3], "what was there before is kept");
        // Exactly at the limit: accepted.
        encode_within(&Zeros(10, &pulled), &mut buf, &mut Vec::new(), 8 + 80).unwrap();
        assert_eq!(buf.len(), 3 + 88);
    }
}
