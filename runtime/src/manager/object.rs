//! What an object kind is to the manager: [`ObjectKind`], the trait each kind's file (`list.rs`,
//! `dict.rs`, …) implements for the contents the server keeps, with its operations, its
//! initial contents and how an operation applies; [`Registered`], its place in the list of
//! kinds (`kinds.rs`). Also the small helpers every kind's `apply` shares.
//!
//! This file knows no particular kind and nothing of sessions, stores or sockets: a kind's
//! `apply` is a plain function on its contents, so it can be tested without a server.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::protocol::{Blob, Reply, Response, Type, Wait};
use crate::error::{Error, Result};

/// The contents the server keeps for one kind of object, and the operations on them.
///
/// The server never decodes user data: values are [`Blob`]s, compared by their bytes.
pub(crate) trait ObjectKind: Sized + Send + 'static {
    /// The kind's name, in types (`list<u32>`) and messages.
    const NAME: &'static str;
    /// The operations on an object of this kind.
    type Op: Serialize + DeserializeOwned + fmt::Debug + Send;
    /// What a new object is created from.
    type Init: Serialize + DeserializeOwned + fmt::Debug + Send;

    /// A new object's contents.
    fn new(init: Self::Init) -> Result<Self>;

    /// Calls `f` on each stored value (whose `refs` are references the object holds).
    fn for_each_value(&mut self, f: &mut dyn FnMut(&mut Blob));

    /// The objects the values `op` would store refer to (one reference each; see
    /// [`refs_of`]).
    fn incoming(op: &Self::Op) -> Vec<u64>;

    /// For an operation that waits (a `get` on an empty queue, an `acquire` of a held
    /// lock): how long it may, and what to answer when it may not. `None` when `op` can be
    /// applied now.
    fn must_wait(&self, op: &Self::Op, conn: u64) -> Option<Pending> {
        let _ = (op, conn);
        None
    }

    /// Applies `op` for connection `conn`. The references held by values it overwrites,
    /// removes without returning, or does not store after all (a lost compare-and-swap) are
    /// appended to `dropped`; on an error nothing was stored or removed.
    fn apply(&mut self, op: Self::Op, conn: u64, dropped: &mut Vec<u64>) -> Result<(Reply, Out)>;

    /// Puts values taken by [`Out::Dequeued`] whose reply could not be delivered back, in
    /// front, in order.
    fn put_back(&mut self, items: Vec<Blob>) {
        let _ = items;
    }

    /// Frees what connection `conn` held (a lock) when it ended; whether it held anything.
    fn release_held_by(&mut self, conn: u64) -> bool {
        let _ = conn;
        false
    }
}

/// A kind's place in the list of kinds: the variant of `Op` and `Init` its operations and
/// contents travel as. Implemented only by the `kinds!` registration in `kinds.rs`.
pub(crate) trait Registered: ObjectKind {
    /// The variant's index in `Op` and `Init`.
    const TAG: u32;
}

/// Whether the values in a reply are copies of stored ones (the client gets new references)
/// or were taken out of the object (the client gets the object's references).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Out {
    Copied,
    Taken,
    /// Taken, and put back with [`ObjectKind::put_back`] if the reply is not delivered.
    Dequeued,
}

/// An operation that has to wait: how long it may, and its answer when it may not.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) wait: Wait,
    /// The answer of a call that may not wait at all ([`Wait::No`]).
    pub(crate) busy: Response,
    /// The answer when the time allowed has run out.
    pub(crate) expired: Response,
    /// For a state that changes without any operation on the object (a pool's call
    /// finishing): how often to check again.
    pub(crate) poll: Option<Duration>,
}

impl Pending {
    /// Waits as `wait` allows, failing with `busy` if it allows none and with
    /// [`Error::Timeout`] when the time is up.
    pub(crate) fn or_fail(wait: Wait, busy: Error) -> Pending {
        Pending {
            wait,
            busy: Err(busy),
            expired: Err(Error::Timeout),
            poll: None,
        }
    }
}

/// The ids in `blobs`' references, in order.
pub(crate) fn refs_of<'a>(blobs: impl IntoIterator<Item = &'a Blob>) -> Vec<u64> {
    blobs
        .into_iter()
        .flat_map(|b| b.refs.iter().copied())
        .collect()
}

/// Appends the references `blob` held to `dropped` (it was overwritten, removed or not stored).
pub(crate) fn discard(blob: Blob, dropped: &mut Vec<u64>) {
    dropped.extend(blob.refs);
}

/// `i` as an index into `len` items, or [`Error::OutOfRange`].
pub(crate) fn index(i: u64, len: usize) -> Result<usize> {
    match usize::try_from(i) {
        Ok(i) if i < len => Ok(i),
        _ => Err(Error::OutOfRange {
            index: usize::try_from(i).unwrap_or(usize::MAX),
            len,
        }),
    }
}

/// An operation sent to an object of another kind.
pub(crate) fn wrong_kind(ty: &Type) -> Error {
    Error::InvalidArgument(format!("that operation does not apply to a {ty}"))
}

/// Applies `op`, expecting it to drop no reference (for the kinds' tests).
#[cfg(test)]
pub(crate) fn apply_keeping_refs<K: ObjectKind>(contents: &mut K, op: K::Op) -> Result<Reply> {
    let mut dropped = Vec::new();
    let reply = contents.apply(op, 0, &mut dropped).map(|(r, _)| r);
    assert!(dropped.is_empty(), "dropped {dropped:?}");
    reply
}
