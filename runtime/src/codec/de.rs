//! The decoder of the wire format (see `ser.rs` for the layout): a serde `Deserializer` over
//! a byte slice. Strings and byte strings are handed to the visitor borrowed, so they are
//! copied once, into the value; vectors of primitive numbers (`Vec<u8>` first, boxed slices
//! too) are recognised by their serde visitor and copied in one piece, wherever they appear in
//! a value. Every length is checked against the bytes that remain before anything is
//! allocated for it. It reads a slice and must not know about frames or descriptors.

use std::any::TypeId;
use std::sync::OnceLock;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use super::Fault;
use crate::sys;
use crate::sys::same_type::{Exact, erased_type_id, from_exact};

/// The deserializer over the bytes still to read.
pub(super) struct Decoder<'de> {
    pub(super) input: &'de [u8],
    /// How many more sequence elements and map entries may be read: a bound on the work a
    /// message may cause (elements of zero size take no bytes to announce).
    steps: u64,
}

impl<'de> Decoder<'de> {
    pub(super) fn new(input: &'de [u8]) -> Decoder<'de> {
        Decoder {
            input,
            steps: 8 * input.len() as u64 + (1 << 24),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'de [u8], Fault> {
        if n > self.input.len() {
            return Err(Fault(format!(
                "the message ends early: {n} bytes announced, {} left",
                self.input.len()
            )));
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Fault> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn len(&mut self) -> Result<usize, Fault> {
        let len = u64::from_le_bytes(self.array()?);
        usize::try_from(len).map_err(|_| Fault(format!("length {len} does not fit in memory")))
    }

    fn step(&mut self) -> Result<(), Fault> {
        self.steps = self.steps.checked_sub(1).ok_or_else(|| {
            Fault("the message announces more values than its size allows".to_owned())
        })?;
        Ok(())
    }

    fn str(&mut self) -> Result<&'de str, Fault> {
        let len = self.len()?;
        std::str::from_utf8(self.take(len)?).map_err(|e| Fault(format!("invalid UTF-8: {e}")))
    }

    /// A vector of numbers in one copy, when `V` is serde's visitor of one.
    fn numbers<V: Visitor<'de>>(&mut self) -> Result<Option<V::Value>, Fault> {
        let id = erased_type_id::<V>();
        let Some(&(_, kind)) = number_visitors().iter().find(|(t, _)| *t == id) else {
            return Ok(None);
        };
        macro_rules! each {
            ($($i:literal => $t:ty),*) => {
                match kind {
                    $($i => self.read_numbers::<$t, V::Value>(),)*
                    _ => unreachable!("kinds come from the table"),
                }
            };
        }
        each!(
            0 => u8, 1 => u16, 2 => u32, 3 => u64, 4 => u128, 5 => usize, 6 => i8, 7 => i16,
            8 => i32, 9 => i64, 10 => i128, 11 => isize, 12 => f32, 13 => f64
        )
    }

    /// Reads a `Vec<T>` in one copy and returns it as a `V`, which is that vector's type.
    fn read_numbers<T: 'static, V>(&mut self) -> Result<Option<V>, Fault>
    where
        Vec<T>: Exact,
    {
        let count = self.len()?;
        let bytes = count.checked_mul(size_of::<T>()).ok_or_else(|| {
            Fault(format!(
                "a sequence of {count} values does not fit in memory"
            ))
        })?;
        let body = self.take(bytes)?;
        let values: Vec<T> = sys::numeric_vec(body).expect("wire-numeric, whole values");
        from_exact(values)
            .map(Some)
            .map_err(|_| Fault("a vector of numbers of an unexpected type".to_owned()))
    }
}

/// The identities of serde's visitors of `Vec<T>` for the wire-numeric `T`, found once by
/// letting each vector type deserialize from a probe that records the visitor it is given.
pub(super) fn number_visitors() -> &'static [(TypeId, usize)] {
    static TABLE: OnceLock<Vec<(TypeId, usize)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = Vec::new();
        macro_rules! each {
            ($($i:literal => $t:ty),*) => { $(
                if sys::is_wire_numeric::<$t>() {
                    if let Some(id) = seq_visitor_of::<Vec<$t>>() {
                        table.push((id, $i));
                    }
                }
            )* };
        }
        each!(
            0 => u8, 1 => u16, 2 => u32, 3 => u64, 4 => u128, 5 => usize, 6 => i8, 7 => i16,
            8 => i32, 9 => i64, 10 => i128, 11 => isize, 12 => f32, 13 => f64
        );
        table
    })
}

