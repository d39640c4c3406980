//! `SetProxy<T>`: a set held by a manager (what Python programs build from a managed dict's
//! keys), and the set on the server's side, [`StoredSet`]: its operations ([`SetOp`]) and
//! how each applies. Items are compared by their encoding, like dict keys, and so may hold
//! no proxy. Must not know other kinds, sessions or the store.

use std::borrow::Borrow;

use indexmap::IndexSet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::handle;
use super::object::{ObjectKind, Out};
use super::protocol::{Blob, Key, Reply, unexpected};
use super::proxy::{Creator, Named, proxy};
use crate::error::{Error, Result};

proxy! {
    /// A set that lives in a [`Manager`](crate::Manager)'s server process, in insertion
    /// order. Items are compared by their encoding, as [`DictProxy`](crate::DictProxy) keys
    /// are (so they may not hold a proxy). Lookups take any borrowed form that encodes the
    /// same (`set.contains("a")` for a `SetProxy<String>`).
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn tag(tags: mp::SetProxy<String>, word: String) -> mp::Result<bool> {
    ///     tags.add(word)
    /// }
    ///
    /// let manager = mp::Manager::new()?;
    /// let tags = manager.set::<String>()?;
    /// assert!(mp::spawn(tag, (tags.clone(), "rust".to_string()))?.join()??);
    /// assert!(!tags.add("rust".to_string())?); // already there
    /// tags.update(["python".to_string(), "c".to_string()])?;
    /// assert!(tags.contains("python")?);
    /// tags.discard("c")?;
    /// assert!(tags.remove("c").is_err()); // Python's KeyError
    /// assert_eq!(tags.snapshot()?, ["rust", "python"]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub struct SetProxy<T> of StoredSet, over T;
}

impl<T: Serialize + DeserializeOwned> Named for SetProxy<T> {
    fn named(creator: &Creator, name: &str) -> Result<Self> {
        SetProxy::create(creator, Some(name), Vec::new())
    }
}

impl<T: Serialize + DeserializeOwned> SetProxy<T> {
    /// A new set (named: found if it exists) holding `items`.
    pub(super) fn create(creator: &Creator, name: Option<&str>, items: Vec<T>) -> Result<Self> {
        let keys = items
            .iter()
            .map(handle::encode_key)
            .collect::<Result<Vec<_>>>()?;
        creator
            .create::<StoredSet, T>(name, keys)
            .map(SetProxy::from_handle)
    }

    /// Adds `item`; whether it was new.
    pub fn add(&self, item: T) -> Result<bool> {
        self.handle
            .bool::<StoredSet>(SetOp::Add(handle::encode_key(&item)?))
    }

    /// Adds every item in one round trip (Python's `update`).
    pub fn update(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let keys = items
            .into_iter()
            .map(|item| handle::encode_key(&item))
            .collect::<Result<Vec<_>>>()?;
        self.handle.done::<StoredSet>(SetOp::Update(keys))
    }

    /// Removes `item`, which must be there (Python's `remove`: a missing item is
    /// [`Error::InvalidArgument`]); see [`discard`](SetProxy::discard).
    pub fn remove<Q>(&self, item: &Q) -> Result<()>
    where
        T: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        if self.discard(item)? {
            Ok(())
        } else {
            Err(Error::InvalidArgument(
                "remove of an item the shared set does not hold".to_owned(),
            ))
        }
    }

    /// Removes `item` if it is there; whether it was (Python's `discard`, Rust's
    /// `HashSet::remove`).
    pub fn discard<Q>(&self, item: &Q) -> Result<bool>
    where
        T: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.handle
            .bool::<StoredSet>(SetOp::Remove(handle::encode_key(item)?))
    }

    /// Whether `item` is in the set (Python's `item in s`).
    #[doc(alias = "__contains__")]
    pub fn contains<Q>(&self, item: &Q) -> Result<bool>
    where
        T: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.handle
            .bool::<StoredSet>(SetOp::Contains(handle::encode_key(item)?))
    }

    /// Removes and returns the oldest item, if any.
    pub fn pop(&self) -> Result<Option<T>> {
        match self.handle.op::<StoredSet>(SetOp::Pop)? {
            Reply::Keys(keys) => keys.first().map(handle::decode_key).transpose(),
            other => Err(unexpected(other)),
        }
    }

    /// The number of items.
    #[doc(alias = "__len__")]
    pub fn len(&self) -> Result<usize> {
        self.handle.len::<StoredSet>(SetOp::Len)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        self.handle.done::<StoredSet>(SetOp::Clear)
    }

    /// A copy of every item taken now, in insertion order, in one round trip.
    pub fn snapshot(&self) -> Result<Vec<T>> {
        match self.handle.op::<StoredSet>(SetOp::All)? {
            Reply::Keys(keys) => keys.iter().map(handle::decode_key).collect(),
            other => Err(unexpected(other)),
        }
    }
}

/// An operation on a set.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum SetOp {
    Add(Key),
    Update(Vec<Key>),
    Remove(Key),
    Contains(Key),
    Pop,
    Len,
    Clear,
    All,
}

/// A set as the server keeps it: encoded items in insertion order.
#[derive(Debug)]
pub(crate) struct StoredSet {
    items: IndexSet<Key>,
}

impl ObjectKind for StoredSet {
    const NAME: &'static str = "set";
    type Op = SetOp;
    type Init = Vec<Key>;

    fn new(items: Vec<Key>) -> Result<StoredSet> {
        Ok(StoredSet {
            items: items.into_iter().collect(),
        })
    }

    fn for_each_value(&mut self, _f: &mut dyn FnMut(&mut Blob)) {}

    fn incoming(_op: &SetOp) -> Vec<u64> {
        Vec::new()
    }

    fn apply(&mut self, op: SetOp, _conn: u64, _dropped: &mut Vec<u64>) -> Result<(Reply, Out)> {
        let items = &mut self.items;
        let reply = match op {
            SetOp::Add(key) => Reply::Bool(items.insert(key)),
            SetOp::Update(keys) => {
                items.extend(keys);
                Reply::Done
            }
            SetOp::Remove(key) => Reply::Bool(items.shift_remove(&key)),
            SetOp::Contains(key) => Reply::Bool(items.contains(&key)),
            SetOp::Pop => Reply::Keys(items.shift_remove_index(0).into_iter().collect()),
            SetOp::Len => Reply::Len(items.len() as u64),
            SetOp::Clear => {
                items.clear();
                Reply::Done
            }
            SetOp::All => Reply::Keys(items.iter().cloned().collect()),
        };
        Ok((reply, Out::Copied))
    }
}
