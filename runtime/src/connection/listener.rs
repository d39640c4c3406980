//! The network side of connections: a [`Listener`] on a TCP or local address and [`client`]
//! to connect, both authenticated by the auth key (`auth.rs`) through the gate (`gate.rs`),
//! which bounds how many unauthenticated peers are waited for, and for how long.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::address::{Address, ToAddress};
use super::{Connection, auth, gate};
use crate::error::{Error, Result};
use crate::sys::net;
use crate::wire::Channel;

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
/// Unauthenticated peers are bounded: `accept` runs the handshakes of all waiting peers at
/// once on its own thread, at most [`DEFAULT_MAX_HANDSHAKES`](Listener::DEFAULT_MAX_HANDSHAKES)
/// of them (a connection beyond that closes the oldest pending one), each given
/// [`DEFAULT_HANDSHAKE_TIMEOUT`](Listener::DEFAULT_HANDSHAKE_TIMEOUT) to finish; a pending
/// peer costs a descriptor and a few hundred bytes. See
/// [`with_max_handshakes`](Listener::with_max_handshakes) and
/// [`with_handshake_timeout`](Listener::with_handshake_timeout).
///
/// The handshake authenticates both ends; the messages after it carry no MAC and are not
/// encrypted (as in Python). Across untrusted networks, use an SSH tunnel or TLS.
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
/// let conn: mp::Connection<String> = listener.accept()?;
/// assert_eq!(conn.recv()?, "ping");
/// conn.send("pong".to_string())?;
/// assert_eq!(client.join().unwrap()?, "pong");
/// # Ok::<(), mp::Error>(())
/// ```
pub struct Listener {
    inner: net::Listener,
    address: Address,
    authkey: Vec<u8>,
    limits: gate::Limits,
    /// The handshakes in progress.
    gate: Mutex<gate::Gate>,
    /// A socket file this listener created, removed when it closes.
    owned_path: Option<std::path::PathBuf>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("max_message", &self.limits.max_message)
            .field("handshake_timeout", &self.limits.handshake_timeout)
            .field("max_handshakes", &self.limits.max_handshakes)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// How long a peer has to complete the handshake unless told otherwise
    /// ([`with_handshake_timeout`](Listener::with_handshake_timeout)).
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// How many handshakes may be in progress at once unless told otherwise
    /// ([`with_max_handshakes`](Listener::with_max_handshakes)).
    pub const DEFAULT_MAX_HANDSHAKES: usize = 64;

    /// Listens on `address` (`"127.0.0.1:0"` picks a free port; see
    /// [`address`](Listener::address)). The key must not be empty.
    pub fn bind(address: impl ToAddress, authkey: impl AsRef<[u8]>) -> Result<Listener> {
        let address = address.to_address()?;
        auth::check_key(authkey.as_ref())?;
        let inner = net::Listener::bind(&address.endpoint())
            .map_err(|source| Error::os("cannot listen on the address", source))?;
        Listener::from_parts(inner, authkey.as_ref().to_vec())
    }

    /// [`bind`](Listener::bind) with this process's auth key
    /// ([`current_process().authkey()`](crate::ProcessInfo::authkey)): Python's
    /// `Listener(address)` without `authkey`. Children inherit the key, so they connect with
    /// [`client_with_process_key`].
    ///
    /// ```
    /// # mp::guard!();
    /// let listener = mp::Listener::bind_with_process_key("127.0.0.1:0")?;
    /// let address = listener.address().clone();
    /// let t = std::thread::spawn(move || {
    ///     let conn: mp::Connection<u8> = listener.accept().unwrap();
    ///     conn.send(conn.recv().unwrap() * 2).unwrap();
    /// });
    /// let conn = mp::connection::client_with_process_key::<u8, u8>(&address)?;
    /// conn.send(21)?;
    /// assert_eq!(conn.recv()?, 42);
    /// t.join().unwrap();
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn bind_with_process_key(address: impl ToAddress) -> Result<Listener> {
        Listener::bind(address, crate::bootstrap::identity::authkey()?)
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
            limits: gate::Limits {
                max_message: DEFAULT_MAX_MESSAGE,
                handshake_timeout: Listener::DEFAULT_HANDSHAKE_TIMEOUT,
                max_handshakes: Listener::DEFAULT_MAX_HANDSHAKES,
            },
            gate: Mutex::new(gate::Gate::default()),
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
        self.limits.max_message = bytes;
        self
    }