/// The type of the visitor `T` passes to `deserialize_seq`.
fn seq_visitor_of<T: DeserializeOwned>() -> Option<TypeId> {
    struct Probe(Option<TypeId>);
    impl<'de> de::Deserializer<'de> for &mut Probe {
        type Error = Fault;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Fault> {
            Err(Fault("probe".to_owned()))
        }
        fn deserialize_seq<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Fault> {
            self.0 = Some(erased_type_id::<V>());
            Err(Fault("probe".to_owned()))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct tuple tuple_struct map struct
            enum identifier ignored_any
        }
    }
    let mut probe = Probe(None);
    let _ = T::deserialize(&mut probe);
    probe.0
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = Fault;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Fault> {
        Err(Fault(
            "the wire format is not self-describing: a type that decodes `any` \
             (an untagged enum, a flattened struct) cannot be decoded"
                .to_owned(),
        ))
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        match self.array::<1>()?[0] {
            0 => v.visit_bool(false),
            1 => v.visit_bool(true),
            b => Err(Fault(format!("invalid bool {b}"))),
        }
    }
    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        v.visit_i8(i8::from_le_bytes(self.array()?))
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        v.visit_i16(i16::from_le_bytes(self.array()?))
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        v.visit_i32(i32::from_le_bytes(self.array()?))
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        v.visit_i64(i64::from_le_bytes(self.array()?))
    }
    fn deserialize_i128<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        v.visit_i128(i128::from_le_bytes(self.array()?))
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        v.visit_u8(self.array::<1>()?[0])
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        v.visit_u16(u16::from_le_bytes(self.array()?))
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        v.visit_u32(u32::from_le_bytes(self.array()?))
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        v.visit_u64(u64::from_le_bytes(self.array()?))
    }
    fn deserialize_u128<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        v.visit_u128(u128::from_le_bytes(self.array()?))
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        v.visit_f32(f32::from_le_bytes(self.array()?))
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        v.visit_f64(f64::from_le_bytes(self.array()?))
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        let first = *self
            .input
            .first()
            .ok_or_else(|| Fault("the message ends early: a char expected".to_owned()))?;
        let width = match first {
            0x00..=0x7f => 1,
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => 0,
        };
        let bytes = self.take(width.max(1))?;
        let c = std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.chars().next())
            .filter(|_| width > 0)
            .ok_or_else(|| Fault(format!("invalid char encoding {bytes:?}")))?;
        v.visit_char(c)
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        v.visit_borrowed_str(self.str()?)
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        let s = self.str()?;
        if s.len() < sys::PREFAULT_FROM {
            return v.visit_borrowed_str(s);
        }
        // A large string is copied into memory of ours whose pages are faulted in at once.
        let mut owned = String::with_capacity(s.len());
        sys::prefault(owned.as_mut_ptr(), s.len());
        owned.push_str(s);
        v.visit_string(owned)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        let len = self.len()?;
        v.visit_borrowed_bytes(self.take(len)?)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        let len = self.len()?;
        let bytes = self.take(len)?;
        if len < sys::PREFAULT_FROM {
            return v.visit_borrowed_bytes(bytes);
        }
        // As for a large string.
        v.visit_byte_buf(sys::numeric_vec::<u8>(bytes).expect("bytes are wire-numeric"))
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        match self.array::<1>()?[0] {
            0 => v.visit_none(),
            1 => v.visit_some(self),
            b => Err(Fault(format!("invalid option tag {b}"))),
        }
    }
    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        v.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Fault> {
        v.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Fault> {
        v.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        if let Some(value) = self.numbers::<V>()? {
            return Ok(value);
        }
        let left = self.len()?;
        v.visit_seq(Seq { de: self, left })
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, Fault> {
        v.visit_seq(Seq {
            de: self,
            left: len,
        })
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, Fault> {
        v.visit_seq(Seq {
            de: self,
            left: len,
        })
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Fault> {
        let left = self.len()?;
        v.visit_map(Seq { de: self, left })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Fault> {
        v.visit_seq(Seq {
            de: self,
            left: fields.len(),
        })
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Fault> {
        v.visit_enum(self)
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Fault> {
        Err(Fault("the wire format has no identifiers".to_owned()))
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Fault> {
        Err(Fault(
            "the wire format is not self-describing: values cannot be skipped".to_owned(),
        ))
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The elements of a sequence, tuple or struct, or the entries of a map.
struct Seq<'a, 'de> {
    de: &'a mut Decoder<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Seq<'_, 'de> {
    type Error = Fault;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Fault> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        self.de.step()?;
        seed.deserialize(&mut *self.de).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        // Never more than the bytes left: a lying length reserves nothing large.
        Some(self.left.min(self.de.input.len()))
    }
}

impl<'de> de::MapAccess<'de> for Seq<'_, 'de> {
    type Error = Fault;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Fault> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        self.de.step()?;
        seed.deserialize(&mut *self.de).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Fault> {
        seed.deserialize(&mut *self.de)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(self.de.input.len()))
    }
}

impl<'de> de::EnumAccess<'de> for &mut Decoder<'de> {
    type Error = Fault;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Fault> {
        let index = u32::from_le_bytes(self.array()?);
        let value = seed.deserialize(IntoDeserializer::<Fault>::into_deserializer(index))?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Decoder<'de> {
    type Error = Fault;
    fn unit_variant(self) -> Result<(), Fault> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Fault> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, Fault> {
        v.visit_seq(Seq {
            de: self,
            left: len,
        })
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Fault> {
        v.visit_seq(Seq {
            de: self,
            left: fields.len(),
        })
    }
}
