//! Ranks of an MPI job as pool workers (feature `mpi`): "MPI launches, mp carries".
//!
//! `mpirun -n N ./app` (or `srun -n N ./app`, or `cargo mp run --mpi N`) starts N copies of the
//! binary. Before `main`, every copy that sees a launcher's variables initialises MPI and checks
//! the size MPI reports against the launcher's. Rank 0 binds a TCP listener, broadcasts its
//! address and a fresh auth key once (`MPI_Bcast`), and goes on to `main`. Ranks ≥ 1 never reach
//! `main`: each connects a *control* connection (rank 0 says stop on it; its end-of-file means
//! rank 0 is gone) and a *pool* connection, on which it serves one pool at a time with the local
//! pool's protocol (`pool/child.rs`), reconnecting for the next pool when rank 0 closes it.
//! Tasks and results travel on `mp`'s framed TCP channels after the auth-key handshake, never as
//! MPI messages: blocking reads, no core spinning while idle, and a rank that dies is an
//! end-of-file at once. A heartbeat ([`HEARTBEAT_BOUND`], [`HEARTBEAT_ENV`]) notices a host
//! that vanished.
//!
//! Ending: rank 0 leaving `main` (return, `?` error, panic, `std::process::exit`) sends stop to
//! every rank and then calls `MPI_Finalize` (from `mp::main!`'s exit path, or an `atexit`
//! handler); a rank told to stop finalizes and exits 0; a rank whose rank 0 vanished exits at
//! once without finalizing (finalize would wait for rank 0 forever).
//!
//! ```no_run
//! # mp::guard!();
//! #[mp::worker]
//! fn square(n: u64) -> u64 {
//!     n * n
//! }
//!
//! // Run with `cargo mp run --mpi 3`: two worker ranks.
//! let pool = mp::Pool::builder().backend(mp::Backend::Mpi).build()?;
//! println!("rank {} of {} on {}", mp::mpi::rank(), mp::mpi::size(), mp::mpi::hostname());
//! assert_eq!(pool.map(square, 0..4)?, [0, 1, 4, 9]);
//! # Ok::<(), mp::Error>(())
//! ```
//!
//! This file is the public API (rank, size, host, the MPI linked), the launcher detection and
//! the pre-`main` entry, and what both sides share: the first frames, the broadcast, the
//! heartbeat, finalizing. Rank 0's side (the hub that holds the ranks' connections, and
//! leaving) is `hub.rs`, a worker rank's is `rank.rs`. It must hold no connection state.

mod hub;
mod rank;

use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sys;
use crate::wire::{Channel, Frame};

pub(crate) use self::hub::{
    RankLink, leave, no_ranks_left_message, rank_lost, release_ranks, take_ranks,
};
use self::hub::{StartFailure, leave_at_exit, start_hub};
use self::rank::serve_rank;

/// Set to `0` to run a binary built with the feature as a plain program under a launcher.
const OPT_OUT_ENV: &str = "MP_MPI";
/// The address (IP or host name) rank 0 advertises to the other ranks; default: the address
/// its host name resolves to (a non-loopback one when there is one).
pub const ADDR_ENV: &str = "MP_MPI_ADDR";
/// Set by `cargo mp run --mpi` on rank 0 when a wrapper of its own started it.
const WRAPPED_ENV: &str = "__MP_MPI_WRAPPED";
/// Bytes of the one broadcast: rank 0's address and the auth key.
pub(super) const BCAST_LEN: usize = 1024;
/// The broadcast that tells the ranks rank 0 cannot serve them (it says why): they finalize
/// and exit 2.
pub(super) const REFUSED: &[u8] = b"!refused";
/// The heartbeat's bound in whole seconds, from 2 to 86400 (default [`HEARTBEAT_BOUND`]): set
/// it in rank 0's environment (a launcher passes it on: `mpirun -x MP_MPI_HEARTBEAT`); each rank
/// reads its own. A value that is not such a number stops the job at start with a message.
pub const HEARTBEAT_ENV: &str = "MP_MPI_HEARTBEAT";
/// Within this time (by default; [`HEARTBEAT_ENV`] changes it) a host that vanished without
/// closing its sockets (power loss, network cut) is seen as a lost connection: TCP keepalive
/// probes a quiet connection (after a third of the bound, then every sixth), and
/// `TCP_USER_TIMEOUT` ends it when nothing came back for the bound, also while data waits to
/// be acknowledged. A busy rank is not mistaken for a vanished one: the kernel answers the
/// probes, and a rank's receive buffer holds all that rank 0 queues for it behind a running
/// task, so rank 0's data never waits on a closed window (which the timeout would end too).
pub const HEARTBEAT_BOUND: Duration = Duration::from_secs(30);
/// The bound's range in seconds: the kernel's probe timers count whole seconds, and the first
/// probe needs one of them.
const HEARTBEAT_RANGE: std::ops::RangeInclusive<u64> = 2..=86_400;
/// The receive buffer asked for on a worker rank's pool connection: much more than rank 0
/// queues behind a running task (a few of the local pool's inline frames, about 256 KiB), so
/// that queued data never meets a zero window, which `TCP_USER_TIMEOUT` would take for a
/// vanished host (Linux counts answered zero-window probes against it).
const RECEIVE_BUFFER: usize = 4 << 20;

