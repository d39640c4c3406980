//! Typed connections between processes that did not start each other (Python's
//! `multiprocessing.connection`): a [`Listener`] on a TCP or local address, [`client`] to
//! connect, both authenticated by an auth key (`auth.rs`), carrying framed messages in socket
//! mode (`channel.rs`). Managers talk over the same connections.

mod address;
pub(crate) mod auth;

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use address::{Address, ToAddress};

use crate::channel::Channel;
use crate::error::{Error, Result, SendError};
use crate::sys::net;

/// How long connecting may take before it fails (TCP set-up; the handshake has its own limit).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// What a listener accepts per message unless told otherwise.
pub const DEFAULT_MAX_MESSAGE: u64 = 64 * 1024 * 1024;

/// A listening socket that accepts authenticated, typed connections (Python's
/// `multiprocessing.connection.Listener(address, authkey=...)`).
///
/// Every accepted peer must prove that it knows the auth key before anything it sends is
/// decoded; one that does not is disconnected and [`accept`](Listener::accept) reports
/// [`Error::AuthenticationFailed`], leaving the listener ready for the next.
///
/// ```
/// # mp::guard!();
/// let listener = mp::Listener::bind("127.0.0.1:0", b"secret key")?;
/// let address = listener.address().clone(); // the real port
///
/// let client = std::thread::spawn(move || -> mp::Result<String> {
///     let conn = mp::client::<String, String>(&address, b"secret key")?;
///     conn.send("ping".to_string())?;
///     conn.recv()
/// });
///
/// let conn: mp::NetConnection<String> = listener.accept()?;
/// assert_eq!(conn.recv()?, "ping");
/// conn.send("pong".to_string())?;
/// assert_eq!(client.join().unwrap()?, "pong");
/// # Ok::<(), mp::Error>(())
/// ```
pub struct Listener {
    inner: net::Listener,
    address: Address,
    authkey: Vec<u8>,
    max_message: u64,
    /// A socket file this listener created, removed when it closes.
    owned_path: Option<std::path::PathBuf>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("max_message", &self.max_message)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Listens on `address` (`"127.0.0.1:0"` picks a free port; see
    /// [`address`](Listener::address)). The key must not be empty.
    pub fn bind(address: impl ToAddress, authkey: impl AsRef<[u8]>) -> Result<Listener> {
        let address = address.to_address()?;
        auth::check_key(authkey.as_ref())?;
        let inner = net::Listener::bind(&address.endpoint()).map_err(|source| Error::Io {
            context: "cannot listen on the address",
            source,
        })?;
        Listener::from_parts(inner, authkey.as_ref().to_vec())
    }

    pub(crate) fn from_parts(inner: net::Listener, authkey: Vec<u8>) -> Result<Listener> {
        let address = Address::from_endpoint(
            inner
                .local()
                .map_err(Error::io("cannot read the listening address"))?,
        );
        let owned_path = match &address {
            Address::Unix(path) => Some(path.clone()),
            _ => None,
        };
        Ok(Listener {
            inner,
            address,
            authkey,
            max_message: DEFAULT_MAX_MESSAGE,
            owned_path,
        })
    }

    /// Sets the largest message (in encoded bytes) a peer may send; larger ones are refused
    /// from their header, before anything is allocated, and close that connection. The limit
    /// is announced to clients, which refuse to send more. Default: [`DEFAULT_MAX_MESSAGE`].
    ///
    /// ```
    /// let listener = mp::Listener::bind("127.0.0.1:0", b"key")?.with_max_message(1 << 20);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn with_max_message(mut self, bytes: u64) -> Listener {
        self.max_message = bytes;
        self
    }

    /// The address this listener is bound to (with the real port for a port of 0).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for a peer, runs the handshake and returns the connection.
    ///
    /// A peer with a wrong key, or that does not speak the protocol, gives
    /// [`Error::AuthenticationFailed`] (it has been disconnected); call `accept` again.
    pub fn accept<S, R>(&self) -> Result<NetConnection<S, R>> {
        let (channel, peer) = self.accept_channel()?;
        Ok(NetConnection::from_channel(channel, peer))
    }

    /// Accepts a connection and authenticates it; the channel then takes `max_message`.
    fn accept_channel(&self) -> Result<(Channel, String)> {
        let (sock, peer) = self.accept_raw()?;
        let (channel, _) = self.authenticate(sock, &peer)?;
        Ok((channel, peer))
    }

    /// Accepts a connection without authenticating it yet (a server does that on the
    /// connection's own thread, so a slow peer cannot hold up the others).
    pub(crate) fn accept_raw(&self) -> Result<(OwnedFd, String)> {
        self.inner
            .accept()
            .map_err(Error::io("cannot accept a connection"))
    }

