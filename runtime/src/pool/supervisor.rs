//! The pool's supervisor: one thread per pool that owns the workers, feeds them tasks, routes
//! their replies to the calls, notices deaths and time-outs at once (a worker's socket reports
//! end-of-file when it dies, whatever killed it), replaces workers, and stops the pool on
//! `terminate`, drop or Ctrl-C.
//!
//! Everything shared sits in one [`State`] behind a mutex. Callers that submit tasks dispatch
//! them to idle workers themselves, and a caller spinning for its result reads the workers'
//! replies itself ([`Shared::read_arrived`]), so an `apply` makes no thread hop; the
//! supervisor reads and dispatches whenever it wakes up first.
//!
//! When there is a backlog, a worker holds the task it runs and one queued behind it, so it
//! never waits for a round trip between tasks; a worker whose tasks finish within
//! [`FAST_TASK`] holds up to [`PREFETCH_FAST`], because a supervisor's wake-up can take longer
//! than such a task. What a worker holds always fits its socket's send buffer, so a send never
//! blocks. Replies come back in order, so the front of a worker's queue is always the task it
//! is running — which is what a death or a time-out costs (the queued ones are requeued).

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::process::Child;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::call::{Call, ChunkFailure, ChunkResult, StopReason};
use super::child::FromWorker;
use crate::bootstrap::reap::status_of;
use crate::bootstrap::spawn::{Role, start_child_frame};
use crate::channel::{Channel, Encoded, INLINE_MAX};
use crate::error::{Error, ExitStatus, Result};
use crate::sys;

/// Tasks a worker may hold: the running one and one queued behind it.
const PREFETCH: usize = 2;
/// Tasks a worker whose last task took less than [`FAST_TASK`] may hold.
const PREFETCH_FAST: usize = 4;
/// A task this short is over before the supervisor, woken by the previous reply, could send
/// the next one: its worker gets [`PREFETCH_FAST`] tasks.
const FAST_TASK: Duration = Duration::from_millis(1);
/// The send buffer asked for on each worker's socket: room for a few inline frames (the
/// kernel may grant less; see [`Slot::send_budget`]).
const SEND_BUFFER: usize = 4 * (INLINE_MAX + 64);
/// Workers that die before they are ready this many times in a row stop the pool.
const MAX_STARTUP_FAILURES: u32 = 3;
/// How long `terminate` lets workers exit on `SIGTERM` before it sends `SIGKILL`.
const TERMINATE_GRACE: Duration = Duration::from_millis(200);

/// What the builder decided; fixed for the pool's life.
pub(crate) struct Config {
    pub(crate) processes: usize,
    /// The first message to every worker: the initializer (if any) and its arguments.
    pub(crate) init: Encoded,
    pub(crate) max_tasks_per_child: Option<usize>,
    pub(crate) retry: bool,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) name: String,
}

/// A chunk of tasks of one call, encoded once (it may be sent again after a death).
pub(crate) struct Task {
    pub(crate) call: Arc<Call>,
    pub(crate) chunk: usize,
    pub(crate) len: usize,
    pub(crate) msg: Encoded,
    pub(crate) attempts: u8,
}

struct InFlight {
    task: Task,
    /// When the worker started it (`None` while it waits behind another task).
    started: Option<Instant>,
}

