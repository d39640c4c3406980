//! The encoder of the wire format: a serde `Serializer` writing fixed-size little-endian
//! integers, `u64` lengths before sequences, maps, strings and bytes, `u32` variant indices,
//! and nothing for structs and tuples but their fields (bincode 2's fixed-int format, byte for
//! byte). Vectors and boxed slices of primitive numbers (`Vec<u8>` first) are written as one
//! copy of their memory wherever they appear in a value. It writes into a [`Sink`] and must not
//! know about frames, descriptors or sockets.

use serde::ser::{self, Serialize};

use super::Fault;
use crate::sys;
use crate::sys::same_type::as_exact;

/// Where encoded bytes go.
pub(super) trait Sink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Fault>;
}

/// Appends to a vector, refusing the first write that would take it past `end` bytes.
pub(super) struct VecSink<'a> {
    pub(super) buf: &'a mut Vec<u8>,
    /// `buf`'s length at which the limit is reached.
    pub(super) end: usize,
    /// How far past the limit the refused write would have gone.
    pub(super) over: Option<u64>,
    /// The size of the refused write.
    pub(super) refused: usize,
}

impl Sink for VecSink<'_> {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) -> Result<(), Fault> {
        if bytes.len() > self.end - self.buf.len() {
            self.over = Some((self.buf.len() + bytes.len() - self.end) as u64);
            self.refused = bytes.len();
            return Err(Fault("the message is too large".to_owned()));
        }
        // Inlined, a fixed-size integer's write is a compare and a single store.
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

/// Counts what would be written (for a payload written straight into its final buffer).
pub(super) struct SizeSink(pub(super) usize);

impl Sink for SizeSink {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) -> Result<(), Fault> {
        self.0 += bytes.len();
        Ok(())
    }
}

/// Fills a buffer of exactly the size a [`SizeSink`] counted.
pub(super) struct SliceSink<'a> {
    pub(super) buf: &'a mut [u8],
    pub(super) at: usize,
}

impl Sink for SliceSink<'_> {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) -> Result<(), Fault> {
        let end = self.at + bytes.len();
        let Some(dest) = self.buf.get_mut(self.at..end) else {
            return Err(Fault(
                "the value encoded to more bytes than it measured".to_owned(),
            ));
        };
        dest.copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }
}

/// The serializer over a sink.
pub(super) struct Encoder<S> {
    pub(super) sink: S,
}

/// The bytes of a vector or boxed slice of primitive numbers, with its length: what a value
/// of those types encodes to, after its `u64` length.
#[inline(always)]
pub(super) fn numbers<T: ?Sized>(value: &T) -> Option<(usize, &[u8])> {
    // Only a vector (24 bytes) or a boxed slice (16) can match: other values skip the checks.
    if !matches!(size_of_val(value), 16 | 24) {
        return None;
    }
    macro_rules! each {
        ($($t:ty),*) => { $(
            if let Some(v) = as_exact::<T, Vec<$t>>(value) {
                return Some((v.len(), sys::numeric_bytes(v.as_slice())?));
            }
            if let Some(v) = as_exact::<T, Box<[$t]>>(value) {
                return Some((v.len(), sys::numeric_bytes(&v[..])?));
            }
        )* };
    }
    each!(
        u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
    );
    None
}

impl<S: Sink> Encoder<S> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) -> Result<(), Fault> {
        self.sink.write(bytes)
    }

    #[inline(always)]
    fn len(&mut self, len: usize) -> Result<(), Fault> {
        self.put(&(len as u64).to_le_bytes())
    }

    /// Encodes one value, in one copy when it is a vector of numbers.
    #[inline]
    pub(super) fn value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Fault> {
        if let Some((count, bytes)) = numbers(value) {
            self.len(count)?;
            return self.put(bytes);
        }
        value.serialize(self)
    }
}

impl<S: Sink> ser::Serializer for &mut Encoder<S> {
    type Ok = ();
    type Error = Fault;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, v: bool) -> Result<(), Fault> {
        self.put(&[u8::from(v)])
    }
    fn serialize_i8(self, v: i8) -> Result<(), Fault> {
        self.put(&v.to_le_bytes())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Fault> {
        self.put(&v.to_le_bytes())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Fault> {
        self.put(&v.to_le_bytes())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Fault> {
        self.put(&v.to_le_bytes())
    }
    fn serialize_i128(self, v: i128) -> Result<(), Fault> {
        self.put(&v.to_le_bytes())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Fault> {
        self.put(&[v])
    }
    fn serialize_u16(self, v: u16) -> Result<(), Fault> {
        self.put(&v.to_le_bytes())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Fault> {
        self.put(&v.to_le_bytes())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Fault> {
        self.put(&v.to_le_bytes())
    }
    fn serialize_u128(self, v: u128) -> Result<(), Fault> {
        self.put(&v.to_le_bytes())
    }
    fn serialize_f32(self, v: f32) -> Result<(), Fault> {
        self.put(&v.to_le_bytes())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Fault> {
        self.put(&v.to_le_bytes())
    }
    fn serialize_char(self, v: char) -> Result<(), Fault> {
        self.put(v.encode_utf8(&mut [0; 4]).as_bytes())
    }
    fn serialize_str(self, v: &str) -> Result<(), Fault> {
        self.len(v.len())?;
        self.put(v.as_bytes())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Fault> {
        self.len(v.len())?;
        self.put(v)
    }
    fn serialize_none(self) -> Result<(), Fault> {
        self.put(&[0])
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Fault> {
        self.put(&[1])?;
        self.value(value)
    }
    fn serialize_unit(self) -> Result<(), Fault> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Fault> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
    ) -> Result<(), Fault> {
        self.put(&index.to_le_bytes())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Fault> {
        self.value(value)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), Fault> {
        self.put(&index.to_le_bytes())?;
        self.value(value)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, Fault> {
        let len = len.ok_or_else(|| Fault("a sequence must know its length".to_owned()))?;
        self.len(len)?;
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Fault> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Fault> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Fault> {
        self.put(&index.to_le_bytes())?;
        Ok(self)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self, Fault> {
        let len = len.ok_or_else(|| Fault("a map must know its length".to_owned()))?;
        self.len(len)?;
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Fault> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Fault> {
        self.put(&index.to_le_bytes())?;
        Ok(self)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

/// Every compound is its parts one after the other.
macro_rules! compound {
    ($($trait:ident :: $method:ident),*) => { $(
        impl<S: Sink> ser::$trait for &mut Encoder<S> {
            type Ok = ();
            type Error = Fault;
            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Fault> {
                self.value(value)
            }
            fn end(self) -> Result<(), Fault> {
                Ok(())
            }
        }
    )* };
}
compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl<S: Sink> ser::SerializeMap for &mut Encoder<S> {
    type Ok = ();
    type Error = Fault;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Fault> {
        self.value(key)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Fault> {
        self.value(value)
    }
    fn end(self) -> Result<(), Fault> {
        Ok(())
    }
}

macro_rules! fields {
    ($($trait:ident),*) => { $(
        impl<S: Sink> ser::$trait for &mut Encoder<S> {
            type Ok = ();
            type Error = Fault;
            fn serialize_field<T: ?Sized + Serialize>(
                &mut self,
                _: &'static str,
                value: &T,
            ) -> Result<(), Fault> {
                self.value(value)
            }
            fn end(self) -> Result<(), Fault> {
                Ok(())
            }
        }
    )* };
}
fields!(SerializeStruct, SerializeStructVariant);