    /// Runs the server side of the handshake on an accepted socket; returns the channel and
    /// the process id the client reports.
    pub(crate) fn authenticate(&self, sock: OwnedFd, peer: &str) -> Result<(Channel, u32)> {
        let channel = Channel::socket(sock, auth::HANDSHAKE_LIMIT);
        let pid = auth::serve(&channel, &self.authkey, self.max_message, peer)?;
        Ok((channel, pid))
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.inner.fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = &self.owned_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Connects to a [`Listener`] (or anything speaking its protocol) at `address` with
/// `authkey` (Python's `multiprocessing.connection.Client`).
///
/// Fails with [`Error::AuthenticationFailed`] when the server rejects the key, cannot prove
/// that it knows it, or is not an `mp` server; with an I/O error when nothing listens there.
///
/// ```
/// # mp::guard!();
/// let listener = mp::Listener::bind("unix:@mp-doc-client", b"key")?;
/// let server = std::thread::spawn(move || {
///     let conn: mp::NetConnection<u32> = listener.accept().unwrap();
///     let n = conn.recv().unwrap();
///     conn.send(n + 1).unwrap();
/// });
/// let conn = mp::client::<u32, u32>("unix:@mp-doc-client", b"key")?;
/// conn.send(41)?;
/// assert_eq!(conn.recv()?, 42);
/// server.join().unwrap();
///
/// let wrong = mp::Listener::bind("127.0.0.1:0", b"right")?;
/// let addr = wrong.address().clone();
/// let t = std::thread::spawn(move || wrong.accept::<u32, u32>().map(|_| ()));
/// assert!(matches!(mp::client::<u32, u32>(&addr, b"wrong"), Err(mp::Error::AuthenticationFailed(_))));
/// assert!(t.join().unwrap().is_err());
/// # Ok::<(), mp::Error>(())
/// ```
#[doc(alias = "Client")]
pub fn client<S, R>(
    address: impl ToAddress,
    authkey: impl AsRef<[u8]>,
) -> Result<NetConnection<S, R>> {
    let address = address.to_address()?;
    let channel = connect_channel(&address, authkey.as_ref())?;
    Ok(NetConnection::from_channel(channel, address.to_string()))
}

/// Connects and authenticates a socket-mode channel to `address`.
pub(crate) fn connect_channel(address: &Address, authkey: &[u8]) -> Result<Channel> {
    auth::check_key(authkey)?;
    let sock = net::connect(&address.endpoint(), CONNECT_TIMEOUT).map_err(|source| Error::Io {
        context: "cannot connect",
        source,
    })?;
    let channel = Channel::socket(sock, auth::HANDSHAKE_LIMIT);
    auth::answer(&channel, authkey, &address.to_string())?;
    Ok(channel)
}

/// An authenticated connection to a peer process over TCP or a local socket: sends `S`,
/// receives `R` (Python's `multiprocessing.connection.Connection` from a `Listener` or
/// `Client`).
///
/// Values cross by value; one that holds an OS handle (a queue, a pipe end, shared memory)
/// cannot travel over a network connection and is refused with [`Error::Encode`]. A message
/// larger than the peer accepts is refused with [`Error::TooLarge`] before anything is sent;
/// either way [`send`](NetConnection::send) hands the value back.
///
/// See [`Listener`] for an example.
pub struct NetConnection<S, R = S> {
    channel: Channel,
    peer: String,
    _types: PhantomData<fn(S) -> R>,
}

impl<S, R> fmt::Debug for NetConnection<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetConnection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<S, R> NetConnection<S, R> {
    fn from_channel(channel: Channel, peer: String) -> NetConnection<S, R> {
        NetConnection {
            channel,
            peer,
            _types: PhantomData,
        }
    }

    /// Who is at the other end: `ip:port` for TCP, `pid N` for a local peer, or the address
    /// this end connected to.
    pub fn peer(&self) -> &str {
        &self.peer
    }
}

impl<S: Serialize, R: DeserializeOwned> NetConnection<S, R> {
    /// Sends `value`; on failure hands it back with the error.
    pub fn send(&self, value: S) -> Result<(), SendError<S>> {
        self.channel.send_value(value)
    }

    /// Waits for the next message. [`Error::Disconnected`] once the peer is gone.
    pub fn recv(&self) -> Result<R> {
        self.channel.recv_frame(None)?.decode()
    }

    /// Like [`recv`](NetConnection::recv), giving up after `timeout` with [`Error::Timeout`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<R> {
        self.channel.recv_frame(Some(timeout))?.decode()
    }

    /// Whether a message (or end-of-file) is ready, waiting up to `timeout` (`None`: forever).
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        self.channel.poll(timeout)
    }
}
