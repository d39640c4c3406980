//! Who this process is: `MainProcess`, or the name, daemon flag and parent a child was given
//! in its bootstrap; its auth key; and the numbers of the children it names.
//!
//! Set by the router (`route.rs`) in a child (once, or again in a child made by `fork`); read
//! everywhere. Imports nothing of `mp` but `sys` (for random bytes) and the error type.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, Result};
use crate::sys;

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

/// The variable a main process takes its auth key from, when set and not empty.
pub(crate) const AUTHKEY_ENV: &str = "MP_AUTHKEY";

/// This process's auth key, once read or set.
static AUTHKEY: Mutex<Option<Arc<[u8]>>> = Mutex::new(None);

/// This process's auth key (Python's `current_process().authkey`): the one set last
/// ([`set_authkey`]: by the program, or by the router from the parent's bootstrap), else, in
/// the main process, `MP_AUTHKEY`'s bytes when that is set and not empty, else 32 random bytes
/// drawn once.
pub(crate) fn authkey() -> Result<Arc<[u8]>> {
    let mut key = AUTHKEY.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(key) = &*key {
        return Ok(Arc::clone(key));
    }
    let fresh: Arc<[u8]> = match std::env::var_os(AUTHKEY_ENV) {
        Some(env) if !env.is_empty() => {
            Arc::from(std::os::unix::ffi::OsStrExt::as_bytes(env.as_os_str()))
        }
        _ => {
            let mut bytes = [0u8; 32];
            sys::net::random_bytes(&mut bytes)
                .map_err(Error::io("cannot read random bytes for the auth key"))?;
            Arc::from(&bytes[..])
        }
    };
    *key = Some(Arc::clone(&fresh));
    Ok(fresh)
}

/// Replaces this process's auth key (children started from now on inherit the new one).
pub(crate) fn set_authkey(key: &[u8]) {
    *AUTHKEY.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::from(key));
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
