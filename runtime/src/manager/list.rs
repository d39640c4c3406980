//! `ListProxy<T>`: a list held by a manager (Python's `manager.list()`), with batched and
//! atomic read-modify-write operations; and the list on the server's side, [`StoredList`]:
//! its operations ([`ListOp`]) and how each applies. Must not know other kinds, sessions or
//! the store: the server calls [`ObjectKind::apply`] with the list locked.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::object::{ObjectKind, Out, discard, index, refs_of};
use super::protocol::{Blob, Reply, unexpected};
use super::proxy::{Creator, Named, proxy};
use crate::error::{Result, SendError};

proxy! {
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
    pub struct ListProxy<T> of StoredList, over T;
}

impl<T: Serialize + DeserializeOwned> Named for ListProxy<T> {
    fn named(creator: &Creator, name: &str) -> Result<Self> {
        ListProxy::create(creator, Some(name), Vec::new())
    }
}

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// A new list (named: found if it exists) holding `items`.
    pub(super) fn create(creator: &Creator, name: Option<&str>, items: Vec<T>) -> Result<Self> {
        let blobs = items
            .iter()
            .map(|item| creator.encode(item))
            .collect::<Result<Vec<_>>>()?;
        creator
            .create::<StoredList, T>(name, blobs)
            .map(ListProxy::from_handle)
    }

    /// Appends `item` at the end (Python's `append`); on failure hands it back.
    #[doc(alias = "push")]
    pub fn append(&self, item: T) -> Result<(), SendError<T>> {
        self.send(item, ListOp::Push)
    }

    /// Appends every item in one round trip; on failure hands them all back (none was added).
    pub fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<(), SendError<Vec<T>>> {
        let items = items.into_iter().collect();
        self.handle.send_all::<StoredList, T>(items, ListOp::Extend)
    }

    /// The item at `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Result<Option<T>> {
        match self.op(ListOp::Get(index as u64))? {
            Reply::MaybeBlob(b) => b.map(|b| self.handle.decode(&b)).transpose(),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces the item at `index` ([`Error::OutOfRange`](crate::Error::OutOfRange) past the end).
    pub fn set(&self, index: usize, item: T) -> Result<(), SendError<T>> {
        self.send(item, |blob| ListOp::Set(index as u64, blob))
    }

    /// Inserts `item` before `index` (`index == len` appends; beyond: [`Error::OutOfRange`](crate::Error::OutOfRange)).
    pub fn insert(&self, index: usize, item: T) -> Result<(), SendError<T>> {
        self.send(item, |blob| ListOp::Insert(index as u64, blob))
    }

    /// Removes and returns the item at `index` ([`Error::OutOfRange`](crate::Error::OutOfRange) past the end).
    pub fn remove(&self, index: usize) -> Result<T> {
        match self.op(ListOp::RemoveAt(index as u64))? {
            Reply::Blob(b) => self.handle.decode(&b),
            other => Err(unexpected(other)),
        }
    }

    /// Removes the first item equal to `item` (compared by encoding); whether there was one
    /// (Python's `list.remove(x)`, without the `ValueError`).
    pub fn remove_item(&self, item: &T) -> Result<bool> {
        let bytes = self.handle.encode(item)?.bytes.into_vec();
        match self.op(ListOp::RemoveItem(crate::codec::Bytes(bytes)))? {
            Reply::Bool(found) => Ok(found),
            other => Err(unexpected(other)),
        }
    }

    /// Removes and returns the last item, or `None` if the list is empty.
    pub fn pop(&self) -> Result<Option<T>> {
        match self.op(ListOp::Pop)? {
            Reply::MaybeBlob(b) => b.map(|b| self.handle.decode(&b)).transpose(),
            other => Err(unexpected(other)),
        }
    }

    /// The number of items.
    #[doc(alias = "__len__")]
    pub fn len(&self) -> Result<usize> {
        self.handle.len::<StoredList>(ListOp::Len)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        self.handle.done::<StoredList>(ListOp::Clear)
    }

    /// A copy of the whole list, in one round trip.
    #[doc(alias = "snapshot")]
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.snapshot()?.0)
    }

    /// Iterates over the list live, by position, fetching 256 items per round trip (see
    /// [`iter_batched`](ListProxy::iter_batched)); [`to_vec`](ListProxy::to_vec) is the
    /// snapshot in one round trip.
    pub fn iter(&self) -> ListIter<T> {
        self.iter_batched(256)
    }

    /// Iterates over the list live, by position as Python does (`list[0]`, `list[1]`, … until
    /// the end), fetching `batch` items (at least one) per round trip: items appended while
    /// iterating are seen, and items removed before the current position shift others past
    /// it, as in Python; a failed fetch is an error item, after which the iterator ends.
    ///
    /// ```
    /// # mp::guard!();
    /// let manager = mp::Manager::new()?;
    /// let list = manager.list_from(0..10u32)?;
    /// let mut seen = Vec::new();
    /// for item in list.iter_batched(4) {
    ///     let item = item?;
    ///     if item == 0 {
    ///         list.append(10)?; // seen: the iteration reads live
    ///     }
    ///     seen.push(item);
    /// }
    /// assert_eq!(seen, (0..=10).collect::<Vec<_>>());
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn iter_batched(&self, batch: usize) -> ListIter<T> {
        ListIter {
            list: self.clone(),
            batch: batch.max(1) as u64,
            next: 0,
            page: std::collections::VecDeque::new(),
            done: false,
        }
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
            match self.op(ListOp::Replace {
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
        match self.op(ListOp::Snapshot)? {
            Reply::Items { items, version } => Ok((self.decode_all(&items)?, version)),
            other => Err(unexpected(other)),
        }
    }

    fn decode_all(&self, blobs: &[Blob]) -> Result<Vec<T>> {
        blobs.iter().map(|b| self.handle.decode(b)).collect()
    }

    fn send(&self, item: T, op: impl FnOnce(Blob) -> ListOp) -> Result<(), SendError<T>> {
        self.handle.send_value::<StoredList, T>(item, op)
    }

    fn op(&self, op: ListOp) -> Result<Reply> {
        self.handle.op::<StoredList>(op)
    }
}

/// An operation on a list.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ListOp {
    Push(Blob),
    Extend(Vec<Blob>),
    Get(u64),
    Set(u64, Blob),
    Insert(u64, Blob),
    RemoveAt(u64),
    Pop,
    /// Removes the first item whose encoding equals this one.
    RemoveItem(crate::codec::Bytes),
    /// The items and the list's version.
    Snapshot,
    /// Replaces the items if the list is still at `version` (compare-and-swap).
    Replace {
        version: u64,
        items: Vec<Blob>,
    },
    Len,
    Clear,
    /// At most `max` items from position `start` on.
    Slice {
        start: u64,
        max: u64,
    },
}

