//! Managers (Python's `multiprocessing.managers`): a server process that owns shared lists,
//! dicts, values, queues, locks and events, and typed proxies that talk to it over an
//! authenticated local socket or TCP. Requests are typed enums, never code. Protocol, object
//! lifetime and failure handling: `README.md` beside this file.

mod dict;
mod handle;
mod list;
mod protocol;
mod queue;
mod server;
mod sync;
mod value;

use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::codec::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use dict::DictProxy;
pub use list::ListProxy;
pub use queue::QueueProxy;
pub use sync::{EventProxy, LockProxy, LockProxyGuard};
pub use value::ValueProxy;

use handle::{Endpoint, Handle, type_of};
use protocol::{Blob, Init, Kind, Op, Reply, Request, unexpected};

use crate::bootstrap::spawn::{Role, start_child};
use crate::channel::{Channel, Frame};
use crate::codec;
use crate::connection::{Address, DEFAULT_MAX_MESSAGE, Listener, ToAddress, auth};
use crate::error::{Error, Result, SendError};
use crate::sys;

/// How long a new server process may take to report that it is up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Manager::shutdown`] (and dropping a `Manager`) waits for the server to exit
/// before killing it.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// A server process holding shared objects, and the factory for proxies to them (Python's
/// `multiprocessing.Manager()`, `SyncManager` and `BaseManager`).
///
/// [`Manager::new`] starts a server as a child process on a private local socket with a fresh
/// random auth key; [`Manager::builder`] can make it listen on TCP with a key of your choice,
/// and [`Manager::connect`] reaches a server started elsewhere. Proxies
/// ([`ListProxy`], [`DictProxy`], [`ValueProxy`], [`QueueProxy`], [`LockProxy`],
/// [`EventProxy`]) are ordinary worker arguments: they travel as the server's address, the
/// key and the object's id.
///
/// Dropping a `Manager` that started its server shuts the server down (the objects are gone;
/// proxies then fail with [`Error::ManagerGone`]); the server also exits when this process
/// dies.
///
/// Values are copied in and out: **mutating a value you read does not write it back** (Python's
/// classic surprise). Use `set`, or the atomic `update` / `update_with`.
///
/// Each connection to the server is authenticated once, by a handshake in which both ends
/// prove they know the key; the requests and answers after it carry no MAC and are not
/// encrypted (as in Python). Across untrusted networks, use an SSH tunnel or TLS. The server
/// bounds unauthenticated peers (see [`Listener`]: 64 handshakes at once, 10 s each).
///
/// Proxies may be stored inside other containers (`DictProxy<String, ListProxy<u32>>`, a
/// queue of proxies): a container keeps the objects its values refer to alive for as long as
/// it holds them. Objects that refer to each other in a cycle live until the server stops.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn worker(shared_list: mp::ListProxy<i32>) -> mp::Result<()> {
///     shared_list.append(100)?; // update the shared list
///     Ok(())
/// }
///
/// let manager = mp::Manager::new()?;
/// let shared_list = manager.list_from([1, 2, 3])?;
/// mp::spawn(worker, shared_list.clone())?.join()??;
/// assert_eq!(shared_list.to_vec()?, [1, 2, 3, 100]);
/// # Ok::<(), mp::Error>(())
/// ```
#[doc(alias = "SyncManager")]
#[doc(alias = "BaseManager")]
pub struct Manager {
    endpoint: Endpoint,
    /// The server instance's id (see `Reply::Created`), asked for when first needed.
    instance: OnceLock<u64>,
    /// The server process, when this `Manager` started it.
    server: Option<ServerProcess>,
}

struct ServerProcess {
    child: Child,
    /// The bootstrap channel; kept open for the server's life.
    _channel: Channel,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.endpoint.address)
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

/// Configures and starts a [`Manager`]'s server process.
///
/// ```
/// # mp::guard!();
/// let manager = mp::Manager::builder()
///     .address("127.0.0.1:0") // TCP; port 0 picks a free one
///     .authkey(b"a long shared secret")
///     .start()?;
/// let mp::Address::Tcp(addr) = manager.address() else { unreachable!() };
/// assert_ne!(addr.port(), 0);
///
/// // Another process (or machine) connects with the address and the key:
/// let remote = mp::Manager::connect(manager.address(), b"a long shared secret")?;
/// let counts = remote.named::<mp::DictProxy<String, u64>>("counts")?;
/// counts.insert("x".into(), 1)?;
/// assert_eq!(manager.named::<mp::DictProxy<String, u64>>("counts")?.len()?, 1);
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "call `start` to start the manager"]
pub struct ManagerBuilder {
    address: Option<Result<Address>>,
    authkey: Option<Vec<u8>>,
    max_message: u64,
}

