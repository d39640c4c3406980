//! Who this process is: `MainProcess`, or the name, daemon flag and parent a child was given
//! in its bootstrap; and the numbers of the children it names.
//!
//! Set once by the router (`route.rs`) in a child; read everywhere. Imports nothing of `mp`.

use std::sync::OnceLock;
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

static IDENTITY: OnceLock<Identity> = OnceLock::new();

/// This process's identity (the main process's, unless the router set a child's).
pub(crate) fn identity() -> &'static Identity {
    IDENTITY.get_or_init(|| Identity {
        name: "MainProcess".to_owned(),
        daemon: false,
        parent: None,
        parent_name: String::new(),
    })
}

/// Called by the router once, before the child runs anything else.
pub(crate) fn set(identity: Identity) {
    let _ = IDENTITY.set(identity);
}

/// Numbers `Process-N` names.
static COUNTER: AtomicU64 = AtomicU64::new(1);

/// The number of the next child this process names (`Process-N`, `mp-manager-N`).
pub(crate) fn next_child_number() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}
