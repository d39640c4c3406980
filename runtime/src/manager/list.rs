//! `ListProxy<T>`: a list held by a manager (Python's `manager.list()`), with batched and
//! atomic read-modify-write operations.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::handle::Handle;
use super::protocol::{Blob, Kind, Op, Reply, unexpected};
use crate::error::{Result, SendError};

/// A list that lives in a [`Manager`](crate::Manager)'s server process, shared by every
/// process holding a proxy to it (Python's `manager.list()`).
///
/// Every call is one round trip to the server. Reads return copies: **changing a value you
/// got from [`get`](ListProxy::get) does not change the list** (Python's classic surprise with
/// nested proxies) — write it back with [`set`](ListProxy::set), or change the list in place
/// atomically with [`update`](ListProxy::update). Batched calls ([`extend`](ListProxy::extend),
/// [`to_vec`](ListProxy::to_vec)) move many items in one round trip.
///
/// A proxy is an ordinary worker argument; clones share their connections.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn add(list: mp::ListProxy<u32>, n: u32) -> mp::Result<()> {
///     list.append(n)?;
///     Ok(())
/// }
///
/// let manager = mp::Manager::new()?;
/// let list = manager.list_from([1, 2, 3])?;
/// mp::spawn(add, (list.clone(), 100))?.join()??;
/// assert_eq!(list.to_vec()?, [1, 2, 3, 100]);
/// # Ok::<(), mp::Error>(())
/// ```
pub struct ListProxy<T> {
    pub(super) handle: Arc<Handle>,
    pub(super) _type: PhantomData<fn() -> T>,
}

super::proxy_impls!(ListProxy<T>, Kind::List, T);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// Appends `item` at the end (Python's `append`); on failure hands it back.
    #[doc(alias = "push")]
    pub fn append(&self, item: T) -> Result<(), SendError<T>> {
        self.send(item, Op::ListPush)
    }

    /// Appends every item in one round trip; on failure hands them all back (none was added).
    pub fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<(), SendError<Vec<T>>> {
        let items: Vec<T> = items.into_iter().collect();
        super::send_with(&self.handle, items, |items| {
            Ok(Op::ListExtend(self.handle.encode_all(items)?))
        })
    }

    /// The item at `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Result<Option<T>> {
        match self.handle.op(Op::ListGet(index as u64))? {
            Reply::MaybeBlob(b) => b.map(|b| self.handle.decode(&b)).transpose(),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces the item at `index` ([`Error::OutOfRange`](crate::Error::OutOfRange) past the end).
    pub fn set(&self, index: usize, item: T) -> Result<(), SendError<T>> {
        self.send(item, |blob| Op::ListSet(index as u64, blob))
    }

    /// Inserts `item` before `index` (`index == len` appends; beyond: [`Error::OutOfRange`](crate::Error::OutOfRange)).
    pub fn insert(&self, index: usize, item: T) -> Result<(), SendError<T>> {
        self.send(item, |blob| Op::ListInsert(index as u64, blob))
    }

    /// Removes and returns the item at `index` ([`Error::OutOfRange`](crate::Error::OutOfRange) past the end).
    pub fn remove(&self, index: usize) -> Result<T> {
        match self.handle.op(Op::ListRemoveAt(index as u64))? {
            Reply::Blob(b) => self.handle.decode(&b),
            other => Err(unexpected(other)),
        }
    }

    /// Removes the first item equal to `item` (compared by encoding); whether there was one
    /// (Python's `list.remove(x)`, without the `ValueError`).
    pub fn remove_item(&self, item: &T) -> Result<bool> {
        match self
            .handle
            .op(Op::ListRemoveItem(self.handle.encode(item)?.bytes))?
        {
            Reply::Bool(found) => Ok(found),
            other => Err(unexpected(other)),
        }
    }

    /// Removes and returns the last item, or `None` if the list is empty.
    pub fn pop(&self) -> Result<Option<T>> {
        match self.handle.op(Op::ListPop)? {
            Reply::MaybeBlob(b) => b.map(|b| self.handle.decode(&b)).transpose(),
            other => Err(unexpected(other)),
        }
    }

    /// The number of items.
    #[doc(alias = "__len__")]
    pub fn len(&self) -> Result<usize> {
        super::len(&self.handle)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        super::done(self.handle.op(Op::Clear)?)
    }

    /// A copy of the whole list, in one round trip.
    #[doc(alias = "snapshot")]
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.snapshot()?.0)
    }

    /// Iterates over a snapshot of the list taken now (later changes are not seen).
    pub fn iter(&self) -> Result<std::vec::IntoIter<T>> {
        Ok(self.to_vec()?.into_iter())
    }

    /// Changes the whole list atomically: `f` runs here on a copy, and the result replaces
    /// the list only if no other process changed it meanwhile; otherwise `f` runs again on
    /// the fresh contents. So `f` may run more than once, and should only compute.
    ///
    /// ```
    /// # mp::guard!();
    /// let manager = mp::Manager::new()?;
    /// let list = manager.list_from([3, 1, 2])?;
    /// let len = list.update(|v| {
    ///     v.retain(|&x| x != 1);
    ///     v.len()
    /// })?;
    /// assert_eq!((len, list.to_vec()?), (2, vec![3, 2]));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn update<R>(&self, mut f: impl FnMut(&mut Vec<T>) -> R) -> Result<R> {
        let (mut items, mut version) = self.snapshot()?;
        loop {
            let result = f(&mut items);
            let blobs = self.handle.encode_all(&items)?;
            match self.handle.op(Op::ListReplace {
                version,
                items: blobs,
            })? {
                Reply::Swapped => return Ok(result),
                Reply::Items {
                    items: current,
                    version: v,
                } => {
                    items = self.decode_all(&current)?;
                    version = v;
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    /// Sorts the list in place on the server's copy, atomically (see
    /// [`update`](ListProxy::update)).
    pub fn sort(&self) -> Result<()>
    where
        T: Ord,
    {
        self.update(|v| v.sort())
    }

    fn snapshot(&self) -> Result<(Vec<T>, u64)> {
        match self.handle.op(Op::ListSnapshot)? {
            Reply::Items { items, version } => Ok((self.decode_all(&items)?, version)),
            other => Err(unexpected(other)),
        }
    }

    fn decode_all(&self, blobs: &[Blob]) -> Result<Vec<T>> {
        blobs.iter().map(|b| self.handle.decode(b)).collect()
    }

    fn send(&self, item: T, op: impl FnOnce(Blob) -> Op) -> Result<(), SendError<T>> {
        super::send_value(&self.handle, item, op)
    }
}
