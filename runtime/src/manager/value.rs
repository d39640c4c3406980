//! `ValueProxy<T>`: one typed value held by a manager (Python's `manager.Value` and
//! `manager.Namespace`), with an atomic read-modify-write; and the value on the server's
//! side, [`StoredValue`]: its operations ([`ValueOp`]) and how each applies. Must not know
//! other kinds, sessions or the store.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::object::{ObjectKind, Out, discard};
use super::protocol::{Blob, Reply, unexpected};
use super::proxy::{Creator, Named, proxy};
use crate::error::{Result, SendError};

proxy! {
    /// One value of any serializable type that lives in a [`Manager`](crate::Manager)'s server
    /// process (Python's `manager.Value(typecode, v)`; with a struct for `T`, Python's
    /// `manager.Namespace()` with typed fields).
    ///
    /// [`get`](ValueProxy::get) returns a copy: **changing it does not change the shared value**
    /// — [`set`](ValueProxy::set) it, or use [`update`](ValueProxy::update), which is atomic.
    ///
    /// ```
    /// # mp::guard!();
    /// #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
    /// struct Settings {
    ///     threshold: f64,
    ///     label: String,
    /// }
    ///
    /// #[mp::worker]
    /// fn configure(ns: mp::ValueProxy<Settings>) -> mp::Result<()> {
    ///     ns.update(|s| s.label = "tuned".into())?;
    ///     Ok(())
    /// }
    ///
    /// let manager = mp::Manager::new()?;
    /// let ns = manager.value(Settings { threshold: 0.5, label: String::new() })?;
    /// mp::spawn(configure, ns.clone())?.join()??;
    /// let s = ns.get()?;
    /// assert_eq!((s.threshold, s.label.as_str()), (0.5, "tuned"));
    /// # Ok::<(), mp::Error>(())
    /// ```
    #[doc(alias = "Namespace")]
    #[doc(alias = "Value")]
    pub struct ValueProxy<T> of StoredValue, over T;
}

impl<T: Serialize + DeserializeOwned + Default> Named for ValueProxy<T> {
    fn named(creator: &Creator, name: &str) -> Result<Self> {
        ValueProxy::create(creator, Some(name), &T::default())
    }
}

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// A new value (named: found if it exists) holding `value`.
    pub(super) fn create(creator: &Creator, name: Option<&str>, value: &T) -> Result<Self> {
        let blob = creator.encode(value)?;
        creator
            .create::<StoredValue, T>(name, blob)
            .map(ValueProxy::from_handle)
    }

    /// A copy of the value.
    pub fn get(&self) -> Result<T> {
        Ok(self.versioned()?.0)
    }

    /// Replaces the value; on failure hands it back.
    pub fn set(&self, value: T) -> Result<(), SendError<T>> {
        self.handle
            .send_value::<StoredValue, T>(value, ValueOp::Set)
    }

    /// Changes the value atomically: `f` runs here on a copy, which replaces the value only
    /// if no other process changed it meanwhile; otherwise `f` runs again on the fresh value.
    /// So `f` may run more than once, and should only compute. Returns what `f` returned.
    ///
    /// ```
    /// # mp::guard!();
    /// let manager = mp::Manager::new()?;
    /// let total = manager.value(10u64)?;
    /// let before = total.update(|t| std::mem::replace(t, *t + 5))?;
    /// assert_eq!((before, total.get()?), (10, 15));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn update<R>(&self, mut f: impl FnMut(&mut T) -> R) -> Result<R> {
        let (mut value, mut version) = self.versioned()?;
        loop {
            let result = f(&mut value);
            match self.handle.op::<StoredValue>(ValueOp::Swap {
                version,
                value: self.handle.encode(&value)?,
            })? {
                Reply::Swapped => return Ok(result),
                Reply::Entry {
                    value: Some(current),
                    version: v,
                } => {
                    value = self.handle.decode(&current)?;
                    version = v;
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    fn versioned(&self) -> Result<(T, u64)> {
        match self.handle.op::<StoredValue>(ValueOp::Get)? {
            Reply::Entry {
                value: Some(b),
                version,
            } => Ok((self.handle.decode(&b)?, version)),
            other => Err(unexpected(other)),
        }
    }
}

/// An operation on a value.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ValueOp {
    /// The value with its version.
    Get,
    Set(Blob),
    /// Replaces the value if it is still at `version` (compare-and-swap).
    Swap {
        version: u64,
        value: Blob,
    },
}

/// A value as the server keeps it, with a version that every write advances.
#[derive(Debug)]
pub(crate) struct StoredValue {
    value: Blob,
    version: u64,
}

impl ObjectKind for StoredValue {
    const NAME: &'static str = "value";
    type Op = ValueOp;
    type Init = Blob;

    fn new(value: Blob) -> Result<StoredValue> {
        Ok(StoredValue { value, version: 1 })
    }

    fn for_each_value(&mut self, f: &mut dyn FnMut(&mut Blob)) {
        f(&mut self.value);
    }

    fn incoming(op: &ValueOp) -> Vec<u64> {
        match op {
            ValueOp::Set(b) | ValueOp::Swap { value: b, .. } => b.refs.to_vec(),
            ValueOp::Get => Vec::new(),
        }
    }

    fn apply(&mut self, op: ValueOp, _conn: u64, dropped: &mut Vec<u64>) -> Result<(Reply, Out)> {
        let current = |s: &StoredValue| Reply::Entry {
            value: Some(s.value.clone()),
            version: s.version,
        };
        Ok(match op {
            ValueOp::Get => (current(self), Out::Copied),
            ValueOp::Set(new) => {
                discard(std::mem::replace(&mut self.value, new), dropped);
                self.version += 1;
                (Reply::Done, Out::Copied)
            }
            ValueOp::Swap {
                version: expected,
                value: new,
            } => {
                if expected != self.version {
                    discard(new, dropped);
                    return Ok((current(self), Out::Copied));
                }
                discard(std::mem::replace(&mut self.value, new), dropped);
                self.version += 1;
                (Reply::Swapped, Out::Copied)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_drops_the_references_of_what_it_no_longer_holds() {
        let mut value = StoredValue::new(Blob::holding(b"v", &[7])).unwrap();
        let mut dropped = Vec::new();
        let lost = ValueOp::Swap {
            version: 9,
            value: Blob::holding(b"w", &[8]),
        };
        value.apply(lost, 0, &mut dropped).unwrap();
        value
            .apply(ValueOp::Set(Blob::holding(b"x", &[])), 0, &mut dropped)
            .unwrap();
        assert_eq!(dropped, [8, 7]);
    }
}
