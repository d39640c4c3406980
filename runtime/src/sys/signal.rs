//! Signals: sending one to a child ([`Signal`], typed), their names, the dispositions a
//! child or helper sets for itself, and the signal that kills a child with its parent.
#![allow(unsafe_code)]

use std::io::{self};
use std::os::fd::{AsRawFd, BorrowedFd};

/// A signal `mp` sends to a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// `SIGTERM`: asks it to stop.
    Terminate,
    /// `SIGKILL`: stops it at once.
    Kill,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Terminate => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        }
    }
}

/// Sends `signal` to process `pid`.
pub(crate) fn kill(pid: u32, signal: Signal) -> io::Result<()> {
    // SAFETY: `kill` has no memory-safety preconditions.
    let r = unsafe { libc::kill(pid as libc::pid_t, signal.number()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The conventional name of a signal, e.g. `SIGKILL`.
pub(crate) fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}

/// Ignores `SIGPIPE`, as std does before `main`; the child hook runs before std could.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: installing SIG_IGN for SIGPIPE has no memory-safety preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Ignores `SIGINT` and `SIGTERM` in this process (a helper that must outlive a Ctrl-C or a
/// group-wide terminate to clean up).
pub(crate) fn ignore_interrupts() {
    // SAFETY: installs the `SIG_IGN` disposition, which runs no code in this process.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
}

/// Ignores `SIGINT` in this process (a pool worker: Ctrl-C is the parent's to handle).
pub(crate) fn ignore_sigint() {
    // SAFETY: installs the `SIG_IGN` disposition, which runs no code in this process.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

/// Restores the default `SIGINT` disposition in this process (a pool worker: a `SIGINT` sent
/// to it alone ends it, and its task fails as interrupted), whatever it inherited.
pub(crate) fn default_sigint() {
    // SAFETY: installs the `SIG_DFL` disposition, which runs no code in this process.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
}

/// `F_SETSIG` (the same value on every Linux architecture; the `libc` crate names it for musl
/// only): the signal an `O_ASYNC` descriptor sends in place of `SIGIO`.
const F_SETSIG: libc::c_int = 10;

/// Has the kernel kill this process (`SIGKILL`) when the last write end of the pipe whose read
/// end is `read_end` closes: no thread waits for it. The process opens the pipe again (through
/// `/proc/self/fd`) for a description of its own, which it owns (`F_SETOWN`) and sets
/// `O_ASYNC` on, with `SIGKILL` as its signal (`F_SETSIG`): a pipe signals its readers when its
/// last writer goes. That descriptor stays open (close-on-exec) for the process's whole life;
/// a process made from this one by `fork` holds a copy that signals this process only.
///
/// Returns `Ok(false)` if every write end is closed already (no signal will come: the caller
/// exits itself), `Ok(true)` once armed; an error if `/proc` or `fcntl` refused.
pub(crate) fn kill_self_at_eof(read_end: BorrowedFd<'_>) -> io::Result<bool> {
    use rustix::fs::{Mode, OFlags};
    let path = format!("/proc/self/fd/{}", read_end.as_raw_fd());
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let own = rustix::fs::open(path, flags, Mode::empty())?;
    let fd = own.as_raw_fd();
    let check = |r: libc::c_int| {
        if r == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: `fcntl` on a descriptor this function owns, with integer arguments only: the
    // owner of its signals (this process), the signal, then the status flags (`O_ASYNC` added).
    unsafe {
        check(libc::fcntl(fd, libc::F_SETOWN, libc::getpid()))?;
        check(libc::fcntl(fd, F_SETSIG, libc::SIGKILL))?;
        check(libc::fcntl(
            fd,
            libc::F_SETFL,
            libc::O_NONBLOCK | libc::O_ASYNC,
        ))?;
    }
    // Armed from here on; a writer gone before that sent nothing, but reads as end-of-file.
    let mut byte = [0u8; 1];
    let open = match rustix::io::read(&own, &mut byte) {
        Ok(0) => false,
        Ok(_) | Err(rustix::io::Errno::AGAIN) => true,
        Err(e) => return Err(e.into()),
    };
    // Kept open for the process's life: closing it would disarm the signal.
    std::mem::forget(own);
    Ok(open)
}
