//! The pre-`main` router: what this process is, decided before any user code runs (one
//! `match` over roles: a worker listing, the resource tracker, a child started by `mp` (by any
//! start method) for a call, as a pool worker, as a manager server or as the fork server, a rank
//! of an MPI job; otherwise the program itself). The `sys` hook
//! that calls [`child_entry`] is the crate's one deliberate upward arrow.
//!
//! At the top of the module graph: it may import every module, and nothing imports it but
//! `lib.rs` and that hook.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;

use super::forked::{Forked, take_forked};
use super::identity::{self, Identity};
use super::panic::{PanicReport, catch_panic};
use super::reap::finish_children;
use super::spawn::{
    BOOTSTRAP_ENV, Bootstrap, LIVENESS_WATCHER, Outcome, Role, WATCHER_STARTING, mark_main_entered,
};
use crate::error::{CHILD_FAILED, Error};
use crate::sys;
use crate::wire::{Channel, Frame};
use crate::worker::{Invocation, Worker, WorkerEntry};

/// Set by `cargo mp workers`: the binary prints its workers (`name\tsignature\tlocation`
/// lines) from the pre-`main` hook and exits.
const LIST_WORKERS_ENV: &str = "__MP_LIST_WORKERS";

/// A worker rank of an MPI job takes on its name (its parent is rank 0's `main`).
#[cfg(feature = "mpi")]
fn name_rank(rank: u32) {
    identity::set(Identity {
        name: format!("MpiRank-{rank}"),
        daemon: false,
        parent: None,
        parent_name: "MainProcess".to_owned(),
    });
}

/// Called by `mp::main!` before the user's `main` body.
#[doc(hidden)]
pub fn enter_main() {
    mark_main_entered();
}

/// What the environment says this process is, read before `main`.
enum Start {
    /// `cargo mp workers`: print the registry.
    ListWorkers,
    /// The process tree's resource tracker; the listening socket's descriptor.
    Tracker(String),
    /// A child started by `mp`; its bootstrap descriptors (the role follows on the socket).
    Child(String),
    /// A child made by `fork` (the `fork` and `forkserver` start methods), entering here as a
    /// spawned child does.
    Forked(Forked),
    /// A rank of an MPI job (feature `mpi`): rank 0 goes on to `main`, the others serve.
    #[cfg(feature = "mpi")]
    MpiRank,
}

impl Start {
    fn from_env() -> Option<Start> {
        if let Some(forked) = take_forked() {
            return Some(Start::Forked(forked));
        }
        if std::env::var_os(LIST_WORKERS_ENV).is_some() {
            return Some(Start::ListWorkers);
        }
        if let Some(spec) = std::env::var_os(crate::shared::TRACKER_ENV) {
            sys::unset_env(crate::shared::TRACKER_ENV);
            return Some(Start::Tracker(spec.to_string_lossy().into_owned()));
        }
        let Some(spec) = std::env::var_os(BOOTSTRAP_ENV) else {
            // A local child is never a rank: it was routed above (and has no launcher variables).
            #[cfg(feature = "mpi")]
            if crate::mpi::launched() {
                return Some(Start::MpiRank);
            }
            return None;
        };
        sys::unset_env(BOOTSTRAP_ENV);
        Some(Start::Child(spec.to_string_lossy().into_owned()))
    }
}

