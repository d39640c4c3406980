//! `Pipe`: typed connections between two processes over one `AF_UNIX` stream socket pair
//! (framing in `channel.rs`). Ends are handles: they can be worker arguments or travel inside
//! messages, their socket crossing with `SCM_RIGHTS`.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::channel::Channel;
use crate::codec;
use crate::error::{Error, Result, SendError};
use crate::sys;

/// One end of a duplex pipe: sends `S`, receives `R` (Python's `multiprocessing.connection.Connection`).
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn echo(conn: mp::Connection<String>) -> mp::Result<()> {
///     while let Ok(msg) = conn.recv() {
///         conn.send(msg.to_uppercase())?;
///     }
///     Ok(())
/// }
///
/// let (here, there) = mp::pipe::<String>()?;
/// let mut p = mp::spawn(echo, there)?;
/// here.send("hi".to_string())?;
/// assert_eq!(here.recv()?, "HI");
/// drop(here); // the child sees Disconnected and returns
/// p.join()??;
/// # Ok::<(), mp::Error>(())
/// ```
pub struct Connection<S, R = S> {
    channel: Channel,
    _types: PhantomData<fn(S) -> R>,
}

/// The receiving end of a one-way pipe.
pub struct PipeReader<T> {
    inner: Connection<(), T>,
}

/// The sending end of a one-way pipe.
pub struct PipeWriter<T> {
    inner: Connection<T, ()>,
}

/// A duplex pipe carrying `T` both ways (Python's `Pipe()`).
///
/// ```
/// let (a, b) = mp::pipe::<u32>()?;
/// a.send(1)?;
/// b.send(2)?;
/// assert_eq!(b.recv()?, 1);
/// assert_eq!(a.recv()?, 2);
/// # Ok::<(), mp::Error>(())
/// ```
#[doc(alias = "Pipe")]
pub fn pipe<T: Serialize + DeserializeOwned>() -> Result<(Connection<T>, Connection<T>)> {
    Connection::pair()
}

/// A one-way pipe, `(reader, writer)` as in Python's `Pipe(duplex=False)`.
///
/// ```
/// let (rx, tx) = mp::pipe_one_way::<String>()?;
/// tx.send("one way".to_string())?;
/// assert_eq!(rx.recv()?, "one way");
/// # Ok::<(), mp::Error>(())
/// ```
pub fn pipe_one_way<T: Serialize + DeserializeOwned>() -> Result<(PipeReader<T>, PipeWriter<T>)> {
    let (a, b) = sys::socketpair_stream().map_err(Error::io("cannot create a socket pair"))?;
    let _ = rustix::net::shutdown(&a, rustix::net::Shutdown::Write);
    let _ = rustix::net::shutdown(&b, rustix::net::Shutdown::Read);
    Ok((
        PipeReader {
            inner: Connection::from(a),
        },
        PipeWriter {
            inner: Connection::from(b),
        },
    ))
}

impl<S: Serialize, R: DeserializeOwned> Connection<S, R> {
    /// A connected pair with different types each way: the first end sends `S` and receives
    /// `R`, the second the reverse.
    ///
    /// ```
    /// let (client, server) = mp::Connection::<String, usize>::pair()?;
    /// client.send("four".to_string())?;
    /// let word = server.recv()?;
    /// server.send(word.len())?;
    /// assert_eq!(client.recv()?, 4);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn pair() -> Result<(Connection<S, R>, Connection<R, S>)>
    where
        R: Serialize,
        S: DeserializeOwned,
    {
        let (a, b) = sys::socketpair_stream().map_err(Error::io("cannot create a socket pair"))?;
        Ok((Connection::from(a), Connection::from(b)))
    }

    /// Sends `value`; blocks while the peer's buffer is full. On failure the value comes back
    /// in the error. Large values travel in shared memory, not through the socket.
    pub fn send(&self, value: S) -> Result<(), SendError<S>> {
        self.channel.send_value(value)
    }

    /// Receives the next value, waiting as long as it takes. [`Error::Disconnected`] once the
    /// peer is gone and everything it sent was received.
    pub fn recv(&self) -> Result<R> {
        self.channel.recv_frame(None)?.decode()
    }

    /// Receives the next value, waiting at most `timeout` ([`Error::Timeout`]).
    ///
    /// ```
    /// let (a, _b) = mp::pipe::<u8>()?;
    /// let waited = a.recv_timeout(std::time::Duration::from_millis(10));
    /// assert!(matches!(waited, Err(mp::Error::Timeout)));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<R> {
        self.channel.recv_frame(Some(timeout))?.decode()
    }

    /// Receives a value only if one is ready ([`Error::Timeout`] otherwise).
    pub fn try_recv(&self) -> Result<R> {
        self.channel.recv_frame(Some(Duration::ZERO))?.decode()
    }

    /// Whether there is something to receive (a value, or the peer's hang-up), waiting up to
    /// `timeout` (`None`: forever). Python's `poll(timeout)`.
    ///
    /// ```
    /// let (a, b) = mp::pipe::<u8>()?;
    /// assert!(!b.poll(Some(std::time::Duration::ZERO))?);
    /// a.send(7)?;
    /// assert!(b.poll(None)?);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        self.channel.poll(timeout)
    }
}

