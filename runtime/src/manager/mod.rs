//! Managers (Python's `multiprocessing.managers`): a server process that owns shared lists,
//! dicts, values, queues, locks, events, re-entrant locks, semaphores, conditions, barriers,
//! arrays, sets and values of custom types, and typed proxies that talk to it over an
//! authenticated local socket or TCP. Requests are typed enums, never code. Protocol, object
//! lifetime and failure handling: `README.md` beside this file.
//!
//! This file holds the public `Manager` and its builder, and the module map; it is the top of
//! the module's import graph (nothing below imports it) and must hold no kind's operations and
//! no serving. The layers, bottom up: `protocol`
//! (requests and replies, no kind named), `object` (what a kind is), `handle` (a proxy's
//! connections) and `proxy` (what proxies share), one file per kind (`list`, `dict`,
//! `value`, `queue`, `lock`, `event`, `rlock`, `semaphore`, `condition`, `barrier`, `array`,
//! `set`, `custom`: its proxy and its server-side operations), `kinds`
//! (the list of kinds), `server` (sessions and object lifetime) and `serve` (its entries).

mod array;
mod barrier;
mod condition;
mod custom;
mod dict;
mod dict_iter;
mod event;
mod handle;
mod kinds;
mod list;
mod lock;
mod object;
mod pool;
mod protocol;
mod proxy;
mod queue;
mod rlock;
mod semaphore;
mod serve;
mod server;
mod set;
mod value;

use crate::sys::Child;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::codec::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use array::ArrayProxy;
pub use barrier::BarrierProxy;
pub use condition::{ConditionProxy, ConditionProxyGuard};
pub use custom::{MANAGED_TYPES, Managed, ManagedProxy, ManagedType};
pub use dict::DictProxy;
pub use dict_iter::DictIter;
pub use event::EventProxy;
pub use list::{ListIter, ListProxy};
pub use lock::{LockProxy, LockProxyGuard};
pub use pool::PoolProxy;
pub(crate) use pool::{RUN_BY_NAME, call_bytes};
pub use proxy::Proxy;
pub use queue::QueueProxy;
pub use rlock::{RLockProxy, RLockProxyGuard};
pub use semaphore::{SemaphoreProxy, SemaphoreProxyGuard};
pub use serve::ManagerServer;
pub(crate) use serve::serve_child;
pub use set::SetProxy;
pub use value::ValueProxy;

use handle::Endpoint;
use protocol::Control;
use proxy::Creator;
use serve::{ListenerFd, ServerSpec};

use crate::bootstrap::spawn::{Role, start_child};
use crate::connection::{Address, DEFAULT_MAX_MESSAGE, ToAddress, auth};
use crate::error::{Error, Result};
use crate::sys;
use crate::wire::{Channel, Frame};

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
/// [`EventProxy`], [`RLockProxy`], [`SemaphoreProxy`], [`ConditionProxy`], [`BarrierProxy`],
/// [`ArrayProxy`], [`SetProxy`], and [`ManagedProxy`] for custom types registered with
/// [`ManagerBuilder::register`]) are ordinary worker arguments: they travel as the server's
/// address, the key and the object's id. [`Manager::object_count`] tells how many objects
/// the server holds (diagnostics: a leak shows there).
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
/// bounds unauthenticated peers (see [`Listener`](crate::Listener): 64 handshakes at once, 10 s each).
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
    /// The server's endpoint and instance id (see `Reply::Created`).
    creator: Creator,
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
            .field("address", &self.creator.endpoint.address)
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
    /// Custom shared types: registered name and type name.
    types: Vec<(String, String)>,
}

impl Manager {
    /// Starts a manager server as a child process, on a private local socket, with a random
    /// 32-byte auth key (Python's `multiprocessing.Manager()`).
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn record(log: mp::ListProxy<String>, n: u32) -> mp::Result<()> {
    ///     Ok(log.append(format!("worker {n} was here"))?)
    /// }
    ///
    /// let manager = mp::Manager::new()?;
    /// let log = manager.list::<String>()?;
    /// mp::spawn(record, (log.clone(), 1))?.join()??;
    /// assert_eq!(log.to_vec()?, ["worker 1 was here"]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn new() -> Result<Manager> {
        Manager::builder().start()
    }