/// What a rank's connection to rank 0 is for, said in its first frame.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Hello {
    /// The connection rank 0 stops the rank on.
    Control { rank: u32, host: String, pid: u32 },
    /// A connection to serve one pool on.
    Pool { rank: u32, host: String, pid: u32 },
}

/// Rank 0 → a rank, on the control connection.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Control {
    /// Finalize MPI and exit 0.
    Stop,
    /// Exit 0 without finalizing: a rank was lost, and `MPI_Finalize` would wait for it.
    Abandon,
}

/// This process's place in the MPI job.
#[derive(Debug)]
pub(super) struct World {
    pub(super) rank: u32,
    pub(super) size: u32,
    pub(super) host: String,
}

pub(super) static WORLD: OnceLock<World> = OnceLock::new();

/// This process's rank in the MPI job (`0` for the process that runs `main`, and for a program
/// not started by an MPI launcher).
///
/// ```
/// assert_eq!(mp::mpi::rank(), 0); // rank 0 runs `main` (also outside any launcher)
/// ```
pub fn rank() -> u32 {
    WORLD.get().map_or(0, |w| w.rank)
}

/// The number of ranks in the MPI job (`1` outside a launcher): one runs `main`, the others are
/// pool workers for [`Backend::Mpi`](crate::Backend::Mpi).
///
/// ```
/// assert!(mp::mpi::size() >= 1);
/// ```
pub fn size() -> u32 {
    WORLD.get().map_or(1, |w| w.size)
}

/// The host this rank runs on (MPI's processor name; outside a launcher, the host name).
///
/// ```
/// assert!(!mp::mpi::hostname().is_empty());
/// ```
pub fn hostname() -> String {
    match WORLD.get() {
        Some(w) => w.host.clone(),
        None => local_hostname(),
    }
}

/// Whether this process was started by an MPI launcher and initialised MPI before `main`.
///
/// ```
/// if !mp::mpi::active() {
///     println!("not under mpirun: Backend::Mpi would fail with a clear error");
/// }
/// ```
pub fn active() -> bool {
    WORLD.get().is_some()
}

/// The MPI implementation this build linked, as its headers said: `openmpi 4.1.4`,
/// `mpich 4.0.2`. Start the program with that implementation's launcher.
///
/// ```
/// assert!(!mp::mpi::linked().is_empty());
/// ```
pub fn linked() -> &'static str {
    sys::mpi::LINKED
}

/// The MPI library's description of itself (`MPI_Get_library_version`), when MPI is active.
///
/// ```
/// if mp::mpi::active() {
///     println!("{}", mp::mpi::library_version().unwrap_or_default());
/// }
/// ```
pub fn library_version() -> Option<String> {
    active().then(sys::mpi::library_version)
}

pub(super) fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// The launcher's idea of the job's size, and the variable it came from; `None` when no
/// launcher started this process (or `MP_MPI=0`).
fn launcher() -> Option<(Option<u32>, &'static str)> {
    if std::env::var_os(OPT_OUT_ENV).is_some_and(|v| v == "0") {
        return None;
    }
    let num = |var: &str| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    for var in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] {
        if let Some(n) = num(var) {
            return Some((Some(n), var));
        }
    }
    if std::env::var_os("SLURM_PROCID").is_some() {
        if let Some(n) = num("SLURM_STEP_NUM_TASKS") {
            return Some((Some(n), "SLURM_STEP_NUM_TASKS"));
        }
    }
    for var in ["PMIX_RANK", "PMI_RANK"] {
        if std::env::var_os(var).is_some() {
            return Some((None, var));
        }
    }
    None
}