/// Wraps a connected `AF_UNIX` stream socket, e.g. one end of
/// [`UnixStream::pair`](std::os::unix::net::UnixStream::pair) (Python's `Connection(handle)`).
/// The peer must speak `mp`'s framing; anything else is reported as [`Error::Malformed`].
///
/// ```
/// use std::os::unix::net::UnixStream;
/// let (a, b) = UnixStream::pair().unwrap();
/// let a: mp::Connection<u8> = mp::Connection::from(std::os::fd::OwnedFd::from(a));
/// let b: mp::Connection<u8> = mp::Connection::from(std::os::fd::OwnedFd::from(b));
/// a.send(5)?;
/// assert_eq!(b.recv()?, 5);
/// # Ok::<(), mp::Error>(())
/// ```
impl<S, R> From<OwnedFd> for Connection<S, R> {
    fn from(fd: OwnedFd) -> Self {
        Connection {
            channel: Channel::new(fd),
            _types: PhantomData,
        }
    }
}

/// Unwraps the socket, e.g. to speak another protocol on it. Bytes already buffered by `recv`
/// stay behind.
///
/// ```
/// let (a, _b) = mp::pipe::<u8>()?;
/// let socket = std::os::fd::OwnedFd::from(a);
/// let _stream = std::os::unix::net::UnixStream::from(socket);
/// # Ok::<(), mp::Error>(())
/// ```
impl<S, R> From<Connection<S, R>> for OwnedFd {
    fn from(conn: Connection<S, R>) -> OwnedFd {
        conn.channel.into_fd()
    }
}

impl<T: DeserializeOwned> PipeReader<T> {
    /// See [`Connection::recv`].
    pub fn recv(&self) -> Result<T> {
        self.inner.recv()
    }
    /// See [`Connection::recv_timeout`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T> {
        self.inner.recv_timeout(timeout)
    }
    /// See [`Connection::try_recv`].
    pub fn try_recv(&self) -> Result<T> {
        self.inner.try_recv()
    }
    /// See [`Connection::poll`].
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        self.inner.poll(timeout)
    }
}

impl<T: Serialize> PipeWriter<T> {
    /// See [`Connection::send`].
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.inner.send(value)
    }
}

impl<S, R> fmt::Debug for Connection<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.channel.fd().as_raw_fd())
            .finish()
    }
}

impl<T> fmt::Debug for PipeReader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PipeReader")
            .field(&self.inner.channel.fd().as_raw_fd())
            .finish()
    }
}

impl<T> fmt::Debug for PipeWriter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PipeWriter")
            .field(&self.inner.channel.fd().as_raw_fd())
            .finish()
    }
}

// Handles serialize as the index of their descriptor in the message's side table.

impl<S, R> Serialize for Connection<S, R> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> std::result::Result<Z::Ok, Z::Error> {
        let index =
            codec::push_fd(self.channel.fd().as_raw_fd()).map_err(serde::ser::Error::custom)?;
        serializer.serialize_newtype_struct("mp::Connection", &index)
    }
}

impl<'de, S, R> Deserialize<'de> for Connection<S, R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename = "mp::Connection")]
        struct Index(u32);
        let Index(index) = Index::deserialize(deserializer)?;
        let fd = codec::take_fd(index).map_err(serde::de::Error::custom)?;
        Ok(Connection {
            channel: Channel::new(fd),
            _types: PhantomData,
        })
    }
}

impl<T> Serialize for PipeReader<T> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> std::result::Result<Z::Ok, Z::Error> {
        self.inner.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for PipeReader<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Ok(PipeReader {
            inner: Connection::deserialize(deserializer)?,
        })
    }
}

impl<T> Serialize for PipeWriter<T> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> std::result::Result<Z::Ok, Z::Error> {
        self.inner.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for PipeWriter<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Ok(PipeWriter {
            inner: Connection::deserialize(deserializer)?,
        })
    }
}
