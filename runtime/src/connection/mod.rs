//! Connections (Python's `multiprocessing.connection`): one typed [`Connection`] for both the
//! ends of a pipe (`pipe.rs`) and the authenticated network connections a [`Listener`] accepts
//! or [`client`] opens (`listener.rs`, over the handshake in `auth.rs` and the gate in
//! `gate.rs`); [`wait`] on several of them, queues and process sentinels (`wait.rs`); raw
//! bytes and descriptors on a connection ([`Connection::send_bytes`],
//! [`Connection::send_fd`], [`Fd`] inside messages). Framing is `wire/`'s; a private mode
//! says which kind an end is: only a pipe end can travel to another process, and a network end
//! knows its peer.

mod address;
pub(crate) mod auth;
pub(crate) mod gate;
mod listener;
mod pipe;
mod wait;

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use address::{Address, ToAddress};
pub(crate) use listener::connect_channel;
pub use listener::{DEFAULT_MAX_MESSAGE, Listener, client, client_with_process_key};
pub use pipe::{PipeReader, PipeWriter, pipe, pipe_one_way};
pub use wait::{Waitable, wait};

use crate::codec::Bytes;
pub use crate::codec::{Fd, fd};
use crate::error::{Error, Result, SendError};
use crate::sys;
use crate::wire::Channel;

/// One end of a connection: sends `S`, receives `R` (Python's
/// `multiprocessing.connection.Connection`). An end of a [`pipe`] (which can be a worker's
/// argument), or an authenticated network connection from [`Listener::accept`] or [`client`]
/// (which stays in its process).
///
/// Values cross by value; over a network connection one that holds an OS handle (a queue, a
/// pipe end, shared memory) is refused with [`Error::Encode`]. A message larger than the peer
/// accepts is refused with [`Error::TooLarge`] before anything is sent; either way
/// [`send`](Connection::send) hands the value back.
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
    /// The peer of a network connection; `None` for a pipe end.
    peer: Option<String>,
    _types: PhantomData<fn(S) -> R>,
}

/// The name the network side of [`Connection`] had; the same type.
#[doc(hidden)]
pub type NetConnection<S, R = S> = Connection<S, R>;

impl<S, R> Connection<S, R> {
    pub(crate) fn from_channel(channel: Channel, peer: Option<String>) -> Connection<S, R> {
        Connection {
            channel,
            peer,
            _types: PhantomData,
        }
    }

    /// Who is at the other end of a network connection: `ip:port` for TCP, `pid N` for a local
    /// peer, or the address this end connected to; `None` for a pipe end.
    pub fn peer(&self) -> Option<&str> {
        self.peer.as_deref()
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.channel.fd()
    }

