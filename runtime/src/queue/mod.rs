//! `Queue`, `SimpleQueue`, `JoinableQueue`: multi-producer multi-consumer queues between
//! processes, with no feeder thread.
//!
//! Algorithm (see `README.md`): messages are written into a byte ring in shared memory (a
//! memfd every handle maps). Producers serialise on one lock and consumers on another (the
//! two-lock queue); the locks are futex words with the owner's pid, stolen from an owner that
//! died. A record is published by advancing `tail` after it is fully written, so a producer
//! killed mid-write leaves nothing half-visible (one killed after arming its publish intent
//! has its publish finished by the next producer). A consumer decodes the message, taking its
//! descriptors by peeking the side channel, before it commits by advancing `head`, so one
//! killed inside `get` leaves the message for the next. Sleepers wait on sequence words
//! (`data_seq`, `space_seq`, `done_seq`) and are woken only when a waiter count says someone
//! sleeps.
//!
//! Because a `put` has copied the message into shared memory when it returns, a process may
//! exit right after writing — nothing is left in a private buffer to flush (Python's classic
//! "join before drain" deadlock cannot happen). Descriptors (handles inside messages, and
//! large messages in sealed memfds) cannot live in shared memory: they travel on a packet
//! socket beside the ring, tagged with a sequence number the record carries.
//!
//! Files: `ring.rs` the shared memory (layout, records, locks, waits), `raw.rs` the put and
//! get protocols and the repairs after a death, `side.rs` the descriptors' side channel; this
//! file `Queue`, its iterator and how a queue travels; `simple.rs` and `joinable.rs` the two
//! typed handles built on `Queue`. It must not touch the ring or the side channel itself.

mod joinable;
mod raw;
mod ring;
mod side;
mod simple;
#[cfg(test)]
mod tests;

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{self, Fd};
use crate::error::{Result, SendError};
use raw::Raw;
pub use ring::DEFAULT_QUEUE_CAPACITY;
use ring::Shared;
use side::SideChannel;

pub use joinable::JoinableQueue;
pub use simple::SimpleQueue;