struct Slot {
    child: Child,
    pid: u32,
    channel: Channel,
    in_flight: VecDeque<InFlight>,
    /// The worker reported `Ready` (its initializer ran).
    ready: bool,
    /// Tasks sent, for `max_tasks_per_child`.
    sent: usize,
    /// A task is queued behind others only while the frames the worker holds, on the socket
    /// or read, add up to at most this many bytes: half the socket's send buffer, so a send
    /// to a busy worker never blocks (the kernel blocks a sender only once what is queued
    /// exceeds the buffer). Linux's usual buffers take three or four inline frames.
    send_budget: usize,
    /// Its last task took less than [`FAST_TASK`].
    fast: bool,
    /// Reached `max_tasks_per_child`: gets no more tasks, is closed once idle.
    retiring: bool,
    /// A send failed: the worker is dying; its end-of-file is on the way.
    broken: bool,
    /// Killed for running past this limit.
    timed_out: Option<Duration>,
    /// Seen dead (end-of-file or protocol violation); to be reaped and replaced.
    dead: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Status {
    Open,
    Closed,
    Stopping(StopReason),
    Finished(Option<StopReason>),
}

pub(crate) struct State {
    pub(crate) status: Status,
    pending: VecDeque<Task>,
    workers: Vec<Slot>,
    /// Workers closed after `max_tasks_per_child`, exiting on their own.
    retired: Vec<Child>,
    /// Tasks submitted and not yet completed (pending or in flight).
    outstanding: usize,
    started: u64,
    startup_failures: u32,
}

/// The part of a pool that its handle, its calls and its supervisor thread share.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Signalled when the supervisor has finished (for `join`).
    finished: Condvar,
    wakeup: sys::Wakeup,
    pub(crate) config: Config,
}

