//! The parent side of the bootstrap: what a child is started for (its [`Role`]), the frames it
//! is sent, starting it with the liveness pipe, and the guard that decides whether this process
//! may start children at all. See `README.md` beside this file for the protocol.
//!
//! Below the pool and the manager (they start their workers and servers here); must not import
//! them.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use super::forked::{Forked, enter_forked, output_pipes};
use super::identity::identity;
use super::start_method::{self, StartMethod};
use crate::error::{Error, Result};
use crate::sys::{self, Child};
use crate::wire::{self, Channel};
use crate::worker::{self, Target};

/// The largest argument frame sent before its child exists (see `start_child_frame_with`): far
/// below an empty socket's buffer (some 200 KiB), so the send never waits for a reader.
const EARLY_FRAMES_MAX: usize = 16 * 1024;

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
    /// The zygote of the `forkserver` start method (see `forkserver.rs`).
    ForkServer,
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

/// This process's liveness pipe `(read, write)`, made at the first start.
static LIVENESS: Mutex<Option<(OwnedFd, OwnedFd)>> = Mutex::new(None);

/// The write end stays open in this process for its whole life; children hold the read end
/// and exit when it reports end-of-file, i.e. when this process is gone (even by `SIGKILL`).
/// Returns the read end's number (open until this process ends).
fn liveness_read_end() -> Result<RawFd> {
    let mut live = LIVENESS.lock().unwrap_or_else(|e| e.into_inner());
    if live.is_none() {
        *live = Some(sys::pipe().map_err(Error::io("cannot create the liveness pipe"))?);
    }
    Ok(live.as_ref().map_or(-1, |(read, _)| read.as_raw_fd()))
}

/// In a forked child: the parent's liveness pipe, whose read end the child keeps watching;
/// its write end is closed here (the child holding it would never see the parent die), and
/// the child makes a pipe of its own for its own children.
fn take_parent_liveness() -> Option<OwnedFd> {
    let (read, write) = LIVENESS.lock().unwrap_or_else(|e| e.into_inner()).take()?;
    drop(write);
    Some(read)
}

/// This process's liveness watcher (see `route.rs`): 0 if it has none, [`WATCHER_STARTING`]
/// while its thread starts, its thread id once it only waits.
pub(crate) static LIVENESS_WATCHER: AtomicU32 = AtomicU32::new(0);
/// [`LIVENESS_WATCHER`] while the watcher's thread starts (and may hold the allocator's lock).
pub(crate) const WATCHER_STARTING: u32 = u32::MAX;

/// Whether this process's liveness watcher runs: a thread that holds no lock once it waits in
/// `read`, so `fork` need not count it. One still starting is waited for (briefly).
fn liveness_watcher_running() -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        match LIVENESS_WATCHER.load(Ordering::Acquire) {
            0 => return false,
            WATCHER_STARTING if std::time::Instant::now() < deadline => std::thread::yield_now(),
            WATCHER_STARTING => return false,
            tid => return sys::thread_alive(tid),
        }
    }
}

/// Whether this process may start children: its entry point was guarded, or it is itself a
/// child started by `mp` (routed to its worker before `main`, so it can never run the
/// unguarded user code that would fork-bomb).
fn guarded() -> bool {
    MAIN_ENTERED.load(Ordering::Relaxed)
        || !worker::GUARDS.is_empty()
        || identity().parent.is_some()
}

/// Starts a child for `role` by the process-wide start method, sending it `args` after the
/// bootstrap message.
pub(crate) fn start_child<A: Serialize + ?Sized>(
    role: Role,
    args: &A,
    name: &str,
    daemon: bool,
) -> Result<(Child, Channel)> {
    start_child_with(None, role, args, name, daemon)
}

