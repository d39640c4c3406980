//! The manager's requests and replies: typed enums, never code. Values are opaque encoded
//! blobs to the server, which stores, compares (bytewise) and returns them without knowing
//! their types; typing lives in the proxies. See `README.md` beside this file.
//!
//! This file names no object kind (each kind's operations live in its own file) and must not
//! import anything else from the manager: it is the bottom of the module's import graph.

use std::borrow::Cow;
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
///
/// A blob is 32 bytes and, for a value of up to 22 encoded bytes without proxies, no
/// allocation: batches of small values (`extend` of 10 000 numbers) are bound by how many
/// bytes and allocations each item costs on both sides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Blob {
    pub(crate) bytes: crate::codec::SmallBytes,
    /// Empty for almost every value: it travels as one byte then (see [`refs_wire`]).
    #[serde(with = "refs_wire")]
    pub(crate) refs: Refs,
}

/// The references of a [`Blob`], in order: a slice of ids or tokens, one pointer wide and
/// no allocation when empty (almost always).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
// Boxed so that it is one pointer (a `Vec` is three, a boxed slice two): a blob stays 32 bytes.
#[allow(clippy::box_collection)]
pub(crate) struct Refs(Option<Box<Vec<u64>>>);

impl Refs {
    /// Takes the references out, leaving none.
    pub(crate) fn take(&mut self) -> Vec<u64> {
        self.0.take().map(|v| *v).unwrap_or_default()
    }
}

impl std::ops::Deref for Refs {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl std::ops::DerefMut for Refs {
    fn deref_mut(&mut self) -> &mut [u64] {
        self.0.as_deref_mut().map_or(&mut [], Vec::as_mut_slice)
    }
}

impl From<Vec<u64>> for Refs {
    fn from(refs: Vec<u64>) -> Refs {
        // Empty is `None`, so that equal references compare equal.
        Refs((!refs.is_empty()).then(|| Box::new(refs)))
    }
}

impl FromIterator<u64> for Refs {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Refs {
        Refs::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl IntoIterator for Refs {
    type Item = u64;
    type IntoIter = std::vec::IntoIter<u64>;
    fn into_iter(mut self) -> Self::IntoIter {
        self.take().into_iter()
    }
}

/// A blob's references on the wire: an `Option`, so the common value without proxies costs
/// one byte beside its bytes rather than an 8-byte length (batches of small values are
/// dominated by it).
mod refs_wire {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Refs;

    pub(super) fn serialize<S: Serializer>(refs: &Refs, s: S) -> Result<S::Ok, S::Error> {
        (!refs.is_empty()).then_some(&**refs).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Refs, D::Error> {
        Ok(Option::<Vec<u64>>::deserialize(d)?
            .map(Refs::from)
            .unwrap_or_default())
    }
}

impl Blob {
    /// A value that holds no proxy.
    #[cfg(test)]
    pub(crate) fn plain(bytes: &[u8]) -> Blob {
        Blob::holding(bytes, &[])
    }

