//! The manager's requests and replies: typed enums, never code. Values are opaque encoded
//! blobs to the server, which stores, compares (bytewise) and returns them without knowing
//! their types; typing lives in the proxies. See `README.md` beside this file.

use std::time::Duration;

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// An encoded dict key. Keys are compared by their bytes and never hold a proxy.
pub(crate) type Key = crate::codec::Bytes;

/// One encoded value, with the shared objects its proxies refer to (see `README.md`, "Proxies
/// inside stored values"). The bytes of a proxy stored in its own manager name the object
/// but carry no reference; the reference travels beside the bytes, in `refs`, one per proxy
/// in the order the proxies appear in the encoding:
///
/// - from a client, in a value to store: the objects' ids; the server takes a reference to
///   each for as long as it holds the value;
/// - in the server's store: the same ids, one reference each;
/// - from the server, in a value it returns: one transfer token per proxy, a reference of
///   its own that the proxy decoded from the bytes consumes when it attaches (or gives back).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Blob {
    pub(crate) bytes: crate::codec::Bytes,
    pub(crate) refs: Vec<u64>,
}

impl Blob {
    /// A value that holds no proxy.
    #[cfg(test)]
    pub(crate) fn plain(bytes: &[u8]) -> Blob {
        Blob {
            bytes: crate::codec::Bytes(bytes.to_vec()),
            refs: Vec::new(),
        }
    }
}

/// What kind of object a proxy refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    List,
    Dict,
    Value,
    Queue,
    Lock,
    Event,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::List => "list",
            Kind::Dict => "dict",
            Kind::Value => "value",
            Kind::Queue => "queue",
            Kind::Lock => "lock",
            Kind::Event => "event",
        }
    }
}

/// An object's kind and element types: checked whenever a proxy attaches, so an object is
/// only ever used as the type it was created with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Type {
    pub(crate) kind: Kind,
    /// A fingerprint of the element types (name, size, alignment).
    pub(crate) fingerprint: u64,
    /// The element types as written, for error messages.
    pub(crate) elements: String,
}

impl std::fmt::Display for Type {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}<{}>", self.kind.name(), self.elements)
    }
}

/// The contents of a new object.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Init {
    /// An empty list or dict, an unlocked lock, a clear event, an unbounded queue.
    Empty,
    List(Vec<Blob>),
    Dict(Vec<(Key, Blob)>),
    Value(Blob),
    Queue {
        maxsize: Option<u64>,
    },
}

/// How long a blocking operation may wait on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Wait {
    /// Not at all: fail at once.
    No,
    For(Duration),
    Forever,
}

impl Wait {
    pub(crate) fn from_timeout(timeout: Option<Duration>) -> Wait {
        match timeout {
            None => Wait::Forever,
            Some(d) if d.is_zero() => Wait::No,
            Some(d) => Wait::For(d),
        }
    }
}

/// Who holds a manager lock: a thread of a client process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub(crate) pid: u32,
    pub(crate) tid: u32,
}

/// A request on a connection. After `Create` or `Attach` a connection belongs to one object,
/// which every `Op` addresses.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Creates an object and attaches this connection to it; with a name, attaches to the
    /// object of that name if there is one (of the same type), creating it otherwise.
    Create {
        ty: Type,
        name: Option<String>,
        init: Init,
    },
    /// Attaches this connection to object `id`, consuming `token` (from `Share`) if given.
    Attach {
        id: u64,
        ty: Type,
        token: Option<u64>,
    },
    /// Issues a token that keeps this connection's object alive until an `Attach` consumes it
    /// (a proxy in flight to another process).
    Share,
    /// Gives up a token unused.
    Release { token: u64 },
    /// The server's instance id and how many objects it holds (diagnostics).
    Stats,
    /// An operation on this connection's object.
    Op(Op),
    /// Stops the server: every connection is closed, the server process exits.
    Shutdown,
}

/// An operation on the object a connection is attached to.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    /// Number of items (list, dict, queue).
    Len,
    /// Removes every item (list, dict).
    Clear,

    ListPush(Blob),
    ListExtend(Vec<Blob>),
    ListGet(u64),
    ListSet(u64, Blob),
    ListInsert(u64, Blob),
    ListRemoveAt(u64),
    ListPop,
    /// Removes the first item whose encoding equals this one.
    ListRemoveItem(crate::codec::Bytes),
    /// The items and the list's version.
    ListSnapshot,
    /// Replaces the items if the list is still at `version` (compare-and-swap).
    ListReplace {
        version: u64,
        items: Vec<Blob>,
    },

    DictGet(Key),
    DictGetMany(Vec<Key>),
    DictInsert(Key, Blob),
    DictRemove(Key),
    DictContains(Key),
    DictKeys,
    DictValues,
    DictItems,
    DictUpdate(Vec<(Key, Blob)>),
    /// One entry (or its absence) with its version.
    DictEntry(Key),
    /// Sets (`Some`) or removes (`None`) an entry if it is still at `version` (0: absent).
    DictSwap {
        key: Key,
        version: u64,
        value: Option<Blob>,
    },

    ValueGet,
    ValueSet(Blob),
    ValueSwap {
        version: u64,
        value: Blob,
    },

    QueuePut {
        items: Vec<Blob>,
        wait: Wait,
    },
    /// Takes at least one and at most `max` items, waiting for the first.
    QueueTake {
        max: u64,
        wait: Wait,
    },

    LockAcquire {
        holder: Holder,
        wait: Wait,
    },
    LockRelease {
        holder: Holder,
    },
    LockIsLocked,

    EventSet,
    EventClear,
    EventIsSet,
    EventWait {
        wait: Wait,
    },
}

