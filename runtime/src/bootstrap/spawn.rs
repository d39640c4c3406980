//! The parent side of the bootstrap: what a child is started for (its [`Role`]), the frames it
//! is sent, starting it with the liveness pipe, and the guard that decides whether this process
//! may start children at all. See `README.md` beside this file for the protocol.
//!
//! Below the pool and the manager (they start their workers and servers here); must not import
//! them.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Child;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::identity::identity;
use crate::error::{Error, Result};
use crate::sys;
use crate::wire::{self, Channel};
use crate::worker::{self, Target};

/// The environment variable that marks a child: `bootstrap_fd,liveness_fd`.
pub(crate) const BOOTSTRAP_ENV: &str = "__MP_BOOTSTRAP";

/// Set by `mp::main!` when the guarded `main` starts.
static MAIN_ENTERED: AtomicBool = AtomicBool::new(false);

/// Records that the guarded `main` started: this process may start children.
pub(crate) fn mark_main_entered() {
    MAIN_ENTERED.store(true, Ordering::Relaxed);
}

/// What a child is started for.
#[derive(Serialize, Deserialize)]
pub(crate) enum Role {
    /// One call of a worker; its arguments follow, its outcome is the reply.
    Call(Target),
    /// A pool worker: an initializer message follows, then tasks (see `pool/child.rs`).
    PoolWorker,
    /// A manager's server: its listening socket and key follow (see `manager/mod.rs`).
    ManagerServer,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Bootstrap {
    pub(crate) role: Role,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    pub(crate) log_level: Option<u8>,
    pub(crate) parent: u32,
    pub(crate) parent_name: String,
    /// The process tree's resource tracker (see `shared/tracker.rs`).
    pub(crate) tracker: String,
    /// The parent's auth key, which the child inherits (`identity::authkey`).
    pub(crate) authkey: crate::codec::Bytes,
}

/// What the child sends back: the worker's return value, or why there is none.
#[derive(Serialize, Deserialize)]
pub(crate) enum Outcome<T> {
    Returned(T),
    Panicked {
        message: String,
        location: Option<String>,
    },
    Failed(Error),
    NotFound(String),
}

/// The write end stays open in this process for its whole life; children hold the read end
/// and exit when it reports end-of-file, i.e. when this process is gone (even by `SIGKILL`).
fn liveness_read_end() -> Result<&'static OwnedFd> {
    static LIVENESS: OnceLock<(OwnedFd, OwnedFd)> = OnceLock::new();
    if let Some((read, _)) = LIVENESS.get() {
        return Ok(read);
    }
    let pair = sys::pipe().map_err(Error::io("cannot create the liveness pipe"))?;
    Ok(&LIVENESS.get_or_init(|| pair).0)
}

/// Whether this process may start children: its entry point was guarded, or it is itself a
/// child started by `mp` (routed to its worker before `main`, so it can never run the
/// unguarded user code that would fork-bomb).
fn guarded() -> bool {
    MAIN_ENTERED.load(Ordering::Relaxed)
        || !worker::GUARDS.is_empty()
        || identity().parent.is_some()
}

/// Starts a child for `role`, sending it `args` after the bootstrap message.
pub(crate) fn start_child<A: Serialize + ?Sized>(
    role: Role,
    args: &A,
    name: &str,
    daemon: bool,
) -> Result<(Child, Channel)> {
    // Encode first: a value that cannot travel fails before any process exists.
    let mut args_frame = Vec::new();
    let mut raw_fds = Vec::new();
    let sealed = wire::encode_frame(args, &mut args_frame, &mut raw_fds)?;
    #[allow(unsafe_code)]
    let mut fds: Vec<_> = raw_fds
        .iter()
        // SAFETY: recorded by `codec::Fd` while encoding `args`, from handles inside it;
        // `args` is borrowed for this whole call, past the send.
        .map(|&fd| unsafe { sys::borrow_raw_fd(fd) })
        .collect();
    if let Some(s) = &sealed {
        fds.push(s.fd());
    }
    start_child_frame(role, &args_frame, &fds, name, daemon)
}

fn check_may_spawn() -> Result<()> {
    // Reading the hook keeps it (and its `.init_array` entry) in every binary that spawns.
    std::hint::black_box(&sys::CHILD_HOOK);
    if !guarded() {
        return Err(Error::MissingGuard);
    }
    if identity().daemon {
        return Err(Error::DaemonWithChildren);
    }
    Ok(())
}

/// Starts a child for `role`, sending it an already encoded argument frame with `fds`.
pub(crate) fn start_child_frame(
    role: Role,
    args_frame: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
    name: &str,
    daemon: bool,
) -> Result<(Child, Channel)> {
    check_may_spawn()?;
    let what = match &role {
        Role::Call(target) => format!("running `{}`", target.worker),
        Role::PoolWorker => "as a pool worker".to_owned(),
        Role::ManagerServer => "as a manager server".to_owned(),
    };
    let bootstrap = Bootstrap {
        role,
        name: name.to_owned(),
        daemon,
        log_level: crate::logging::level_code(),
        parent: sys::getpid(),
        parent_name: identity().name.clone(),
        tracker: crate::shared::tracker_tree_name().to_owned(),
        authkey: crate::codec::Bytes(
            super::identity::authkey()
                .map_err(Error::io("cannot read random bytes for the auth key"))?
                .to_vec(),
        ),
    };
    let (ours, theirs) =
        sys::socketpair_stream().map_err(Error::io("cannot create a socket pair"))?;
    let liveness = liveness_read_end()?;
    let env = [(
        BOOTSTRAP_ENV,
        format!("{},{}", theirs.as_raw_fd(), liveness.as_raw_fd()),
    )];
    let argv: Vec<_> = std::env::args_os().collect();
    let argv0 = argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mp-child".into());
    let rest = argv.get(1..).unwrap_or(&[]);
    let piped = crate::run_support::prefix_output();
    let inherit = [theirs.as_fd(), liveness.as_fd()];
    let output = match piped {
        true => sys::SpawnOutput::Piped,
        false => sys::SpawnOutput::Inherit,
    };
    let mut child = sys::spawn_self(
        &argv0,
        rest,
        &env,
        &inherit,
        output,
        sys::Interrupts::Default,
    )
    .map_err(Error::io("cannot start the child process"))?;
    if piped {
        crate::run_support::forward_output(&mut child, name);
    }
    crate::run_support::record_start(child.id(), name);
    drop(theirs);
    let channel = Channel::new(ours);
    let sent = channel
        .send(&bootstrap)
        .and_then(|()| wire::send_frame_bytes(channel.fd(), args_frame, fds));
    if let Err(e) = sent {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    tracing::debug!(target: "mp", "started {name} (pid {}) {what}", child.id());
    Ok((child, channel))
}