    /// A value whose proxies refer to `refs`.
    #[cfg(test)]
    pub(crate) fn holding(bytes: &[u8], refs: &[u64]) -> Blob {
        Blob {
            bytes: crate::codec::SmallBytes::from_slice(bytes),
            refs: Refs::from(refs.to_vec()),
        }
    }
}

/// An object's kind and element types: checked whenever a proxy attaches, so an object is
/// only ever used as the type it was created with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Type {
    /// The kind's name (`"list"`, `"dict"`, …: its `ObjectKind::NAME`).
    pub(crate) kind: Cow<'static, str>,
    /// A fingerprint of the element types (name, size, alignment).
    pub(crate) fingerprint: u64,
    /// The element types as written, for error messages.
    pub(crate) elements: String,
}

impl std::fmt::Display for Type {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}<{}>", self.kind, self.elements)
    }
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

impl Holder {
    /// The calling thread.
    pub(crate) fn current() -> Holder {
        Holder {
            pid: crate::sys::getpid(),
            tid: crate::sys::gettid(),
        }
    }
}

/// A request on a connection. After `Create` or `Attach` a connection belongs to one object,
/// which every `Op` addresses.
///
/// Generic over the operation and the initial contents so that this file names no object
/// kind: the server decodes `Request<Op, Init>` (the enums `kinds.rs` generates from its
/// registration list), a client encodes the same bytes with [`Variant`]s of one kind's own
/// types, and requests that carry neither are [`Control`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request<O, I> {
    /// Creates an object and attaches this connection to it; with a name, attaches to the
    /// object of that name if there is one (of the same type), creating it otherwise.
    Create {
        ty: Type,
        name: Option<String>,
        init: I,
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
    Op(O),
    /// Stops the server: every connection is closed, the server process exits.
    Shutdown,
}

/// A request that carries no operation and no initial contents.
pub(crate) type Control = Request<Never, Never>;

/// The type of the absent operation and contents of a [`Control`] request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Never {}

/// One kind's operation or initial contents, encoded as the variant `tag` of the server's
/// `Op` or `Init` enum (a newtype variant: the same bytes as the enum's own encoding).
pub(crate) struct Variant<T> {
    pub(crate) tag: u32,
    pub(crate) name: &'static str,
    pub(crate) value: T,
}

impl<T: Serialize> Serialize for Variant<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_newtype_variant("Op", self.tag, self.name, &self.value)
    }
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
    /// A number that names something on the server (a condition's waiter ticket).
    Ticket(u64),
    /// A party arrived at a barrier: its arrival index in pass `generation`, and whether it
    /// was the last one (the pass happened).
    Arrival {
        index: u64,
        generation: u64,
        last: bool,
    },
    /// Entries from position `start` on (a page of a dict's live iteration), with the
    /// dict's size now.
    Page {
        pairs: Vec<(Key, Blob)>,
        len: u64,
    },
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
            Reply::Pairs(pairs) | Reply::Page { pairs, .. } => {
                pairs.iter_mut().for_each(|(_, v)| f(v))
            }
            Reply::Done
            | Reply::Created { .. }
            | Reply::Stats { .. }
            | Reply::Token(_)
            | Reply::Len(_)
            | Reply::Bool(_)
            | Reply::Keys(_)
            | Reply::Swapped
            | Reply::Ticket(_)
            | Reply::Arrival { .. } => {}
        }
    }
}

/// A reply or the error the operation failed with.
pub(crate) type Response = Result<Reply, Error>;

/// A request or a response as it travels, with the CPU its sender ran on.
///
/// Each side tells the other where it runs, and a side spins for the next message only when
/// the peer ran on another CPU: there the spin saves a wake-up from idle, while on the same
/// CPU (a client and its server thread handing one core back and forth, which is what the
/// scheduler does when several clients keep every core busy) it would only keep the peer from
/// running.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope<T> {
    pub(crate) cpu: u32,
    pub(crate) body: T,
}

/// How long to spin for the next message from a peer that last ran on `peer_cpu`.
pub(crate) fn spin_toward(peer_cpu: u32) -> Duration {
    if peer_cpu == crate::sys::current_cpu() {
        Duration::ZERO
    } else {
        crate::wire::SOCKET_SPIN
    }
}

/// An unexpected reply: a protocol bug or a server of another version.
pub(crate) fn unexpected(reply: Reply) -> Error {
    Error::Malformed(format!("unexpected reply from the manager: {reply:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_blob_is_32_bytes_and_no_allocation_with_the_same_wire_bytes() {
        // A batch of 10 000 small values is bound by each item's bytes and allocations on
        // both sides: a blob was 48 bytes plus a buffer of its own (issue 18, "manager
        // batched append" 0.125 -> 0.15 µs/item).
        assert_eq!(size_of::<Blob>(), 32);
        let blob = Blob::holding(&7u64.to_le_bytes(), &[]);
        assert!(matches!(
            blob.bytes,
            crate::codec::SmallBytes::Inline { .. }
        ));
        assert!(blob.refs.0.is_none());

        // On the wire: a byte string, then the references as an `Option`.
        let mut wire = Vec::new();
        crate::codec::encode(&blob, &mut wire, &mut Vec::new()).unwrap();
        let mut expected = 8u64.to_le_bytes().to_vec();
        expected.extend_from_slice(&7u64.to_le_bytes());
        expected.push(0);
        assert_eq!(wire, expected);
        let back: Blob = crate::codec::decode(&wire, Vec::new()).unwrap();
        assert_eq!(back, blob);

        let holding = Blob::holding(b"a proxy, say", &[3, 4]);
        let mut wire = Vec::new();
        crate::codec::encode(&holding, &mut wire, &mut Vec::new()).unwrap();
        let back: Blob = crate::codec::decode(&wire, Vec::new()).unwrap();
        assert_eq!(
            (&back.bytes[..], &back.refs[..]),
            (&b"a proxy, say"[..], &[3, 4][..])
        );
        assert_eq!(Refs::from(Vec::new()), Refs::default());
    }
}
