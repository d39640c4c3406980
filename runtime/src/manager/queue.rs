//! `QueueProxy<T>`: a FIFO queue held by a manager (Python's `manager.Queue()`), reachable
//! from processes that did not start each other, over TCP too. Blocking waits happen on the
//! server, which notices a client that vanished while it waited.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::handle::Handle;
use super::protocol::{Kind, Op, Reply, Wait, unexpected};
use crate::error::{Error, Result, SendError};

/// A queue that lives in a [`Manager`](crate::Manager)'s server process (Python's
/// `manager.Queue(maxsize)`).
///
/// Between processes of one program, [`mp::Queue`](crate::Queue) is faster (shared memory, no
/// server); a manager queue is the one to use between unrelated programs or machines. Blocking
/// calls wait on the server; `try_` calls fail at once with [`Error::Empty`] / [`Error::Full`],
/// `_timeout` calls with [`Error::Timeout`]. An item taken by a client whose connection broke
/// before the reply went out is put back at the front.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn produce(q: mp::QueueProxy<u32>) -> mp::Result<()> {
///     q.put_many(0..10)?;
///     Ok(())
/// }
///
/// let manager = mp::Manager::new()?;
/// let q = manager.queue::<u32>()?;
/// let mut p = mp::spawn(produce, q.clone())?;
/// let mut got = Vec::new();
/// while got.len() < 10 {
///     got.extend(q.get_many(10)?);
/// }
/// p.join()??;
/// assert_eq!(got, (0..10).collect::<Vec<_>>());
/// # Ok::<(), mp::Error>(())
/// ```
pub struct QueueProxy<T> {
    pub(super) handle: Arc<Handle>,
    pub(super) _type: PhantomData<fn() -> T>,
}

super::proxy_impls!(QueueProxy<T>, Kind::Queue, T);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    /// Puts `item` at the back, waiting while a bounded queue is full.
    pub fn put(&self, item: T) -> Result<(), SendError<T>> {
        self.put_wait(item, Wait::Forever)
    }

    /// Like [`put`](QueueProxy::put), waiting at most `timeout` ([`Error::Timeout`]).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), SendError<T>> {
        self.put_wait(item, Wait::from_timeout(Some(timeout)))
    }

    /// Puts `item` if there is room now ([`Error::Full`] otherwise); Python's `put_nowait`.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> Result<(), SendError<T>> {
        self.put_wait(item, Wait::No)
    }

    /// Puts every item in one round trip, waiting until all fit; on failure hands them back
    /// (none was put).
    pub fn put_many(&self, items: impl IntoIterator<Item = T>) -> Result<(), SendError<Vec<T>>> {
        let items: Vec<T> = items.into_iter().collect();
        super::send_with(&self.handle, items, |items| {
            Ok(Op::QueuePut {
                items: self.handle.encode_all(items)?,
                wait: Wait::Forever,
            })
        })
    }

    /// Takes the oldest item, waiting for one.
    pub fn get(&self) -> Result<T> {
        self.take_one(Wait::Forever)
    }

    /// Like [`get`](QueueProxy::get), waiting at most `timeout` ([`Error::Timeout`]).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.take_one(Wait::from_timeout(Some(timeout)))
    }

    /// Takes the oldest item if there is one ([`Error::Empty`] otherwise); Python's
    /// `get_nowait`.
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T> {
        self.take_one(Wait::No)
    }

    /// Takes up to `max` items in one round trip, waiting for the first.
    pub fn get_many(&self, max: usize) -> Result<Vec<T>> {
        self.take(max, Wait::Forever)
    }

    /// The number of items queued now.
    pub fn qsize(&self) -> Result<usize> {
        super::len(&self.handle)
    }

    /// Whether the queue is empty now.
    pub fn empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }

    fn put_wait(&self, item: T, wait: Wait) -> Result<(), SendError<T>> {
        super::send_value(&self.handle, item, |blob| Op::QueuePut {
            items: vec![blob],
            wait,
        })
    }

    fn take_one(&self, wait: Wait) -> Result<T> {
        self.take(1, wait)?
            .pop()
            .ok_or_else(|| Error::Malformed("the manager answered a get with no item".into()))
    }

    fn take(&self, max: usize, wait: Wait) -> Result<Vec<T>> {
        match self.handle.op(Op::QueueTake {
            max: max as u64,
            wait,
        })? {
            Reply::Blobs(items) => items.iter().map(|b| self.handle.decode(b)).collect(),
            other => Err(unexpected(other)),
        }
    }
}
