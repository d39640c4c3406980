//! Sockets and pipes: `AF_UNIX` socketpairs and pipes kept above the standard descriptors,
//! sends and receives that carry descriptors next to bytes (`SCM_RIGHTS`), and adopting,
//! borrowing and duplicating descriptors.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// The most descriptors one `sendmsg` may carry (the kernel's `SCM_MAX_FD` is 253).
pub(crate) const MAX_FDS_PER_MSG: usize = 253;

/// Asks for a send buffer of `bytes` on `sock` (the kernel caps the request at
/// `net.core.wmem_max`) and returns the size in force afterwards, whether or not the request
/// was granted.
pub(crate) fn grow_send_buffer(sock: BorrowedFd<'_>, bytes: usize) -> io::Result<usize> {
    let _ = rustix::net::sockopt::set_socket_send_buffer_size(sock, bytes);
    Ok(rustix::net::sockopt::socket_send_buffer_size(sock)?)
}

/// A connected pair of `AF_UNIX` stream sockets, close-on-exec, both above the standard
/// descriptors (see [`above_stdio`]).
pub(crate) fn socketpair_stream() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    Ok((above_stdio(a)?, above_stdio(b)?))
}

/// `fd` itself, or, if it took the number of a closed standard stream (0, 1 or 2), a
/// close-on-exec duplicate numbered 3 or above.
///
/// A process whose stdout or stderr is closed gets those numbers back for its next
/// descriptors; one handed to a child there would be taken for the child's own stdout.
pub(crate) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?)
}

/// A connected pair of `AF_UNIX` packet sockets (message boundaries kept), close-on-exec.
pub(crate) fn socketpair_packet() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A close-on-exec pipe `(read, write)`, both ends above the standard descriptors.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((above_stdio(read)?, above_stdio(write)?))
}

/// Sends `bufs` with `fds` attached (at most [`MAX_FDS_PER_MSG`]); returns the bytes sent.
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<usize> {
    debug_assert!(fds.len() <= MAX_FDS_PER_MSG);
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MSG))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many descriptors for one message"));
    }
    let mut flags = SendFlags::NOSIGNAL;
    if nonblocking {
        flags |= SendFlags::DONTWAIT;
    }
    loop {
        match rustix::net::sendmsg(sock, bufs, &mut control, flags) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return Ok(r?),
        }
    }
}

/// Receives into `buf`, appending any descriptors that came along to `fds` (close-on-exec).
/// Returns the bytes received; 0 means the peer closed its end.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut VecDeque<OwnedFd>,
    nonblocking: bool,
) -> io::Result<usize> {
    let mut flags = RecvFlags::CMSG_CLOEXEC;
    if nonblocking {
        flags |= RecvFlags::DONTWAIT;
    }
    recvmsg_with_fds(sock, buf, fds, flags)
}

/// Copies the first message's bytes into `buf` and takes duplicates of its descriptors into
/// `fds` (close-on-exec) without removing either from `sock` (`MSG_PEEK`; on a Unix socket
/// a peek installs the descriptors in the peeker). Does not wait: `WouldBlock` when nothing
/// is queued; an error when descriptors did not fit.
pub(crate) fn peek_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut VecDeque<OwnedFd>,
) -> io::Result<usize> {
    let flags = RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT | RecvFlags::PEEK;
    recvmsg_with_fds(sock, buf, fds, flags)
}

/// Copies the first message's bytes into `buf` without removing it from `sock` and without
/// taking its descriptors. Does not wait: `WouldBlock` when nothing is queued.
pub(crate) fn peek_bytes(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::net::recv(sock, &mut *buf, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return Ok(r?.0),
        }
    }
}

fn recvmsg_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut VecDeque<OwnedFd>,
    flags: RecvFlags,
) -> io::Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MSG))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match rustix::net::recvmsg(sock, &mut [IoSliceMut::new(buf)], &mut control, flags) {
            Err(rustix::io::Errno::INTR) => continue,
            r => break r?,
        }
    };
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        return Err(io::Error::other(
            "descriptors were lost: control message truncated",
        ));
    }
    Ok(msg.bytes)
}

/// The pid of the process at the other end of a connected `AF_UNIX` socket.
pub(crate) fn peer_pid(sock: BorrowedFd<'_>) -> io::Result<u32> {
    let cred = rustix::net::sockopt::socket_peercred(sock)?;
    Ok(cred.pid.as_raw_nonzero().get() as u32)
}

/// Takes ownership of an inherited descriptor named by number (from the environment).
///
/// Returns `None` unless `fd` is open and refers to a socket or pipe; the caller must own it.
pub(crate) fn adopt_inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    if fd < 3 {
        return None;
    }
    // SAFETY: `fcntl(F_GETFD)` only queries; a closed descriptor yields -1.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return None;
    }
    // SAFETY: the descriptor is open, was handed to this process for this purpose by its parent
    // (its number came from the bootstrap variable) and nothing else in the process owns it.
    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let _ = rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC);
    Some(owned)
}

/// Blocks reading `fd` until end-of-file (every write end closed), then returns.
pub(crate) fn wait_for_eof(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 16];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => return,
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
    }
}

/// Borrows a raw descriptor by number.
///
/// # Safety
/// `fd` must be open, and stay open and refer to the same file, for all of `'a`: the caller
/// knows who owns it (typically a handle inside a value it holds for longer than the borrow).
pub(crate) unsafe fn borrow_raw_fd<'a>(fd: RawFd) -> BorrowedFd<'a> {
    // SAFETY: the caller guarantees that `fd` is open for `'a` (this function's contract).
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// A close-on-exec duplicate of `fd`.
pub(crate) fn dup_fd(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 3)?)
}
