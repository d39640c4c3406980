//! The client side of one shared object: a small pool of authenticated connections attached
//! to it (one per thread using the proxy at a time, so a blocking `get` on one thread does not
//! hold up another), how a proxy travels to another process (address, key, object id and a
//! transfer token), and the encoding of values to and from blobs: a proxy stored in its own
//! manager is encoded without a token, its reference travelling beside the bytes (`Blob::refs`).
//!
//! Every proxy is built on this; it knows no kind (an operation is any registered kind's
//! `Op`) and nothing of the server's side.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::codec::{Bytes, SmallBytes};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::object::Registered;
use super::protocol::{
    Blob, Control, Envelope, Key, Never, Refs, Reply, Request, Response, Type, Variant,
    spin_toward, unexpected,
};
use crate::codec;
use crate::connection::{self, Address};
use crate::error::{Error, Result, SendError};
use crate::wire::Channel;

/// How long dropping an unused proxy may spend handing its transfer token back.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where a manager is and how to prove we may talk to it.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) address: Address,
    pub(crate) authkey: Arc<[u8]>,
    /// The largest message the server accepts, learned from its handshake: a value to store
    /// is refused while it is encoded, as soon as it grows past it.
    pub(crate) limit: Arc<AtomicU64>,
}

/// An authenticated connection to a manager, with the CPU its server thread last ran on.
pub(crate) struct Conn {
    channel: Channel,
    peer_cpu: u32,
}

impl Endpoint {
    /// An endpoint not yet connected to.
    pub(crate) fn new(address: Address, authkey: Arc<[u8]>) -> Endpoint {
        Endpoint {
            address,
            authkey,
            limit: Arc::new(AtomicU64::new(codec::MAX_MESSAGE)),
        }
    }

    /// The largest value the server accepts (see [`Endpoint::limit`]).
    pub(crate) fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Connects and authenticates. A manager that cannot be reached is gone.
    pub(crate) fn connect(&self) -> Result<Conn> {
        let channel =
            connection::connect_channel(&self.address, &self.authkey).map_err(|e| self.gone(e))?;
        self.limit.store(channel.peer_limit(), Ordering::Relaxed);
        Ok(Conn {
            channel,
            peer_cpu: u32::MAX,
        })
    }

    /// Maps a connection failure to [`Error::ManagerGone`]; other errors pass through.
    pub(crate) fn gone(&self, e: Error) -> Error {
        match e {
            Error::Disconnected | Error::Io { .. } | Error::Malformed(_) | Error::Decode(_) => {
                Error::ManagerGone {
                    address: self.address.to_string(),
                    why: e.to_string(),
                }
            }
            e => e,
        }
    }

    /// Sends one request on `conn` and waits for its reply.
    pub(crate) fn call<O: Serialize, I: Serialize>(
        &self,
        conn: &mut Conn,
        request: Request<O, I>,
    ) -> Result<Reply> {
        let cpu = crate::sys::current_cpu();
        conn.channel.set_spin(spin_toward(conn.peer_cpu));
        match conn.channel.send(&Envelope { cpu, body: request }) {
            Ok(()) => {}
            // Refused before anything was written: the connection is still good.
            Err(e @ (Error::TooLarge { .. } | Error::Encode(_))) => return Err(e),
            Err(e) => return Err(self.gone(e)),
        }
        let answer: Envelope<Response> = conn
            .channel
            .recv_frame(None)
            .and_then(|f| f.decode())
            .map_err(|e| self.gone(e))?;
        conn.peer_cpu = answer.cpu;
        answer.body
    }
}