/// A live iterator over a [`ListProxy`] ([`ListProxy::iter`]), fetching a batch of items per
/// round trip.
#[derive(Debug)]
pub struct ListIter<T> {
    list: ListProxy<T>,
    batch: u64,
    /// The position of the next item to fetch.
    next: u64,
    page: std::collections::VecDeque<T>,
    done: bool,
}

impl<T: Serialize + DeserializeOwned> Iterator for ListIter<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if let Some(item) = self.page.pop_front() {
            return Some(Ok(item));
        }
        if self.done {
            return None;
        }
        let fetched = match self.list.handle.op::<StoredList>(ListOp::Slice {
            start: self.next,
            max: self.batch,
        }) {
            Ok(Reply::Blobs(items)) => items
                .iter()
                .map(|b| self.list.handle.decode(b))
                .collect::<Result<Vec<T>>>(),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(e),
        };
        match fetched {
            Ok(items) => {
                // A short batch: the list ended there.
                self.done = (items.len() as u64) < self.batch;
                self.next += items.len() as u64;
                self.page.extend(items);
                self.page.pop_front().map(Ok)
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<T: Serialize + DeserializeOwned> IntoIterator for &ListProxy<T> {
    type Item = Result<T>;
    type IntoIter = ListIter<T>;

    /// See [`ListProxy::iter`].
    fn into_iter(self) -> ListIter<T> {
        self.iter()
    }
}

/// A list as the server keeps it: its items and a version that every change advances.
#[derive(Debug)]
pub(crate) struct StoredList {
    items: Vec<Blob>,
    version: u64,
}

impl ObjectKind for StoredList {
    const NAME: &'static str = "list";
    type Op = ListOp;
    type Init = Vec<Blob>;

    fn new(items: Vec<Blob>) -> Result<StoredList> {
        Ok(StoredList { items, version: 1 })
    }

    fn for_each_value(&mut self, f: &mut dyn FnMut(&mut Blob)) {
        self.items.iter_mut().for_each(f);
    }

    fn incoming(op: &ListOp) -> Vec<u64> {
        match op {
            ListOp::Push(b) | ListOp::Set(_, b) | ListOp::Insert(_, b) => b.refs.to_vec(),
            ListOp::Extend(items) | ListOp::Replace { items, .. } => refs_of(items),
            _ => Vec::new(),
        }
    }

    fn apply(&mut self, op: ListOp, _conn: u64, dropped: &mut Vec<u64>) -> Result<(Reply, Out)> {
        use Out::{Copied, Taken};
        let StoredList { items, version } = self;
        let reply = match op {
            ListOp::Len => return Ok((Reply::Len(items.len() as u64), Copied)),
            ListOp::Slice { start, max } => {
                let start = usize::try_from(start)
                    .unwrap_or(usize::MAX)
                    .min(items.len());
                let end = start.saturating_add(usize::try_from(max).unwrap_or(usize::MAX));
                let end = end.min(items.len());
                return Ok((Reply::Blobs(items[start..end].to_vec()), Copied));
            }
            ListOp::Get(i) => {
                return Ok((
                    Reply::MaybeBlob(usize::try_from(i).ok().and_then(|i| items.get(i)).cloned()),
                    Copied,
                ));
            }
            ListOp::Snapshot => {
                return Ok((
                    Reply::Items {
                        items: items.clone(),
                        version: *version,
                    },
                    Copied,
                ));
            }
            ListOp::Push(item) => {
                items.push(item);
                (Reply::Done, Copied)
            }
            ListOp::Extend(more) => {
                items.extend(more);
                (Reply::Done, Copied)
            }
            ListOp::Set(i, item) => {
                let i = index(i, items.len())?;
                discard(std::mem::replace(&mut items[i], item), dropped);
                (Reply::Done, Copied)
            }
            ListOp::Insert(i, item) => {
                let at = index(i, items.len() + 1)?;
                items.insert(at, item);
                (Reply::Done, Copied)
            }
            ListOp::RemoveAt(i) => {
                let i = index(i, items.len())?;
                (Reply::Blob(items.remove(i)), Taken)
            }
            ListOp::Pop => (Reply::MaybeBlob(items.pop()), Taken),
            ListOp::RemoveItem(item) => match items.iter().position(|x| *x.bytes == *item) {
                Some(i) => {
                    discard(items.remove(i), dropped);
                    (Reply::Bool(true), Copied)
                }
                None => return Ok((Reply::Bool(false), Copied)),
            },
            ListOp::Clear => {
                items.drain(..).for_each(|b| discard(b, dropped));
                (Reply::Done, Copied)
            }
            ListOp::Replace {
                version: expected,
                items: new,
            } => {
                if expected != *version {
                    new.into_iter().for_each(|b| discard(b, dropped));
                    return Ok((
                        Reply::Items {
                            items: items.clone(),
                            version: *version,
                        },
                        Copied,
                    ));
                }
                std::mem::replace(items, new)
                    .into_iter()
                    .for_each(|b| discard(b, dropped));
                (Reply::Swapped, Copied)
            }
        };
        *version += 1;
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::manager::object::apply_keeping_refs as apply;

    #[test]
    fn list_operations_and_range_errors() {
        let mut list = StoredList::new(vec![Blob::plain(b"a")]).unwrap();
        apply(&mut list, ListOp::Insert(1, Blob::plain(b"b"))).unwrap();
        assert!(matches!(
            apply(&mut list, ListOp::Insert(5, Blob::plain(b"x"))),
            Err(Error::OutOfRange { index: 5, len: 3 })
        ));
        assert!(matches!(
            apply(&mut list, ListOp::Set(2, Blob::plain(b"x"))),
            Err(Error::OutOfRange { index: 2, len: 2 })
        ));
        let Reply::Blob(b) = apply(&mut list, ListOp::RemoveAt(0)).unwrap() else {
            panic!()
        };
        assert_eq!(&b.bytes[..], b"a");
    }

    #[test]
    fn values_leaving_a_list_drop_or_hand_over_their_references() {
        let mut list = StoredList::new(vec![Blob::holding(b"a", &[1])]).unwrap();
        let mut dropped = Vec::new();
        let mut run = |list: &mut StoredList, op| list.apply(op, 0, &mut dropped).unwrap().1;
        assert_eq!(run(&mut list, ListOp::Get(0)), Out::Copied);
        assert_eq!(
            run(&mut list, ListOp::Set(0, Blob::holding(b"b", &[2]))),
            Out::Copied
        );
        run(&mut list, ListOp::Push(Blob::holding(b"c", &[3, 4])));
        // A lost compare-and-swap does not store its values.
        run(
            &mut list,
            ListOp::Replace {
                version: 0,
                items: vec![Blob::holding(b"d", &[5])],
            },
        );
        assert!(
            run(
                &mut list,
                ListOp::RemoveItem(crate::codec::Bytes(b"b".to_vec()))
            ) == Out::Copied
        );
        assert_eq!(run(&mut list, ListOp::Pop), Out::Taken);
        assert_eq!(dropped, [1, 5, 2]);
        let mut refs = Vec::new();
        list.for_each_value(&mut |b| refs.extend_from_slice(&b.refs));
        assert!(refs.is_empty());
    }
}