/// The pre-`main` hook's work: if this process was started by `mp` (or `cargo mp workers`), do
/// what it was started for and exit; otherwise return at once and let `main` run.
pub(crate) fn child_entry() {
    let Some(start) = Start::from_env() else {
        return;
    };
    let code = match start {
        Start::ListWorkers => {
            let own = [&crate::manager::RUN_BY_NAME];
            for entry in crate::worker::WORKERS.iter() {
                if own.iter().any(|e| std::ptr::eq(*e, entry)) {
                    continue;
                }
                println!("{}\t{}\t{}", entry.name, entry.signature, entry.location);
            }
            // For `cargo mp run --mpi`: the MPI this binary links (not a worker line).
            #[cfg(feature = "mpi")]
            println!("mpi\t{}", crate::mpi::linked());
            0
        }
        #[cfg(feature = "mpi")]
        Start::MpiRank => {
            // Rank 0 comes back and runs `main`; the other ranks serve and exit.
            crate::mpi::enter(crate::mpi::RankRole {
                named: name_rank,
                serve: crate::pool::serve,
            });
            return;
        }
        Start::Tracker(spec) => {
            name_after_program();
            crate::shared::run_tracker(&spec)
        }
        Start::Child(spec) => {
            let mut fds = spec
                .split(',')
                .map(|s| s.parse::<i32>().ok().and_then(sys::adopt_inherited_fd));
            match (fds.next(), fds.next()) {
                (Some(Some(boot)), Some(Some(liveness))) => run_child(boot, liveness, false),
                _ => {
                    crate::logging::report_failure(format_args!(
                        "malformed {BOOTSTRAP_ENV}={spec:?}; was this process started by mp?"
                    ));
                    CHILD_FAILED
                }
            }
        }
        Start::Forked(forked) => {
            let code = run_child(forked.boot, forked.liveness, forked.set_up);
            // A copy of its parent: the parent's `atexit` handlers and C buffers are not its own.
            use std::io::Write;
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            sys::exit_now(code)
        }
    };
    std::process::exit(code);
}

/// A child started by `mp`, by any start method: does what it was started for; the exit code.
/// `set_up`: the process-wide setup below is inherited already (from the fork server).
fn run_child(boot: OwnedFd, liveness: OwnedFd, set_up: bool) -> i32 {
    if !set_up {
        sys::ignore_sigpipe();
        sys::raise_fd_limit();
        name_after_program();
    }
    let code = match accept_role(boot, liveness) {
        Ok((role, channel, args, liveness)) => match role {
            Role::Call(target) => call(&channel, args, &target),
            Role::PoolWorker => crate::pool::serve(&channel, args),
            Role::ManagerServer => crate::manager::serve_child(&channel, args),
            // `mp`'s machinery: no children of its own (its forks are its requester's), and
            // nothing to log as it ends with the requester.
            Role::ForkServer => {
                return match liveness {
                    Some(liveness) => super::forkserver::serve(&channel, liveness),
                    None => CHILD_FAILED,
                };
            }
        },
        Err(code) => code,
    };
    finish_children();
    crate::run_support::record_peak();
    crate::run_support::drain_output();
    code
}

/// Shows this child in `ps`, `top` and `pgrep` under the program's name (as Python's children
/// show as `python`), not as `exe` (the name of `/proc/self/exe`, which it was started from).
fn name_after_program() {
    if let Some(name) = sys::program_name() {
        sys::set_thread_name(&name);
    }
}

/// Reads the bootstrap frame (taking on the identity it gives) and the argument frame, and
/// starts watching the parent; or the exit code if that fails. The fork server watches the
/// parent in its own loop (it must stay single-threaded): it gets the liveness pipe back.
#[allow(clippy::type_complexity)]
fn accept_role(
    boot: OwnedFd,
    liveness: OwnedFd,
) -> Result<(Role, Channel, Frame, Option<OwnedFd>), i32> {
    // A parent that dies before sending the frames closes the socket: the read below fails.
    let channel = Channel::new(boot);
    let bootstrap: Bootstrap = match channel.recv_frame(None).and_then(Frame::decode) {
        Ok(b) => b,
        Err(Error::Disconnected) => return Err(1),
        Err(e) => {
            crate::logging::report_failure(format_args!("cannot read the bootstrap message: {e}"));
            return Err(CHILD_FAILED);
        }
    };
    let liveness = match bootstrap.role {
        Role::ForkServer => Some(liveness),
        _ => {
            watch_parent(liveness);
            None
        }
    };
    identity::set(Identity {
        name: bootstrap.name,
        daemon: bootstrap.daemon,
        parent: Some(bootstrap.parent),
        parent_name: bootstrap.parent_name,
    });
    identity::set_authkey(&bootstrap.authkey);
    crate::shared::adopt_tracker_tree_name(bootstrap.tracker);
    crate::logging::install_from_code(bootstrap.log_level);
    match channel.recv_frame(None) {
        Ok(args) => Ok((bootstrap.role, channel, args, liveness)),
        Err(_) => Err(1),
    }
}