/// Whether a launcher's variables say this process is an MPI rank (read before `main`).
pub(crate) fn launched() -> bool {
    launcher().is_some()
}

/// The pre-`main` router's arm for an MPI rank: initialises MPI and checks the size. Rank 0
/// returns (and runs `main`); a rank ≥ 1 serves as a pool worker and never returns.
pub(crate) fn enter(role: RankRole) {
    let Some((expected, var)) = launcher() else {
        return;
    };
    sys::ignore_sigpipe();
    if let Err(e) = sys::mpi::init() {
        eprintln!("mp: cannot initialise MPI ({}): {e}", linked());
        sys::exit_now(1);
    }
    let (rank, size) = match (sys::mpi::rank(), sys::mpi::size()) {
        (Ok(r), Ok(s)) => (r, s),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("mp: cannot read this process's MPI rank: {e}");
            sys::mpi::abort(1);
            sys::exit_now(1);
        }
    };
    if let Some(expected) = expected {
        if expected != size {
            eprintln!(
                "mp: MPI reports {size} rank(s) but the launcher started {expected} ({var}={expected}): \
                 this binary is linked to {linked} and was started by another MPI's launcher, or by \
                 `srun` without `--mpi=pmix`; start it with the launcher of {linked} (`cargo mp run \
                 --mpi {expected}` picks it), or set MP_MPI=0 to run it without MPI",
                linked = linked(),
            );
            let _ = sys::mpi::finalize();
            sys::exit_now(2);
        }
    }
    let host = sys::mpi::processor_name().unwrap_or_else(|_| local_hostname());
    let _ = WORLD.set(World { rank, size, host });
    if rank == 0 {
        if std::env::var_os(WRAPPED_ENV).is_some() {
            // `cargo mp run --mpi` started rank 0 under a wrapper that records its exit
            // status: die with the wrapper, as the launcher expects of its process.
            let _ = rustix::process::set_parent_process_death_signal(Some(
                rustix::process::Signal::KILL,
            ));
        }
        if let Err(StartFailure { error, told }) = start_hub(size) {
            eprintln!("mp: rank 0 cannot start serving the other ranks: {error}");
            if told {
                finalize_or_exit();
                crate::run_support::drain_output();
                sys::exit_now(2);
            }
            sys::mpi::abort(1);
            sys::exit_now(1);
        }
        sys::mpi::at_exit(leave_at_exit);
    } else {
        serve_rank(rank, role);
    }
}

/// What a worker rank becomes, handed in by the pre-`main` router: this module sits below the
/// pool and the process identity and must not import them.
pub(crate) struct RankRole {
    /// Takes on the rank's process identity (`MpiRank-<rank>`).
    pub(crate) named: fn(u32),
    /// Serves one pool on its connection, given the pool's first frame (its initializer).
    pub(crate) serve: fn(&Channel, Frame) -> i32,
}

/// How long `MPI_Finalize` may take before the process exits without it.
const FINALIZE_GRACE: Duration = Duration::from_secs(10);

