//! Who this process is: `MainProcess`, or the name, daemon flag and parent a child was given
//! in its bootstrap; its auth key; and the numbers of the children it names.
//!
//! Set once by the router (`route.rs`) in a child; read everywhere. Imports nothing of `mp`
//! but `sys` (for random bytes).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

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

/// The variable a main process takes its auth key from, when set and not empty.
pub(crate) const AUTHKEY_ENV: &str = "MP_AUTHKEY";

/// This process's auth key, once read or set.
static AUTHKEY: Mutex<Option<Arc<[u8]>>> = Mutex::new(None);

/// This process's auth key (Python's `current_process().authkey`): the one set last
/// ([`set_authkey`]: by the program, or by the router from the parent's bootstrap), else, in
/// the main process, `MP_AUTHKEY`'s bytes when that is set and not empty, else 32 random bytes
/// drawn once.
pub(crate) fn authkey() -> io::Result<Arc<[u8]>> {
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
            sys::net::random_bytes(&mut bytes)?;
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
