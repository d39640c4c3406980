//! The state a pool's handle, its calls' waiters and its supervisor thread share
//! ([`PoolCore`]), and the moves any of them may make under its lock: queue a chunk, hand queued
//! chunks to workers with room ([`dispatch`]), read the replies that have arrived
//! ([`read_replies`]). Whoever holds the lock does the work, so an `apply` whose caller reads
//! its own reply makes no thread hop.
//!
//! It must not block under the lock (sends fit the socket's buffer, reads are non-blocking),
//! start or reap processes, or sleep: that is the supervisor thread's work (`supervisor.rs`).
//!
//! When there is a backlog, a worker holds the task it runs and one queued behind it, so it
//! never waits for a round trip between tasks; a worker whose tasks finish within
//! [`FAST_TASK`] holds up to [`PREFETCH_FAST`], because a supervisor's wake-up can take longer
//! than such a task. What a worker holds always fits its socket's send buffer, so a send never
//! blocks. Replies come back in order, so the front of a worker's queue is always the task it
//! is running — which is what a death or a time-out costs (the queued ones are requeued).

use crate::sys::Child;
use std::collections::VecDeque;

use super::link::{Backend, Link};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::child::FromWorker;
use super::job::{Job, Pump};
use super::outcome::{ChunkFailure, ChunkResult, StopReason};
use super::wire::Encoded;
use crate::codec;
use crate::error::{Error, Result};
use crate::sys;
use crate::wire::Channel;

/// Chunks a worker may hold: the running one and one queued behind it.
const PREFETCH: usize = 2;
/// Chunks a worker whose last task took less than [`FAST_TASK`] may hold.
const PREFETCH_FAST: usize = 4;
/// A task this short is over before the supervisor, woken by the previous reply, could send
/// the next one: its worker gets [`PREFETCH_FAST`] tasks.
const FAST_TASK: Duration = Duration::from_millis(1);

/// What the builder decided; fixed for the pool's life.
pub(crate) struct PoolConfig {
    pub(crate) processes: usize,
    /// The first message to every worker: the initializer (if any) and its arguments.
    pub(crate) init: Encoded,
    pub(crate) max_tasks_per_child: Option<usize>,
    pub(crate) retry: bool,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) name: String,
    /// `None`: the process-wide start method.
    pub(crate) start_method: Option<crate::StartMethod>,
    pub(crate) backend: Backend,
}

/// A chunk of tasks of one call, encoded once (it may be sent again after a death).
pub(crate) struct Chunk {
    pub(crate) job: Arc<Job>,
    pub(crate) index: usize,
    pub(crate) len: usize,
    pub(crate) msg: Encoded,
    pub(crate) attempts: u8,
}

pub(super) struct InFlight {
    pub(super) chunk: Chunk,
    /// When the worker started it (`None` while it waits behind another task).
    pub(super) started: Option<Instant>,
}