/// One process's reference to a shared object.
pub(crate) struct Handle {
    endpoint: Endpoint,
    /// The server instance the object lives on (see `Reply::Created`).
    server: u64,
    id: u64,
    ty: Type,
    /// Idle attached connections. Each holds a reference to the object on the server.
    idle: Mutex<Vec<Conn>>,
    /// A token from the process that sent this handle: consumed by the first connection.
    token: Mutex<Option<u64>>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} #{} at {}", self.ty, self.id, self.endpoint.address)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Handle {
    /// Creates an object of kind `K` over element types `E` on the server (or, named, finds
    /// it) and attaches to it.
    pub(crate) fn create<K: Registered, E>(
        endpoint: &Endpoint,
        name: Option<String>,
        init: K::Init,
    ) -> Result<Arc<Handle>> {
        let ty = type_of::<E>(K::NAME);
        let mut conn = endpoint.connect()?;
        let init = Variant {
            tag: K::TAG,
            name: K::NAME,
            value: init,
        };
        let reply = endpoint.call(
            &mut conn,
            Request::<Never, _>::Create {
                ty: ty.clone(),
                name,
                init,
            },
        )?;
        let Reply::Created { id, server } = reply else {
            return Err(unexpected(reply));
        };
        Ok(Arc::new(Handle {
            endpoint: endpoint.clone(),
            server,
            id,
            ty,
            idle: Mutex::new(vec![conn]),
            token: Mutex::new(None),
        }))
    }

    /// Runs `op` on the object (of kind `K`) and returns the reply.
    pub(crate) fn op<K: Registered>(&self, op: K::Op) -> Result<Reply> {
        self.request(Request::<_, Never>::Op(Variant {
            tag: K::TAG,
            name: K::NAME,
            value: op,
        }))
    }

    /// Runs `op`, which answers nothing but that it is done.
    pub(crate) fn done<K: Registered>(&self, op: K::Op) -> Result<()> {
        match self.op::<K>(op)? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Runs `op`, which answers a number of items.
    pub(crate) fn len<K: Registered>(&self, op: K::Op) -> Result<usize> {
        match self.op::<K>(op)? {
            Reply::Len(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            other => Err(unexpected(other)),
        }
    }

    /// Runs `op`, which answers a flag.
    pub(crate) fn bool<K: Registered>(&self, op: K::Op) -> Result<bool> {
        match self.op::<K>(op)? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// Encodes `value`, runs the operation `op` builds from it, and hands the value back on
    /// failure.
    pub(crate) fn send_value<K: Registered, T: Serialize>(
        &self,
        value: T,
        op: impl FnOnce(Blob) -> K::Op,
    ) -> Result<(), SendError<T>> {
        self.send_with::<K, T>(value, |v| Ok(op(self.encode(v)?)))
    }

    /// Encodes every item, runs the operation `op` builds from them, and hands them all back
    /// on failure.
    pub(crate) fn send_all<K: Registered, T: Serialize>(
        &self,
        items: Vec<T>,
        op: impl FnOnce(Vec<Blob>) -> K::Op,
    ) -> Result<(), SendError<Vec<T>>> {
        self.send_with::<K, Vec<T>>(items, |items| Ok(op(self.encode_all(items)?)))
    }

    /// Builds an operation from `value` (encoding it), runs it, and hands the value back
    /// unless the server answered `Done`: the one shape of every write whose reply carries
    /// no data.
    pub(crate) fn send_with<K: Registered, V>(
        &self,
        value: V,
        build: impl FnOnce(&V) -> Result<K::Op>,
    ) -> Result<(), SendError<V>> {
        let sent = build(&value).and_then(|op| self.op::<K>(op));
        match sent {
            Ok(Reply::Done) => Ok(()),
            Ok(other) => Err(SendError {
                error: unexpected(other),
                value,
            }),
            Err(error) => Err(SendError { error, value }),
        }
    }

    fn request<O: Serialize, I: Serialize>(&self, request: Request<O, I>) -> Result<Reply> {
        let mut conn = match lock(&self.idle).pop() {
            Some(c) => c,
            None => self.attach()?,
        };
        let reply = self.endpoint.call(&mut conn, request);
        match &reply {
            // The connection is broken; every other error leaves it usable.
            Err(Error::ManagerGone { .. }) => {}
            _ => lock(&self.idle).push(conn),
        }
        reply
    }

    /// Encodes a value to store in this handle's object (or in another object of its server:
    /// see [`encode_for`]).
    pub(crate) fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Blob> {
        encode_for(self.server, self.endpoint.limit(), value)
    }

    /// Encodes every value of a batch.
    pub(crate) fn encode_all<T: Serialize>(&self, values: &[T]) -> Result<Vec<Blob>> {
        let storing = Storing::Value {
            server: self.server,
            refs: Vec::new(),
        };
        encode_each(storing, self.endpoint.limit(), values.iter())
    }

    /// Encodes a dict key: compared by its bytes, so it may hold no proxy.
    pub(crate) fn encode_key<T: Serialize + ?Sized>(&self, key: &T) -> Result<Key> {
        encode_key(key)
    }

    /// Decodes a value that came from this handle's server: its proxies take the references
    /// that came beside it, and references no proxy took are given back.
    pub(crate) fn decode<T: DeserializeOwned>(&self, blob: &Blob) -> Result<T> {
        if blob.refs.is_empty() {
            return codec::decode(&blob.bytes, Vec::new());
        }
        let tokens: VecDeque<u64> = blob.refs.iter().copied().collect();
        let previous = READING.with(|r| r.replace(Some(tokens)));
        let decoded = codec::decode(&blob.bytes, Vec::new());
        let unclaimed = READING.with(|r| r.replace(previous)).unwrap_or_default();
        for token in unclaimed {
            let _ = self.request(Control::Release { token });
        }
        decoded
    }

    /// A new connection attached to this object.
    fn attach(&self) -> Result<Conn> {
        let mut conn = self.endpoint.connect()?;
        let token = lock(&self.token).take();
        let reply = self.endpoint.call(
            &mut conn,
            Control::Attach {
                id: self.id,
                ty: self.ty.clone(),
                token,
            },
        )?;
        match reply {
            Reply::Created { server, .. } if server == self.server => Ok(conn),
            Reply::Created { .. } => Err(Error::ManagerGone {
                address: self.endpoint.address.to_string(),
                why: "another server now listens on that address".to_owned(),
            }),
            other => Err(unexpected(other)),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // A handle received but never used still holds its sender's token: hand it back so
        // the object can be freed. Best effort, bounded: the manager may be gone.
        let Some(token) = lock(&self.token).take() else {
            return;
        };
        let endpoint = self.endpoint.clone();
        let (done, released) = std::sync::mpsc::channel::<()>();
        let _ = std::thread::Builder::new()
            .name("mp-manager-release".into())
            .spawn(move || {
                if let Ok(mut conn) = endpoint.connect() {
                    let _ = endpoint.call(&mut conn, Control::Release { token });
                }
                let _ = done.send(());
            });
        let _ = released.recv_timeout(RELEASE_TIMEOUT);
    }
}

/// How a proxy travels: everything a process needs to reach the object.
#[derive(Serialize, Deserialize)]
struct WireHandle {
    address: Address,
    authkey: Bytes,
    server: u64,
    id: u64,
    ty: Type,
    keep: Keep,
}

/// What keeps the object alive while its proxy travels.
#[derive(Serialize, Deserialize)]
enum Keep {
    /// A transfer token from `Share`, for the receiver's first connection to consume.
    Token(u64),
    /// The proxy is stored in a value on its own server, which holds the reference; the
    /// reader gets one of its own beside the value (`Blob::refs`). The bytes carry no token,
    /// so equal proxies encode equally.
    Stored,
}

/// What the value being encoded on this thread is for, while [`encode_in`] runs.
enum Storing {
    /// A value to store on server instance `server`: the ids of that server's objects that
    /// its proxies refer to, in order.
    Value { server: u64, refs: Vec<u64> },
    /// A dict key, which may hold no proxy.
    Key,
}

thread_local! {
    static STORING: RefCell<Option<Storing>> = const { RefCell::new(None) };
    /// While a value from a manager is decoded: the tokens its stored proxies take, in order.
    static READING: RefCell<Option<VecDeque<u64>>> = const { RefCell::new(None) };
}

/// Serializes a handle for another process, taking a token that keeps the object alive until
/// the receiver attaches.
pub(crate) fn serialize<S: Serializer>(handle: &Handle, serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::Error as _;
    if !codec::in_send() {
        return Err(S::Error::custom(
            "a manager proxy can only be serialized by mp itself (as a worker argument or \
             inside an mp message), since it carries the manager's auth key",
        ));
    }
    // Stored on its own server: that server holds the reference (the bytes carry none).
    let stored = STORING.with(|s| match s.borrow_mut().as_mut() {
        Some(Storing::Key) => Err(S::Error::custom(
            "a manager proxy cannot be part of a dict key (keys are compared by their bytes)",
        )),
        Some(Storing::Value { server, refs }) if *server == handle.server => {
            refs.push(handle.id);
            Ok(true)
        }
        _ => Ok(false),
    })?;
    let keep = if stored {
        Keep::Stored
    } else {
        match handle.request(Control::Share) {
            Ok(Reply::Token(t)) => Keep::Token(t),
            Ok(other) => return Err(S::Error::custom(unexpected(other))),
            Err(e) => return Err(S::Error::custom(e)),
        }
    };
    WireHandle {
        address: handle.endpoint.address.clone(),
        authkey: Bytes(handle.endpoint.authkey.to_vec()),
        server: handle.server,
        id: handle.id,
        ty: handle.ty.clone(),
        keep,
    }
    .serialize(serializer)
}

/// Deserializes a handle of type `ty`; it connects on first use.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
    ty: Type,
) -> Result<Arc<Handle>, D::Error> {
    use serde::de::Error as _;
    let wire = WireHandle::deserialize(deserializer)?;
    if wire.ty != ty {
        return Err(D::Error::custom(format!(
            "received a proxy to a {}, expected a proxy to a {ty}",
            wire.ty
        )));
    }
    let token = match wire.keep {
        Keep::Token(t) => t,
        Keep::Stored => READING
            .with(|r| r.borrow_mut().as_mut().and_then(VecDeque::pop_front))
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "a proxy to shared object #{} came from its manager without a reference",
                    wire.id
                ))
            })?,
    };
    Ok(Arc::new(Handle {
        endpoint: Endpoint::new(wire.address, Arc::from(wire.authkey.0)),
        server: wire.server,
        id: wire.id,
        ty,
        idle: Mutex::new(Vec::new()),
        token: Mutex::new(Some(token)),
    }))
}

