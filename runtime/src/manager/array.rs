//! `ArrayProxy<T>`: a fixed-length typed array held by a manager (Python's
//! `manager.Array(typecode, sequence)`), and the array on the server's side,
//! [`StoredArray`]: its operations ([`ArrayOp`]) and how each applies. Its length is set at
//! creation and never changes. Must not know other kinds, sessions or the store.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::object::{ObjectKind, Out, discard, index};
use super::protocol::{Blob, Reply, unexpected};
use super::proxy::{Creator, proxy};
use crate::error::{Result, SendError};

proxy! {
    /// A fixed-length array of `T` that lives in a [`Manager`](crate::Manager)'s server
    /// process (Python's `manager.Array(typecode, sequence)`; the element type is `T`, not a
    /// type code). An index past the end is
    /// [`Error::OutOfRange`](crate::Error::OutOfRange).
    ///
    /// Between processes of one program, [`mp::Array`](crate::Array) (shared memory) is much
    /// faster; a manager array is for unrelated programs, other machines, or element types that
    /// are not plain data.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn square(cells: mp::ArrayProxy<u64>, i: usize) -> mp::Result<()> {
    ///     let x = cells.get(i)?;
    ///     cells.set(i, x * x)?;
    ///     Ok(())
    /// }
    ///
    /// let manager = mp::Manager::new()?;
    /// let cells = manager.array([1u64, 2, 3])?;
    /// mp::spawn(square, (cells.clone(), 2))?.join()??;
    /// assert_eq!(cells.to_vec()?, [1, 2, 9]);
    /// assert_eq!(cells.len()?, 3);
    /// assert!(matches!(cells.get(3), Err(mp::Error::OutOfRange { index: 3, len: 3 })));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub struct ArrayProxy<T> of StoredArray, over T;
}

impl<T: Serialize + DeserializeOwned> ArrayProxy<T> {
    /// A new array holding `items`.
    pub(super) fn create(creator: &Creator, items: Vec<T>) -> Result<Self> {
        // `items` is kept until the server has them: their proxies keep their objects alive.
        let blobs = items
            .iter()
            .map(|item| creator.encode(item))
            .collect::<Result<Vec<_>>>()?;
        creator
            .create::<StoredArray, T>(None, blobs)
            .map(ArrayProxy::from_handle)
    }

    /// The item at `index`.
    pub fn get(&self, index: usize) -> Result<T> {
        match self.handle.op::<StoredArray>(ArrayOp::Get(index as u64))? {
            Reply::Blob(b) => self.handle.decode(&b),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces the item at `index`; on failure hands `item` back.
    pub fn set(&self, index: usize, item: T) -> Result<(), SendError<T>> {
        self.handle
            .send_value::<StoredArray, T>(item, |blob| ArrayOp::Set(index as u64, blob))
    }

    /// The number of items (fixed at creation).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> Result<usize> {
        self.handle.len::<StoredArray>(ArrayOp::Len)
    }

    /// A copy of every item, in one round trip.
    #[doc(alias = "snapshot")]
    pub fn to_vec(&self) -> Result<Vec<T>> {
        match self.handle.op::<StoredArray>(ArrayOp::All)? {
            Reply::Blobs(items) => items.iter().map(|b| self.handle.decode(b)).collect(),
            other => Err(unexpected(other)),
        }
    }
}

/// An operation on an array.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ArrayOp {
    Get(u64),
    Set(u64, Blob),
    Len,
    All,
}

/// An array as the server keeps it.
#[derive(Debug)]
pub(crate) struct StoredArray {
    items: Vec<Blob>,
}

impl ObjectKind for StoredArray {
    const NAME: &'static str = "array";
    type Op = ArrayOp;
    type Init = Vec<Blob>;

    fn new(items: Vec<Blob>) -> Result<StoredArray> {
        Ok(StoredArray { items })
    }

    fn for_each_value(&mut self, f: &mut dyn FnMut(&mut Blob)) {
        self.items.iter_mut().for_each(f);
    }

    fn incoming(op: &ArrayOp) -> Vec<u64> {
        match op {
            ArrayOp::Set(_, b) => b.refs.to_vec(),
            _ => Vec::new(),
        }
    }

    fn apply(&mut self, op: ArrayOp, _conn: u64, dropped: &mut Vec<u64>) -> Result<(Reply, Out)> {
        let items = &mut self.items;
        let reply = match op {
            ArrayOp::Get(i) => Reply::Blob(items[index(i, items.len())?].clone()),
            ArrayOp::Set(i, item) => {
                let i = index(i, items.len())?;
                discard(std::mem::replace(&mut items[i], item), dropped);
                Reply::Done
            }
            ArrayOp::Len => Reply::Len(items.len() as u64),
            ArrayOp::All => Reply::Blobs(items.clone()),
        };
        Ok((reply, Out::Copied))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn an_array_keeps_its_length() {
        let mut a = StoredArray::new(vec![Blob::plain(b"a"), Blob::plain(b"b")]).unwrap();
        let mut dropped = Vec::new();
        a.apply(ArrayOp::Set(1, Blob::plain(b"c")), 0, &mut dropped)
            .unwrap();
        let e = a
            .apply(ArrayOp::Set(2, Blob::plain(b"d")), 0, &mut dropped)
            .unwrap_err();
        assert!(matches!(e, Error::OutOfRange { index: 2, len: 2 }), "{e}");
        let (Reply::Blobs(all), _) = a.apply(ArrayOp::All, 0, &mut dropped).unwrap() else {
            panic!()
        };
        assert_eq!(all, [Blob::plain(b"a"), Blob::plain(b"c")]);
    }
}