    /// Sets how long a connected peer has to complete the handshake; one that has not by
    /// then is closed (and reported by [`accept`](Listener::accept)). Default:
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`](Listener::DEFAULT_HANDSHAKE_TIMEOUT).
    ///
    /// ```
    /// use std::time::Duration;
    /// let listener = mp::Listener::bind("127.0.0.1:0", b"key")?
    ///     .with_handshake_timeout(Duration::from_secs(3));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Listener {
        self.limits.handshake_timeout = timeout;
        self
    }

    /// Sets how many connected peers may be in the middle of the handshake at once (at least
    /// one); a connection beyond that closes the oldest of them. Default:
    /// [`DEFAULT_MAX_HANDSHAKES`](Listener::DEFAULT_MAX_HANDSHAKES).
    ///
    /// ```
    /// let listener = mp::Listener::bind("127.0.0.1:0", b"key")?.with_max_handshakes(8);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn with_max_handshakes(mut self, count: usize) -> Listener {
        self.limits.max_handshakes = count.max(1);
        self
    }

    /// The address this listener is bound to (with the real port for a port of 0).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The listening socket: readable while a peer is connecting (for `wait`).
    pub(crate) fn listening_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd()
    }

    /// Waits for a peer that completes the handshake and returns its connection.
    ///
    /// A peer with a wrong key, that does not speak the protocol, that does not complete the
    /// handshake in time, or that is pushed out by newer connections gives
    /// [`Error::AuthenticationFailed`] (it has been disconnected); call `accept` again. The
    /// other peers' handshakes go on meanwhile.
    pub fn accept<S, R>(&self) -> Result<Connection<S, R>> {
        loop {
            match self.next_event(None)? {
                gate::Event::Accepted { channel, peer, .. } => {
                    return Ok(Connection::from_channel(channel, Some(peer)));
                }
                gate::Event::Failed(e) => return Err(e),
                gate::Event::Woken => {}
            }
        }
    }

    /// Advances the handshakes in progress and accepts new connections until one
    /// authenticates, one fails, or `wake` is readable (a server's stop).
    pub(crate) fn next_event(&self, wake: Option<BorrowedFd<'_>>) -> Result<gate::Event> {
        let mut gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        gate.next(&self.inner, &self.authkey, self.limits, wake)
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
///     let conn: mp::Connection<u32> = listener.accept().unwrap();
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
) -> Result<Connection<S, R>> {
    let address = address.to_address()?;
    let channel = connect_channel(&address, authkey.as_ref())?;
    Ok(Connection::from_channel(channel, Some(address.to_string())))
}

/// [`client`] with this process's auth key
/// ([`current_process().authkey()`](crate::ProcessInfo::authkey)): Python's `Client(address)`
/// without `authkey`; for a [`Listener::bind_with_process_key`] of this process or an
/// ancestor.
///
/// ```
/// # mp::guard!();
/// let listener = mp::Listener::bind_with_process_key("unix:@mp-doc-process-key")?;
/// let t = std::thread::spawn(move || listener.accept::<u8, u8>().map(|_| ()));
/// let _conn = mp::connection::client_with_process_key::<u8, u8>("unix:@mp-doc-process-key")?;
/// t.join().unwrap()?;
/// # Ok::<(), mp::Error>(())
/// ```
pub fn client_with_process_key<S, R>(address: impl ToAddress) -> Result<Connection<S, R>> {
    client(address, crate::bootstrap::identity::authkey()?)
}

/// Connects and authenticates a socket-mode channel to `address`.
pub(crate) fn connect_channel(address: &Address, authkey: &[u8]) -> Result<Channel> {
    auth::check_key(authkey)?;
    let sock = net::connect(&address.endpoint(), CONNECT_TIMEOUT)
        .map_err(|source| Error::os("cannot connect", source))?;
    let channel = Channel::socket(sock, auth::HANDSHAKE_LIMIT);
    auth::answer(&channel, authkey, &address.to_string())?;
    Ok(channel)
}
