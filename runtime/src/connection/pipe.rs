//! Pipes (Python's `Pipe()`): a connected pair of [`Connection`]s over one `AF_UNIX` stream
//! socket pair, and the one-way [`PipeReader`]/[`PipeWriter`]. Their ends are handles: worker
//! arguments or parts of messages, their socket crossing with `SCM_RIGHTS`.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Connection;
use crate::error::{Error, Result, SendError};
use crate::sys;

/// The receiving end of a one-way pipe.
pub struct PipeReader<T> {
    pub(super) inner: Connection<(), T>,
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
    /// See [`Connection::recv_bytes`].
    ///
    /// ```
    /// let (rx, tx) = mp::pipe_one_way::<u8>()?;
    /// tx.send_bytes(b"raw")?;
    /// assert_eq!(rx.recv_bytes()?, b"raw");
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.inner.recv_bytes()
    }
    /// See [`Connection::recv_bytes_into`].
    ///
    /// ```
    /// let (rx, tx) = mp::pipe_one_way::<u8>()?;
    /// tx.send_bytes(b"raw")?;
    /// let mut buf = [0; 8];
    /// assert_eq!(rx.recv_bytes_into(&mut buf)?, 3);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.inner.recv_bytes_into(buf)
    }
    /// See [`Connection::recv_fd`].
    ///
    /// ```
    /// let (rx, tx) = mp::pipe_one_way::<u8>()?;
    /// tx.send_fd(std::fs::File::open("/dev/null")?)?;
    /// let _null = std::fs::File::from(rx.recv_fd()?);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn recv_fd(&self) -> Result<OwnedFd> {
        self.inner.recv_fd()
    }
}

impl<T: Serialize> PipeWriter<T> {
    /// See [`Connection::send`].
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.inner.send(value)
    }
    /// See [`Connection::send_bytes`] (and [`PipeReader::recv_bytes`] for an example).
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.inner.send_bytes(bytes)
    }
    /// See [`Connection::send_fd`] (and [`PipeReader::recv_fd`] for an example).
    pub fn send_fd(&self, fd: impl AsFd) -> Result<()> {
        self.inner.send_fd(fd)
    }
}

impl<T> fmt::Debug for PipeReader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PipeReader")
            .field(&self.inner.fd().as_raw_fd())
            .finish()
    }
}

impl<T> fmt::Debug for PipeWriter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PipeWriter")
            .field(&self.inner.fd().as_raw_fd())
            .finish()
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