/// Dies with the parent: the liveness pipe reports end-of-file when the parent is gone. The
/// kernel kills this process then (`sys::kill_self_at_eof`: no thread, no syscall on the
/// way out); without `/proc`, a watcher thread waits for the end-of-file instead. Its small
/// stack keeps its start cheap; it records its thread id (see `LIVENESS_WATCHER`) only once
/// it holds nothing but the wait.
fn watch_parent(liveness: OwnedFd) {
    match sys::kill_self_at_eof(liveness.as_fd()) {
        Ok(true) => return,
        Ok(false) => sys::exit_now(1),
        Err(_) => {}
    }
    LIVENESS_WATCHER.store(WATCHER_STARTING, Ordering::Release);
    let started = std::thread::Builder::new()
        .name("mp-liveness".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            LIVENESS_WATCHER.store(sys::gettid(), Ordering::Release);
            sys::wait_for_eof(liveness.as_fd());
            sys::exit_now(1);
        });
    if started.is_err() {
        LIVENESS_WATCHER.store(0, Ordering::Release);
    }
}

/// A `Process`'s one call: finds the worker and runs it; the exit code.
fn call(channel: &Channel, args: Frame, target: &crate::worker::Target) -> i32 {
    let entry = match target.lookup() {
        Ok(entry) => entry,
        Err(detail) => {
            let _ = channel.send(&Outcome::<()>::NotFound(detail));
            return CHILD_FAILED;
        }
    };
    tracing::info!(target: "mp", "child process calling `{}`", entry.name);
    let code = (entry.call_one)(Invocation {
        args,
        reply: channel,
    });
    tracing::info!(target: "mp", "process exiting with exitcode {code}");
    code
}

/// Decodes `W`'s arguments, calls it (catching panics), sends the outcome, returns the exit code.
fn call_one<W: Worker>(inv: Invocation<'_>) -> i32 {
    let args: W::Args = match inv.args.decode() {
        Ok(args) => args,
        Err(e) => {
            let _ = inv.reply.send(&Outcome::<()>::Failed(e));
            return CHILD_FAILED;
        }
    };
    let outcome = match catch_panic(PanicReport::Print(W::NAME), || W::INSTANCE.call(args)) {
        Ok(value) => Outcome::Returned(value),
        Err((message, location)) => Outcome::Panicked { message, location },
    };
    let code = if matches!(outcome, Outcome::Returned(_)) {
        0
    } else {
        1
    };
    match inv.reply.send(&outcome) {
        Ok(()) => code,
        Err(Error::Disconnected) => code,
        // The value could not be encoded (or is over the limit): the parent gets that error
        // as it is, `Error::Encode` or `Error::TooLarge`.
        Err(e) => {
            let _ = inv.reply.send(&Outcome::<()>::Failed(e));
            CHILD_FAILED
        }
    }
}

impl WorkerEntry {
    /// The entry for worker `W`, defined at `location` (what `#[mp::worker]` registers).
    pub const fn new<W: Worker>(location: &'static str) -> WorkerEntry {
        WorkerEntry {
            name: W::NAME,
            signature: W::SIGNATURE,
            location,
            call_one: call_one::<W>,
            pool_init: crate::pool::child::run_init::<W>,
            pool_chunk: crate::pool::child::run_batch::<W>,
            call_bytes: crate::manager::call_bytes::<W>,
        }
    }
}
