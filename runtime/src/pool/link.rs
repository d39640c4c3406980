//! The seam between the pool's machinery and what a worker is: a local child process, or a
//! rank of an MPI job reached over TCP (feature `mpi`). The supervisor and `core.rs` speak the
//! same protocol to both over the worker's channel; only starting, stopping, killing and
//! burying a worker differ, and they are here.
//!
//! A rank is never killed or replaced: "killing" it (a time-out, a broken protocol) closes its
//! connection, which ends its pool session (it reconnects for the next pool); a rank whose
//! connection ends without that is lost, and the pool shrinks.

use std::time::Duration;

use crate::sys::Child;

use crate::bootstrap::reap::status_of;
use crate::error::ExitStatus;
use crate::sys;
use crate::wire::Channel;

/// Where the pool's workers run.
///
/// ```
/// # mp::guard!();
/// let pool = mp::Pool::builder().processes(2).backend(mp::Backend::Local).build()?;
/// assert_eq!(pool.processes(), 2);
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backend {
    /// Child processes on this machine (the default, unless `MP_BACKEND=mpi`).
    #[default]
    Local,
    /// One worker per rank ≥ 1 of the MPI job this program was started in (`cargo mp run
    /// --mpi N`, `mpirun -n N`, `srun -n N`); needs the `mpi` feature. Tasks and results travel
    /// over TCP; arguments holding local handles (queues, pipes, shared memory, locks) are
    /// refused. A lost rank is not replaced. See the `mp::mpi` module (feature `mpi`).
    Mpi,
}

/// The environment variable that picks the default backend: `MP_BACKEND=mpi` moves every pool
/// built without [`backend`](crate::PoolBuilder::backend) to the MPI ranks.
pub(crate) const BACKEND_ENV: &str = "MP_BACKEND";

/// The MPI ranks a pool is built on (none for a local pool).
#[cfg(feature = "mpi")]
pub(super) type Ranks = Vec<crate::mpi::RankLink>;
/// The MPI ranks a pool is built on: none without the `mpi` feature.
#[cfg(not(feature = "mpi"))]
pub(super) type Ranks = Vec<std::convert::Infallible>;

/// The error for [`Backend::Mpi`] in a build without the feature.
#[cfg(not(feature = "mpi"))]
pub(super) fn mpi_missing() -> crate::Error {
    crate::Error::InvalidArgument(
        "Backend::Mpi (or MP_BACKEND=mpi) needs mp built with its `mpi` feature: \
         `cargo mp run --mpi N`, or `mp = { features = [\"mpi\"] }`"
            .to_owned(),
    )
}

/// The backend `MP_BACKEND` asks for (`local` or `mpi`; unset: local).
pub(super) fn backend_from_env() -> crate::Result<Backend> {
    match std::env::var(BACKEND_ENV) {
        Err(_) => Ok(Backend::Local),
        Ok(v) if v.is_empty() || v.eq_ignore_ascii_case("local") => Ok(Backend::Local),
        Ok(v) if v.eq_ignore_ascii_case("mpi") => Ok(Backend::Mpi),
        Ok(v) => Err(crate::Error::InvalidArgument(format!(
            "{BACKEND_ENV}={v:?} is not a pool backend; use `local` or `mpi`"
        ))),
    }
}

/// What a worker slot runs on.
pub(super) enum Link {
    /// A child process of ours.
    Process(Child),
    /// An MPI rank: its number and host.
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    Rank { rank: u32, host: String },
}

impl Link {
    /// Makes the worker stop at once: `SIGKILL` for a child, a closed connection for a rank.
    /// Either way its end-of-file follows.
    pub(super) fn kill(&self, pid: u32, channel: &Channel) {
        match self {
            Link::Process(_) => {
                let _ = sys::kill(pid, sys::Signal::Kill);
            }
            Link::Rank { .. } => sys::net::shutdown(channel.fd()),
        }
    }

    /// Buries a worker whose connection has ended: the child's exit status (reaped), or for a
    /// rank `Exited(-1)` and its place (a remote exit status is unknown). `killed`: the pool
    /// ended the connection itself, so the rank is not lost.
    pub(super) fn bury(self, killed: bool) -> (ExitStatus, Option<(u32, String)>) {
        match self {
            Link::Process(mut child) => (reap(&mut child), None),
            Link::Rank { rank, host } => {
                if !killed {
                    #[cfg(feature = "mpi")]
                    crate::mpi::rank_lost(rank, &host);
                }
                (ExitStatus::Exited(-1), Some((rank, host)))
            }
        }
    }

    /// The child process, if the worker is one (ranks are not ours to wait for).
    pub(super) fn into_child(self) -> Option<Child> {
        match self {
            Link::Process(child) => Some(child),
            Link::Rank { .. } => None,
        }
    }
}

/// Waits for a dead worker; it has closed its socket, so this is quick.
pub(super) fn reap(child: &mut Child) -> ExitStatus {
    let status = match sys::wait_child_timeout(child, Duration::from_secs(1)) {
        Ok(Some(s)) => Some(s),
        _ => {
            let _ = child.kill();
            child.wait().ok()
        }
    };
    let status = status.map_or(ExitStatus::Exited(-1), status_of);
    crate::run_support::record_exit(child.id(), status);
    status
}
