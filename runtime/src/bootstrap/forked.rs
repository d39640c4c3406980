//! A child made by `fork` (the `fork` and `forkserver` start methods): the output pipes it may
//! be given, and its way into the pre-`main` router, which it enters as a re-executed child
//! does. Shared by `spawn.rs` and `forkserver.rs`; must not start processes itself.

use std::os::fd::OwnedFd;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::sys;

/// The descriptors a forked child runs on, left for the router (`route.rs`), which the child
/// enters through the pre-`main` hook as a re-executed child does: `(bootstrap socket,
/// liveness pipe)`.
static FORKED: Mutex<Option<(OwnedFd, OwnedFd)>> = Mutex::new(None);

/// Taken by the router: set only in a child made by `fork` (either start method).
pub(crate) fn take_forked() -> Option<(OwnedFd, OwnedFd)> {
    FORKED.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// In a child made by `fork`: runs the router on `boot` and `liveness`, as the pre-`main` hook
/// does in a re-executed child, and exits.
pub(crate) fn enter_forked(boot: OwnedFd, liveness: OwnedFd) -> ! {
    *FORKED.lock().unwrap_or_else(|e| e.into_inner()) = Some((boot, liveness));
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
