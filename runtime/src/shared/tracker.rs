//! The resource tracker: a small helper process, started on the first named segment a process
//! creates, that removes the names that process leaves behind when it dies, even by `SIGKILL`
//! (Python's `resource_tracker`). The creator writes `+name` / `-name` lines to a pipe; at
//! end-of-file (the creator is gone) the tracker unlinks every name still registered.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::sys;

/// Marks the tracker process: the read end's descriptor number.
pub(crate) const TRACKER_ENV: &str = "MP_RESOURCE_TRACKER";

/// This process's pipe to its tracker, once started.
static TRACKER: Mutex<Option<std::fs::File>> = Mutex::new(None);

fn send(line: &str) -> Result<()> {
    let mut tracker = TRACKER.lock().unwrap_or_else(|e| e.into_inner());
    if tracker.is_none() {
        *tracker = Some(start()?);
    }
    let pipe = tracker.as_mut().expect("started above");
    // One `write` of under `PIPE_BUF` bytes: atomic, never interleaved with another line.
    pipe.write_all(line.as_bytes())
        .map_err(Error::io("cannot reach the resource tracker"))
}

fn start() -> Result<std::fs::File> {
    // Reading the hook keeps it (and its `.init_array` entry) in this binary.
    std::hint::black_box(&sys::CHILD_HOOK);
    let (read, write) = sys::pipe().map_err(Error::io("cannot create the tracker pipe"))?;
    let env = [(TRACKER_ENV, read.as_raw_fd().to_string())];
    let mut child = sys::spawn_self("mp-resource-tracker", &[], &env, &[read.as_fd()], false)
        .map_err(Error::io("cannot start the resource tracker"))?;
    drop(read);
    // Reap it whenever it exits (at this process's end, normally), so it is never a zombie.
    let _ = std::thread::Builder::new()
        .name("mp-tracker-reaper".into())
        .spawn(move || child.wait());
    Ok(std::fs::File::from(write))
}

/// Registers a segment name this process created and must remove.
pub(crate) fn register(name: &str) -> Result<()> {
    send(&format!("+{name}\n"))
}

/// Removes a name from the tracker's list (it was unlinked, or is kept on purpose).
pub(crate) fn unregister(name: &str) {
    let _ = send(&format!("-{name}\n"));
}

/// The tracker's main loop, run by the pre-`main` hook in a process started by [`start`].
pub(crate) fn run(spec: &str) -> i32 {
    sys::ignore_interrupts();
    let Some(fd) = spec.parse().ok().and_then(sys::adopt_inherited_fd) else {
        eprintln!("mp: malformed {TRACKER_ENV}={spec:?}");
        return 70;
    };
    let names = track(fd);
    for name in names {
        if sys::shm_unlink(&name).is_ok() {
            eprintln!("mp: removed leaked shared memory segment {name:?}");
        }
    }
    0
}

fn track(fd: OwnedFd) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in BufReader::new(std::fs::File::from(fd)).lines() {
        let Ok(line) = line else { break };
        if let Some(name) = line.strip_prefix('+') {
            names.insert(name.to_owned());
        } else if let Some(name) = line.strip_prefix('-') {
            names.remove(name);
        }
    }
    names
}
