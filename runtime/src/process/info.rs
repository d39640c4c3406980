//! What `mp` knows about processes: `ProcessInfo` (the current process, a running child),
//! `current_process`, `active_children`, `parent_process` and `ParentProcess`, and this
//! process's auth key. Must not start, join or signal processes (that is `Process`, in
//! `mod.rs`).

use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::bootstrap::identity::{self, identity};
use crate::error::{Error, Result};
use crate::sys;

/// What `mp` knows about a process: the current one ([`current_process`]) or a running child
/// ([`active_children`]). Its `Debug` output leaves the auth key out.
#[derive(Clone)]
pub struct ProcessInfo {
    name: String,
    pid: u32,
    daemon: bool,
    parent: Option<u32>,
    /// Read when first asked for (so that listing processes or logging draws no key).
    authkey: OnceLock<Arc<[u8]>>,
}

impl fmt::Debug for ProcessInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessInfo")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("daemon", &self.daemon)
            .field("parent", &self.parent)
            .finish_non_exhaustive()
    }
}

impl ProcessInfo {
    /// `MainProcess` in the main process, the child's name (e.g. `Process-1`) in a child.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// Whether this process was started as a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }
    /// The parent's pid, when this process was started by `mp`.
    pub fn parent_pid(&self) -> Option<u32> {
        self.parent
    }

    /// The auth key (Python's `current_process().authkey`): the default key of
    /// [`Manager::builder`](crate::Manager::builder),
    /// [`Listener::bind_with_process_key`](crate::Listener::bind_with_process_key) and
    /// [`client_with_process_key`](crate::connection::client_with_process_key), so that a
    /// process and its children reach each other's servers without passing a key around.
    ///
    /// Where it comes from, first match wins: [`set_authkey`](ProcessInfo::set_authkey) in
    /// this process; in a child, its parent's key when the child was started; in the main
    /// process, the bytes of the `MP_AUTHKEY` environment variable when it is set and not
    /// empty; otherwise 32 random bytes, drawn once. The value is read at the first call on
    /// this `ProcessInfo`. For an entry of [`active_children`]: this process's key, which a
    /// child inherits when it starts (so its own, unless this process set another since).
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn child_key() -> Vec<u8> {
    ///     mp::current_process().authkey().to_vec()
    /// }
    ///
    /// let mine = mp::current_process().authkey().to_vec();
    /// assert!(!mine.is_empty());
    /// assert_eq!(mp::spawn(child_key, ())?.join()?, mine);
    /// # Ok::<(), mp::Error>(())
    /// ```
    ///
    /// # Panics
    /// If this process has no key yet and the OS cannot give it random bytes for one.
    pub fn authkey(&self) -> &[u8] {
        self.authkey
            .get_or_init(|| identity::authkey().unwrap_or_else(|e| panic!("mp: {e}")))
    }

    /// Sets the current process's auth key (Python's `current_process().authkey = key`):
    /// used by default from now on, and inherited by the children started from now on. Only
    /// for the current process ([`Error::InvalidArgument`] for another); the key must not be
    /// empty.
    ///
    /// ```
    /// mp::current_process().set_authkey(b"a long shared secret")?;
    /// assert_eq!(mp::current_process().authkey(), b"a long shared secret");
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn set_authkey(&mut self, key: impl AsRef<[u8]>) -> Result<()> {
        let key = key.as_ref();
        if self.pid != sys::getpid() {
            return Err(Error::InvalidArgument(format!(
                "only the current process's auth key can be set, not {}'s (pid {})",
                self.name, self.pid
            )));
        }
        crate::connection::auth::check_key(key)?;
        identity::set_authkey(key);
        self.authkey = OnceLock::from(Arc::<[u8]>::from(key));
        Ok(())
    }
}

/// The current process's name and pid (Python's `multiprocessing.current_process()`).
///
/// ```
/// assert_eq!(mp::current_process().name(), "MainProcess");
/// assert_eq!(mp::current_process().pid(), std::process::id());
/// ```
pub fn current_process() -> ProcessInfo {
    let id = identity();
    ProcessInfo {
        name: id.name.clone(),
        pid: sys::getpid(),
        daemon: id.daemon,
        parent: id.parent,
        authkey: OnceLock::new(),
    }
}

/// The children this process started that are still running (Python's
/// `multiprocessing.active_children()`): pool workers and manager servers are not listed, as
/// in Python, where they are not `Process` objects of the caller's.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn nap(ms: u64) {
///     std::thread::sleep(std::time::Duration::from_millis(ms));
/// }
///
/// let mut p = mp::spawn(nap, 200)?;
/// let children = mp::active_children();
/// assert!(children.iter().any(|c| c.pid() == p.pid().unwrap()));
/// p.join()?;
/// assert!(!mp::active_children().iter().any(|c| Some(c.pid()) == p.pid()));
/// # Ok::<(), mp::Error>(())
/// ```
pub fn active_children() -> Vec<ProcessInfo> {
    let me = sys::getpid();
    crate::bootstrap::reap::active()
        .into_iter()
        .map(|(pid, name, daemon)| ProcessInfo {
            name,
            pid,
            daemon,
            parent: Some(me),
            authkey: OnceLock::new(),
        })
        .collect()
}

/// The process that started this one, in a child started by `mp` (Python's
/// `multiprocessing.parent_process()`); `None` in the main process.
///
/// ```
/// assert!(mp::parent_process().is_none()); // the main process has no mp parent
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    let id = identity();
    Some(ParentProcess {
        name: id.parent_name.clone(),
        pid: id.parent?,
    })
}

/// The parent of a child started by `mp` (see [`parent_process`]).
#[derive(Debug, Clone)]
pub struct ParentProcess {
    name: String,
    pid: u32,
}

impl ParentProcess {
    /// The parent's name (`MainProcess`, or its own name if it is a child itself).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The parent's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// Whether the parent is still running. A child exits by itself within milliseconds of its
    /// parent's death, so this is `false` only in that short window.
    pub fn is_alive(&self) -> bool {
        sys::parent_pid() == self.pid
    }
}
