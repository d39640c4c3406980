//! Network endpoints for managers and `Listener`/`Connection`: TCP and `AF_UNIX` stream
//! listeners (path or Linux abstract name), connecting, and the few socket options the
//! framing needs. Connected sockets leave here as plain descriptors for `wire/stream.rs`.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

/// Where a listener listens, in the platform's terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Endpoint {
    Tcp(SocketAddr),
    /// A filesystem path.
    UnixPath(PathBuf),
    /// A Linux abstract-namespace name: no file, nothing to clean up.
    UnixAbstract(Vec<u8>),
}

/// A bound, listening socket.
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Binds and listens on `endpoint`. A TCP port of 0 picks a free port ([`local`] says which).
    pub(crate) fn bind(endpoint: &Endpoint) -> io::Result<Listener> {
        Ok(match endpoint {
            Endpoint::Tcp(addr) => Listener::Tcp(TcpListener::bind(addr)?),
            Endpoint::UnixPath(path) => Listener::Unix(UnixListener::bind(path)?),
            Endpoint::UnixAbstract(name) => {
                let addr = UnixSocketAddr::from_abstract_name(name)?;
                Listener::Unix(UnixListener::bind_addr(&addr)?)
            }
        })
    }

    /// The endpoint as bound (the real port for a TCP port of 0).
    pub(crate) fn local(&self) -> io::Result<Endpoint> {
        match self {
            Listener::Tcp(l) => Ok(Endpoint::Tcp(l.local_addr()?)),
            Listener::Unix(l) => unix_endpoint(&l.local_addr()?),
        }
    }

    /// Accepts one connection: its socket (blocking, `TCP_NODELAY` on TCP) and a description
    /// of the peer for logs.
    pub(crate) fn accept(&self) -> io::Result<(OwnedFd, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept()?;
                s.set_nodelay(true)?;
                Ok((OwnedFd::from(s), peer.to_string()))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept()?;
                let peer = match rustix::net::sockopt::socket_peercred(&s) {
                    Ok(cred) => format!("pid {}", cred.pid.as_raw_nonzero()),
                    Err(_) => "a local process".to_owned(),
                };
                Ok((OwnedFd::from(s), peer))
            }
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }

    /// Rebuilds a listener from a descriptor received from another process.
    pub(crate) fn from_fd(fd: OwnedFd, tcp: bool) -> Listener {
        if tcp {
            Listener::Tcp(TcpListener::from(fd))
        } else {
            Listener::Unix(UnixListener::from(fd))
        }
    }

    pub(crate) fn is_tcp(&self) -> bool {
        matches!(self, Listener::Tcp(_))
    }
}

fn unix_endpoint(addr: &UnixSocketAddr) -> io::Result<Endpoint> {
    if let Some(name) = addr.as_abstract_name() {
        return Ok(Endpoint::UnixAbstract(name.to_vec()));
    }
    match addr.as_pathname() {
        Some(path) => Ok(Endpoint::UnixPath(path.to_owned())),
        None => Err(io::Error::other("unnamed unix socket")),
    }
}

/// Connects to `endpoint`, waiting at most `timeout` for a TCP connection to be set up.
/// The socket is blocking, with `TCP_NODELAY` on TCP (request/response traffic).
pub(crate) fn connect(endpoint: &Endpoint, timeout: Duration) -> io::Result<OwnedFd> {
    Ok(match endpoint {
        Endpoint::Tcp(addr) => {
            let s = TcpStream::connect_timeout(addr, timeout)?;
            s.set_nodelay(true)?;
            OwnedFd::from(s)
        }
        Endpoint::UnixPath(path) => OwnedFd::from(UnixStream::connect(path)?),
        Endpoint::UnixAbstract(name) => {
            let addr = UnixSocketAddr::from_abstract_name(name)?;
            OwnedFd::from(UnixStream::connect_addr(&addr)?)
        }
    })
}

/// Shuts a connected socket down both ways: a thread blocked reading it wakes up with
/// end-of-file, and the peer sees the connection end.
pub(crate) fn shutdown(fd: BorrowedFd<'_>) {
    let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Both);
}

/// Whether the peer of a connected socket has closed it or sent data: polled without waiting.
/// For a request/response peer that is waiting for an answer, either means it is gone.
pub(crate) fn peer_closed_or_sent(fd: BorrowedFd<'_>) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::from_borrowed_fd(
        fd,
        PollFlags::IN | PollFlags::RDHUP,
    )];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&zero)) {
        Ok(0) => false,
        Ok(_) => true,
        Err(rustix::io::Errno::INTR) => false,
        Err(_) => true,
    }
}

/// Fills `buf` with bytes from the kernel's cryptographic random source.
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
