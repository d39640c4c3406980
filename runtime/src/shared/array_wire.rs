//! How an [`Array`] crosses to another process: its own segment and, beside it, the lock it
//! shares with other values, as one serde value. Must not touch the elements or the claim
//! table (that is `array.rs`).

use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::array::Array;
use super::shared_lock::SharedLock;
use crate::sync::{Kind, Segment, typed_segment_handle};
use crate::sys::Plain;

/// An array's own segment, as it travels (the shared lock travels beside it).
struct Own<T> {
    seg: Arc<Segment>,
    _type: PhantomData<T>,
}

typed_segment_handle!(Own, Kind::Array);

#[derive(Serialize, Deserialize)]
#[serde(rename = "mp::Array", bound(serialize = "", deserialize = "T: Plain"))]
struct ArrayWire<T> {
    array: Own<T>,
    shared: Option<SharedLock>,
}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            seg: self.seg.clone(),
            _type: PhantomData,
            shared: self.shared.clone(),
        }
    }
}

impl<T> Serialize for Array<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ArrayWire {
            array: Own::<T> {
                seg: self.seg.clone(),
                _type: PhantomData,
            },
            shared: self.shared.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de, T: Plain> Deserialize<'de> for Array<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = ArrayWire::<T>::deserialize(deserializer)?;
        Ok(Array {
            seg: wire.array.seg,
            _type: PhantomData,
            shared: wire.shared,
        })
    }
}
