//! `DictProxy<K, V>`: a dictionary held by a manager (Python's `manager.dict()`), keyed by the
//! keys' encodings, in insertion order, with an atomic per-entry read-modify-write; and the
//! dict on the server's side, [`StoredDict`]: its operations ([`DictOp`]) and how each
//! applies. Must not know other kinds, sessions or the store.

use std::borrow::Borrow;

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::handle;
use super::object::{ObjectKind, Out, discard, refs_of};
use super::protocol::{Blob, Key, Reply, unexpected};
use super::proxy::{Creator, Named, proxy};
use crate::error::{Result, SendError};

proxy! {
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
    pub struct DictProxy<K, V> of StoredDict, over (K, V);
}

impl<K, V> Named for DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn named(creator: &Creator, name: &str) -> Result<Self> {
        DictProxy::create(creator, Some(name), Vec::new())
    }
}

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// A new dict (named: found if it exists) holding `pairs`.
    pub(super) fn create(
        creator: &Creator,
        name: Option<&str>,
        pairs: Vec<(K, V)>,
    ) -> Result<Self> {
        // `pairs` is kept until the server has the values: their proxies keep their objects
        // alive.
        let blobs = pairs
            .iter()
            .map(|(k, v)| {
                let value = creator.encode(v)?;
                Ok((handle::encode_key(k)?, value))
            })
            .collect::<Result<Vec<_>>>()?;
        creator
            .create::<StoredDict, (K, V)>(name, blobs)
            .map(DictProxy::from_handle)
    }

    /// Sets `key` to `value`; returns the previous value. On failure hands both back.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, SendError<(K, V)>> {
        let sent = self
            .handle
            .encode_key(&key)
            .and_then(|k| Ok((k, self.handle.encode(&value)?)))
            .and_then(|(k, v)| self.op(DictOp::Insert(k, v)));
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

    /// The value for `key`, if any. `key` may be any borrowed form of `K` that encodes as `K`
    /// does (`&str` for `String`, `&[T]` for `Vec<T>`), as with `HashMap::get`.
    ///
    /// ```
    /// # mp::guard!();
    /// let manager = mp::Manager::new()?;
    /// let ages = manager.dict_from([("ada".to_string(), 36)])?;
    /// assert_eq!(ages.get("ada")?, Some(36));
    /// assert!(!ages.contains_key("bob")?);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.maybe(DictOp::Get(self.handle.encode_key(key)?))
    }

    /// The values for many keys in one round trip, in the keys' order.
    pub fn get_many<'k, Q>(&self, keys: impl IntoIterator<Item = &'k Q>) -> Result<Vec<Option<V>>>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized + 'k,
    {
        let keys = keys
            .into_iter()
            .map(|k| self.handle.encode_key(k))
            .collect::<Result<Vec<_>>>()?;
        match self.op(DictOp::GetMany(keys))? {
            Reply::MaybeBlobs(values) => values
                .into_iter()
                .map(|v| v.map(|b| self.handle.decode(&b)).transpose())
                .collect(),
            other => Err(unexpected(other)),
        }
    }

    /// Removes `key`; returns its value, if it had one.
    #[doc(alias = "pop")]
    pub fn remove<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.maybe(DictOp::Remove(self.handle.encode_key(key)?))
    }

    /// Whether `key` is present (Python's `key in d`).
    #[doc(alias = "contains")]
    #[doc(alias = "__contains__")]
    pub fn contains_key<Q>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.handle
            .bool::<StoredDict>(DictOp::Contains(self.handle.encode_key(key)?))
    }

    /// A snapshot of the keys, in insertion order.
    pub fn keys(&self) -> Result<Vec<K>> {
        match self.op(DictOp::Keys)? {
            Reply::Keys(keys) => keys.iter().map(|k| handle::decode_key(k)).collect(),
            other => Err(unexpected(other)),
        }
    }

    /// A snapshot of the values, in insertion order of their keys.
    pub fn values(&self) -> Result<Vec<V>> {
        match self.op(DictOp::Values)? {
            Reply::Blobs(values) => values.iter().map(|b| self.handle.decode(b)).collect(),
            other => Err(unexpected(other)),
        }
    }

    pub(super) fn page(&self, start: u64, max: u64) -> Result<(Vec<(K, V)>, u64)> {
        match self.op(DictOp::Page { start, max })? {
            Reply::Page { pairs, len } => {
                let pairs = pairs
                    .iter()
                    .map(|(k, v)| Ok((handle::decode_key(k)?, self.handle.decode(v)?)))
                    .collect::<Result<Vec<_>>>()?;
                Ok((pairs, len))
            }
            other => Err(unexpected(other)),
        }
    }

    /// A snapshot of the entries, in insertion order, in one round trip.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.op(DictOp::Items)? {
            Reply::Pairs(pairs) => pairs
                .iter()
                .map(|(k, v)| Ok((handle::decode_key(k)?, self.handle.decode(v)?)))
                .collect(),
            other => Err(unexpected(other)),
        }
    }

    /// Whether the dict is empty.
    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }

    /// The number of entries.
    #[doc(alias = "__len__")]
    pub fn len(&self) -> Result<usize> {
        self.handle.len::<StoredDict>(DictOp::Len)
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        self.handle.done::<StoredDict>(DictOp::Clear)
    }

    /// Inserts every pair in one round trip (Python's `d.update(pairs)`); on failure hands
    /// them back (none was inserted).
    pub fn update(
        &self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), SendError<Vec<(K, V)>>> {
        let pairs: Vec<(K, V)> = pairs.into_iter().collect();
        self.handle.send_with::<StoredDict, _>(pairs, |pairs| {
            let blobs = pairs
                .iter()
                .map(|(k, v)| Ok((self.handle.encode_key(k)?, self.handle.encode(v)?)))
                .collect::<Result<Vec<_>>>()?;
            Ok(DictOp::Update(blobs))
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
    pub fn update_with<Q>(
        &self,
        key: &Q,
        mut f: impl FnMut(Option<V>) -> Option<V>,
    ) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let key = self.handle.encode_key(key)?;
        let (mut current, mut version) = match self.op(DictOp::Entry(key.clone()))? {
            Reply::Entry { value, version } => (value, version),
            other => return Err(unexpected(other)),
        };
        loop {
            let old = current.map(|b| self.handle.decode(&b)).transpose()?;
            let new = f(old);
            let value = new.as_ref().map(|v| self.handle.encode(v)).transpose()?;
            match self.op(DictOp::Swap {
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
    fn maybe(&self, op: DictOp) -> Result<Option<V>> {
        match self.op(op)? {
            Reply::MaybeBlob(b) => b.map(|b| self.handle.decode(&b)).transpose(),
            other => Err(unexpected(other)),
        }
    }
}

impl<K, V> DictProxy<K, V> {
    fn op(&self, op: DictOp) -> Result<Reply> {
        self.handle.op::<StoredDict>(op)
    }
}

/// An operation on a dict.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum DictOp {
    Keys,
    Values,
    Items,
    Get(Key),
    GetMany(Vec<Key>),
    Insert(Key, Blob),
    Remove(Key),
    Contains(Key),
    Update(Vec<(Key, Blob)>),
    /// One entry (or its absence) with its version.
    Entry(Key),
    /// Sets (`Some`) or removes (`None`) an entry if it is still at `version` (0: absent).
    Swap {
        key: Key,
        version: u64,
        value: Option<Blob>,
    },
    Len,
    Clear,
    /// At most `max` entries from position `start` on, with the dict's size.
    Page {
        start: u64,
        max: u64,
    },
}

/// A dict as the server keeps it: entries in insertion order, as Python's dicts, each with
/// the clock at its last write (its version; 0 means absent).
#[derive(Debug)]
pub(crate) struct StoredDict {
    map: IndexMap<Key, (Blob, u64)>,
    clock: u64,
}

impl StoredDict {
    fn version_of(&self, key: &Key) -> u64 {
        self.map.get(key).map_or(0, |(_, v)| *v)
    }

    fn get(&self, key: &Key) -> Option<Blob> {
        self.map.get(key).map(|(v, _)| v.clone())
    }
}

impl ObjectKind for StoredDict {
    const NAME: &'static str = "dict";
    type Op = DictOp;
    type Init = Vec<(Key, Blob)>;

    fn new(pairs: Vec<(Key, Blob)>) -> Result<StoredDict> {
        Ok(StoredDict {
            map: pairs.into_iter().map(|(k, v)| (k, (v, 1))).collect(),
            clock: 1,
        })
    }

    fn for_each_value(&mut self, f: &mut dyn FnMut(&mut Blob)) {
        self.map.values_mut().for_each(|(v, _)| f(v));
    }

    fn incoming(op: &DictOp) -> Vec<u64> {
        match op {
            DictOp::Insert(_, b) => b.refs.to_vec(),
            DictOp::Swap { value, .. } => refs_of(value),
            DictOp::Update(pairs) => refs_of(pairs.iter().map(|(_, v)| v)),
            _ => Vec::new(),
        }
    }

    fn apply(&mut self, op: DictOp, _conn: u64, dropped: &mut Vec<u64>) -> Result<(Reply, Out)> {
        use Out::{Copied, Taken};
        Ok(match op {
            DictOp::Len => (Reply::Len(self.map.len() as u64), Copied),
            DictOp::Get(key) => (Reply::MaybeBlob(self.get(&key)), Copied),
            DictOp::GetMany(keys) => (
                Reply::MaybeBlobs(keys.iter().map(|k| self.get(k)).collect()),
                Copied,
            ),
            DictOp::Contains(key) => (Reply::Bool(self.map.contains_key(&key)), Copied),
            DictOp::Keys => (Reply::Keys(self.map.keys().cloned().collect()), Copied),
            DictOp::Page { start, max } => {
                let skip = usize::try_from(start).unwrap_or(usize::MAX);
                let take = usize::try_from(max).unwrap_or(usize::MAX);
                let pairs = self
                    .map
                    .iter()
                    .skip(skip)
                    .take(take)
                    .map(|(k, (v, _))| (k.clone(), v.clone()))
                    .collect();
                let len = self.map.len() as u64;
                (Reply::Page { pairs, len }, Copied)
            }
            DictOp::Values => (
                Reply::Blobs(self.map.values().map(|(v, _)| v.clone()).collect()),
                Copied,
            ),
            DictOp::Items => (
                Reply::Pairs(
                    self.map
                        .iter()
                        .map(|(k, (v, _))| (k.clone(), v.clone()))
                        .collect(),
                ),
                Copied,
            ),
            DictOp::Entry(key) => (
                Reply::Entry {
                    value: self.get(&key),
                    version: self.version_of(&key),
                },
                Copied,
            ),
            DictOp::Insert(key, value) => {
                self.clock += 1;
                let old = self.map.insert(key, (value, self.clock));
                (Reply::MaybeBlob(old.map(|(v, _)| v)), Taken)
            }
            DictOp::Remove(key) => {
                self.clock += 1;
                let old = self.map.shift_remove(&key);
                (Reply::MaybeBlob(old.map(|(v, _)| v)), Taken)
            }
            DictOp::Update(pairs) => {
                self.clock += 1;
                for (k, v) in pairs {
                    if let Some((old, _)) = self.map.insert(k, (v, self.clock)) {
                        discard(old, dropped);
                    }
                }
                (Reply::Done, Copied)
            }
            DictOp::Clear => {
                self.clock += 1;
                self.map
                    .drain(..)
                    .for_each(|(_, (v, _))| discard(v, dropped));
                (Reply::Done, Copied)
            }
            DictOp::Swap {
                key,
                version,
                value,
            } => {
                let current = self.version_of(&key);
                if current != version {
                    if let Some(new) = value {
                        discard(new, dropped);
                    }
                    return Ok((
                        Reply::Entry {
                            value: self.get(&key),
                            version: current,
                        },
                        Copied,
                    ));
                }
                self.clock += 1;
                let old = match value {
                    Some(v) => self.map.insert(key, (v, self.clock)),
                    None => self.map.shift_remove(&key),
                };
                if let Some((old, _)) = old {
                    discard(old, dropped);
                }
                (Reply::Swapped, Copied)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::object::apply_keeping_refs as apply;

    fn key(b: &[u8]) -> Key {
        crate::codec::Bytes(b.to_vec())
    }

    #[test]
    fn compare_and_swap_detects_races() {
        let mut dict = StoredDict::new(Vec::new()).unwrap();
        let Reply::Entry {
            value: None,
            version: 0,
        } = apply(&mut dict, DictOp::Entry(key(b"k"))).unwrap()
        else {
            panic!()
        };
        let swap = |version, v: &[u8]| DictOp::Swap {
            key: key(b"k"),
            version,
            value: Some(Blob::plain(v)),
        };
        assert!(matches!(
            apply(&mut dict, swap(0, b"1")).unwrap(),
            Reply::Swapped
        ));
        // A second writer that read "absent" loses and is told the current entry.
        let Reply::Entry {
            value: Some(v),
            version,
        } = apply(&mut dict, swap(0, b"2")).unwrap()
        else {
            panic!()
        };
        assert_eq!(&v.bytes[..], b"1");
        assert!(matches!(
            apply(&mut dict, swap(version, b"2")).unwrap(),
            Reply::Swapped
        ));
    }
}
