//! [`SimpleQueue`]: a [`Queue`] without size limits or counts (Python's `SimpleQueue`), and
//! how it travels (as the queue it wraps). A thin wrapper: it must not touch the ring, the
//! put and get protocols of `raw.rs` or the side channel.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Queue;
use crate::error::{Result, SendError};

/// A queue without size limits or counts (Python's `SimpleQueue`): `put`, `get`, `empty`.
///
/// ```
/// let q = mp::SimpleQueue::new()?;
/// q.put("x".to_string())?;
/// assert!(!q.empty());
/// assert_eq!(q.get()?, "x");
/// # Ok::<(), mp::Error>(())
/// ```
pub struct SimpleQueue<T> {
    inner: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SimpleQueue").field(&self.inner).finish()
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new, empty queue.
    pub fn new() -> Result<Self> {
        Ok(SimpleQueue {
            inner: Queue::new()?,
        })
    }
    /// See [`Queue::put`].
    pub fn put(&self, value: T) -> Result<(), SendError<T>> {
        self.inner.put(value)
    }
    /// See [`Queue::get`].
    pub fn get(&self) -> Result<T> {
        self.inner.get()
    }
    /// See [`Queue::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.inner.get_timeout(timeout)
    }
    /// See [`Queue::empty`].
    pub fn empty(&self) -> bool {
        self.inner.empty()
    }
    /// The number of messages in the queue (Python's `SimpleQueue` has no `qsize`; Rust
    /// collections have `len`).
    ///
    /// ```
    /// let q = mp::SimpleQueue::new()?;
    /// q.put(1u8)?;
    /// assert_eq!((q.len(), q.is_empty()), (1, false));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.inner.len()
    }
    /// See [`Queue::is_empty`].
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
    /// See [`Queue::close`].
    pub fn close(&self) {
        self.inner.close()
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> std::result::Result<Z::Ok, Z::Error> {
        self.inner.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Ok(SimpleQueue {
            inner: Queue::deserialize(deserializer)?,
        })
    }
}