/// A process-shared FIFO queue of `T` (Python's `multiprocessing.Queue`).
///
/// Any number of processes may `put` and `get`; clone the handle or pass it to workers (it
/// travels as a handle, the queue itself is shared). Optional `maxsize` gives back-pressure.
/// A `put` returns once the message is in shared memory, so a writer can exit without waiting
/// for readers. Methods come in families: `put` / `put_timeout` / `try_put` and `get` /
/// `get_timeout` / `try_get`.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn produce(q: mp::Queue<String>) -> mp::Result<()> {
///     q.put("hello from the child".to_string())?;
///     Ok(())
/// }
///
/// let q = mp::Queue::new()?;
/// let mut p = mp::spawn(produce, q.clone())?;
/// p.join()??; // joining before draining is fine
/// assert_eq!(q.get()?, "hello from the child");
/// # Ok::<(), mp::Error>(())
/// ```
pub struct Queue<T> {
    raw: Arc<Raw>,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            raw: Arc::clone(&self.raw),
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.raw.len())
            .field("maxsize", &self.raw.shared.maxsize())
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An unbounded queue. Unbounded means: up to [`DEFAULT_QUEUE_CAPACITY`] bytes of encoded
    /// messages in flight, past which `put` waits for readers.
    pub fn new() -> Result<Queue<T>> {
        Self::with_capacity(0, DEFAULT_QUEUE_CAPACITY)
    }

    /// A queue holding at most `maxsize` messages (`put` waits while it is full; 0: no limit).
    ///
    /// ```
    /// let q = mp::Queue::with_maxsize(2)?;
    /// q.put(1)?;
    /// q.put(2)?;
    /// assert!(q.full());
    /// assert!(matches!(q.put_timeout(3, std::time::Duration::from_millis(5)), Err(e) if matches!(e.error, mp::Error::Full)));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn with_maxsize(maxsize: usize) -> Result<Queue<T>> {
        Self::with_capacity(maxsize, DEFAULT_QUEUE_CAPACITY)
    }

    /// A queue with `maxsize` messages at most (0: no limit) and a ring of `bytes` bytes of
    /// shared memory (at least 1 MiB). Messages above 64 KiB use memory of their own.
    ///
    /// ```
    /// let q = mp::Queue::<u64>::with_capacity(0, 4 << 20)?;
    /// q.put(9)?;
    /// assert_eq!(q.get()?, 9);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn with_capacity(maxsize: usize, bytes: usize) -> Result<Queue<T>> {
        Ok(Queue {
            raw: Arc::new(Raw::new(bytes, maxsize, false)?),
            _type: PhantomData,
        })
    }

    fn put_inner(&self, value: T, timeout: Option<Duration>) -> Result<(), SendError<T>> {
        thread_local! {
            static BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
        }
        let mut encoded = match self.raw.encode(&value, BUFFER.take()) {
            Ok(e) => e,
            Err(error) => return Err(SendError { error, value }),
        };
        let result = self.raw.put(&value, &mut encoded, timeout);
        BUFFER.set(encoded.frame);
        match result {
            Ok(()) => Ok(()),
            Err(error) => Err(SendError { error, value }),
        }
    }

    /// Puts `value`, waiting while the queue is full. Encoding errors are returned here.
    ///
    /// The error hands `value` back ([`SendError`]); `?` turns it into an [`Error`](crate::Error).
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn produce(q: mp::Queue<String>) -> mp::Result<()> {
    ///     for i in 0..3 {
    ///         q.put(format!("item {i}"))?;
    ///     }
    ///     Ok(())
    /// }
    ///
    /// let q = mp::Queue::new()?;
    /// mp::spawn(produce, q.clone())?.join()??;
    /// assert_eq!(q.get()?, "item 0");
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn put(&self, value: T) -> Result<(), SendError<T>> {
        self.put_inner(value, None)
    }

    /// Puts `value`, waiting at most `timeout` for room ([`Error::Full`](crate::Error::Full)).
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), SendError<T>> {
        self.put_inner(value, Some(timeout))
    }

    /// Puts `value` only if there is room now ([`Error::Full`](crate::Error::Full)); Python's
    /// `put_nowait`.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, value: T) -> Result<(), SendError<T>> {
        self.put_inner(value, Some(Duration::ZERO))
    }

    fn get_inner(&self, timeout: Option<Duration>) -> Result<T> {
        self.raw.get(timeout, codec::decode)
    }

    /// Takes the oldest message, waiting as long as it takes.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn double(q: mp::Queue<u64>, n: u64) -> mp::Result<()> {
    ///     Ok(q.put(2 * n)?)
    /// }
    ///
    /// let q = mp::Queue::new()?;
    /// let mut p = mp::spawn(double, (q.clone(), 21))?;
    /// assert_eq!(q.get()?, 42); // waits for the child's put
    /// p.join()??;
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn get(&self) -> Result<T> {
        self.get_inner(None)
    }

    /// Takes the oldest message, waiting at most `timeout`
    /// ([`Error::Timeout`](crate::Error::Timeout)).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_inner(Some(timeout))
    }

    /// Takes the oldest message if there is one ([`Error::Empty`](crate::Error::Empty)); Python's
    /// `get_nowait`.
    ///
    /// ```
    /// let q = mp::Queue::<u8>::new()?;
    /// assert!(matches!(q.try_get(), Err(mp::Error::Empty)));
    /// # Ok::<(), mp::Error>(())
    /// ```
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T> {
        self.get_inner(Some(Duration::ZERO))
    }

    /// The number of messages in the queue (exact at the instant of reading; others may change
    /// it right after).
    pub fn qsize(&self) -> usize {
        self.raw.len()
    }

    /// Whether the queue holds no message (approximate, as `qsize`).
    pub fn empty(&self) -> bool {
        self.raw.len() == 0
    }

    /// The number of messages in the queue: [`qsize`](Self::qsize) under its Rust name.
    ///
    /// ```
    /// let q = mp::Queue::new()?;
    /// q.put('a')?;
    /// assert_eq!(q.len(), 1);
    /// assert!(!q.is_empty());
    /// # Ok::<(), mp::Error>(())
    /// ```
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        self.qsize()
    }

    /// Whether the queue holds no message: [`empty`](Self::empty) under its Rust name.
    ///
    /// ```
    /// let q = mp::Queue::<u8>::new()?;
    /// assert!(q.is_empty());
    /// # Ok::<(), mp::Error>(())
    /// ```
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.empty()
    }

    /// Shuts the queue down, for every handle in every process (Python 3.13's
    /// `shutdown()`): from now on `put` fails with [`Error::ShutDown`](crate::Error::ShutDown),
    /// and so do putters blocked on a full queue, at once; `get` still returns the messages
    /// left, then fails with `ShutDown` (getters blocked on the empty queue wake with it).
    /// A `put` racing with this call either lands before it returns or fails.
    ///
    /// Iteration ([`iter`](Self::iter), `for m in &queue`) ends once the queue is drained, so
    /// a producer's `shutdown` replaces the sentinel value of the classic pattern.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn produce(q: mp::Queue<u32>) -> mp::Result<()> {
    ///     for i in 0..3 {
    ///         q.put(i)?;
    ///     }
    ///     q.shutdown(); // no sentinel needed
    ///     Ok(())
    /// }
    ///
    /// let q = mp::Queue::new()?;
    /// let mut p = mp::spawn(produce, q.clone())?;
    /// let got: Vec<u32> = q.iter().collect::<mp::Result<_>>()?;
    /// assert_eq!(got, [0, 1, 2]);
    /// p.join()??;
    /// assert!(matches!(q.put(3), Err(e) if matches!(e.error, mp::Error::ShutDown)));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn shutdown(&self) {
        self.raw.shutdown(false)
    }

    /// Shuts the queue down and drops the messages it holds (Python's
    /// `shutdown(immediate=True)`): as [`shutdown`](Self::shutdown), but `get` fails with
    /// [`Error::ShutDown`](crate::Error::ShutDown) at once. For a [`JoinableQueue`] each
    /// dropped message counts as done, so `join` returns once the messages already taken are
    /// acknowledged.
    ///
    /// ```
    /// let q = mp::Queue::new()?;
    /// q.put(1)?;
    /// q.shutdown_immediate();
    /// assert!(q.is_empty());
    /// assert!(matches!(q.get(), Err(mp::Error::ShutDown)));
    /// # Ok::<(), mp::Error>(())
    /// ```
    #[doc(alias = "shutdown(immediate=True)")]
    pub fn shutdown_immediate(&self) {
        self.raw.shutdown(true)
    }

    /// Whether the queue was shut down (by any handle, in any process).
    ///
    /// ```
    /// let q = mp::Queue::<u8>::new()?;
    /// assert!(!q.is_shutdown());
    /// q.shutdown();
    /// assert!(q.is_shutdown());
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn is_shutdown(&self) -> bool {
        self.raw.shutdown_state() != ring::OPEN
    }

    /// An iterator that takes messages with [`get`](Self::get) until the queue is shut down
    /// and drained ([`shutdown`](Self::shutdown)) or this handle is [closed](Self::close);
    /// then it ends. Any other error (a message that does not decode, say) is yielded once as
    /// `Err`, and the iteration ends after it: it never loops on a lasting error. The same
    /// iterator as `for message in &queue`.
    ///
    /// There is no "all writers are gone" end: every handle may put, in any process, and a
    /// queue does not count its handles; a producer's `shutdown` is the end-of-stream mark.
    ///
    /// ```
    /// let q = mp::Queue::new()?;
    /// q.put("a".to_string())?;
    /// q.put("b".to_string())?;
    /// q.shutdown();
    /// let mut seen = Vec::new();
    /// for message in &q {
    ///     seen.push(message?);
    /// }
    /// assert_eq!(seen, ["a", "b"]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn iter(&self) -> QueueIter<'_, T> {
        QueueIter {
            queue: self,
            done: false,
        }
    }

    /// Whether the queue holds `maxsize` messages (never, for an unbounded queue).
    pub fn full(&self) -> bool {
        let max = self.raw.shared.maxsize();
        max > 0 && self.raw.len() as u64 >= max
    }

    /// Closes this handle (and its clones in this process): further `put`/`get` through it are
    /// [`Error::Closed`](crate::Error::Closed). Messages already put stay readable by other
    /// handles.
    pub fn close(&self) {
        self.raw.closed.store(true, Ordering::Relaxed);
    }
}