impl Shared {
    /// Starts `config.processes` workers; the supervisor thread is started by the caller.
    pub(crate) fn start(config: Config) -> Result<Arc<Shared>> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                status: Status::Open,
                pending: VecDeque::new(),
                workers: Vec::new(),
                retired: Vec::new(),
                outstanding: 0,
                started: 0,
                startup_failures: 0,
            }),
            finished: Condvar::new(),
            wakeup: sys::Wakeup::new().map_err(Error::io("cannot create the pool's wake-up"))?,
            config,
        });
        for _ in 0..shared.config.processes {
            let n = shared.next_number();
            match shared.spawn(n) {
                Ok(slot) => shared.lock().workers.push(slot),
                Err(e) => {
                    // The workers started so far are stopped and reaped: no zombie is left
                    // behind a pool that never existed for its caller.
                    shut_down(&mut shared.lock());
                    return Err(e);
                }
            }
        }
        register_for_interrupts(&shared);
        Ok(shared)
    }

    /// Stops and reaps the workers of a pool whose supervisor could not start.
    pub(crate) fn abandon(&self) {
        shut_down(&mut self.lock());
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_number(&self) -> u64 {
        let mut st = self.lock();
        st.started += 1;
        st.started
    }

    fn spawn(&self, n: u64) -> Result<Slot> {
        let name = format!("{}-{n}", self.config.name);
        let init = &self.config.init;
        let (child, channel) =
            start_child_frame(Role::PoolWorker, init.bytes(), &init.fds(), &name, false)?;
        let send_buffer = match sys::grow_send_buffer(channel.fd(), SEND_BUFFER) {
            Ok(size) => size,
            Err(e) => {
                let mut child = child;
                drop(channel);
                reap(&mut child);
                return Err(Error::io("cannot read a pool worker's socket buffer size")(
                    e,
                ));
            }
        };
        Ok(Slot {
            pid: child.id(),
            child,
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
        })
    }

    /// Queues `task` and hands it to an idle worker at once if there is one.
    pub(crate) fn submit(&self, task: Task) -> Result<()> {
        let mut st = self.lock();
        match &st.status {
            Status::Open => {}
            Status::Closed => return Err(Error::Closed),
            Status::Stopping(reason) | Status::Finished(Some(reason)) => {
                return Err(reason.error());
            }
            Status::Finished(None) => return Err(Error::Closed),
        }
        st.pending.push_back(task);
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
    pub(crate) fn set_status(&self, f: impl FnOnce(&Status) -> Option<Status>) {
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
        while !matches!(st.status, Status::Finished(_)) {
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
        if !matches!(st.status, Status::Open | Status::Closed) {
            return;
        }
        let outstanding = st.outstanding;
        for i in 0..st.workers.len() {
            if !st.workers[i].in_flight.is_empty() {
                read_replies(&mut st, i);
            }
        }
        if st.outstanding == outstanding && !st.workers.iter().any(|s| s.dead) {
            return;
        }
        dispatch(&mut st, &self.config);
        let supervisor_needed = self.config.task_timeout.is_some()
            || !matches!(st.status, Status::Open)
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

/// Whether `slot` may take `task` now.
fn has_room(slot: &Slot, task: &Task, backlog: bool) -> bool {
    if slot.retiring || slot.broken || slot.dead || slot.timed_out.is_some() {
        return false;
    }
    match slot.in_flight.len() {
        0 => true,
        n => {
            let depth = if slot.fast { PREFETCH_FAST } else { PREFETCH };
            let held: usize = slot.in_flight.iter().map(|f| f.task.msg.socket_len()).sum();
            n < depth && backlog && slot.ready && held + task.msg.socket_len() <= slot.send_budget
        }
    }
}

/// Hands pending tasks to workers with room.
fn dispatch(st: &mut State, config: &Config) {
    let State {
        pending,
        workers,
        outstanding,
        ..
    } = st;
    let n_workers = workers.len();
    for slot in workers.iter_mut() {
        while let Some(task) = pending.front() {
            if task.call.is_cancelled() {
                pending.pop_front();
                *outstanding -= 1;
                continue;
            }
            if !has_room(slot, task, pending.len() >= n_workers) {
                break;
            }
            let task = pending.pop_front().expect("front exists");
            if task.msg.send(&slot.channel).is_err() {
                // The worker is dying, or its connection is unusable: make sure it dies; the
                // supervisor sees its end-of-file and replaces it.
                let _ = sys::kill(slot.pid, sys::Signal::Kill);
                slot.broken = true;
                pending.push_front(task);
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
            slot.in_flight.push_back(InFlight { task, started });
        }
    }
}

impl Slot {
    /// The running task's deadline, if the pool has a per-task limit.
    fn deadline(&self, limit: Option<Duration>) -> Option<(Instant, Duration)> {
        let front = self.in_flight.front()?;
        let limit = limit?.saturating_mul(front.task.len.max(1) as u32);
        Some((front.started? + limit, limit))
    }
}

/// The supervisor thread's body.
pub(crate) fn run(shared: Arc<Shared>) {
    let mut ready = Vec::new();
    let mut fds: Vec<RawFd> = Vec::new();
    loop {
        let (timeout, missing) = {
            let mut st = shared.lock();
            if let Status::Stopping(reason) = &st.status {
                let reason = reason.clone();
                stop(&mut st, &reason);
                st.status = Status::Finished(Some(reason));
                shared.finished.notify_all();
                return;
            }
            reap_retired(&mut st);
            dispatch(&mut st, &shared.config);
            if matches!(st.status, Status::Closed) && st.outstanding == 0 {
                shut_down(&mut st);
                st.status = Status::Finished(None);
                shared.finished.notify_all();
                return;
            }
            let now = Instant::now();
            let timeout = st
                .workers
                .iter()
                .filter(|s| s.timed_out.is_none())
                .filter_map(|s| s.deadline(shared.config.task_timeout))
                .map(|(d, _)| d.saturating_duration_since(now))
                .min();
            fds.clear();
            fds.push(shared.wakeup.fd().as_raw_fd());
            fds.extend(st.workers.iter().map(|s| s.channel.fd().as_raw_fd()));
            let missing = shared.config.processes.saturating_sub(st.workers.len());
            (timeout, missing)
        };
        if missing > 0 {
            replace_workers(&shared, missing);
            continue;
        }
        let borrowed: Vec<_> = fds.iter().map(|&fd| sys::borrow_raw_fd(fd)).collect();
        if let Err(e) = sys::poll_many(&borrowed, timeout, &mut ready) {
            tracing::error!(target: "mp", "pool supervisor cannot poll its workers: {e}");
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let mut st = shared.lock();
        // Only this thread adds or removes workers, so the indices polled are still valid.
        for &i in &ready {
            if i == 0 {
                shared.wakeup.drain();
            } else {
                read_replies(&mut st, i - 1);
            }
        }
        check_timeouts(&mut st, shared.config.task_timeout);
        bury_dead(&mut st, &shared.config);
    }
}

/// Starts up to `missing` workers outside the lock; stops the pool if none can start.
fn replace_workers(shared: &Shared, missing: usize) {
    for _ in 0..missing {
        let n = shared.next_number();
        match shared.spawn(n) {
            Ok(slot) => shared.lock().workers.push(slot),
            Err(e) => {
                let mut st = shared.lock();
                if st.workers.is_empty() {
                    st.status = Status::Stopping(StopReason::Broken(format!(
                        "cannot start pool workers: {e}"
                    )));
                } else {
                    tracing::warn!(target: "mp", "cannot start a pool worker: {e}; running with fewer, retrying in 100 ms");
                    drop(st);
                    std::thread::sleep(Duration::from_millis(100));
                }
                return;
            }
        }
    }
}

/// Reads every complete reply worker `i` has sent.
fn read_replies(st: &mut State, i: usize) {
    loop {
        let slot = &mut st.workers[i];
        if slot.dead {
            return;
        }
        let frame = match slot.channel.recv_frame(Some(Duration::ZERO)) {
            Ok(frame) => frame,
            Err(Error::Timeout) => return,
            Err(Error::Disconnected) => {
                slot.dead = true;
                return;
            }
            Err(e) => {
                protocol_violation(slot, &e.to_string());
                return;
            }
        };
        let (header, rest) = match frame.split_prefix::<FromWorker>() {
            Ok(split) => split,
            Err(e) => {
                protocol_violation(slot, &e.to_string());
                return;
            }
        };
        match header {
            FromWorker::Ready => {
                slot.ready = true;
                st.startup_failures = 0;
                if let Some(front) = slot.in_flight.front_mut() {
                    front.started = Some(Instant::now());
                }
            }
            FromWorker::InitFailed(message) => {
                st.status = Status::Stopping(StopReason::Initializer(message));
                return;
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

/// The running task of worker `i` finished with `result`.
fn finish_front(st: &mut State, i: usize, result: ChunkResult) {
    let slot = &mut st.workers[i];
    let Some(done) = slot.in_flight.pop_front() else {
        protocol_violation(slot, "a reply for a task it was not given");
        return;
    };
    slot.fast = done.started.is_some_and(|t| t.elapsed() < FAST_TASK);
    if let Some(next) = slot.in_flight.front_mut() {
        next.started = Some(Instant::now());
    }
    done.task.call.complete(done.task.chunk, result);
    st.outstanding -= 1;
}

fn protocol_violation(slot: &mut Slot, what: &str) {
    tracing::error!(target: "mp", "pool worker (pid {}) broke the protocol ({what}); killing it", slot.pid);
    let _ = sys::kill(slot.pid, sys::Signal::Kill);
    slot.dead = true;
}

fn check_timeouts(st: &mut State, limit: Option<Duration>) {
    let now = Instant::now();
    for slot in &mut st.workers {
        if slot.timed_out.is_some() || slot.dead {
            continue;
        }
        if let Some((deadline, limit)) = slot.deadline(limit) {
            if deadline <= now {
                tracing::warn!(target: "mp", "pool worker (pid {}) ran past the task limit of {limit:?}; killing it", slot.pid);
                let _ = sys::kill(slot.pid, sys::Signal::Kill);
                slot.timed_out = Some(limit);
            }
        }
    }
}

/// Reaps dead workers and settles the tasks they held; retires idle retiring ones.
fn bury_dead(st: &mut State, config: &Config) {
    let mut i = 0;
    while i < st.workers.len() {
        let slot = &st.workers[i];
        let retire = slot.retiring && slot.in_flight.is_empty() && !slot.dead;
        if !slot.dead && !retire {
            i += 1;
            continue;
        }
        let slot = st.workers.swap_remove(i);
        if retire {
            // Closing its connection makes it exit; it is reaped later.
            let Slot { child, .. } = slot;
            st.retired.push(child);
        } else {
            settle_death(st, slot, config);
        }
    }
}

fn settle_death(st: &mut State, mut slot: Slot, config: &Config) {
    let status = reap(&mut slot.child);
    let pid = slot.pid;
    let mut lost = std::mem::take(&mut slot.in_flight);
    if !slot.ready {
        // It never started a task: they all go back. Dying again and again while starting is
        // a broken environment or initializer, which would otherwise loop forever.
        st.startup_failures += 1;
        if st.startup_failures >= MAX_STARTUP_FAILURES {
            st.status = Status::Stopping(StopReason::Initializer(format!(
                "pool workers keep dying while starting (the last one {status})"
            )));
        }
        requeue(st, lost);
        return;
    }
    if let Some(running) = lost.pop_front() {
        let task = running.task;
        if let Some(limit) = slot.timed_out {
            fail(st, task, ChunkFailure::Timeout { pid, limit });
        } else if config.retry && task.attempts == 0 {
            tracing::warn!(target: "mp", "pool worker (pid {pid}) {status}; retrying its task");
            let mut task = task;
            task.attempts += 1;
            st.pending.push_front(task);
        } else {
            tracing::warn!(target: "mp", "pool worker (pid {pid}) {status}; failing its task");
            fail(st, task, ChunkFailure::Died { pid, status });
        }
    }
    requeue(st, lost);
}

/// Puts never-started tasks back at the head of the queue, in their order.
fn requeue(st: &mut State, lost: VecDeque<InFlight>) {
    for f in lost.into_iter().rev() {
        st.pending.push_front(f.task);
    }
}

fn fail(st: &mut State, task: Task, why: ChunkFailure) {
    task.call.complete(task.chunk, ChunkResult::Failed(why));
    st.outstanding -= 1;
}

/// Waits for a dead worker; it has closed its socket, so this is quick.
fn reap(child: &mut Child) -> ExitStatus {
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

fn reap_retired(st: &mut State) {
    st.retired
        .retain_mut(|child| !matches!(child.try_wait(), Ok(Some(_)) | Err(_)));
}

/// Fails everything the pool holds with `reason` and stops every worker.
fn stop(st: &mut State, reason: &StopReason) {
    let why = ChunkFailure::Stopped(reason.clone());
    while let Some(task) = st.pending.pop_front() {
        fail(st, task, why.clone());
    }
    let mut workers = std::mem::take(&mut st.workers);
    for slot in &mut workers {
        for f in std::mem::take(&mut slot.in_flight) {
            fail(st, f.task, why.clone());
        }
    }
    let mut children: Vec<Child> = workers.into_iter().map(|s| s.child).collect();
    children.append(&mut st.retired);
    terminate_all(children);
}

/// Closes every worker's connection (they exit when idle) and waits for them.
fn shut_down(st: &mut State) {
    let mut children: Vec<Child> = std::mem::take(&mut st.workers)
        .into_iter()
        .map(|s| s.child)
        .collect();
    children.append(&mut st.retired);
    for child in &mut children {
        if !matches!(
            sys::wait_child_timeout(child, Duration::from_secs(5)),
            Ok(Some(_))
        ) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `SIGTERM`, a short grace, then `SIGKILL` for what is left; reaps everything.
fn terminate_all(mut children: Vec<Child>) {
    for child in &children {
        let _ = sys::kill(child.id(), sys::Signal::Terminate);
    }
    let deadline = Instant::now() + TERMINATE_GRACE;
    for child in &mut children {
        let left = deadline.saturating_duration_since(Instant::now());
        if !matches!(sys::wait_child_timeout(child, left), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Pools that a Ctrl-C during a blocking call stops.
static POOLS: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

fn register_for_interrupts(shared: &Arc<Shared>) {
    static LISTENER: std::sync::Once = std::sync::Once::new();
    LISTENER.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("mp-interrupts".into())
            .spawn(|| {
                while sys::wait_for_interrupt().is_ok() {
                    interrupt_all();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(target: "mp", "cannot start the Ctrl-C listener: {e}");
        }
    });
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    pools.retain(|w| w.strong_count() > 0);
    pools.push(Arc::downgrade(shared));
}

fn interrupt_all() {
    let pools: Vec<Arc<Shared>> = POOLS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for shared in pools {
        shared.set_status(|s| {
            matches!(s, Status::Open | Status::Closed)
                .then_some(Status::Stopping(StopReason::Interrupted))
        });
    }
}

impl std::fmt::Debug for Shared {
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
