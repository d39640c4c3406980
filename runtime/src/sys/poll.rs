//! Waiting for descriptors: `poll` on one or many, and an `eventfd` wake-up for a thread that
//! waits on several.

use std::io::{self};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};

pub(super) fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos().into(),
    }
}

/// Waits until `fd` is readable (or its peer hung up); `false` when `timeout` passed first.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    poll_one(fd, PollFlags::IN, timeout)
}

/// Waits until `fd` is writable; `false` when `timeout` passed first.
pub(crate) fn poll_writable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    poll_one(fd, PollFlags::OUT, timeout)
}

fn poll_one(fd: BorrowedFd<'_>, flags: PollFlags, timeout: Option<Duration>) -> io::Result<bool> {
    let mut fds = [PollFd::from_borrowed_fd(fd, flags)];
    let ts = timeout.map(timespec);
    loop {
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Err(rustix::io::Errno::INTR) => continue,
            Ok(n) => return Ok(n > 0),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A wake-up descriptor (an `eventfd`): [`notify`](Wakeup::notify) makes it readable until
/// [`drain`](Wakeup::drain); for a thread that waits in [`poll_many`].
#[derive(Debug)]
pub(crate) struct Wakeup {
    fd: OwnedFd,
}

impl Wakeup {
    pub(crate) fn new() -> io::Result<Wakeup> {
        let fd = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        Ok(Wakeup { fd })
    }

    /// Makes the descriptor readable (idempotent until drained).
    pub(crate) fn notify(&self) {
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Consumes pending notifications.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut buf);
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Waits until at least one of `fds` is readable or hung up, or `timeout` passes; pushes the
/// indices of the ready ones onto `ready` (left empty on timeout).
pub(crate) fn poll_many(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
    ready: &mut Vec<usize>,
) -> io::Result<()> {
    ready.clear();
    let mut set: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
        .collect();
    let ts = timeout.map(timespec);
    loop {
        match rustix::event::poll(&mut set, ts.as_ref()) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => break,
        }
    }
    ready.extend(
        set.iter()
            .enumerate()
            .filter(|(_, p)| !p.revents().is_empty())
            .map(|(i, _)| i),
    );
    Ok(())
}