/// Encodes a value to store on server instance `server`: proxies to that server's objects
/// go in without a token, their ids beside the bytes. Values holding OS handles cannot live
/// there.
pub(crate) fn encode_for<T: Serialize + ?Sized>(
    server: u64,
    limit: u64,
    value: &T,
) -> Result<Blob> {
    encode_in(
        Storing::Value {
            server,
            refs: Vec::new(),
        },
        limit,
        value,
    )
}

/// Encodes a dict key: compared by its bytes, so it may hold no proxy.
pub(crate) fn encode_key<T: Serialize + ?Sized>(key: &T) -> Result<Key> {
    let mut bytes = Vec::new();
    encoding_as(Storing::Key, || {
        codec::encode_collected(key, &mut bytes, codec::MAX_MESSAGE)
    })?;
    Ok(Bytes(bytes))
}

/// Decodes a dict key (which holds no proxy).
pub(crate) fn decode_key<T: DeserializeOwned>(key: &Key) -> Result<T> {
    codec::decode(key, Vec::new())
}

fn encode_in<T: Serialize + ?Sized>(storing: Storing, limit: u64, value: &T) -> Result<Blob> {
    let mut blobs = encode_each(storing, limit, std::iter::once(value))?;
    Ok(blobs.pop().expect("one value gives one blob"))
}

