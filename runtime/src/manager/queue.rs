//! `QueueProxy<T>`: a FIFO queue held by a manager (Python's `manager.Queue()`), reachable
//! from processes that did not start each other, over TCP too. Blocking waits happen on the
//! server, which notices a client that vanished while it waited. Also the queue on the
//! server's side, [`StoredQueue`]: its operations ([`QueueOp`]), when they must wait and how
//! they apply. Must not know other kinds, sessions or the store.

use std::time::Duration;

use std::collections::VecDeque;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::object::{ObjectKind, Out, Pending, refs_of};
use super::protocol::{Blob, Reply, Wait, unexpected};
use super::proxy::{Creator, Named, proxy};
use crate::error::{Error, Result, SendError};

proxy! {
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
    pub struct QueueProxy<T> of StoredQueue, over T;
}

impl<T: Serialize + DeserializeOwned> Named for QueueProxy<T> {
    fn named(creator: &Creator, name: &str) -> Result<Self> {
        QueueProxy::create(creator, Some(name), None)
    }
}

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    /// A new queue (named: found if it exists) holding at most `maxsize` items.
    pub(super) fn create(
        creator: &Creator,
        name: Option<&str>,
        maxsize: Option<u64>,
    ) -> Result<Self> {
        creator
            .create::<StoredQueue, T>(name, maxsize)
            .map(QueueProxy::from_handle)
    }

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
        let items = items.into_iter().collect();
        self.handle
            .send_all::<StoredQueue, T>(items, |items| QueueOp::Put {
                items,
                wait: Wait::Forever,
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
        self.handle.len::<StoredQueue>(QueueOp::Len)
    }

    /// Whether the queue is empty now.
    pub fn empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }

    /// Marks one item taken earlier as processed (Python's `task_done()`, which every
    /// manager queue has, as `queue.Queue` does); more calls than items put is
    /// [`Error::TaskDoneTooOften`].
    ///
    /// ```
    /// # mp::guard!();
    /// let manager = mp::Manager::new()?;
    /// let jobs = manager.joinable_queue::<u32>()?;
    /// jobs.put(1)?;
    /// assert!(matches!(jobs.join_timeout(std::time::Duration::from_millis(10)), Err(mp::Error::Timeout)));
    /// assert_eq!(jobs.get()?, 1);
    /// jobs.task_done()?;
    /// jobs.join()?; // every item put was processed
    /// assert!(matches!(jobs.task_done(), Err(mp::Error::TaskDoneTooOften)));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn task_done(&self) -> Result<()> {
        self.handle.done::<StoredQueue>(QueueOp::TaskDone)
    }

    /// Waits until every item put has been marked processed with
    /// [`task_done`](QueueProxy::task_done) (Python's `join()`).
    pub fn join(&self) -> Result<()> {
        self.handle.done::<StoredQueue>(QueueOp::Join {
            wait: Wait::Forever,
        })
    }

    /// Like [`join`](QueueProxy::join), waiting at most `timeout` ([`Error::Timeout`]).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.handle.done::<StoredQueue>(QueueOp::Join {
            wait: Wait::from_timeout(Some(timeout)),
        })
    }

    fn put_wait(&self, item: T, wait: Wait) -> Result<(), SendError<T>> {
        self.handle
            .send_value::<StoredQueue, T>(item, |blob| QueueOp::Put {
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
        match self.handle.op::<StoredQueue>(QueueOp::Take {
            max: max as u64,
            wait,
        })? {
            Reply::Blobs(items) => items.iter().map(|b| self.handle.decode(b)).collect(),
            other => Err(unexpected(other)),
        }
    }
}

/// An operation on a queue.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum QueueOp {
    Len,
    Put {
        items: Vec<Blob>,
        wait: Wait,
    },
    /// Takes at least one and at most `max` items, waiting for the first.
    Take {
        max: u64,
        wait: Wait,
    },
    /// One item taken earlier is processed.
    TaskDone,
    /// Waits until every item put is processed.
    Join {
        wait: Wait,
    },
}

/// A queue as the server keeps it.
#[derive(Debug)]
pub(crate) struct StoredQueue {
    items: VecDeque<Blob>,
    maxsize: Option<usize>,
    /// Items put and not yet marked processed (`task_done`).
    unfinished: u64,
}

impl ObjectKind for StoredQueue {
    const NAME: &'static str = "queue";
    type Op = QueueOp;
    /// The maximum size (`None`: unbounded).
    type Init = Option<u64>;

    fn new(maxsize: Option<u64>) -> Result<StoredQueue> {
        Ok(StoredQueue {
            items: VecDeque::new(),
            maxsize: maxsize.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
            unfinished: 0,
        })
    }

    fn for_each_value(&mut self, f: &mut dyn FnMut(&mut Blob)) {
        self.items.iter_mut().for_each(f);
    }

    fn incoming(op: &QueueOp) -> Vec<u64> {
        match op {
            QueueOp::Put { items, .. } => refs_of(items),
            QueueOp::Len | QueueOp::Take { .. } | QueueOp::TaskDone | QueueOp::Join { .. } => {
                Vec::new()
            }
        }
    }

    fn must_wait(&self, op: &QueueOp, _conn: u64) -> Option<Pending> {
        match op {
            QueueOp::Put { items, wait } => {
                let max = self.maxsize?;
                // More than can ever fit is an error, not a wait (see `apply`).
                (items.len() <= max && self.items.len() + items.len() > max)
                    .then(|| Pending::or_fail(*wait, Error::Full))
            }
            QueueOp::Take { wait, .. } => self
                .items
                .is_empty()
                .then(|| Pending::or_fail(*wait, Error::Empty)),
            QueueOp::Join { wait } => {
                (self.unfinished > 0).then(|| Pending::or_fail(*wait, Error::Timeout))
            }
            QueueOp::Len | QueueOp::TaskDone => None,
        }
    }

    fn apply(&mut self, op: QueueOp, _conn: u64, _dropped: &mut Vec<u64>) -> Result<(Reply, Out)> {
        Ok(match op {
            QueueOp::Len => (Reply::Len(self.items.len() as u64), Out::Copied),
            QueueOp::Put { items, .. } => {
                if let Some(max) = self.maxsize
                    && items.len() > max
                {
                    return Err(Error::InvalidArgument(format!(
                        "{} items can never fit in a queue of maxsize {max}",
                        items.len()
                    )));
                }
                self.unfinished += items.len() as u64;
                self.items.extend(items);
                (Reply::Done, Out::Copied)
            }
            QueueOp::Take { max, .. } => {
                let max = usize::try_from(max).unwrap_or(usize::MAX).max(1);
                let n = max.min(self.items.len());
                (Reply::Blobs(self.items.drain(..n).collect()), Out::Dequeued)
            }
            QueueOp::TaskDone => {
                if self.unfinished == 0 {
                    return Err(Error::TaskDoneTooOften);
                }
                self.unfinished -= 1;
                (Reply::Done, Out::Copied)
            }
            QueueOp::Join { .. } => (Reply::Done, Out::Copied),
        })
    }

    fn put_back(&mut self, items: Vec<Blob>) {
        for item in items.into_iter().rev() {
            self.items.push_front(item);
        }
    }
}
