//! `DictProxy<K, V>`: a dictionary held by a manager (Python's `manager.dict()`), keyed by the
//! keys' encodings, in insertion order, with an atomic per-entry read-modify-write.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::handle::{self, Handle};
use super::protocol::{Kind, Op, Reply, unexpected};
use crate::error::{Result, SendError};

/// A dictionary that lives in a [`Manager`](crate::Manager)'s server process (Python's
/// `manager.dict()`). Keys keep insertion order, as in Python.
///
/// Keys are compared by their encoding, which matches `==` for the usual key types (integers,
/// strings, tuples and derived structs of these); a key type whose `Eq` differs from its
/// serialized form (say, a case-insensitive string) is not a good fit.
///
/// Reads return copies: **mutating a value you got does not change the dict** — insert it
/// again, or use [`update_with`](DictProxy::update_with), which changes one entry atomically
/// even when many processes do so at once.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn count(words: mp::DictProxy<String, u64>, text: String) -> mp::Result<()> {
///     for word in text.split_whitespace() {
///         words.update_with(&word.to_string(), |n| Some(n.unwrap_or(0) + 1))?;
///     }
///     Ok(())
/// }
///
/// let manager = mp::Manager::new()?;
/// let words = manager.dict::<String, u64>()?;
/// let mut a = mp::spawn(count, (words.clone(), "a b a".to_string()))?;
/// let mut b = mp::spawn(count, (words.clone(), "b a".to_string()))?;
/// a.join()??;
/// b.join()??;
/// assert_eq!(words.get(&"a".to_string())?, Some(3));
/// assert_eq!(words.get(&"b".to_string())?, Some(2));
/// # Ok::<(), mp::Error>(())
/// ```
pub struct DictProxy<K, V> {
    pub(super) handle: Arc<Handle>,
    pub(super) _type: PhantomData<fn() -> (K, V)>,
}