/// Something [`Manager::named`] can find or create by name: every proxy type.
pub trait Proxy: Sized {
    /// Finds the object of this name and type on the manager, creating an empty one (for
    /// [`ValueProxy`]: `T::default()`) if there is none.
    #[doc(hidden)]
    fn __named(manager: &Manager, name: &str) -> Result<Self>;
}

impl Manager {
    /// Starts a manager server as a child process, on a private local socket, with a random
    /// 32-byte auth key (Python's `multiprocessing.Manager()`).
    pub fn new() -> Result<Manager> {
        Manager::builder().start()
    }

    /// A builder for a server on an address and key of your choice.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            address: None,
            authkey: None,
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }

    /// Connects to a manager server started elsewhere (another program's [`Manager`] or
    /// [`ManagerServer`]); Python's `BaseManager(address, authkey).connect()`. Checks the key
    /// at once: a wrong one is [`Error::AuthenticationFailed`].
    ///
    /// Dropping the returned `Manager` leaves the server running.
    pub fn connect(address: impl ToAddress, authkey: impl AsRef<[u8]>) -> Result<Manager> {
        let endpoint = Endpoint::new(address.to_address()?, Arc::from(authkey.as_ref()));
        let manager = Manager {
            endpoint,
            instance: OnceLock::new(),
            server: None,
        };
        manager.stats()?;
        Ok(manager)
    }

    /// The server's address (for a TCP port of 0: the port it got).
    pub fn address(&self) -> &Address {
        &self.endpoint.address
    }

    /// The auth key clients must present.
    pub fn authkey(&self) -> &[u8] {
        &self.endpoint.authkey
    }

    /// The server process's pid, when this `Manager` started it.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(|s| s.child.id())
    }

    /// A new, empty shared list (Python's `manager.list()`).
    pub fn list<T: Serialize + DeserializeOwned>(&self) -> Result<ListProxy<T>> {
        self.create::<T>(Kind::List, None, Init::Empty)
            .map(ListProxy::from_handle)
    }

    /// A new shared list holding `items` (Python's `manager.list([1, 2, 3])`).
    pub fn list_from<T: Serialize + DeserializeOwned>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ListProxy<T>> {
        let items: Vec<T> = items.into_iter().collect();
        let server = self.instance()?;
        let blobs = items
            .iter()
            .map(|item| handle::encode_for(server, self.endpoint.limit(), item))
            .collect::<Result<Vec<_>>>()?;
        self.create::<T>(Kind::List, None, Init::List(blobs))
            .map(ListProxy::from_handle)
    }

    /// A new, empty shared dict (Python's `manager.dict()`).
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.create::<(K, V)>(Kind::Dict, None, Init::Empty)
            .map(DictProxy::from_handle)
    }

    /// A new shared dict holding `pairs`.
    pub fn dict_from<K, V>(
        &self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<DictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        let server = self.instance()?;
        // Kept until the server has the values: their proxies keep their objects alive.
        let pairs: Vec<(K, V)> = pairs.into_iter().collect();
        let blobs = pairs
            .iter()
            .map(|(k, v)| {
                let value = handle::encode_for(server, self.endpoint.limit(), v)?;
                Ok((handle::encode_key(k)?, value))
            })
            .collect::<Result<Vec<_>>>()?;
        self.create::<(K, V)>(Kind::Dict, None, Init::Dict(blobs))
            .map(DictProxy::from_handle)
    }

    /// A new shared value (Python's `manager.Value(...)` and `manager.Namespace()`).
    #[doc(alias = "Namespace")]
    #[doc(alias = "Value")]
    pub fn value<T: Serialize + DeserializeOwned>(&self, value: T) -> Result<ValueProxy<T>> {
        let blob = handle::encode_for(self.instance()?, self.endpoint.limit(), &value)?;
        self.create::<T>(Kind::Value, None, Init::Value(blob))
            .map(ValueProxy::from_handle)
    }

    /// A new, unbounded shared queue (Python's `manager.Queue()`).
    pub fn queue<T: Serialize + DeserializeOwned>(&self) -> Result<QueueProxy<T>> {
        self.queue_inner(None)
    }

    /// A new shared queue holding at most `maxsize` items (Python's `manager.Queue(maxsize)`).
    pub fn queue_with_maxsize<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: usize,
    ) -> Result<QueueProxy<T>> {
        if maxsize == 0 {
            return Err(Error::InvalidArgument(
                "a queue's maxsize must be at least 1 (use `queue()` for an unbounded one)"
                    .to_owned(),
            ));
        }
        self.queue_inner(Some(maxsize as u64))
    }

    fn queue_inner<T>(&self, maxsize: Option<u64>) -> Result<QueueProxy<T>> {
        self.create::<T>(Kind::Queue, None, Init::Queue { maxsize })
            .map(QueueProxy::from_handle)
    }

    /// A new shared lock (Python's `manager.Lock()`).
    pub fn lock(&self) -> Result<LockProxy> {
        self.create::<()>(Kind::Lock, None, Init::Empty)
            .map(LockProxy::from_handle)
    }

    /// A new shared event (Python's `manager.Event()`).
    pub fn event(&self) -> Result<EventProxy> {
        self.create::<()>(Kind::Event, None, Init::Empty)
            .map(EventProxy::from_handle)
    }

    /// The object called `name` on this manager's server, created empty if there is none:
    /// how unrelated processes find the same object (Python's `BaseManager.register` with a
    /// shared instance). Named objects live until the server stops. Asking for an existing
    /// name with another proxy type or element type is [`Error::InvalidArgument`].
    ///
    /// ```
    /// # mp::guard!();
    /// let manager = mp::Manager::new()?;
    /// let jobs = manager.named::<mp::QueueProxy<String>>("jobs")?;
    /// jobs.put("first".to_string())?;
    /// let same = manager.named::<mp::QueueProxy<String>>("jobs")?;
    /// assert_eq!(same.get()?, "first");
    /// assert!(manager.named::<mp::ListProxy<String>>("jobs").is_err());
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn named<P: Proxy>(&self, name: &str) -> Result<P> {
        P::__named(self, name)
    }

    /// How many shared objects the server holds now: every object some proxy, transfer token
    /// or stored value still refers to, and every named object. For diagnostics and tests of
    /// object lifetime (issue 17); objects that refer to each other in a cycle stay until
    /// the server stops. A proxy's last handle going away is noticed by the server a moment
    /// later, so the count may lag behind a `drop`.
    ///
    /// ```
    /// # mp::guard!();
    /// let manager = mp::Manager::new()?;
    /// let outer = manager.list::<mp::ListProxy<u32>>()?;
    /// let inner = manager.list_from([1, 2, 3])?;
    /// assert_eq!(manager.object_count()?, 2);
    /// outer.append(inner)?; // the outer list now holds a reference to the inner one
    /// assert_eq!(outer.get(0)?.unwrap().to_vec()?, [1, 2, 3]);
    /// outer.clear()?; // ... which it gives up when the item leaves it
    /// let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    /// while manager.object_count()? != 1 {
    ///     assert!(std::time::Instant::now() < deadline, "the inner list was not freed");
    ///     std::thread::sleep(std::time::Duration::from_millis(10));
    /// }
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn object_count(&self) -> Result<usize> {
        Ok(self.stats()?.1)
    }

    /// The server's instance id and object count, in one round trip.
    fn stats(&self) -> Result<(u64, usize)> {
        let mut conn = self.endpoint.connect()?;
        match self.endpoint.call(&mut conn, Request::Stats)? {
            Reply::Stats { server, objects } => {
                let _ = self.instance.set(server);
                Ok((server, usize::try_from(objects).unwrap_or(usize::MAX)))
            }
            other => Err(unexpected(other)),
        }
    }

    /// The server instance's id, which values to store are encoded for.
    fn instance(&self) -> Result<u64> {
        match self.instance.get() {
            Some(&id) => Ok(id),
            None => Ok(self.stats()?.0),
        }
    }

    /// Stops the server: every proxy's next call fails with [`Error::ManagerGone`]. For a
    /// server this `Manager` started, also waits for the process to exit (killing it after
    /// two seconds); for one reached with [`connect`](Manager::connect), asks it to stop.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        let asked = self
            .endpoint
            .connect()
            .and_then(|mut c| self.endpoint.call(&mut c, Request::Shutdown));
        let Some(mut server) = self.server.take() else {
            return asked.map(|_| ());
        };
        match sys::wait_child_timeout(&mut server.child, STOP_TIMEOUT) {
            Ok(Some(_)) => Ok(()),
            _ => {
                let _ = server.child.kill();
                let _ = server.child.wait();
                asked.map(|_| ())
            }
        }
    }

    fn create<E>(&self, kind: Kind, name: Option<String>, init: Init) -> Result<Arc<Handle>> {
        Handle::create(&self.endpoint, type_of::<E>(kind), name, init)
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if self.server.is_some() {
            let _ = self.stop();
        }
    }
}

