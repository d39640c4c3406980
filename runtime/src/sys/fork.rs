//! Children without `exec`, and the one handle every start method returns: [`Child`] (a pid
//! this process may wait for), `fork` of the calling process (refused by the caller while it has
//! other threads: see [`thread_count`]), and the zygote's `clone(CLONE_PARENT)`, which makes
//! the new process a child of the zygote's own parent, so that the process that asked for it
//! waits for it, signals it and reads its exit status exactly as for a re-executed child.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// A child process of this one, however it was started (re-executed, forked, or forked by the
/// zygote on this process's behalf): waited for by pid. The same methods as
/// `std::process::Child`.
#[derive(Debug)]
pub(crate) struct Child {
    pid: u32,
    /// Set once reaped: the pid may belong to another process after that.
    status: Option<ExitStatus>,
    /// The read end of the child's stdout, when its output is piped to this process.
    pub(crate) stdout: Option<File>,
    /// The read end of the child's stderr, when its output is piped to this process.
    pub(crate) stderr: Option<File>,
}

impl Child {
    /// A handle on child `pid` of this process, with its piped output if any.
    pub(crate) fn from_pid(pid: u32, stdout: Option<File>, stderr: Option<File>) -> Child {
        Child {
            pid,
            status: None,
            stdout,
            stderr,
        }
    }

    /// Takes over a child started by `std::process::Command` (its handle only closes its
    /// pipes when dropped; it neither waits nor kills).
    pub(crate) fn from_std(mut child: std::process::Child) -> Child {
        let stdout = child.stdout.take().map(|s| File::from(OwnedFd::from(s)));
        let stderr = child.stderr.take().map(|s| File::from(OwnedFd::from(s)));
        Child::from_pid(child.id(), stdout, stderr)
    }

    /// The child's pid.
    pub(crate) fn id(&self) -> u32 {
        self.pid
    }

    /// Waits for the child to end and reaps it (at once if it was reaped already).
    pub(crate) fn wait(&mut self) -> io::Result<ExitStatus> {
        self.wait_flags(0)
            .map(|s| s.expect("a blocking wait returns a status"))
    }

    /// The child's exit status if it ended (reaping it), `None` while it runs.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.wait_flags(libc::WNOHANG)
    }

    fn wait_flags(&mut self, flags: i32) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let mut raw = 0;
        loop {
            // SAFETY: `waitpid` writes the status into the local integer it is given.
            let r = unsafe { libc::waitpid(self.pid as libc::pid_t, &mut raw, flags) };
            match r {
                0 => return Ok(None),
                -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                -1 => return Err(io::Error::last_os_error()),
                _ => {
                    let status = ExitStatus::from_raw(raw);
                    self.status = Some(status);
                    return Ok(Some(status));
                }
            }
        }
    }

    /// Stops the child at once (`SIGKILL`); nothing to do if it was reaped already.
    pub(crate) fn kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        match super::signal::kill(self.pid, super::signal::Signal::Kill) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            r => r,
        }
    }
}

/// Which side of a `fork` (or `clone`) the caller is on.
pub(crate) enum Forked {
    /// The original process; the new child's pid.
    Parent(u32),
    /// The new process.
    Child,
}

/// How many threads this process has (the entries of `/proc/self/task`).
pub(crate) fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// `fork()`: a copy of the calling process, which must be single-threaded (the caller checks
/// with [`thread_count`]): a lock held by another thread would stay locked in the copy forever.
pub(crate) fn fork_process() -> io::Result<Forked> {
    // SAFETY: the caller guarantees the process is single-threaded, so the copy holds no lock
    // that another thread held; the child only runs `mp`'s bootstrap and exits with `_exit`.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            super::proc::forget_tid();
            Ok(Forked::Child)
        }
        pid => Ok(Forked::Parent(pid as u32)),
    }
}

/// `clone(CLONE_PARENT)`: a copy of the calling (single-threaded) zygote whose parent is the
/// zygote's parent, which can then wait for it like any child of its own. The raw system
/// call runs no `atfork` handler: the zygote is `mp`'s own single-threaded loop, which holds
/// no lock at this point.
pub(crate) fn clone_sibling() -> io::Result<Forked> {
    let flags = (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: with no new stack (0) the child continues on a copy of the caller's stack, as
    // after `fork`; the zygote is single-threaded, so the copy holds no other thread's lock.
    // The remaining arguments (parent tid, child tid, tls) are unused without their flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    match r {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            super::proc::forget_tid();
            Ok(Forked::Child)
        }
        pid => Ok(Forked::Parent(pid as u32)),
    }
}

/// In a forked child: makes `fd` this process's descriptor `target` (0, 1 or 2), or opens
/// `/dev/null` there when `fd` is `None`.
pub(crate) fn redirect_stdio(fd: Option<BorrowedFd<'_>>, target: RawFd) -> io::Result<()> {
    let null;
    let source = match fd {
        Some(fd) => fd.as_raw_fd(),
        None => {
            null = File::options()
                .read(target == 0)
                .write(target != 0)
                .open("/dev/null")?;
            null.as_raw_fd()
        }
    };
    // SAFETY: `dup2` onto a standard stream number; both are valid descriptors.
    if unsafe { libc::dup2(source, target) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of descriptor `fd`, which the caller knows is open and owned by nothing
/// else (a forked child's copy of a descriptor whose owner it will never use).
pub(crate) fn own_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: per the caller, `fd` is open and no other handle in this process will use or
    // close it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Waits for a child to end, at most `timeout`; `None` if it is still running.
pub(crate) fn wait_child_timeout(
    child: &mut Child,
    timeout: std::time::Duration,
) -> io::Result<Option<std::process::ExitStatus>> {
    let deadline = std::time::Instant::now() + timeout;
    let mut pause = std::time::Duration::from_micros(100);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(std::time::Duration::from_millis(10));
    }
}