/// Starts a child for `role` by `method` (`None`: the process-wide one), sending it `args`
/// after the bootstrap message.
pub(crate) fn start_child_with<A: Serialize + ?Sized>(
    method: Option<StartMethod>,
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
    start_child_frame_with(method, role, &args_frame, &fds, name, daemon)
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

/// Starts a child for `role` by `method` (`None`: the process-wide one), sending it an already
/// encoded argument frame with `fds`.
pub(crate) fn start_child_frame_with(
    method: Option<StartMethod>,
    role: Role,
    args_frame: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
    name: &str,
    daemon: bool,
) -> Result<(Child, Channel)> {
    check_may_spawn()?;
    let method = start_method::resolve(method)?;
    // The fork server is `mp`'s machinery, not a process of the program's: it is not logged
    // (it has no exit to log either: it ends with the process that started it).
    let machinery = matches!(role, Role::ForkServer);
    let what = match &role {
        Role::Call(target) => format!("running `{}`", target.worker),
        Role::PoolWorker => "as a pool worker".to_owned(),
        Role::ManagerServer => "as a manager server".to_owned(),
        Role::ForkServer => "as the fork server".to_owned(),
    };
    let bootstrap = Bootstrap {
        role,
        name: name.to_owned(),
        daemon,
        log_level: crate::logging::level_code(),
        parent: sys::getpid(),
        parent_name: identity().name.clone(),
        tracker: crate::shared::tracker_tree_name().to_owned(),
        authkey: crate::codec::Bytes(super::identity::authkey()?.to_vec()),
    };
    let (ours, theirs) =
        sys::socketpair_stream().map_err(Error::io("cannot create a socket pair"))?;
    let channel = Channel::new(ours);
    let send_frames = || {
        channel
            .send(&bootstrap)
            .and_then(|()| wire::send_frame_bytes(channel.fd(), args_frame, fds))
    };
    // Small frames go before the child exists: the socket holds them, and the child finds
    // them as it starts instead of waiting for them (a fork server's child starts before its
    // requester hears its pid). Larger ones could fill the socket with no reader yet.
    let early = args_frame.len() <= EARLY_FRAMES_MAX;
    if early {
        send_frames()?;
    }
    let liveness = liveness_read_end()?;
    let piped = crate::run_support::prefix_output();
    let mut child = match method {
        StartMethod::Spawn => spawn(&theirs, liveness, piped)?,
        StartMethod::ForkServer => {
            super::forkserver::start(theirs.as_fd(), piped, launch_fork_server)?
        }
        StartMethod::Fork => fork(theirs.as_raw_fd(), channel.fd().as_raw_fd(), piped)?,
    };
    if piped {
        crate::run_support::forward_output(&mut child, name);
    }
    if !machinery {
        crate::run_support::record_start(child.id(), name);
    }
    drop(theirs);
    if !early && let Err(e) = send_frames() {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    if !machinery {
        tracing::debug!(target: "mp", "started {name} (pid {}) by {method} {what}", child.id());
    }
    Ok((child, channel))
}

/// The `spawn` start method: `/proc/self/exe` again, the two descriptors named in the
/// bootstrap variable.
fn spawn(theirs: &OwnedFd, liveness: RawFd, piped: bool) -> Result<Child> {
    let env = [(BOOTSTRAP_ENV, format!("{},{liveness}", theirs.as_raw_fd()))];
    let argv: Vec<_> = std::env::args_os().collect();
    let argv0 = argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mp-child".into());
    let rest = argv.get(1..).unwrap_or(&[]);
    // SAFETY: `liveness` is the read end held in `LIVENESS`, open for this process's whole
    // life (only a forked child takes it, before it starts any child of its own).
    #[allow(unsafe_code)]
    let inherit = [theirs.as_fd(), unsafe { sys::borrow_raw_fd(liveness) }];
    let output = match piped {
        true => sys::SpawnOutput::Piped,
        false => sys::SpawnOutput::Inherit,
    };
    sys::spawn_self(
        &argv0,
        rest,
        &env,
        &inherit,
        output,
        sys::Interrupts::Default,
    )
    .map_err(Error::io("cannot start the child process"))
}

/// The `fork` start method: this process, copied; refused while other threads run.
fn fork(theirs: RawFd, ours: RawFd, piped: bool) -> Result<Child> {
    let threads = sys::thread_count().map_err(Error::io("cannot count this process's threads"))?;
    // The liveness watcher of a child started by `mp` holds no lock: it only waits in `read`.
    let threads = threads - usize::from(liveness_watcher_running());
    if threads > 1 {
        return Err(Error::ForkWithThreads { threads });
    }
    let pipes = if piped { Some(output_pipes()?) } else { None };
    // What is buffered now would be written twice, by the parent and by the child.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    match sys::fork_process().map_err(Error::io("cannot fork"))? {
        sys::Forked::Parent(pid) => {
            let (out, err) = match pipes {
                Some(((out, _), (err, _))) => (Some(out.into()), Some(err.into())),
                None => (None, None),
            };
            Ok(Child::from_pid(pid, out, err))
        }
        sys::Forked::Child => {
            drop(sys::own_fd(ours));
            let _ = sys::redirect_stdio(None, 0);
            if let Some(((_, out), (_, err))) = &pipes {
                let _ = sys::redirect_stdio(Some(out.as_fd()), 1);
                let _ = sys::redirect_stdio(Some(err.as_fd()), 2);
            }
            drop(pipes);
            LIVENESS_WATCHER.store(0, Ordering::Release);
            super::identity::restart_numbering();
            super::reap::forget_parents_children();
            super::forkserver::forget_parents_server();
            match take_parent_liveness() {
                // The caller's handles are never dropped here: the child exits from the router.
                Some(liveness) => enter_forked(Forked {
                    boot: sys::own_fd(theirs),
                    liveness,
                    set_up: false,
                }),
                None => sys::exit_now(crate::error::CHILD_FAILED),
            }
        }
    }
}

/// Starts the fork server's zygote (re-executed, as `spawn` starts a child), for
/// `forkserver.rs`, which does not import this file.
fn launch_fork_server() -> Result<(Child, Channel)> {
    start_child_with(
        Some(StartMethod::Spawn),
        Role::ForkServer,
        &(),
        "mp-forkserver",
        false,
    )
}
