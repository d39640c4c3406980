//! Rank 0's side of an MPI job: the hub that accepts the ranks' control and pool connections
//! (on a thread of its own), lends the pool connections to one MPI pool at a time, remembers
//! the ranks lost, and on leaving tells every rank to stop. It must not serve tasks (that is
//! `rank.rs`, and `pool/`) nor touch MPI but for the one broadcast and finalizing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{
    ADDR_ENV, BCAST_LEN, Control, Hello, REFUSED, WORLD, finalize_or_exit, heartbeat, hex,
    hostname, local_hostname,
};
use crate::codec::MAX_MESSAGE;
use crate::connection::{Listener, auth, gate};
use crate::error::{Error, Result};
use crate::sys;
use crate::wire::{Channel, inline_frame};

/// How long building an MPI pool waits for the ranks' pool connections.
const GATHER_TIMEOUT: Duration = Duration::from_secs(30);

/// Rank 0's side: the ranks' connections.
static HUB: OnceLock<Arc<Hub>> = OnceLock::new();
/// `leave` ran (stop sent, finalized).
static LEFT: AtomicBool = AtomicBool::new(false);

/// A rank's pool connection, waiting for a pool or lent to one.
pub(crate) struct RankLink {
    pub(crate) rank: u32,
    pub(crate) host: String,
    pub(crate) pid: u32,
    pub(crate) channel: Channel,
}

struct HubState {
    /// Pool connections not lent to a pool.
    idle: VecDeque<RankLink>,
    /// Control connections, by rank.
    control: Vec<(u32, Channel)>,
    /// Ranks whose connection was lost (rank, host).
    lost: Vec<(u32, String)>,
    /// A pool holds ranks now.
    lent: bool,
    /// Leaving: a control connection that arrives now is told to stop at once.
    stopping: bool,
}

struct Hub {
    state: Mutex<HubState>,
    changed: Condvar,
    /// The stop frames, encoded ahead: at process exit the encoder's thread-local state is gone.
    stop: Vec<u8>,
    abandon: Vec<u8>,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn advertised_ip() -> Result<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    let chosen = std::env::var(ADDR_ENV).ok().filter(|s| !s.is_empty());
    let name = chosen.clone().unwrap_or_else(local_hostname);
    let addrs: Vec<std::net::SocketAddr> = (name.as_str(), 0)
        .to_socket_addrs()
        .map_err(|e| {
            Error::InvalidArgument(format!(
                "cannot resolve `{name}` for the other ranks to connect to ({e}); set {ADDR_ENV} \
                 to this host's address on the network the ranks share"
            ))
        })?
        .collect();
    let pick = addrs
        .iter()
        .find(|a| a.is_ipv4() && !a.ip().is_loopback())
        .or_else(|| addrs.iter().find(|a| !a.ip().is_loopback()))
        .or(addrs.first());
    match pick {
        Some(a) => Ok(a.ip()),
        None => Err(Error::InvalidArgument(format!(
            "`{name}` resolves to no address; set {ADDR_ENV}"
        ))),
    }
}

/// Why rank 0 cannot serve the other ranks, and whether they know: told through the
/// broadcast, every rank finalizes and exits (an `MPI_Abort` instead would lose the message:
/// MPICH's launcher ends the job before it forwards rank 0's last output).
pub(super) struct StartFailure {
    pub(super) error: Error,
    pub(super) told: bool,
}

/// Rank 0: listens, broadcasts the address and a fresh key, accepts the ranks' connections on
/// a thread of its own (blocking, no spinning). A failure before the broadcast is broadcast
/// instead (see [`REFUSED`]).
pub(super) fn start_hub(size: u32) -> std::result::Result<(), StartFailure> {
    let hub = Arc::new(Hub {
        stop: control_frame(&Control::Stop).map_err(untold)?,
        abandon: control_frame(&Control::Abandon).map_err(untold)?,
        state: Mutex::new(HubState {
            idle: VecDeque::new(),
            control: Vec::new(),
            lost: Vec::new(),
            lent: false,
            stopping: false,
        }),
        changed: Condvar::new(),
    });
    let prepared = super::heartbeat_from_env()
        .map_err(Error::InvalidArgument)
        .and_then(|_| {
            if size <= 1 {
                Ok(None)
            } else {
                listen(size).map(Some)
            }
        });
    let (listener, mut message) = match prepared {
        Ok(Some(ready)) => ready,
        Ok(None) => {
            let _ = HUB.set(hub);
            crate::run_support::record_rank(0, &hostname());
            return Ok(());
        }
        Err(error) => {
            let mut refusal = REFUSED.to_vec();
            refusal.resize(BCAST_LEN, 0);
            let told = size <= 1 || sys::mpi::bcast(&mut refusal, 0).is_ok();
            return Err(StartFailure { error, told });
        }
    };
    let _ = HUB.set(Arc::clone(&hub));
    crate::run_support::record_rank(0, &hostname());
    sys::mpi::bcast(&mut message, 0)
        .map_err(Error::io("cannot broadcast rank 0's address"))
        .map_err(untold)?;
    std::thread::Builder::new()
        .name("mp-mpi-accept".into())
        .spawn(move || accept_ranks(&listener, &hub))
        .map_err(Error::io("cannot start the thread accepting the ranks"))
        .map_err(untold)?;
    Ok(())
}