impl ManagerBuilder {
    /// Where the server listens: `"127.0.0.1:0"` for TCP on a free port, `"0.0.0.0:5000"`
    /// for every interface (mind the auth key), `"unix:/path"` or `"unix:@name"` for a local
    /// socket. Default: a private abstract local socket.
    pub fn address(mut self, address: impl ToAddress) -> ManagerBuilder {
        self.address = Some(address.to_address());
        self
    }

    /// The key clients must prove they know. Default: 32 random bytes (see
    /// [`Manager::authkey`]).
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> ManagerBuilder {
        self.authkey = Some(key.as_ref().to_vec());
        self
    }

    /// The largest request the server accepts, in encoded bytes; larger ones are refused by
    /// the client before sending (the value is handed back) and, from a client that sends
    /// one anyway, rejected from its header. Default: 64 MiB.
    pub fn max_message(mut self, bytes: u64) -> ManagerBuilder {
        self.max_message = bytes;
        self
    }

    /// Binds the address here (so a taken port fails now, in this process), then starts the
    /// server process and waits until it is serving.
    pub fn start(self) -> Result<Manager> {
        let authkey = match self.authkey {
            Some(key) => key,
            None => auth::random_key()?,
        };
        auth::check_key(&authkey)?;
        let address = match self.address {
            Some(address) => address?,
            None => private_address()?,
        };
        let listener = sys::net::Listener::bind(&address.endpoint())
            .map_err(|source| Error::os("cannot listen on the manager's address", source))?;
        let bound = Address::from_endpoint(
            listener
                .local()
                .map_err(Error::io("cannot read the listening address"))?,
        );
        let spec = ServerSpec {
            listener: ListenerFd(listener),
            authkey: Bytes(authkey.clone()),
            max_message: self.max_message,
        };
        let (mut child, channel) = start_child(Role::ManagerServer, &spec, "mp-manager", false)?;
        // The server owns the listening socket now (it removes a socket file when it stops).
        drop(spec);
        let started = channel
            .recv_frame(Some(START_TIMEOUT))
            .and_then(Frame::decode::<Result<(), Error>>);
        let failed = match started {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(Error::ManagerGone {
                address: bound.to_string(),
                why: format!("the server process did not start: {e}"),
            }),
        };
        if let Some(e) = failed {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(Manager {
            endpoint: Endpoint::new(bound, Arc::from(authkey)),
            instance: OnceLock::new(),
            server: Some(ServerProcess {
                child,
                _channel: channel,
            }),
        })
    }
}

/// A unique abstract socket name: nothing on disk, gone with the server.
fn private_address() -> Result<Address> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut salt = [0u8; 8];
    sys::net::random_bytes(&mut salt).map_err(Error::io("cannot read random bytes"))?;
    let name = format!(
        "mp-manager-{}-{}-{:016x}",
        sys::getpid(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        u64::from_le_bytes(salt)
    );
    Ok(Address::UnixAbstract(name.into_bytes()))
}

/// A manager server run in the calling process (Python's `BaseManager.get_server()` with
/// `serve_forever()`): for a dedicated server program that other programs reach with
/// [`Manager::connect`].
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

