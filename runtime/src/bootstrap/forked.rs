//! A child made by `fork` (the `fork` and `forkserver` start methods): the output pipes it may
//! be given, and its way into the pre-`main` router, which it enters as a re-executed child
//! does. Shared by `spawn.rs` and `forkserver.rs`; must not start processes itself.

use std::os::fd::OwnedFd;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::sys;

/// What a forked child runs on, left for the router (`route.rs`), which the child enters
/// through the pre-`main` hook as a re-executed child does.
pub(crate) struct Forked {
    /// The bootstrap socket.
    pub(crate) boot: OwnedFd,
    /// The read end of the parent's liveness pipe.
    pub(crate) liveness: OwnedFd,
    /// Whether the process-wide setup of a child (`SIGPIPE` ignored, the descriptor limit
    /// raised, the program's name) is done already: inherited from the fork server, which did
    /// it as it started; not from a user's process (the `fork` method).
    pub(crate) set_up: bool,
}

static FORKED: Mutex<Option<Forked>> = Mutex::new(None);

/// Taken by the router: set only in a child made by `fork` (either start method).
pub(crate) fn take_forked() -> Option<Forked> {
    FORKED.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// In a child made by `fork`: runs the router on `forked`, as the pre-`main` hook does in a
/// re-executed child, and exits.
pub(crate) fn enter_forked(forked: Forked) -> ! {
    *FORKED.lock().unwrap_or_else(|e| e.into_inner()) = Some(forked);
    (sys::CHILD_HOOK)();
    sys::exit_now(crate::error::CHILD_FAILED)
}

/// Output pipes for a child started without `exec` under `cargo mp run`: `(read, write)` for
/// stdout, then for stderr.
pub(crate) type OutputPipes = ((OwnedFd, OwnedFd), (OwnedFd, OwnedFd));

pub(crate) fn output_pipes() -> Result<OutputPipes> {
    let pipe = || sys::pipe().map_err(Error::io("cannot create an output pipe"));
    Ok((pipe()?, pipe()?))
}