fn untold(error: Error) -> StartFailure {
    StartFailure { error, told: false }
}

/// The listener the ranks connect to, and the broadcast that tells them where it is.
fn listen(size: u32) -> Result<(Listener, Vec<u8>)> {
    let ip = advertised_ip()?;
    let mut key = [0u8; 32];
    sys::net::random_bytes(&mut key).map_err(Error::io("cannot read random bytes"))?;
    let listener = Listener::bind(std::net::SocketAddr::new(ip, 0), key)?
        .with_max_message(MAX_MESSAGE)
        .with_max_handshakes(size as usize * 2 + 8);
    let address = listener.address().to_string();
    let mut message = format!("{address}\n{}", hex(&key)).into_bytes();
    if message.len() > BCAST_LEN {
        return Err(Error::InvalidArgument(format!(
            "rank 0's address is too long to broadcast: {address}"
        )));
    }
    message.resize(BCAST_LEN, 0);
    Ok((listener, message))
}

fn accept_ranks(listener: &Listener, hub: &Hub) {
    loop {
        let channel = match listener.next_event(None) {
            Ok(gate::Event::Accepted { channel, .. }) => channel,
            Ok(gate::Event::Failed(e)) => {
                tracing::warn!(target: "mp", "a connection to rank 0 failed: {e}");
                continue;
            }
            Ok(gate::Event::Woken) => continue,
            Err(e) => {
                tracing::error!(target: "mp", "rank 0 stops accepting ranks: {e}");
                return;
            }
        };
        heartbeat(&channel);
        let hello = channel
            .recv_frame(Some(auth::HANDSHAKE_TIMEOUT))
            .and_then(|f| f.decode::<Hello>());
        let mut st = hub.lock();
        match hello {
            Ok(Hello::Control { rank, host, .. }) => {
                crate::run_support::record_rank(rank, &host);
                if st.stopping {
                    let _ = channel.send_parts([&hub.abandon[..]], &[]);
                }
                st.control.push((rank, channel));
            }
            Ok(Hello::Pool { rank, host, pid }) => {
                st.idle.push_back(RankLink {
                    rank,
                    host,
                    pid,
                    channel,
                });
            }
            Err(e) => {
                tracing::warn!(target: "mp", "a rank's first message did not arrive: {e}");
                continue;
            }
        }
        drop(st);
        hub.changed.notify_all();
    }
}

