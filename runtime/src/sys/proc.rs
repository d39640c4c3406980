//! This process and its children: ids, `/proc` readings, names, exit, the environment before
//! `main`, and reading a child's end without reaping it.
#![allow(unsafe_code)]

use std::io::{self};

/// The calling process's id.
pub(crate) fn getpid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// The calling thread's id (equal to the process id in a single-threaded process).
///
/// Cached per thread: every lock operation needs it, and a system call would double the cost
/// of an uncontended lock. A process made by `fork` (the `fork` and `forkserver` start
/// methods) forgets its copy of the cache at once ([`forget_tid`]).
pub(crate) fn gettid() -> u32 {
    TID.with(|t| match t.get() {
        0 => {
            let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
            t.set(tid);
            tid
        }
        tid => tid,
    })
}

thread_local! {
    /// The calling thread's id, 0 until read.
    static TID: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// In a forked child: drops the thread id cached by the parent's thread.
pub(crate) fn forget_tid() {
    TID.with(|t| t.set(0));
}

/// This process's peak resident memory so far, in KiB (`VmHWM`).
pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The CPU the calling thread runs on now (a hint: it may move at any time).
pub(crate) fn current_cpu() -> u32 {
    rustix::thread::sched_getcpu() as u32
}

/// Whether the thread (or process) `tid` still runs: it exists and is not a zombie.
///
/// Reads `/proc/<tid>/stat`, which exists for every thread id, not only for process ids.
/// A recycled id looks alive; ids are recycled only after the whole `pid_max` range is used.
pub(crate) fn thread_alive(tid: u32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{tid}/stat")) else {
        return false;
    };
    // The state letter follows the last `)` (the command name may contain parentheses).
    let state = stat
        .iter()
        .rposition(|&b| b == b')')
        .and_then(|i| stat.get(i + 2).copied());
    !matches!(state, Some(b'Z' | b'X' | b'x') | None)
}

/// Raises the soft limit of open descriptors to the hard limit: descriptors in flight inside
/// queues count against it.
pub(crate) fn raise_fd_limit() {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, raised);
    }
}

/// Exits the process at once, running no destructors and no `atexit` handlers.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

/// This process's parent's pid (the reaper that adopted it, once the parent died).
pub(crate) fn parent_pid() -> u32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
}

/// A descriptor for child `pid` that becomes readable when it ends (a pidfd, close-on-exec;
/// Linux 5.3 and later). Open it before the child is reaped: the number may be reused after.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<std::os::fd::OwnedFd> {
    use rustix::process::{Pid, PidfdFlags};
    let Some(pid) = Pid::from_raw(pid as i32) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// How child `pid` ended, without reaping it (`waitid` with `WNOWAIT`); `None` while it runs.
pub(crate) fn peek_exit(pid: u32) -> io::Result<Option<std::process::ExitStatus>> {
    use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
    use std::os::unix::process::ExitStatusExt;
    let Some(pid) = Pid::from_raw(pid as i32) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    let Some(status) = waitid(WaitId::Pid(pid), options)? else {
        return Ok(None);
    };
    // A wait status as `waitpid` encodes it: the code in the second byte, or the signal.
    Ok(match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => Some(std::process::ExitStatus::from_raw((code & 0xff) << 8)),
        (None, Some(signal)) => Some(std::process::ExitStatus::from_raw(signal & 0x7f)),
        (None, None) => None,
    })
}

/// Names this thread (`PR_SET_NAME`: what `ps`, `top` and `pgrep` show for a process's main
/// thread), cut to the kernel's 15 bytes at a character boundary.
pub(crate) fn set_thread_name(name: &str) {
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    if let Ok(name) = std::ffi::CString::new(&name[..end]) {
        let _ = rustix::thread::set_name(&name);
    }
}

/// The file name of the running executable (`/proc/self/exe`'s target), as `ps` should show
/// this program's children.
pub(crate) fn program_name() -> Option<String> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let name = exe.file_name()?.to_string_lossy().into_owned();
    // A binary replaced on disk reads as "name (deleted)".
    Some(name.trim_end_matches(" (deleted)").to_owned())
}

/// Removes a variable from this process's environment.
///
/// Called only from the pre-`main` hook, before any thread other than the main one exists.
pub(crate) fn unset_env(key: &str) {
    // SAFETY: runs before `main` in a freshly started child, where no other thread can be
    // reading the environment concurrently.
    unsafe { std::env::remove_var(key) }
}