super::proxy_impls!(DictProxy<K, V>, Kind::Dict, (K, V));

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// Sets `key` to `value`; returns the previous value. On failure hands both back.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, SendError<(K, V)>> {
        let sent = self
            .handle
            .encode_key(&key)
            .and_then(|k| Ok((k, self.handle.encode(&value)?)))
            .and_then(|(k, v)| self.handle.op(Op::DictInsert(k, v)));
        match sent {
            Ok(Reply::MaybeBlob(old)) => match old.map(|b| self.handle.decode(&b)).transpose() {
                Ok(old) => Ok(old),
                Err(error) => Err(SendError {
                    error,
                    value: (key, value),
                }),
            },
            Ok(other) => Err(SendError {
                error: unexpected(other),
                value: (key, value),
            }),
            Err(error) => Err(SendError {
                error,
                value: (key, value),
            }),
        }
    }

    /// The value for `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.maybe(Op::DictGet(self.handle.encode_key(key)?))
    }

    /// The values for many keys in one round trip, in the keys' order.
    pub fn get_many<'k>(&self, keys: impl IntoIterator<Item = &'k K>) -> Result<Vec<Option<V>>>
    where
        K: 'k,
    {
        let keys = keys
            .into_iter()
            .map(|k| self.handle.encode_key(k))
            .collect::<Result<Vec<_>>>()?;
        match self.handle.op(Op::DictGetMany(keys))? {
            Reply::MaybeBlobs(values) => values
                .into_iter()
                .map(|v| v.map(|b| self.handle.decode(&b)).transpose())
                .collect(),
            other => Err(unexpected(other)),
        }
    }

    /// Removes `key`; returns its value, if it had one.
    #[doc(alias = "pop")]
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        self.maybe(Op::DictRemove(self.handle.encode_key(key)?))
    }

    /// Whether `key` is present (Python's `key in d`).
    #[doc(alias = "contains")]
    #[doc(alias = "__contains__")]
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        match self
            .handle
            .op(Op::DictContains(self.handle.encode_key(key)?))?
        {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// A snapshot of the keys, in insertion order.
    pub fn keys(&self) -> Result<Vec<K>> {
        match self.handle.op(Op::DictKeys)? {
            Reply::Keys(keys) => keys.iter().map(|k| handle::decode_key(k)).collect(),
            other => Err(unexpected(other)),
        }
    }

    /// A snapshot of the values, in insertion order of their keys.
    pub fn values(&self) -> Result<Vec<V>> {
        match self.handle.op(Op::DictValues)? {
            Reply::Blobs(values) => values.iter().map(|b| self.handle.decode(b)).collect(),
            other => Err(unexpected(other)),
        }
    }

    /// A snapshot of the entries, in insertion order, in one round trip.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.handle.op(Op::DictItems)? {
            Reply::Pairs(pairs) => pairs
                .iter()
                .map(|(k, v)| Ok((handle::decode_key(k)?, self.handle.decode(v)?)))
                .collect(),
            other => Err(unexpected(other)),
        }
    }

    /// The number of entries.
    #[doc(alias = "__len__")]
    pub fn len(&self) -> Result<usize> {
        super::len(&self.handle)
    }

    /// Whether the dict is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        super::done(self.handle.op(Op::Clear)?)
    }

    /// Inserts every pair in one round trip (Python's `d.update(pairs)`); on failure hands
    /// them back (none was inserted).
    pub fn update(
        &self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), SendError<Vec<(K, V)>>> {
        let pairs: Vec<(K, V)> = pairs.into_iter().collect();
        super::send_with(&self.handle, pairs, |pairs| {
            let blobs = pairs
                .iter()
                .map(|(k, v)| Ok((self.handle.encode_key(k)?, self.handle.encode(v)?)))
                .collect::<Result<Vec<_>>>()?;
            Ok(Op::DictUpdate(blobs))
        })
    }

    /// Changes one entry atomically: `f` gets the current value (`None`: absent) and returns
    /// the new one (`None`: remove). If another process changed the entry meanwhile, `f`
    /// runs again on the fresh value, so it may run more than once and should only compute.
    /// Returns the value written.
    ///
    /// ```
    /// # mp::guard!();
    /// let manager = mp::Manager::new()?;
    /// let hits = manager.dict::<String, u32>()?;
    /// let home = "home".to_string();
    /// assert_eq!(hits.update_with(&home, |n| Some(n.unwrap_or(0) + 1))?, Some(1));
    /// assert_eq!(hits.update_with(&home, |n| Some(n.unwrap_or(0) + 1))?, Some(2));
    /// assert_eq!(hits.update_with(&home, |_| None)?, None); // removed
    /// assert!(hits.is_empty()?);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn update_with(
        &self,
        key: &K,
        mut f: impl FnMut(Option<V>) -> Option<V>,
    ) -> Result<Option<V>> {
        let key = self.handle.encode_key(key)?;
        let (mut current, mut version) = match self.handle.op(Op::DictEntry(key.clone()))? {
            Reply::Entry { value, version } => (value, version),
            other => return Err(unexpected(other)),
        };
        loop {
            let old = current.map(|b| self.handle.decode(&b)).transpose()?;
            let new = f(old);
            let value = new.as_ref().map(|v| self.handle.encode(v)).transpose()?;
            match self.handle.op(Op::DictSwap {
                key: key.clone(),
                version,
                value,
            })? {
                Reply::Swapped => return Ok(new),
                Reply::Entry { value, version: v } => {
                    current = value;
                    version = v;
                }
                other => return Err(unexpected(other)),
            }
        }
    }
}

impl<K, V> DictProxy<K, V>
where
    V: DeserializeOwned,
{
    fn maybe(&self, op: Op) -> Result<Option<V>> {
        match self.handle.op(op)? {
            Reply::MaybeBlob(b) => b.map(|b| self.handle.decode(&b)).transpose(),
            other => Err(unexpected(other)),
        }
    }
}
