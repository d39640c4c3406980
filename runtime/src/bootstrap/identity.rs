//! Who this process is: `MainProcess`, or the name, daemon flag and parent a child was given
//! in its bootstrap; and the numbers of the children it names.
//!
//! Set by the router (`route.rs`) in a child (once, or again in a child made by `fork`); read
//! everywhere. Imports nothing of `mp`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Who this process is: filled in by the bootstrap in a child, defaults in the main process.
pub(crate) struct Identity {
    pub(crate) name: String,
    pub(crate) daemon: bool,
    /// The parent's pid: `Some` exactly in a process started by `mp`.
    pub(crate) parent: Option<u32>,
    /// The parent's name (`MainProcess`, `Process-1`, ...), in a process started by `mp`.
    pub(crate) parent_name: String,
}

static IDENTITY: Mutex<Option<&'static Identity>> = Mutex::new(None);

/// This process's identity (the main process's, unless the router set a child's).
pub(crate) fn identity() -> &'static Identity {
    let mut id = IDENTITY.lock().unwrap_or_else(|e| e.into_inner());
    id.get_or_insert_with(|| {
        Box::leak(Box::new(Identity {
            name: "MainProcess".to_owned(),
            daemon: false,
            parent: None,
            parent_name: String::new(),
        }))
    })
}

/// Called by the router, before the child runs anything else: once in a spawned child, and
/// again in a child made by `fork`, which replaces the identity it copied from its parent.
pub(crate) fn set(identity: Identity) {
    *IDENTITY.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::leak(Box::new(identity)));
}

/// Numbers `Process-N` names.
static COUNTER: AtomicU64 = AtomicU64::new(1);

/// The number of the next child this process names (`Process-N`, `mp-manager-N`).
pub(crate) fn next_child_number() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// In a child made by `fork`: numbers its own children from 1, as a spawned child does (and
/// as Python resets its counter in a forked child).
pub(crate) fn restart_numbering() {
    COUNTER.store(1, Ordering::Relaxed);
}
