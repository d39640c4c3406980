//! Waiting on several objects at once (Python's `multiprocessing.connection.wait`): the
//! [`Waitable`] trait, implemented by connections, pipe readers, listeners, queues, processes
//! and raw descriptors, and [`wait`] over a list of them.
//!
//! Each object answers "are you ready now?" without blocking and, when it has one, names the
//! descriptor that becomes readable when it gets ready; `wait` checks them all, then sleeps in
//! one `poll` on the descriptors. A queue has no descriptor (its ring is shared memory and its
//! sleepers wait on a word), so with one in the list the sleep is cut into slices of at most
//! [`QUEUE_SLICE`] and the queues are checked between them.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Connection, Listener, PipeReader};
use crate::error::{Error, Result};
use crate::process::Process;
use crate::queue::{JoinableQueue, Queue, SimpleQueue};
use crate::sys;
use crate::worker::Worker;

/// The longest sleep between two checks of the queues in a [`wait`].
const QUEUE_SLICE: Duration = Duration::from_millis(10);

mod sealed {
    pub trait Sealed {}
}

/// Something [`wait`] can wait on: a [`Connection`] or [`PipeReader`] (ready when a message
/// or the peer's hang-up can be received), a [`Listener`] (a peer is connecting), a
/// [`Queue`], [`SimpleQueue`] or [`JoinableQueue`] (an item can be taken), a started
/// [`Process`] (it has ended; see [`Process::sentinel`]), or any descriptor as a
/// [`BorrowedFd`] or [`OwnedFd`] (readable).
///
/// Ready means the next call does not wait for the peer: a `recv` returns a value or
/// [`Error::Disconnected`], a queue's `get` finds an item (unless another consumer takes it
/// first), a listener's `accept` has a connection to authenticate (which may still fail). A
/// connection that another thread is receiving on is checked once that receive returns.
/// The trait is sealed: wrap another descriptor in a [`BorrowedFd`].
///
/// ```
/// use mp::connection::Waitable;
/// let (a, b) = mp::pipe::<u8>()?;
/// let objects: [&dyn Waitable; 1] = [&b];
/// a.send(1)?;
/// assert_eq!(mp::connection::wait(&objects, None)?, [0]);
/// # Ok::<(), mp::Error>(())
/// ```
pub trait Waitable: sealed::Sealed {
    /// Whether the object is ready now; never blocks.
    #[doc(hidden)]
    fn __ready(&self) -> Result<bool>;

    /// The descriptor that becomes readable when the object gets ready, if it has one.
    #[doc(hidden)]
    fn __wait_fd(&self) -> Option<BorrowedFd<'_>>;
}

/// Waits until at least one of `objects` is ready, or `timeout` passes (`None`: no limit), and
/// returns the indices of the ready ones, in order; empty on timeout (Python's
/// `multiprocessing.connection.wait`, which returns the objects themselves).
///
/// An empty list with no timeout would wait forever: it is [`Error::InvalidArgument`]. A
/// process not yet started can never become ready: [`Error::NotStarted`].
///
/// ```
/// # mp::guard!();
/// use std::time::Duration;
///
/// #[mp::worker]
/// fn nap(ms: u64) {
///     std::thread::sleep(Duration::from_millis(ms));
/// }
///
/// let (tx, rx) = mp::pipe::<String>()?;
/// let queue = mp::Queue::<u32>::new()?;
/// let mut p = mp::spawn(nap, 50)?;
///
/// // Nothing is ready yet.
/// let none = mp::connection::wait(&[&rx, &queue, &p], Some(Duration::ZERO))?;
/// assert!(none.is_empty());
///
/// queue.put(7)?;
/// assert_eq!(mp::connection::wait(&[&rx, &queue, &p], None)?, [1]);
/// queue.get()?;
///
/// // The process ends after 50 ms: its sentinel becomes readable.
/// assert_eq!(mp::connection::wait(&[&rx, &queue, &p], Some(Duration::from_secs(10)))?, [2]);
/// p.join()?;
/// # drop(tx);
/// # Ok::<(), mp::Error>(())
/// ```
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    if objects.is_empty() && timeout.is_none() {
        return Err(Error::InvalidArgument(
            "`wait` on no objects and without a timeout would never return".to_owned(),
        ));
    }
    let deadline = timeout.map(|t| Instant::now().checked_add(t));
    let mut fds = Vec::with_capacity(objects.len());
    let mut polled = Vec::new();
    loop {
        let mut ready = Vec::new();
        for (i, object) in objects.iter().enumerate() {
            if object.__ready()? {
                ready.push(i);
            }
        }
        if !ready.is_empty() {
            return Ok(ready);
        }
        let remaining = match deadline {
            None | Some(None) => None,
            Some(Some(at)) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Ok(ready),
            },
        };
        fds.clear();
        fds.extend(objects.iter().filter_map(|o| o.__wait_fd()));
        let sleep = match fds.len() < objects.len() {
            // A queue among them: check again after a slice.
            true => Some(remaining.map_or(QUEUE_SLICE, |left| left.min(QUEUE_SLICE))),
            false => remaining,
        };
        // Whichever descriptor woke us, the checks at the top say who is ready.
        sys::poll_many(&fds, sleep, &mut polled).map_err(Error::io("cannot wait (poll)"))?;
    }
}