/// What the server answers; an error travels as `Err` beside it ([`Response`]).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Done,
    /// Attached to object `id` of the server instance `server` (a random id the server
    /// draws when it starts: how a client tells whether a proxy belongs to a given server).
    Created {
        id: u64,
        server: u64,
    },
    Stats {
        server: u64,
        objects: u64,
    },
    Token(u64),
    Len(u64),
    Bool(bool),
    Blob(Blob),
    MaybeBlob(Option<Blob>),
    Blobs(Vec<Blob>),
    MaybeBlobs(Vec<Option<Blob>>),
    Keys(Vec<Key>),
    Pairs(Vec<(Key, Blob)>),
    /// A list's items with its version (also the answer to a `ListReplace` that lost a race).
    Items {
        items: Vec<Blob>,
        version: u64,
    },
    /// An entry or value with its version (also the answer to a swap that lost a race).
    Entry {
        value: Option<Blob>,
        version: u64,
    },
    /// A compare-and-swap went through.
    Swapped,
}

impl Reply {
    /// Calls `f` on each stored value inside the reply (whose `refs` are references handed
    /// to the client).
    pub(crate) fn for_each_blob(&mut self, mut f: impl FnMut(&mut Blob)) {
        match self {
            Reply::Blob(b) => f(b),
            Reply::MaybeBlob(b) | Reply::Entry { value: b, .. } => b.iter_mut().for_each(f),
            Reply::Blobs(items) | Reply::Items { items, .. } => items.iter_mut().for_each(f),
            Reply::MaybeBlobs(items) => items.iter_mut().flatten().for_each(f),
            Reply::Pairs(pairs) => pairs.iter_mut().for_each(|(_, v)| f(v)),
            Reply::Done
            | Reply::Created { .. }
            | Reply::Stats { .. }
            | Reply::Token(_)
            | Reply::Len(_)
            | Reply::Bool(_)
            | Reply::Keys(_)
            | Reply::Swapped => {}
        }
    }
}

impl Op {
    /// The objects the values this operation would store refer to (one reference each).
    pub(crate) fn stored_refs(&self) -> Vec<u64> {
        let refs = |blobs: &mut dyn Iterator<Item = &Blob>| -> Vec<u64> {
            blobs.flat_map(|b| b.refs.iter().copied()).collect()
        };
        match self {
            Op::ListPush(b)
            | Op::ListSet(_, b)
            | Op::ListInsert(_, b)
            | Op::DictInsert(_, b)
            | Op::ValueSet(b)
            | Op::ValueSwap { value: b, .. } => b.refs.clone(),
            Op::DictSwap { value, .. } => refs(&mut value.iter()),
            Op::ListExtend(items) | Op::ListReplace { items, .. } | Op::QueuePut { items, .. } => {
                refs(&mut items.iter())
            }
            Op::DictUpdate(pairs) => refs(&mut pairs.iter().map(|(_, v)| v)),
            _ => Vec::new(),
        }
    }
}

/// A reply or the error the operation failed with.
pub(crate) type Response = Result<Reply, Error>;

/// A request as it travels, with the CPU the client sent it from.
///
/// Each side tells the other where it runs, and a side spins for the next message only when
/// the peer ran on another CPU: there the spin saves a wake-up from idle, while on the same
/// CPU (a client and its server thread handing one core back and forth, which is what the
/// scheduler does when several clients keep every core busy) it would only keep the peer from
/// running.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Call {
    pub(crate) cpu: u32,
    pub(crate) request: Request,
}

/// A response as it travels, with the CPU the server thread answered from (see [`Call`]).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Answer {
    pub(crate) cpu: u32,
    pub(crate) response: Response,
}

/// How long to spin for the next message from a peer that last ran on `peer_cpu`.
pub(crate) fn spin_toward(peer_cpu: u32) -> Duration {
    if peer_cpu == crate::sys::current_cpu() {
        Duration::ZERO
    } else {
        crate::channel::SOCKET_SPIN
    }
}

/// An unexpected reply: a protocol bug or a server of another version.
pub(crate) fn unexpected(reply: Reply) -> Error {
    Error::Malformed(format!("unexpected reply from the manager: {reply:?}"))
}
