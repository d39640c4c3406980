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
//! end-of-file at once. TCP keepalive ([`HEARTBEAT_BOUND`]) notices a host that vanished.
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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::codec::MAX_MESSAGE;
use crate::connection::{Address, Listener, ToAddress, auth, connect_channel, gate};
use crate::error::{Error, Result};
use crate::pool::wire::Encoded;
use crate::sys;
use crate::wire::Channel;

/// Set to `0` to run a binary built with the feature as a plain program under a launcher.
const OPT_OUT_ENV: &str = "MP_MPI";
/// The address (IP or host name) rank 0 advertises to the other ranks; default: the address
/// its host name resolves to (a non-loopback one when there is one).
pub const ADDR_ENV: &str = "MP_MPI_ADDR";
/// Set by `cargo mp run --mpi` on rank 0 when a wrapper of its own started it.
const WRAPPED_ENV: &str = "__MP_MPI_WRAPPED";
/// Bytes of the one broadcast: rank 0's address and the auth key.
const BCAST_LEN: usize = 1024;
/// TCP keepalive on every connection between ranks: idle time, probe interval, probes.
const KEEPALIVE: (Duration, Duration, u32) = (Duration::from_secs(10), Duration::from_secs(5), 4);
/// Within this time a host that vanished without closing its sockets (power loss, network
/// cut) is seen as a lost connection: keepalive's idle time plus its probes (and the same
/// bound on unacknowledged data).
pub const HEARTBEAT_BOUND: Duration = Duration::from_secs(30);
/// How long building an MPI pool waits for the ranks' pool connections.
const GATHER_TIMEOUT: Duration = Duration::from_secs(30);

/// What a rank's connection to rank 0 is for, said in its first frame.
#[derive(Debug, Serialize, Deserialize)]
enum Hello {
    /// The connection rank 0 stops the rank on.
    Control { rank: u32, host: String, pid: u32 },
    /// A connection to serve one pool on.
    Pool { rank: u32, host: String, pid: u32 },
}

/// Rank 0 → a rank, on the control connection.
#[derive(Debug, Serialize, Deserialize)]
enum Control {
    /// Finalize MPI and exit 0.
    Stop,
    /// Exit 0 without finalizing: a rank was lost, and `MPI_Finalize` would wait for it.
    Abandon,
}

/// This process's place in the MPI job.
#[derive(Debug)]
struct World {
    rank: u32,
    size: u32,
    host: String,
}

static WORLD: OnceLock<World> = OnceLock::new();
/// Rank 0's side: the ranks' connections.
static HUB: OnceLock<Arc<Hub>> = OnceLock::new();
/// `leave` ran (stop sent, finalized).
static LEFT: AtomicBool = AtomicBool::new(false);

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

fn local_hostname() -> String {
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
pub(crate) fn enter() {
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
        if let Err(e) = start_hub(size) {
            eprintln!("mp: rank 0 cannot start serving the other ranks: {e}");
            sys::mpi::abort(1);
            sys::exit_now(1);
        }
        sys::mpi::at_exit(leave_at_exit);
    } else {
        serve_rank(rank);
    }
}

// ---------------------------------------------------------------------------------------
// Rank 0

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
    stop: Encoded,
    abandon: Encoded,
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