/// Encodes each of `values` into its own blob under one encoding context (a batch sets up
/// the thread-locals once, not per item); proxies to the server of `storing` leave their
/// ids in the blob that holds them. Each value is encoded into one reused buffer and a short
/// one copied inline into its blob: no allocation per small item.
fn encode_each<'v, T: Serialize + ?Sized + 'v>(
    storing: Storing,
    limit: u64,
    values: impl Iterator<Item = &'v T>,
) -> Result<Vec<Blob>> {
    let mut buf = Vec::new();
    encoding_as(storing, || {
        values
            .map(|value| {
                buf.clear();
                codec::encode_collected(value, &mut buf, limit)?;
                let refs = STORING.with(|s| match s.borrow_mut().as_mut() {
                    Some(Storing::Value { refs, .. }) if !refs.is_empty() => {
                        Refs::from(std::mem::take(refs))
                    }
                    _ => Refs::default(),
                });
                Ok(Blob {
                    bytes: SmallBytes::take_from(&mut buf),
                    refs,
                })
            })
            .collect::<Result<Vec<_>>>()
    })
}

/// Runs `encode` with `storing` as the encoding context and descriptors collected: a value
/// holding an OS handle cannot be stored in a manager.
fn encoding_as<R>(storing: Storing, encode: impl FnOnce() -> Result<R>) -> Result<R> {
    let mut fds = Vec::new();
    let previous = STORING.with(|s| s.replace(Some(storing)));
    let result = codec::collecting_fds(&mut fds, encode);
    STORING.with(|s| s.replace(previous));
    if !fds.is_empty() {
        return Err(Error::Encode(
            "a value holding an OS handle (queue, pipe end, shared memory, lock) cannot be \
             stored in a manager; store a manager proxy instead"
                .to_owned(),
        ));
    }
    result
}

/// The type description of an object of kind `kind` over element types `E`.
pub(crate) fn type_of<E>(kind: &'static str) -> Type {
    Type {
        kind: std::borrow::Cow::Borrowed(kind),
        fingerprint: crate::sync::fingerprint::<E>(),
        elements: std::any::type_name::<E>().to_owned(),
    }
}