/// The ranks for an MPI pool: every rank ≥ 1 not lost (or `want` of them), waiting for their
/// pool connections; the caller gives them back by closing them (they reconnect).
pub(crate) fn take_ranks(want: Option<usize>) -> Result<Vec<RankLink>> {
    if WORLD.get().is_some_and(|w| w.rank != 0) {
        return Err(Error::InvalidArgument(
            "only rank 0 can build an MPI pool (a task on a worker rank builds local pools)"
                .to_owned(),
        ));
    }
    let (Some(world), Some(hub)) = (WORLD.get(), HUB.get()) else {
        return Err(Error::InvalidArgument(
            "an MPI pool needs the program started by an MPI launcher: `cargo mp run --mpi N`, \
             `mpirun -n N`, or `srun -n N` (this process has no MPI rank)"
                .to_owned(),
        ));
    };
    let workers = world.size.saturating_sub(1) as usize;
    if workers == 0 {
        return Err(Error::InvalidArgument(
            "an MPI pool needs worker ranks: the job has 1 rank (rank 0 runs `main`); start it \
             with `-n 3` for two workers"
                .to_owned(),
        ));
    }
    if let Some(n) = want {
        if n > workers {
            return Err(Error::InvalidArgument(format!(
                "an MPI pool of {n} workers needs {} ranks, but the launcher started {} (`-n {}`)",
                n + 1,
                world.size,
                world.size
            )));
        }
    }
    let deadline = Instant::now() + GATHER_TIMEOUT;
    let mut st = hub.lock();
    if st.lent {
        return Err(Error::InvalidArgument(
            "another MPI pool holds the ranks; drop it (or join it) before building the next"
                .to_owned(),
        ));
    }
    loop {
        let alive = workers.saturating_sub(st.lost.len());
        let need = want.unwrap_or(alive).min(alive);
        if need == 0 {
            return Err(Error::ChildFailed(no_ranks_left(&st.lost)));
        }
        if st.idle.len() >= need {
            // Lowest ranks first, so `processes(n)` takes ranks 1..=n.
            st.idle.make_contiguous().sort_by_key(|l| l.rank);
            let links: Vec<RankLink> = st.idle.drain(..need).collect();
            st.lent = true;
            return Ok(links);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            if !st.idle.is_empty() && want.is_none() {
                tracing::warn!(target: "mp", "only {} of {alive} ranks connected within {GATHER_TIMEOUT:?}; the pool runs with them", st.idle.len());
                st.idle.make_contiguous().sort_by_key(|l| l.rank);
                let links: Vec<RankLink> = st.idle.drain(..).collect();
                st.lent = true;
                return Ok(links);
            }
            return Err(Error::Timeout);
        }
        st = hub
            .changed
            .wait_timeout(st, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// A pool's ranks are free again (the pool has closed their connections).
pub(crate) fn release_ranks() {
    if let Some(hub) = HUB.get() {
        hub.lock().lent = false;
        hub.changed.notify_all();
    }
}

/// A pool lost the connection to `rank`: it is not waited for again. Not once rank 0 is
/// stopping the ranks (leaving `main` with a pool still open): those connections end because
/// the ranks were told to stop.
pub(crate) fn rank_lost(rank: u32, host: &str) {
    if let Some(hub) = HUB.get() {
        let mut st = hub.lock();
        if !st.stopping && !st.lost.iter().any(|(r, _)| *r == rank) {
            crate::run_support::record_lost(rank, host);
            st.lost.push((rank, host.to_owned()));
        }
    }
}

/// What to say when every worker rank is lost.
pub(crate) fn no_ranks_left_message() -> String {
    let lost = HUB.get().map(|h| h.lock().lost.clone()).unwrap_or_default();
    no_ranks_left(&lost)
}

fn no_ranks_left(lost: &[(u32, String)]) -> String {
    let list: Vec<String> = lost
        .iter()
        .map(|(r, h)| format!("rank {r} on {h}"))
        .collect();
    format!(
        "no MPI worker ranks left (connections lost: {})",
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.join(", ")
        }
    )
}

/// Rank 0 leaving `main`: tells every rank to stop, then finalizes MPI. Once; called by
/// `mp::main!`'s exit path and at process exit.
pub(crate) fn leave() {
    let Some(world) = WORLD.get() else {
        return;
    };
    if world.rank != 0 || LEFT.swap(true, Ordering::SeqCst) {
        return;
    }
    let mut lost = Vec::new();
    if let Some(hub) = HUB.get() {
        let mut st = hub.lock();
        // Ranks still starting get a moment to connect, so that they can finalize with us.
        let deadline = Instant::now() + CONNECT_GRACE;
        while (st.control.len() as u32) + 1 < world.size && st.lost.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = hub
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st.stopping = true;
        // A rank whose control connection ended (or never came) cannot finalize with us.
        lost = st.lost.iter().map(|(r, _)| *r).collect();
        for (rank, channel) in &st.control {
            if sys::net::peer_closed_or_sent(channel.fd()) && !lost.contains(rank) {
                lost.push(*rank);
            }
        }
        let connected = st.control.len() as u32;
        let complete = connected + 1 == world.size;
        let frame = if lost.is_empty() && complete {
            &hub.stop
        } else {
            &hub.abandon
        };
        for (_, channel) in &st.control {
            let _ = channel.send_parts([&frame[..]], &[]);
        }
        if !complete && lost.is_empty() {
            lost.push(u32::MAX);
        }
    }
    if !lost.is_empty() {
        // `MPI_Finalize` waits for every rank: with one gone it would never return.
        eprintln!("mp: rank 0 leaves without MPI_Finalize: a worker rank was lost");
        return;
    }
    finalize_or_exit();
}

/// How long rank 0, leaving, waits for ranks that have not connected yet.
const CONNECT_GRACE: Duration = Duration::from_secs(10);

pub(super) extern "C" fn leave_at_exit() {
    leave();
}

/// A control message as a whole frame, encoded ahead of time (at process exit the encoder's
/// thread-local state may be gone).
fn control_frame(control: &Control) -> Result<Vec<u8>> {
    let mut payload = Vec::new();
    crate::codec::encode(control, &mut payload, &mut Vec::new())?;
    Ok(inline_frame(&payload))
}