/// Whether `fd` is readable (or hung up) now.
fn readable_now(fd: BorrowedFd<'_>) -> Result<bool> {
    sys::poll_readable(fd, Some(Duration::ZERO)).map_err(Error::io("cannot poll a descriptor"))
}

impl<S, R> sealed::Sealed for Connection<S, R> {}
impl<S, R> Waitable for Connection<S, R> {
    fn __ready(&self) -> Result<bool> {
        // Also counts a frame already buffered, which the socket no longer shows.
        self.channel.poll(Some(Duration::ZERO))
    }
    fn __wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd())
    }
}

impl<T> sealed::Sealed for PipeReader<T> {}
impl<T> Waitable for PipeReader<T> {
    fn __ready(&self) -> Result<bool> {
        self.inner.__ready()
    }
    fn __wait_fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.__wait_fd()
    }
}

impl sealed::Sealed for Listener {}
impl Waitable for Listener {
    fn __ready(&self) -> Result<bool> {
        readable_now(self.listening_fd())
    }
    fn __wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.listening_fd())
    }
}

impl<T> sealed::Sealed for Queue<T> {}
impl<T: Serialize + DeserializeOwned> Waitable for Queue<T> {
    /// A message can be taken, or the queue is shut down (`get` returns at once).
    fn __ready(&self) -> Result<bool> {
        Ok(!self.empty() || self.is_shutdown())
    }
    fn __wait_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl<T> sealed::Sealed for SimpleQueue<T> {}
impl<T: Serialize + DeserializeOwned> Waitable for SimpleQueue<T> {
    fn __ready(&self) -> Result<bool> {
        Ok(!self.empty())
    }
    fn __wait_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl<T> sealed::Sealed for JoinableQueue<T> {}
impl<T: Serialize + DeserializeOwned> Waitable for JoinableQueue<T> {
    fn __ready(&self) -> Result<bool> {
        Ok(!self.empty() || self.is_shutdown())
    }
    fn __wait_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl<W: Worker> sealed::Sealed for Process<W> {}
impl<W: Worker> Waitable for Process<W> {
    fn __ready(&self) -> Result<bool> {
        readable_now(self.sentinel()?)
    }
    fn __wait_fd(&self) -> Option<BorrowedFd<'_>> {
        self.sentinel().ok()
    }
}

impl sealed::Sealed for BorrowedFd<'_> {}
impl Waitable for BorrowedFd<'_> {
    fn __ready(&self) -> Result<bool> {
        readable_now(*self)
    }
    fn __wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(*self)
    }
}

impl sealed::Sealed for OwnedFd {}
impl Waitable for OwnedFd {
    fn __ready(&self) -> Result<bool> {
        readable_now(self.as_fd())
    }
    fn __wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
}
