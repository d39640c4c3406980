//! `DictIter<K, V>`, the live iterator over a [`DictProxy`]'s entries, a batch per round
//! trip (`DEFAULT_BATCH` by default). Must not change the dict or know its operations: it
//! fetches through the proxy.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::dict::DictProxy;
use crate::error::{Error, Result};

/// How many entries or items a live iterator fetches per round trip by default.
pub(super) const DEFAULT_BATCH: usize = 256;

/// A live iterator over a [`DictProxy`]'s entries ([`DictProxy::iter`]), fetching a batch
/// per round trip; yields an error item and ends if the dict changes size meanwhile.
#[derive(Debug)]
pub struct DictIter<K, V> {
    pub(super) dict: DictProxy<K, V>,
    pub(super) batch: u64,
    /// The position of the next entry to fetch.
    pub(super) next: u64,
    /// The dict's size at the first fetch.
    pub(super) len: Option<u64>,
    pub(super) page: std::collections::VecDeque<(K, V)>,
    pub(super) done: bool,
}

impl<K, V> Iterator for DictIter<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    type Item = Result<(K, V)>;

    fn next(&mut self) -> Option<Result<(K, V)>> {
        if let Some(entry) = self.page.pop_front() {
            return Some(Ok(entry));
        }
        if self.done || self.len.is_some_and(|len| self.next >= len) {
            return None;
        }
        let (pairs, len) = match self.dict.page(self.next, self.batch) {
            Ok(page) => page,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        if self.len.is_some_and(|l| l != len) {
            self.done = true;
            return Some(Err(Error::ChangedDuringIteration("shared dict".to_owned())));
        }
        self.len = Some(len);
        if pairs.is_empty() {
            self.done = true;
            return None;
        }
        self.next += pairs.len() as u64;
        self.page.extend(pairs);
        self.page.pop_front().map(Ok)
    }
}

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// Iterates over the entries live, in insertion order, fetching 256 entries per round
    /// trip (see [`iter_batched`](DictProxy::iter_batched)); [`items`](DictProxy::items) is
    /// the snapshot in one round trip.
    pub fn iter(&self) -> DictIter<K, V> {
        self.iter_batched(DEFAULT_BATCH)
    }

    /// Iterates over the entries live, fetching `batch` entries (at least one) per round
    /// trip. As in Python, a dict that changes size while it is iterated over yields an
    /// [`Error::ChangedDuringIteration`](crate::Error::ChangedDuringIteration) item (seen
    /// at the next fetch), then ends; an entry removed and another inserted between fetches
    /// may shift entries past the iterator or show one twice.
    ///
    /// ```
    /// # mp::guard!();
    /// let manager = mp::Manager::new()?;
    /// let squares = manager.dict_from((0..10u32).map(|i| (i, i * i)))?;
    /// let sum: u32 = squares.iter_batched(3).map(|e| e.map(|(_, v)| v)).sum::<mp::Result<u32>>()?;
    /// assert_eq!(sum, 285);
    ///
    /// let mut entries = squares.iter_batched(3);
    /// entries.next().unwrap()?;
    /// squares.insert(10, 100)?; // the size changes while iterating
    /// let rest: Vec<_> = entries.collect();
    /// assert!(matches!(rest.last(), Some(Err(mp::Error::ChangedDuringIteration(_)))));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn iter_batched(&self, batch: usize) -> DictIter<K, V> {
        DictIter {
            dict: self.clone(),
            batch: batch.max(1) as u64,
            next: 0,
            len: None,
            page: std::collections::VecDeque::new(),
            done: false,
        }
    }
}

impl<K, V> IntoIterator for &DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    type Item = Result<(K, V)>;
    type IntoIter = DictIter<K, V>;

    /// See [`DictProxy::iter`].
    fn into_iter(self) -> DictIter<K, V> {
        self.iter()
    }
}