    /// Sends `bytes` as one message, whatever `S` is (Python's `send_bytes`); the peer reads
    /// it with [`recv_bytes`](Connection::recv_bytes) or
    /// [`recv_bytes_into`](Connection::recv_bytes_into). Bytes and typed values may be mixed
    /// on one connection as long as both ends agree on the order.
    ///
    /// ```
    /// let (a, b) = mp::pipe::<u8>()?;
    /// a.send_bytes(b"raw")?;
    /// assert_eq!(b.recv_bytes()?, b"raw");
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.channel.send(&ByteSlice(bytes))
    }

    /// Receives a message sent with [`send_bytes`](Connection::send_bytes) (Python's
    /// `recv_bytes`). [`Error::Disconnected`] once the peer is gone.
    ///
    /// ```
    /// let (a, b) = mp::pipe::<u8>()?;
    /// a.send_bytes(&[1, 2, 3])?;
    /// assert_eq!(b.recv_bytes()?, [1, 2, 3]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        Ok(self.channel.recv_frame(None)?.decode::<Bytes>()?.0)
    }

    /// Receives a message sent with [`send_bytes`](Connection::send_bytes) into `buf` and
    /// returns its length (Python's `recv_bytes_into`; for an offset, pass `&mut buf[offset..]`).
    /// A message longer than `buf` is [`Error::BufferTooShort`], which holds the whole message:
    /// it is received, not lost, and `buf` is left as it was.
    ///
    /// ```
    /// let (a, b) = mp::pipe::<u8>()?;
    /// let mut buf = [0u8; 4];
    /// a.send_bytes(b"abc")?;
    /// assert_eq!(b.recv_bytes_into(&mut buf)?, 3);
    /// assert_eq!(&buf[..3], b"abc");
    ///
    /// a.send_bytes(b"too long")?;
    /// match b.recv_bytes_into(&mut buf) {
    ///     Err(mp::Error::BufferTooShort { message, .. }) => assert_eq!(message, b"too long"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        let message = self.recv_bytes()?;
        let Some(dest) = buf.get_mut(..message.len()) else {
            return Err(Error::BufferTooShort {
                buffer: buf.len(),
                message,
            });
        };
        dest.copy_from_slice(&message);
        Ok(message.len())
    }

    /// Sends a descriptor (a file, a socket, any descriptor number) as one message, whatever
    /// `S` is; the peer gets its own descriptor for the same open file with
    /// [`recv_fd`](Connection::recv_fd) (Python's `reduction.send_handle`). Only between
    /// processes on this machine: a network connection refuses it with [`Error::Encode`]. To
    /// send descriptors inside a value, see [`Fd`].
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// let (a, b) = mp::pipe::<u8>()?;
    /// let (mut ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    /// a.send_fd(&theirs)?;
    /// drop(theirs); // the receiver holds its own descriptor now
    /// let mut got = std::os::unix::net::UnixStream::from(b.recv_fd()?);
    /// got.write_all(b"via a passed descriptor")?;
    /// drop(got);
    /// let mut text = String::new();
    /// ours.read_to_string(&mut text)?;
    /// assert_eq!(text, "via a passed descriptor");
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn send_fd(&self, fd: impl AsFd) -> Result<()> {
        self.channel.send(&Fd(fd.as_fd()))
    }

    /// Receives a descriptor sent with [`send_fd`](Connection::send_fd) (Python's
    /// `reduction.recv_handle`); it is close-on-exec, numbered as this process has room.
    ///
    /// ```
    /// use std::os::unix::fs::FileTypeExt;
    /// let (a, b) = mp::pipe::<u8>()?;
    /// let file = std::fs::File::open("/dev/null")?;
    /// a.send_fd(&file)?;
    /// let again = std::fs::File::from(b.recv_fd()?);
    /// assert!(again.metadata()?.file_type().is_char_device());
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn recv_fd(&self) -> Result<OwnedFd> {
        Ok(self.channel.recv_frame(None)?.decode::<Fd<OwnedFd>>()?.0)
    }
}

/// A borrowed byte string, encoded as [`Bytes`] is (one length, then the bytes).
struct ByteSlice<'a>(&'a [u8]);

impl Serialize for ByteSlice<'_> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> std::result::Result<Z::Ok, Z::Error> {
        serializer.serialize_bytes(self.0)
    }
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
        Connection::from_channel(Channel::new(fd), None)
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

impl<S, R> fmt::Debug for Connection<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Connection");
        match &self.peer {
            Some(peer) => d.field("peer", peer),
            None => d.field("fd", &self.channel.fd().as_raw_fd()),
        };
        d.finish()
    }
}

// A pipe end travels as its socket's descriptor.

impl<S, R> Serialize for Connection<S, R> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> std::result::Result<Z::Ok, Z::Error> {
        if let Some(peer) = &self.peer {
            return Err(serde::ser::Error::custom(format!(
                "a network connection (to {peer}) cannot be sent to another process; \
                 connect from there with `mp::client`"
            )));
        }
        Fd(self.channel.fd()).serialize(serializer)
    }
}

impl<'de, S, R> Deserialize<'de> for Connection<S, R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let Fd(fd) = Fd::<OwnedFd>::deserialize(deserializer)?;
        Ok(Connection::from_channel(Channel::new(fd), None))
    }
}