/// Iterates over a queue's messages until it is shut down and drained (see [`Queue::iter`]).
pub struct QueueIter<'a, T> {
    queue: &'a Queue<T>,
    done: bool,
}

impl<T: Serialize + DeserializeOwned> Iterator for QueueIter<'_, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.done {
            return None;
        }
        match self.queue.get() {
            Ok(message) => Some(Ok(message)),
            Err(crate::Error::ShutDown | crate::Error::Closed) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<T: Serialize + DeserializeOwned> std::iter::FusedIterator for QueueIter<'_, T> {}

impl<T> fmt::Debug for QueueIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueIter")
            .field("done", &self.done)
            .finish()
    }
}

impl<'a, T: Serialize + DeserializeOwned> IntoIterator for &'a Queue<T> {
    type Item = Result<T>;
    type IntoIter = QueueIter<'a, T>;
    fn into_iter(self) -> QueueIter<'a, T> {
        self.iter()
    }
}

// Handles: the shared memory and the two side-channel sockets travel as descriptors.

impl<T> Serialize for Queue<T> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> std::result::Result<Z::Ok, Z::Error> {
        let s = &self.raw.shared;
        let wire = QueueWire {
            mem: Fd(s.map.fd()),
            tx: Fd(s.side.tx.as_fd()),
            rx: Fd(s.side.rx.as_fd()),
            len: s.map.len() as u64,
            joinable: self.raw.joinable,
        };
        wire.serialize(serializer)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename = "mp::Queue")]
#[serde(bound(
    serialize = "Fd<F>: Serialize",
    deserialize = "Fd<F>: Deserialize<'de>"
))]
struct QueueWire<F> {
    mem: Fd<F>,
    tx: Fd<F>,
    rx: Fd<F>,
    len: u64,
    joinable: bool,
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let w = QueueWire::<OwnedFd>::deserialize(deserializer)?;
        let (Fd(mem), Fd(tx), Fd(rx)) = (w.mem, w.tx, w.rx);
        let shared = Shared::open(mem, w.len, SideChannel { tx, rx }).map_err(D::Error::custom)?;
        let raw = Raw {
            shared,
            closed: AtomicBool::new(false),
            joinable: w.joinable,
        };
        Ok(Queue {
            raw: Arc::new(raw),
            _type: PhantomData,
        })
    }
}
