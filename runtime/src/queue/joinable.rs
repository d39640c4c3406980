//! [`JoinableQueue`]: a [`Queue`] whose consumers acknowledge each message, so a producer
//! can wait until all were processed (Python's `JoinableQueue`), and how it travels (a
//! queue's handle, refused unless the queue is joinable). It reaches the untyped queue only
//! for the unfinished-task count; it must not touch the ring or the side channel.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::raw::Raw;
use super::{DEFAULT_QUEUE_CAPACITY, Queue, QueueIter};
use crate::error::Result;

/// A queue whose consumers acknowledge each message with [`task_done`](Self::task_done), so a
/// producer can [`join`](Self::join) until all were processed (Python's `JoinableQueue`).
///
/// ```
/// let q = mp::JoinableQueue::new()?;
/// q.put(1u32)?;
/// let job = q.get()?;
/// q.task_done()?;
/// q.join()?; // returns: every put was acknowledged
/// # let _ = job;
/// # Ok::<(), mp::Error>(())
/// ```
pub struct JoinableQueue<T> {
    pub(super) inner: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JoinableQueue").field(&self.inner).finish()
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// A new unbounded joinable queue.
    pub fn new() -> Result<Self> {
        Self::with_maxsize(0)
    }
    /// A joinable queue holding at most `maxsize` messages (0: no limit).
    pub fn with_maxsize(maxsize: usize) -> Result<Self> {
        let raw = Raw::new(DEFAULT_QUEUE_CAPACITY, maxsize, true)?;
        Ok(JoinableQueue {
            inner: Queue {
                raw: Arc::new(raw),
                _type: PhantomData,
            },
        })
    }
    /// Marks one message taken with `get` as processed. Calling it more often than messages
    /// were put is an error.
    pub fn task_done(&self) -> Result<()> {
        self.inner.raw.task_done()
    }
    /// Waits until every message put has been marked done (or dropped by
    /// [`shutdown_immediate`](Queue::shutdown_immediate)).
    ///
    /// ```
    /// let q = mp::JoinableQueue::new()?;
    /// q.put(1u32)?;
    /// q.put(2u32)?;
    /// q.shutdown_immediate(); // drops both: nothing left to wait for
    /// q.join()?;
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn join(&self) -> Result<()> {
        self.inner.raw.join(None)
    }
    /// Like [`join`](Self::join), giving up after `timeout`
    /// ([`Error::Timeout`](crate::Error::Timeout)).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.inner.raw.join(Some(timeout))
    }
}

impl<T> std::ops::Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.inner
    }
}

impl<'a, T: Serialize + DeserializeOwned> IntoIterator for &'a JoinableQueue<T> {
    type Item = Result<T>;
    type IntoIter = QueueIter<'a, T>;
    fn into_iter(self) -> QueueIter<'a, T> {
        self.inner.iter()
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> std::result::Result<Z::Ok, Z::Error> {
        self.inner.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let inner = Queue::deserialize(deserializer)?;
        if !inner.raw.joinable {
            return Err(serde::de::Error::custom(
                "expected a JoinableQueue, got a plain Queue",
            ));
        }
        Ok(JoinableQueue { inner })
    }
}
