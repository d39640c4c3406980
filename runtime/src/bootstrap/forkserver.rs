//! The `forkserver` start method: a single-threaded zygote, started once per process by
//! `spawn` (the router's `ForkServer` role), that forks a child per request. Both sides live
//! here: [`start`] (the parent, under one lock) and [`serve`] (the zygote's loop).
//!
//! A request is one byte (1: the child's output is piped) carrying the new child's bootstrap
//! socket, then the write ends of its stdout and stderr pipes when piped (`SCM_RIGHTS`). The
//! zygote forks with `clone(CLONE_PARENT)`, so the child is the *requester's* child: it waits
//! for it, signals it and reads its exit status as for a spawned child. The reply is 8 bytes,
//! the child's pid, or minus the `errno` of a failed fork. The child closes the zygote's socket,
//! keeps the requester's liveness pipe (inherited by the zygote from the requester), and enters
//! the router as a spawned child does; the requester then sends the bootstrap frames on the
//! socket as for any start method.
//!
//! The zygote exits when its socket closes or the liveness pipe reports the requester gone. A
//! request that finds it dead reaps it and starts a new one, once; a second failure is an error.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use super::forked::{Forked, enter_forked, output_pipes};
use crate::error::{CHILD_FAILED, Error, Result};
use crate::sys::{self, Child};
use crate::wire::Channel;