    /// Sets the largest request accepted (see [`ManagerBuilder::max_message`]).
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

    /// The address it listens on.
    pub fn address(&self) -> &Address {
        self.listener.address()
    }

    /// Serves until a client calls [`Manager::shutdown`]; then closes every connection and
    /// returns.
    pub fn serve_forever(self) -> Result<()> {
        server::Server::new(self.listener)?.serve()
    }
}

/// What a server process is started with.
#[derive(Serialize, Deserialize)]
struct ServerSpec {
    listener: ListenerFd,
    authkey: Bytes,
    max_message: u64,
}

/// A listening socket that travels to the server process as its descriptor.
struct ListenerFd(sys::net::Listener);

impl Serialize for ListenerFd {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let fd = codec::push_fd(self.0.fd().as_raw_fd()).map_err(S::Error::custom)?;
        (fd, self.0.is_tcp()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ListenerFd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (index, tcp) = <(u32, bool)>::deserialize(deserializer)?;
        let fd: OwnedFd = codec::take_fd(index).map_err(D::Error::custom)?;
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
        let listener = Listener::from_parts(spec.listener.0, spec.authkey.0)?
            .with_max_message(spec.max_message);
        server::Server::new(listener)
    });
    let server = match server {
        Ok(server) => {
            let _ = channel.send(&Ok::<(), Error>(()));
            server
        }
        Err(e) => {
            let _ = channel.send(&Err::<(), Error>(e));
            return 70;
        }
    };
    tracing::info!(target: "mp", "manager serving on {}", server.address());
    match server.serve() {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(target: "mp", "manager stopped: {e}");
            70
        }
    }
}