pub(super) struct WorkerSlot {
    /// A child process or an MPI rank (`link.rs`).
    pub(super) link: Link,
    /// The worker's process id (on its host, for a rank).
    pub(super) pid: u32,
    pub(super) channel: Channel,
    pub(super) in_flight: VecDeque<InFlight>,
    /// The worker reported `Ready` (its initializer ran).
    pub(super) ready: bool,
    /// Chunks sent (a chunk counts as one task), for `max_tasks_per_child`.
    pub(super) sent: usize,
    /// A task is queued behind others only while the frames the worker holds, on the socket
    /// or read, add up to at most this many bytes: half the socket's send buffer, so a send
    /// to a busy worker never blocks (the kernel blocks a sender only once what is queued
    /// exceeds the buffer). Linux's usual buffers take three or four inline frames.
    pub(super) send_budget: usize,
    /// Its last task took less than [`FAST_TASK`].
    pub(super) fast: bool,
    /// Reached `max_tasks_per_child`: gets no more tasks, is closed once idle.
    pub(super) retiring: bool,
    /// A send failed: the worker is dying; its end-of-file is on the way.
    pub(super) broken: bool,
    /// Killed for running past this limit.
    pub(super) timed_out: Option<Duration>,
    /// Seen dead (end-of-file or protocol violation); to be reaped and replaced.
    pub(super) dead: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum PoolStatus {
    Open,
    Closed,
    Stopping(StopReason),
    Finished(Option<StopReason>),
}

pub(crate) struct PoolState {
    pub(crate) status: PoolStatus,
    pub(super) pending: VecDeque<Chunk>,
    pub(super) workers: Vec<WorkerSlot>,
    /// Workers closed after `max_tasks_per_child`, exiting on their own.
    pub(super) retired: Vec<Child>,
    /// Chunks submitted and not yet completed (pending or in flight).
    pub(super) outstanding: usize,
    pub(super) started: u64,
    pub(super) startup_failures: u32,
    /// The workers are MPI ranks lent by `mp::mpi`, given back when the pool stops.
    pub(super) ranks: bool,
}

impl WorkerSlot {
    /// A worker just started (or lent by MPI), its socket's send buffer `send_buffer` bytes.
    pub(super) fn new(pid: u32, link: Link, channel: Channel, send_buffer: usize) -> WorkerSlot {
        WorkerSlot {
            link,
            pid,
            channel,
            in_flight: VecDeque::new(),
            ready: false,
            sent: 0,
            send_budget: send_buffer / 2,
            fast: false,
            retiring: false,
            broken: false,
            timed_out: None,
            dead: false,
        }
    }

    /// Stops the worker at once (see [`Link::kill`]); its end-of-file follows.
    pub(super) fn kill(&self) {
        self.link.kill(self.pid, &self.channel);
    }
}

/// The part of a pool that its handle, its calls and its supervisor thread share.
pub(crate) struct PoolCore {
    pub(super) state: Mutex<PoolState>,
    /// Signalled when the supervisor has finished (for `join`).
    pub(super) finished: Condvar,
    pub(super) wakeup: sys::Wakeup,
    pub(crate) config: PoolConfig,
}

impl PoolCore {
    pub(crate) fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn next_number(&self) -> u64 {
        let mut st = self.lock();
        st.started += 1;
        st.started
    }

    /// Queues `task` and hands it to an idle worker at once if there is one.
    pub(crate) fn submit(&self, chunk: Chunk) -> Result<()> {
        let mut st = self.lock();
        match &st.status {
            PoolStatus::Open => {}
            PoolStatus::Closed => return Err(Error::Closed),
            PoolStatus::Stopping(reason) | PoolStatus::Finished(Some(reason)) => {
                return Err(reason.error());
            }
            PoolStatus::Finished(None) => return Err(Error::Closed),
        }
        st.pending.push_back(chunk);
        st.outstanding += 1;
        dispatch(&mut st, &self.config);
        drop(st);
        if self.config.task_timeout.is_some() {
            // The supervisor's sleep must end at the new task's deadline.
            self.wakeup.notify();
        }
        Ok(())
    }

    /// Changes the status (close, terminate) and wakes the supervisor to act on it.
    pub(crate) fn set_status(&self, f: impl FnOnce(&PoolStatus) -> Option<PoolStatus>) {
        let mut st = self.lock();
        if let Some(next) = f(&st.status) {
            st.status = next;
        }
        drop(st);
        self.wakeup.notify();
    }