/// This process's zygote, started at the first `forkserver` start.
struct Server {
    child: Child,
    channel: Channel,
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// Why a request got no pid.
enum Failed {
    /// The zygote is gone (its socket closed): start another.
    Gone(std::io::Error),
    /// The zygote could not fork.
    Refused(std::io::Error),
}

/// Asks this process's zygote (started now if needed) for a child running on the bootstrap
/// socket `boot`. `launch` starts the zygote itself (a re-executed child, by `spawn.rs`).
pub(crate) fn start(
    boot: BorrowedFd<'_>,
    piped: bool,
    launch: fn() -> Result<(Child, Channel)>,
) -> Result<Child> {
    let pipes = if piped { Some(output_pipes()?) } else { None };
    let mut fds = vec![boot];
    if let Some(((_, out), (_, err))) = &pipes {
        fds.extend([out.as_fd(), err.as_fd()]);
    }
    let mut server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let mut gone = None;
    for _ in 0..2 {
        if server.is_none() {
            *server = Some(start_server(launch)?);
        }
        let running = server.as_mut().expect("started above");
        match request(&running.channel, u8::from(piped), &fds) {
            Ok(pid) => {
                let (out, err) = match pipes {
                    Some(((out, _), (err, _))) => (Some(out.into()), Some(err.into())),
                    None => (None, None),
                };
                return Ok(Child::from_pid(pid, out, err));
            }
            Err(Failed::Refused(e)) => {
                return Err(Error::io("the fork server cannot fork a child")(e));
            }
            Err(Failed::Gone(e)) => {
                if let Some(mut dead) = server.take() {
                    let _ = dead.child.kill();
                    let _ = dead.child.wait();
                }
                gone = Some(e);
            }
        }
    }
    let e = gone.map_or_else(|| "no reply".to_owned(), |e| e.to_string());
    Err(Error::ChildFailed(format!(
        "the fork server died twice in a row ({e}); use the spawn start method"
    )))
}

/// Starts the zygote (by `spawn`) and waits for it to be ready: it reads its bootstrap frames
/// through a buffered channel, which must not swallow a request sent too early.
fn start_server(launch: fn() -> Result<(Child, Channel)>) -> Result<Server> {
    let (mut child, channel) = launch()?;
    match read_reply(&channel) {
        Ok(0) => Ok(Server { child, channel }),
        other => {
            let _ = child.kill();
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            let why = match other {
                Ok(n) => format!("unexpected greeting {n}"),
                Err(e) => e.to_string(),
            };
            Err(Error::ChildFailed(format!(
                "the fork server did not start ({why}; {status})"
            )))
        }
    }
}

/// One request and its reply.
fn request(
    channel: &Channel,
    flags: u8,
    fds: &[BorrowedFd<'_>],
) -> std::result::Result<u32, Failed> {
    let sent = sys::send_with_fds(channel.fd(), &[IoSlice::new(&[flags])], fds, false);
    match sent {
        Ok(1) => {}
        Ok(_) => return Err(Failed::Gone(std::io::ErrorKind::WriteZero.into())),
        Err(e) => return Err(Failed::Gone(e)),
    }
    match read_reply(channel).map_err(Failed::Gone)? {
        pid if pid > 0 => Ok(pid as u32),
        errno => Err(Failed::Refused(std::io::Error::from_raw_os_error(
            (-errno) as i32,
        ))),
    }
}

/// The zygote's next 8-byte reply: a pid, minus an `errno`, or 0 (ready).
fn read_reply(channel: &Channel) -> std::io::Result<i64> {
    let mut reply = [0u8; 8];
    let mut got = 0;
    let mut ignored = VecDeque::new();
    while got < reply.len() {
        match sys::recv_with_fds(channel.fd(), &mut reply[got..], &mut ignored, false) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(i64::from_le_bytes(reply))
}

/// In a child made by `fork`: the parent's zygote is not this process's (its children would be
/// the parent's); the next `forkserver` start launches one of its own.
pub(crate) fn forget_parents_server() {
    drop(SERVER.lock().unwrap_or_else(|e| e.into_inner()).take());
}

/// The zygote's loop (the router's `ForkServer` role): forks a child per request until the
/// requester closes the socket or dies; the exit code.
pub(crate) fn serve(channel: &Channel, liveness: OwnedFd) -> i32 {
    match sys::thread_count() {
        Ok(1) => {}
        n => {
            crate::logging::report_failure(format_args!(
                "the fork server must be single-threaded; it runs {n:?} threads"
            ));
            return CHILD_FAILED;
        }
    }
    let sock = channel.fd();
    if sys::send_with_fds(sock, &[IoSlice::new(&0i64.to_le_bytes())], &[], false).is_err() {
        return 0;
    }
    let mut ready = Vec::new();
    loop {
        if sys::poll_many(&[sock, liveness.as_fd()], None, &mut ready).is_err() {
            return CHILD_FAILED;
        }
        if ready.contains(&1) {
            return 0; // the requester is gone
        }
        let mut flags = [0u8; 1];
        let mut fds = VecDeque::new();
        match sys::recv_with_fds(sock, &mut flags, &mut fds, false) {
            Ok(0) => return 0,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return CHILD_FAILED,
        }
        let piped = flags[0] == 1;
        let wanted = if piped { 3 } else { 1 };
        let reply = if fds.len() != wanted {
            -i64::from(libc_einval())
        } else {
            match sys::clone_sibling() {
                Ok(sys::Forked::Child) => {
                    // The zygote's socket is not the child's; its bootstrap socket is.
                    drop(sys::own_fd(sock.as_raw_fd()));
                    let boot = fds.pop_front().expect("counted above");
                    if piped {
                        let (out, err) = (fds.pop_front(), fds.pop_front());
                        let _ = sys::redirect_stdio(out.as_ref().map(|f| f.as_fd()), 1);
                        let _ = sys::redirect_stdio(err.as_ref().map(|f| f.as_fd()), 2);
                    }
                    drop(fds);
                    enter_forked(Forked {
                        boot,
                        liveness,
                        set_up: true,
                    });
                }
                Ok(sys::Forked::Parent(pid)) => i64::from(pid),
                Err(e) => -i64::from(e.raw_os_error().unwrap_or(libc_einval())),
            }
        };
        drop(fds);
        if sys::send_with_fds(sock, &[IoSlice::new(&reply.to_le_bytes())], &[], false).is_err() {
            return 0;
        }
    }
}

/// `EINVAL`: a malformed request.
fn libc_einval() -> i32 {
    rustix::io::Errno::INVAL.raw_os_error()
}