/// `MPI_Finalize`, with a watchdog: if it has not returned within [`FINALIZE_GRACE`] (a rank
/// vanished during it), the process exits with status 1 instead of hanging.
pub(super) fn finalize_or_exit() {
    let _ = std::thread::Builder::new()
        .name("mp-mpi-finalize".into())
        .spawn(|| {
            std::thread::sleep(FINALIZE_GRACE);
            eprintln!(
                "mp: MPI_Finalize did not return within {FINALIZE_GRACE:?}; exiting without it"
            );
            sys::exit_now(1);
        });
    if let Err(e) = sys::mpi::finalize() {
        eprintln!("mp: MPI_Finalize on rank {}: {e}", rank());
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The heartbeat's bound in effect on this rank: [`HEARTBEAT_ENV`]'s value, else
/// [`HEARTBEAT_BOUND`].
///
/// ```
/// assert!(mp::mpi::heartbeat_bound() >= std::time::Duration::from_secs(2));
/// ```
pub fn heartbeat_bound() -> Duration {
    *BOUND.get_or_init(|| heartbeat_from_env().unwrap_or(HEARTBEAT_BOUND))
}

static BOUND: OnceLock<Duration> = OnceLock::new();

/// [`HEARTBEAT_ENV`] read and checked: unset or empty is the default.
fn heartbeat_from_env() -> std::result::Result<Duration, String> {
    match std::env::var(HEARTBEAT_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(HEARTBEAT_BOUND),
        Err(std::env::VarError::NotUnicode(v)) => Err(bad_heartbeat(&v.to_string_lossy())),
        Ok(v) => parse_heartbeat(&v),
    }
}

fn parse_heartbeat(v: &str) -> std::result::Result<Duration, String> {
    if v.trim().is_empty() {
        return Ok(HEARTBEAT_BOUND);
    }
    match v.trim().parse::<u64>() {
        Ok(s) if HEARTBEAT_RANGE.contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err(bad_heartbeat(v)),
    }
}

fn bad_heartbeat(v: &str) -> String {
    format!(
        "{HEARTBEAT_ENV}={v:?} is not a whole number of seconds from {} to {} (the time within \
         which a host that vanished is noticed; default {})",
        HEARTBEAT_RANGE.start(),
        HEARTBEAT_RANGE.end(),
        HEARTBEAT_BOUND.as_secs()
    )
}

/// Keepalive's idle time, probe interval and probe count for `bound`: the probes fall due
/// exactly at the bound (idle + count × interval = bound, at most 4 probes a sixth of the
/// bound apart), when `TCP_USER_TIMEOUT` (the bound) ends a connection nothing came back on.
fn keepalive_split(bound: Duration) -> (Duration, Duration, u32) {
    let b = bound
        .as_secs()
        .clamp(*HEARTBEAT_RANGE.start(), *HEARTBEAT_RANGE.end());
    let interval = (b / 6).max(1);
    let count = 4.min(b - 1);
    let idle = b - count * interval;
    (
        Duration::from_secs(idle),
        Duration::from_secs(interval),
        count as u32,
    )
}

/// Turns on the heartbeat of a connection between ranks (see [`HEARTBEAT_BOUND`]).
pub(super) fn heartbeat(channel: &Channel) {
    let bound = heartbeat_bound();
    let (idle, interval, count) = keepalive_split(bound);
    if let Err(e) = sys::mpi::keepalive(channel.fd(), idle, interval, count, bound) {
        tracing::warn!(target: "mp", "cannot turn on the heartbeat of a connection between ranks: {e}");
    }
}

/// A worker rank's pool connection: room for all that rank 0 queues behind a running task
/// (see [`RECEIVE_BUFFER`]).
pub(super) fn widen_receive_window(channel: &Channel) {
    if let Err(e) = sys::mpi::grow_receive_buffer(channel.fd(), RECEIVE_BUFFER) {
        tracing::warn!(target: "mp", "cannot grow a rank's receive buffer: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probes_fall_due_at_the_bound() {
        for b in *HEARTBEAT_RANGE.start()..=200 {
            let (idle, interval, count) = keepalive_split(Duration::from_secs(b));
            assert!(idle >= Duration::from_secs(1) && count >= 1, "{b}");
            assert_eq!(idle + interval * count, Duration::from_secs(b), "{b}");
        }
        let default = keepalive_split(HEARTBEAT_BOUND);
        assert_eq!(
            default,
            (Duration::from_secs(10), Duration::from_secs(5), 4)
        );
    }

    #[test]
    fn a_heartbeat_setting_is_whole_seconds_in_range() {
        assert_eq!(parse_heartbeat("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_heartbeat(" 60 "), Ok(Duration::from_secs(60)));
        assert_eq!(parse_heartbeat(""), Ok(HEARTBEAT_BOUND));
        for bad in ["0", "1", "2.5", "30s", "-3", "86401", "abc"] {
            let e = parse_heartbeat(bad).unwrap_err();
            assert!(
                e.starts_with(&format!("MP_MPI_HEARTBEAT={bad:?} is not")),
                "{e}"
            );
        }
    }
}