/// Rank 0: listens, broadcasts the address and a fresh key, accepts the ranks' connections on
/// a thread of its own (blocking, no spinning).
fn start_hub(size: u32) -> Result<()> {
    let hub = Arc::new(Hub {
        stop: Encoded::new(&Control::Stop)?,
        abandon: Encoded::new(&Control::Abandon)?,
        state: Mutex::new(HubState {
            idle: VecDeque::new(),
            control: Vec::new(),
            lost: Vec::new(),
            lent: false,
            stopping: false,
        }),
        changed: Condvar::new(),
    });
    let _ = HUB.set(Arc::clone(&hub));
    crate::run_support::record_rank(0, &hostname());
    if size <= 1 {
        return Ok(());
    }
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
    sys::mpi::bcast(&mut message, 0).map_err(Error::io("cannot broadcast rank 0's address"))?;
    std::thread::Builder::new()
        .name("mp-mpi-accept".into())
        .spawn(move || accept_ranks(&listener, &hub))
        .map_err(Error::io("cannot start the thread accepting the ranks"))?;
    Ok(())
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
                    let _ = hub.abandon.send(&channel);
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

/// A pool lost the connection to `rank`: it is not waited for again.
pub(crate) fn rank_lost(rank: u32, host: &str) {
    if let Some(hub) = HUB.get() {
        let mut st = hub.lock();
        if !st.lost.iter().any(|(r, _)| *r == rank) {
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
            let _ = frame.send(channel);
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
/// How long `MPI_Finalize` may take before the process exits without it.
const FINALIZE_GRACE: Duration = Duration::from_secs(10);

/// `MPI_Finalize`, with a watchdog: if it has not returned within [`FINALIZE_GRACE`] (a rank
/// vanished during it), the process exits with status 1 instead of hanging.
fn finalize_or_exit() {
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

extern "C" fn leave_at_exit() {
    leave();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn heartbeat(channel: &Channel) {
    let (idle, interval, count) = KEEPALIVE;
    if let Err(e) = sys::mpi::keepalive(channel.fd(), idle, interval, count) {
        tracing::warn!(target: "mp", "cannot turn on the heartbeat of a connection between ranks: {e}");
    }
}

// ---------------------------------------------------------------------------------------
// Ranks ≥ 1

/// A worker rank's life: receives rank 0's address, connects, serves pools on one thread while
/// the main thread (which initialised MPI, so it finalizes) waits for stop. Never returns.
fn serve_rank(rank: u32) -> ! {
    crate::bootstrap::identity::set(crate::bootstrap::identity::Identity {
        name: format!("MpiRank-{rank}"),
        daemon: false,
        parent: None,
        parent_name: "MainProcess".to_owned(),
    });
    let mut message = vec![0u8; BCAST_LEN];
    if let Err(e) = sys::mpi::bcast(&mut message, 0) {
        eprintln!("mp: rank {rank} did not receive rank 0's address: {e}");
        sys::exit_now(1);
    }
    let text = String::from_utf8_lossy(&message);
    let text = text.trim_end_matches('\0');
    let Some((address, key)) = text
        .split_once('\n')
        .and_then(|(a, k)| Some((a.to_owned(), unhex(k)?)))
    else {
        eprintln!("mp: rank {rank} received a malformed address from rank 0: {text:?}");
        sys::exit_now(1);
    };
    let address = match address.to_address() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mp: rank {rank} cannot use rank 0's address {address}: {e}");
            sys::exit_now(1);
        }
    };
    let host = hostname();
    let pid = std::process::id();
    let control = match connect(
        &address,
        &key,
        &Hello::Control {
            rank,
            host: host.clone(),
            pid,
        },
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mp: rank {rank} cannot connect to rank 0 at {address}: {e}");
            sys::exit_now(1);
        }
    };
    let serving = std::thread::Builder::new()
        .name("mp-mpi-serve".into())
        .spawn(move || serve_pools(rank, &host, pid, &address, &key));
    if let Err(e) = serving {
        eprintln!("mp: rank {rank} cannot start serving: {e}");
        sys::exit_now(1);
    }
    match control.recv_frame(None).and_then(|f| f.decode::<Control>()) {
        Ok(Control::Stop) => {
            finalize_or_exit();
            crate::run_support::drain_output();
            sys::exit_now(0);
        }
        Ok(Control::Abandon) => {
            crate::run_support::drain_output();
            sys::exit_now(0);
        }
        Err(_) => {
            // Rank 0 is gone: finalizing would wait for it forever.
            eprintln!("mp: rank {rank}: rank 0 is gone; exiting without MPI_Finalize");
            sys::exit_now(1);
        }
    }
}

fn connect(address: &Address, key: &[u8], hello: &Hello) -> Result<Channel> {
    let channel = connect_channel(address, key)?;
    channel.set_limit(MAX_MESSAGE);
    heartbeat(&channel);
    channel.send(hello)?;
    Ok(channel)
}

/// Serves one pool per pool connection, reconnecting after each; a connection that cannot be
/// made is retried (the control connection decides when rank 0 is gone).
fn serve_pools(rank: u32, host: &str, pid: u32, address: &Address, key: &[u8]) {
    let mut failures = 0u32;
    loop {
        let hello = Hello::Pool {
            rank,
            host: host.to_owned(),
            pid,
        };
        let channel = match connect(address, key, &hello) {
            Ok(c) => {
                failures = 0;
                c
            }
            Err(e) => {
                failures += 1;
                if failures == 3 {
                    eprintln!("mp: rank {rank} cannot connect to rank 0 for a pool: {e}; retrying");
                }
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        // The pool's first message (its initializer), then its tasks until it closes.
        let init = match channel.recv_frame(None) {
            Ok(init) => init,
            Err(_) => continue,
        };
        crate::pool::serve(&channel, init);
    }
}
