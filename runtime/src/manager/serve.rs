//! The server's two entries: [`ManagerServer`], a server run in the calling process, and
//! `serve_child`, the main of the server process a [`Manager`](crate::Manager) starts, with
//! what that process is started with ([`ServerSpec`]). Serving itself is `server/`'s; this
//! file must not hold any of it.

use std::fmt;
use std::os::fd::OwnedFd;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::server::Server;

use crate::codec::{Bytes, Fd};
use crate::connection::{Address, Listener, ToAddress};
use crate::error::{Error, Result};
use crate::sys;
use crate::wire::{Channel, Frame};

/// A manager server run in the calling process (Python's `BaseManager.get_server()` with
/// `serve_forever()`): for a dedicated server program that other programs reach with
/// [`Manager::connect`](crate::Manager::connect).
///
/// ```
/// # mp::guard!();
/// let server = mp::ManagerServer::bind("127.0.0.1:0", b"secret")?;
/// let address = server.address().clone();
/// let serving = std::thread::spawn(move || server.serve_forever());
///
/// let client = mp::Manager::connect(&address, b"secret")?;
/// let log = client.named::<mp::ListProxy<String>>("log")?;
/// log.append("hello".into())?;
/// assert_eq!(log.len()?, 1);
/// client.shutdown()?; // asks the server to stop
/// serving.join().unwrap()?;
/// # Ok::<(), mp::Error>(())
/// ```
pub struct ManagerServer {
    listener: Listener,
}

impl fmt::Debug for ManagerServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerServer")
            .field("address", self.listener.address())
            .finish_non_exhaustive()
    }
}

impl ManagerServer {
    /// Listens on `address` with `authkey` (not empty).
    pub fn bind(address: impl ToAddress, authkey: impl AsRef<[u8]>) -> Result<ManagerServer> {
        Ok(ManagerServer {
            listener: Listener::bind(address, authkey)?,
        })
    }

    /// Sets the largest request accepted (see [`ManagerBuilder::max_message`](crate::ManagerBuilder::max_message)).
    pub fn with_max_message(self, bytes: u64) -> ManagerServer {
        ManagerServer {
            listener: self.listener.with_max_message(bytes),
        }
    }

    /// Sets how long a client has to complete the handshake (see
    /// [`Listener::with_handshake_timeout`]).
    ///
    /// ```
    /// let server = mp::ManagerServer::bind("127.0.0.1:0", b"secret")?
    ///     .with_handshake_timeout(std::time::Duration::from_secs(3));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn with_handshake_timeout(self, timeout: std::time::Duration) -> ManagerServer {
        ManagerServer {
            listener: self.listener.with_handshake_timeout(timeout),
        }
    }

    /// Sets how many clients may be in the middle of the handshake at once (see
    /// [`Listener::with_max_handshakes`]).
    ///
    /// ```
    /// let server = mp::ManagerServer::bind("127.0.0.1:0", b"secret")?.with_max_handshakes(16);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn with_max_handshakes(self, count: usize) -> ManagerServer {
        ManagerServer {
            listener: self.listener.with_max_handshakes(count),
        }
    }

    /// Serves the custom shared type `T` under `name` (Python's `BaseManager.register`);
    /// clients create its objects with [`Manager::managed`](crate::Manager::managed). The
    /// registration holds for every manager server of this process. See
    /// [`Managed`](crate::Managed).
    pub fn register<T: super::Managed>(self, name: &str) -> ManagerServer {
        super::custom::register::<T>(name);
        self
    }

    /// The address it listens on.
    pub fn address(&self) -> &Address {
        self.listener.address()
    }

    /// Serves until a client calls [`Manager::shutdown`](crate::Manager::shutdown); then closes every connection and
    /// returns.
    pub fn serve_forever(self) -> Result<()> {
        Server::new(self.listener)?.serve()
    }
}

/// What a server process is started with.
#[derive(Serialize, Deserialize)]
pub(crate) struct ServerSpec {
    pub(crate) listener: ListenerFd,
    pub(crate) authkey: Bytes,
    pub(crate) max_message: u64,
    /// Custom shared types: registered name and type name (see `custom.rs`).
    pub(crate) types: Vec<(String, String)>,
}

/// A listening socket that travels to the server process as its descriptor.
pub(crate) struct ListenerFd(pub(crate) sys::net::Listener);

impl Serialize for ListenerFd {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        (Fd(self.0.fd()), self.0.is_tcp()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ListenerFd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let (Fd(fd), tcp) = <(Fd<OwnedFd>, bool)>::deserialize(deserializer)?;
        Ok(ListenerFd(sys::net::Listener::from_fd(fd, tcp)))
    }
}

/// The server process's main, entered from the bootstrap (`Role::ManagerServer`): reports
/// that it is up on the bootstrap channel, then serves until shut down.
pub(crate) fn serve_child(channel: &Channel, args: Frame) -> i32 {
    // Ctrl-C is the parent's to handle: the server stops when the parent drops its
    // `Manager`, or exits, not halfway through the parent's clean-up.
    sys::ignore_sigint();
    let server = args.decode::<ServerSpec>().and_then(|spec| {
        super::custom::register_declared(&spec.types)?;
        let listener = Listener::from_parts(spec.listener.0, spec.authkey.0)?
            .with_max_message(spec.max_message);
        Server::new(listener)
    });
    let server = match server {
        Ok(server) => {
            let _ = channel.send(&Ok::<(), Error>(()));
            server
        }
        Err(e) => {
            let _ = channel.send(&Err::<(), Error>(e));
            return crate::error::CHILD_FAILED;
        }
    };
    tracing::info!(target: "mp", "manager serving on {}", server.address());
    match server.serve() {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(target: "mp", "manager stopped: {e}");
            crate::error::CHILD_FAILED
        }
    }
}
