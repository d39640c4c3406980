//! Children after their start: the running and the detached (a dropped running `Process`, waited
//! for by a reaper thread), and what a process does as it ends through `mp` (daemons
//! terminated, the others waited for), as Python's `util._exit_function` does.

use crate::sys::Child;
use std::sync::Mutex;
use std::thread::JoinHandle;

use crate::error::{Error, ExitStatus, Result};
use crate::sys;

pub(crate) fn status_of(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(signal) => ExitStatus::Signaled(signal),
        None => ExitStatus::Exited(status.code().unwrap_or(-1)),
    }
}

pub(crate) fn wait_child(child: &mut Child) -> Result<ExitStatus> {
    let status = child
        .wait()
        .map(status_of)
        .map_err(Error::io("cannot wait for the child"))?;
    crate::run_support::record_exit(child.id(), status);
    Ok(status)
}

/// A started child that was not yet joined.
pub(crate) struct Running {
    pub(crate) pid: u32,
    pub(crate) daemon: bool,
    pub(crate) name: String,
}

/// Children that were started and not yet joined or reaped.
static RUNNING: Mutex<Vec<Running>> = Mutex::new(Vec::new());
/// Reapers of children whose handles were dropped while running: `(pid, daemon, reaper)`.
static DETACHED: Mutex<Vec<(u32, bool, JoinHandle<()>)>> = Mutex::new(Vec::new());

pub(crate) fn register_running(child: Running) {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(child);
}

/// The started children that have not ended (Python's `active_children`), as
/// `(pid, name, daemon)`.
pub(crate) fn active() -> Vec<(u32, String, bool)> {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|c| matches!(sys::peek_exit(c.pid), Ok(None)))
        .map(|c| (c.pid, c.name.clone(), c.daemon))
        .collect()
}

pub(crate) fn unregister_running(pid: u32) {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|c| c.pid != pid);
}

pub(crate) fn detach(mut child: Child) {
    let pid = child.id();
    let daemon = RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|c| c.pid == pid)
        .is_some_and(|c| c.daemon);
    let reaper = std::thread::Builder::new()
        .name(format!("mp-reaper-{pid}"))
        .spawn(move || {
            if let Ok(status) = child.wait() {
                crate::run_support::record_exit(pid, status_of(status));
            }
            unregister_running(pid);
        });
    if let Ok(reaper) = reaper {
        DETACHED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((pid, daemon, reaper));
    }
}

/// Called by `mp::main!` after the user's `main` body: like Python at exit, terminates daemon
/// children and waits for the others.
#[doc(hidden)]
pub fn leave_main() {
    finish_children();
    crate::run_support::drain_output();
    crate::run_support::record_peak();
    // Rank 0 of an MPI job: stop the worker ranks, then finalize.
    #[cfg(feature = "mpi")]
    crate::mpi::leave();
}

/// What a process does as it ends through `mp` (Python's `util._exit_function`): terminates
/// its daemon children and waits for the others, so none is left running or a zombie.
pub(crate) fn finish_children() {
    tracing::info!(target: "mp", "process shutting down");
    let running: Vec<(u32, bool)> = RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|c| (c.pid, c.daemon))
        .collect();
    for (pid, daemon) in running {
        if daemon {
            let _ = sys::kill(pid, sys::Signal::Terminate);
        }
    }
    let detached = std::mem::take(&mut *DETACHED.lock().unwrap_or_else(|e| e.into_inner()));
    for (_, _, reaper) in detached {
        let _ = reaper.join();
    }
}

/// In a child made by `fork`: the parent's children are not this process's to wait for or
/// terminate (their reaper threads do not exist here either).
pub(crate) fn forget_parents_children() {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let detached = std::mem::take(&mut *DETACHED.lock().unwrap_or_else(|e| e.into_inner()));
    // The handles name threads of the parent: joining one here would wait forever.
    std::mem::forget(detached);
}
