//! Signals: sending one to a child ([`Signal`], typed), their names, and the dispositions a
//! child or helper sets for itself.
#![allow(unsafe_code)]

use std::io::{self};

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