/// `from_handle`, `Clone` (sharing the connections), `Debug`, `Serialize` and `Deserialize`
/// for a proxy.
macro_rules! proxy_impls {
    ($name:ident $(<$($g:ident),+>)?, $kind:expr, $elements:ty) => {
        impl$(<$($g),+>)? $name$(<$($g),+>)? {
            pub(super) fn from_handle(handle: ::std::sync::Arc<$crate::manager::handle::Handle>) -> Self {
                $name {
                    handle,
                    _type: ::std::marker::PhantomData,
                }
            }
        }

        impl$(<$($g),+>)? Clone for $name$(<$($g),+>)? {
            fn clone(&self) -> Self {
                $name {
                    handle: self.handle.clone(),
                    _type: ::std::marker::PhantomData,
                }
            }
        }

        impl$(<$($g),+>)? ::std::fmt::Debug for $name$(<$($g),+>)? {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.handle)
            }
        }

        impl$(<$($g),+>)? ::serde::Serialize for $name$(<$($g),+>)? {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                $crate::manager::handle::serialize(&self.handle, s)
            }
        }

        impl<'de $($(, $g)+)?> ::serde::Deserialize<'de> for $name$(<$($g),+>)? {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                let ty = $crate::manager::handle::type_of::<$elements>($kind);
                $crate::manager::handle::deserialize(d, ty).map($name::from_handle)
            }
        }
    };
}
use proxy_impls;

/// Encodes `value`, runs the operation `op` builds from it, and hands the value back on failure.
fn send_value<T: Serialize>(
    handle: &Handle,
    value: T,
    op: impl FnOnce(Blob) -> Op,
) -> Result<(), SendError<T>> {
    send_with(handle, value, |v| Ok(op(handle.encode(v)?)))
}

/// Builds an operation from `value` (encoding it), runs it, and hands the value back unless
/// the server answered `Done`: the one shape of every write whose reply carries no data.
fn send_with<V>(
    handle: &Handle,
    value: V,
    build: impl FnOnce(&V) -> Result<Op>,
) -> Result<(), SendError<V>> {
    let sent = build(&value).and_then(|op| handle.op(op));
    match sent {
        Ok(Reply::Done) => Ok(()),
        Ok(other) => Err(SendError {
            error: unexpected(other),
            value,
        }),
        Err(error) => Err(SendError { error, value }),
    }
}

fn len(handle: &Handle) -> Result<usize> {
    match handle.op(Op::Len)? {
        Reply::Len(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        other => Err(unexpected(other)),
    }
}

fn done(reply: Reply) -> Result<()> {
    match reply {
        Reply::Done => Ok(()),
        other => Err(unexpected(other)),
    }
}

impl<T: Serialize + DeserializeOwned> Proxy for ListProxy<T> {
    fn __named(manager: &Manager, name: &str) -> Result<Self> {
        manager
            .create::<T>(Kind::List, Some(name.to_owned()), Init::Empty)
            .map(ListProxy::from_handle)
    }
}

impl<K, V> Proxy for DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn __named(manager: &Manager, name: &str) -> Result<Self> {
        manager
            .create::<(K, V)>(Kind::Dict, Some(name.to_owned()), Init::Empty)
            .map(DictProxy::from_handle)
    }
}

impl<T: Serialize + DeserializeOwned + Default> Proxy for ValueProxy<T> {
    fn __named(manager: &Manager, name: &str) -> Result<Self> {
        let server = manager.instance()?;
        let blob = handle::encode_for(server, manager.endpoint.limit(), &T::default())?;
        let init = Init::Value(blob);
        manager
            .create::<T>(Kind::Value, Some(name.to_owned()), init)
            .map(ValueProxy::from_handle)
    }
}

impl<T: Serialize + DeserializeOwned> Proxy for QueueProxy<T> {
    fn __named(manager: &Manager, name: &str) -> Result<Self> {
        manager
            .create::<T>(Kind::Queue, Some(name.to_owned()), Init::Empty)
            .map(QueueProxy::from_handle)
    }
}

impl Proxy for LockProxy {
    fn __named(manager: &Manager, name: &str) -> Result<Self> {
        manager
            .create::<()>(Kind::Lock, Some(name.to_owned()), Init::Empty)
            .map(LockProxy::from_handle)
    }
}

impl Proxy for EventProxy {
    fn __named(manager: &Manager, name: &str) -> Result<Self> {
        manager
            .create::<()>(Kind::Event, Some(name.to_owned()), Init::Empty)
            .map(EventProxy::from_handle)
    }
}