    /// Blocks until the supervisor has finished (with Ctrl-C routed to the pools).
    pub(crate) fn wait_finished(&self) {
        let mut st = self.lock();
        let _armed = sys::arm_interrupts().ok();
        while !matches!(st.status, PoolStatus::Finished(_)) {
            st = self.finished.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub(crate) fn processes(&self) -> usize {
        self.config.processes
    }

    /// Reads the replies that have arrived, in the calling thread, and hands freed workers
    /// their next tasks: a caller waiting for a short task's result picks it up itself
    /// instead of waiting for the supervisor thread to wake up for it, which on a busy
    /// machine costs more than the task. Never blocks: does nothing while another thread
    /// holds the pool's state. Wakes the supervisor for whatever only it handles (a death, a
    /// stop, a worker to retire, a new task deadline), because the reply it would have woken
    /// for is gone.
    pub(crate) fn read_arrived(&self) {
        let mut st = match self.state.try_lock() {
            Ok(st) => st,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        if !matches!(st.status, PoolStatus::Open | PoolStatus::Closed) {
            return;
        }
        let outstanding = st.outstanding;
        let mut clock_started = false;
        for i in 0..st.workers.len() {
            if !st.workers[i].in_flight.is_empty() {
                clock_started |= read_replies(&mut st, i);
            }
        }
        // A worker that said it is ready started its first task's clock: the supervisor must
        // learn of that deadline even when no task finished.
        if st.outstanding == outstanding && !clock_started && !st.workers.iter().any(|s| s.dead) {
            return;
        }
        dispatch(&mut st, &self.config);
        let supervisor_needed = self.config.task_timeout.is_some()
            || !matches!(st.status, PoolStatus::Open)
            || st
                .workers
                .iter()
                .any(|s| s.dead || s.broken || (s.retiring && s.in_flight.is_empty()));
        drop(st);
        if supervisor_needed {
            self.wakeup.notify();
        }
    }
}

impl Pump for PoolCore {
    fn pump(&self) {
        self.read_arrived();
    }
}

/// Whether `slot` may take `task` now.
fn has_room(slot: &WorkerSlot, chunk: &Chunk, backlog: bool) -> bool {
    if slot.retiring || slot.broken || slot.dead || slot.timed_out.is_some() {
        return false;
    }
    match slot.in_flight.len() {
        // A worker still starting (its initializer may run long) reads nothing yet: a task
        // larger than its budget would fill its socket and block this sender (or, between
        // ranks, leave a zero window that the heartbeat takes for a vanished host).
        0 => slot.ready || chunk.msg.socket_len() <= slot.send_budget,
        n => {
            let depth = if slot.fast { PREFETCH_FAST } else { PREFETCH };
            let held: usize = slot
                .in_flight
                .iter()
                .map(|f| f.chunk.msg.socket_len())
                .sum();
            n < depth && backlog && slot.ready && held + chunk.msg.socket_len() <= slot.send_budget
        }
    }
}

/// Hands pending tasks to workers with room.
pub(super) fn dispatch(st: &mut PoolState, config: &PoolConfig) {
    let PoolState {
        pending,
        workers,
        outstanding,
        ..
    } = st;
    let n_workers = workers.len();
    for slot in workers.iter_mut() {
        while let Some(chunk) = pending.front() {
            if chunk.job.is_cancelled() {
                pending.pop_front();
                *outstanding -= 1;
                continue;
            }
            if !has_room(slot, chunk, pending.len() >= n_workers) {
                break;
            }
            let chunk = pending.pop_front().expect("front exists");
            if chunk.msg.send(&slot.channel).is_err() {
                // The worker is dying, or its connection is unusable: make sure it dies; the
                // supervisor sees its end-of-file and replaces it.
                slot.kill();
                slot.broken = true;
                pending.push_front(chunk);
                break;
            }
            slot.sent += 1;
            if config
                .max_tasks_per_child
                .is_some_and(|max| slot.sent >= max)
            {
                slot.retiring = true;
            }
            let started = (slot.ready && slot.in_flight.is_empty()).then(Instant::now);
            slot.in_flight.push_back(InFlight { chunk, started });
        }
    }
}

impl WorkerSlot {
    /// The running task's deadline, if the pool has a per-task limit.
    pub(super) fn deadline(&self, limit: Option<Duration>) -> Option<(Instant, Duration)> {
        let front = self.in_flight.front()?;
        let limit = limit?.saturating_mul(front.chunk.len.max(1) as u32);
        Some((front.started? + limit, limit))
    }
}

/// Reads every complete reply worker `i` has sent; true when one of them (its `Ready`) started
/// a task's clock, a deadline the supervisor must learn of.
pub(super) fn read_replies(st: &mut PoolState, i: usize) -> bool {
    let mut clock_started = false;
    loop {
        let slot = &mut st.workers[i];
        if slot.dead {
            return clock_started;
        }
        // Numeric results of the running chunk go straight into its call's output, when it
        // has one, from where they arrived.
        let running = slot.in_flight.front().map(|f| &f.chunk);
        let got = slot.channel.recv_frame_or(Some(Duration::ZERO), |payload| {
            running.is_some_and(|chunk| place_results(chunk, payload))
        });
        let frame = match got {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                finish_front(st, i, ChunkResult::Placed);
                continue;
            }
            Err(Error::Timeout) => return clock_started,
            Err(Error::Disconnected) => {
                slot.dead = true;
                return clock_started;
            }
            // The connection failed rather than closed (reset, or the heartbeat's timeout
            // between ranks): the worker is lost, as at an end-of-file.
            Err(e @ Error::Io { .. }) => {
                tracing::warn!(target: "mp", "lost the connection to pool worker (pid {}): {e}", slot.pid);
                slot.kill();
                slot.dead = true;
                return clock_started;
            }
            Err(e) => {
                protocol_violation(slot, &e.to_string());
                return clock_started;
            }
        };
        let (header, rest) = match frame.split_prefix::<FromWorker>() {
            Ok(split) => split,
            Err(e) => {
                protocol_violation(slot, &e.to_string());
                return clock_started;
            }
        };
        match header {
            FromWorker::Ready => {
                slot.ready = true;
                st.startup_failures = 0;
                if let Some(front) = slot.in_flight.front_mut() {
                    front.started = Some(Instant::now());
                    clock_started = true;
                }
            }
            FromWorker::InitFailed(message) => {
                st.status = PoolStatus::Stopping(StopReason::Initializer(message));
                return clock_started;
            }
            FromWorker::Done { panics } => {
                finish_front(
                    st,
                    i,
                    ChunkResult::Done {
                        frame: rest,
                        panics,
                    },
                );
            }
            FromWorker::Failed(error) => {
                let failure = ChunkFailure::Child(Arc::new(error));
                finish_front(st, i, ChunkResult::Failed(failure));
            }
        }
    }
}

/// Copies the results in a worker's reply `payload` (for `chunk`) into the chunk's call's
/// output, if it has one and the reply holds the chunk's results (see `in_place.rs`); whether
/// they were copied.
fn place_results(chunk: &Chunk, payload: &[u8]) -> bool {
    match codec::decode_prefix::<FromWorker>(payload) {
        Ok((FromWorker::Done { panics: false }, used)) => {
            chunk.job.place(chunk.index, chunk.len, &payload[used..])
        }
        _ => false,
    }
}

/// The running task of worker `i` finished with `result`.
fn finish_front(st: &mut PoolState, i: usize, result: ChunkResult) {
    let slot = &mut st.workers[i];
    let Some(done) = slot.in_flight.pop_front() else {
        protocol_violation(slot, "a reply for a chunk it was not given");
        return;
    };
    slot.fast = done.started.is_some_and(|t| t.elapsed() < FAST_TASK);
    if let Some(next) = slot.in_flight.front_mut() {
        next.started = Some(Instant::now());
    }
    done.chunk.job.complete(done.chunk.index, result);
    st.outstanding -= 1;
}

fn protocol_violation(slot: &mut WorkerSlot, what: &str) {
    tracing::error!(target: "mp", "pool worker (pid {}) broke the protocol ({what}); killing it", slot.pid);
    slot.kill();
    slot.dead = true;
}

impl std::fmt::Debug for PoolCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Pool")
            .field("processes", &self.config.processes)
            .field("status", &st.status)
            .field(
                "workers",
                &st.workers.iter().map(|s| s.pid).collect::<Vec<_>>(),
            )
            .field("outstanding", &st.outstanding)
            .finish()
    }
}