    /// A builder for a server on an address and key of your choice.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            address: None,
            authkey: None,
            max_message: DEFAULT_MAX_MESSAGE,
            types: Vec::new(),
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
            creator: Creator::new(endpoint),
            server: None,
        };
        manager.creator.stats()?;
        Ok(manager)
    }

    /// The server's address (for a TCP port of 0: the port it got).
    pub fn address(&self) -> &Address {
        &self.creator.endpoint.address
    }

    /// The auth key clients must present.
    pub fn authkey(&self) -> &[u8] {
        &self.creator.endpoint.authkey
    }

    /// The server process's pid, when this `Manager` started it.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(|s| s.child.id())
    }

    /// A new, empty shared list (Python's `manager.list()`).
    pub fn list<T: Serialize + DeserializeOwned>(&self) -> Result<ListProxy<T>> {
        ListProxy::create(&self.creator, None, Vec::new())
    }

    /// A new shared list holding `items` (Python's `manager.list([1, 2, 3])`).
    pub fn list_from<T: Serialize + DeserializeOwned>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ListProxy<T>> {
        ListProxy::create(&self.creator, None, items.into_iter().collect())
    }

    /// A new, empty shared dict (Python's `manager.dict()`).
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        DictProxy::create(&self.creator, None, Vec::new())
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
        DictProxy::create(&self.creator, None, pairs.into_iter().collect())
    }

    /// A new shared value (Python's `manager.Value(...)` and `manager.Namespace()`).
    #[doc(alias = "Namespace")]
    #[doc(alias = "Value")]
    pub fn value<T: Serialize + DeserializeOwned>(&self, value: T) -> Result<ValueProxy<T>> {
        ValueProxy::create(&self.creator, None, &value)
    }

    /// A new, unbounded shared queue (Python's `manager.Queue()`).
    pub fn queue<T: Serialize + DeserializeOwned>(&self) -> Result<QueueProxy<T>> {
        QueueProxy::create(&self.creator, None, None)
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
        QueueProxy::create(&self.creator, None, Some(maxsize as u64))
    }

    /// A new shared lock (Python's `manager.Lock()`).
    pub fn lock(&self) -> Result<LockProxy> {
        LockProxy::create(&self.creator, None)
    }

    /// A new shared event (Python's `manager.Event()`).
    pub fn event(&self) -> Result<EventProxy> {
        EventProxy::create(&self.creator, None)
    }

    /// A new unbounded shared queue with `task_done` and `join` (Python's
    /// `manager.JoinableQueue()`): the same [`QueueProxy`] as [`queue`](Manager::queue), since
    /// every manager queue counts unfinished items, as Python's `queue.Queue` does.
    #[doc(alias = "JoinableQueue")]
    pub fn joinable_queue<T: Serialize + DeserializeOwned>(&self) -> Result<QueueProxy<T>> {
        self.queue()
    }

    /// A new shared re-entrant lock (Python's `manager.RLock()`).
    #[doc(alias = "RLock")]
    pub fn rlock(&self) -> Result<RLockProxy> {
        RLockProxy::create(&self.creator, None)
    }

    /// A new shared semaphore with `value` permits (Python's `manager.Semaphore(value)`).
    #[doc(alias = "Semaphore")]
    pub fn semaphore(&self, value: u32) -> Result<SemaphoreProxy> {
        SemaphoreProxy::create(&self.creator, None, value, false)
    }

    /// A new shared semaphore with `value` permits that refuses to go above `value`
    /// ([`Error::TooManyReleases`]; Python's `manager.BoundedSemaphore(value)`).
    #[doc(alias = "BoundedSemaphore")]
    pub fn bounded_semaphore(&self, value: u32) -> Result<SemaphoreProxy> {
        SemaphoreProxy::create(&self.creator, None, value, true)
    }

    /// A new shared condition variable with its own lock (Python's `manager.Condition()`).
    #[doc(alias = "Condition")]
    pub fn condition(&self) -> Result<ConditionProxy> {
        ConditionProxy::create(&self.creator, None)
    }

    /// A new shared barrier for `parties` parties (Python's `manager.Barrier(parties)`).
    #[doc(alias = "Barrier")]
    pub fn barrier(&self, parties: u32) -> Result<BarrierProxy> {
        BarrierProxy::create(&self.creator, None, parties)
    }

    /// The barrier called `name`, created for `parties` parties if there is none (an existing
    /// one keeps its own number of parties). [`named`](Manager::named) finds an existing one.
    pub fn named_barrier(&self, name: &str, parties: u32) -> Result<BarrierProxy> {
        BarrierProxy::create(&self.creator, Some(name), parties)
    }

    /// A new shared fixed-length array holding `items` (Python's
    /// `manager.Array(typecode, sequence)`).
    #[doc(alias = "Array")]
    pub fn array<T: Serialize + DeserializeOwned>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ArrayProxy<T>> {
        ArrayProxy::create(&self.creator, items.into_iter().collect())
    }

    /// A new object of the custom shared type the server registered as `name` (Python's
    /// `manager.<typeid>(...)` after `BaseManager.register(typeid, ...)`), holding `value`; see
    /// [`Managed`]. A name the server did not register, or registered for another type, is
    /// [`Error::InvalidArgument`].
    pub fn managed<T: Managed>(&self, name: &str, value: T) -> Result<ManagedProxy<T>> {
        ManagedProxy::create(&self.creator, name, &value)
    }

    /// A process pool of `processes` workers held by the server (Python's
    /// `manager.Pool(processes)`): its `map` and `apply` run `#[mp::worker]`s in the server's
    /// worker processes. See [`PoolProxy`].
    #[doc(alias = "Pool")]
    pub fn pool(&self, processes: usize) -> Result<PoolProxy> {
        PoolProxy::create(&self.creator, processes)
    }

    /// A new, empty shared set.
    pub fn set<T: Serialize + DeserializeOwned>(&self) -> Result<SetProxy<T>> {
        SetProxy::create(&self.creator, None, Vec::new())
    }

    /// A new shared set holding `items`.
    pub fn set_from<T: Serialize + DeserializeOwned>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<SetProxy<T>> {
        SetProxy::create(&self.creator, None, items.into_iter().collect())
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
        P::named(&self.creator, name)
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
        Ok(self.creator.stats()?.1)
    }

    /// Stops the server: every proxy's next call fails with [`Error::ManagerGone`]. For a
    /// server this `Manager` started, also waits for the process to exit (killing it after
    /// two seconds); for one reached with [`connect`](Manager::connect), asks it to stop.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        let endpoint = &self.creator.endpoint;
        let asked = endpoint
            .connect()
            .and_then(|mut c| endpoint.call(&mut c, Control::Shutdown));
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

    /// The key clients must prove they know. Default: this process's auth key,
    /// [`current_process().authkey()`](crate::ProcessInfo::authkey), which children inherit
    /// (see [`Manager::authkey`]).
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

    /// Serves the custom shared type `T` under `name` (Python's `BaseManager.register(name,
    /// T)`): clients create its objects with [`Manager::managed`]. `T` must also be declared
    /// with [`mp::managed!`](crate::managed), which is how the server process finds its code;
    /// [`start`](ManagerBuilder::start) fails with [`Error::InvalidArgument`] otherwise. See
    /// [`Managed`] for an example.
    pub fn register<T: Managed>(mut self, name: &str) -> ManagerBuilder {
        self.types
            .push((name.to_owned(), std::any::type_name::<T>().to_owned()));
        self
    }

    /// Binds the address here (so a taken port fails now, in this process), then starts the
    /// server process and waits until it is serving.
    pub fn start(self) -> Result<Manager> {
        for (_, type_name) in &self.types {
            custom::declared(type_name)?;
        }
        let authkey = match self.authkey {
            Some(key) => key,
            None => crate::bootstrap::identity::authkey()?.to_vec(),
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
            types: self.types,
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
            creator: Creator::new(Endpoint::new(bound, Arc::from(authkey))),
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
