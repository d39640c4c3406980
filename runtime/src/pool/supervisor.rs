//! The pool's supervisor thread and the workers' lives: starting them (and the pool), noticing
//! deaths and time-outs at once (a worker's socket reports end-of-file when it dies, whatever
//! killed it), settling what a dead worker held, replacing it, and stopping the pool on
//! `terminate`, drop or Ctrl-C.
//!
//! The thread sleeps in `poll` on the workers' sockets and a wake-up, and between sleeps makes
//! the same moves a caller makes (`core.rs`: dispatch, read replies). It is the only place that
//! adds or removes workers; it must not decode results (callers do) or hold the pool's lock
//! while it starts or waits for a process.

use crate::sys::Child;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::core::{
    Chunk, InFlight, PoolConfig, PoolCore, PoolState, PoolStatus, WorkerSlot, dispatch,
    read_replies,
};
use super::link::{Backend, Link, Ranks, reap};
use super::outcome::{ChunkFailure, ChunkResult, StopReason};
use crate::bootstrap::spawn::{Role, start_child_frame_with};
use crate::error::{Error, ExitStatus, Result};
use crate::sys;
use crate::wire::INLINE_MAX;

/// The send buffer asked for on each worker's socket: room for a few inline frames (the
/// kernel may grant less; see [`WorkerSlot::send_budget`]).
const SEND_BUFFER: usize = 4 * (INLINE_MAX + 64);
/// Workers that die before they are ready this many times in a row stop the pool.
const MAX_STARTUP_FAILURES: u32 = 3;
/// How long `terminate` lets workers exit on `SIGTERM` before it sends `SIGKILL`.
const TERMINATE_GRACE: Duration = Duration::from_millis(200);

/// Starts `config.processes` workers and the supervisor thread. A worker or the thread that
/// cannot start stops and reaps the workers started so far: no zombie is left behind a pool
/// that never existed for its caller.
pub(crate) fn start(config: PoolConfig, ranks: Ranks) -> Result<(Arc<PoolCore>, JoinHandle<()>)> {
    let shared = Arc::new(PoolCore {
        state: Mutex::new(PoolState {
            status: PoolStatus::Open,
            pending: VecDeque::new(),
            workers: Vec::new(),
            retired: Vec::new(),
            outstanding: 0,
            started: 0,
            startup_failures: 0,
            ranks: false,
        }),
        finished: Condvar::new(),
        wakeup: sys::Wakeup::new().map_err(Error::io("cannot create the pool's wake-up"))?,
        config,
    });
    if shared.config.backend == Backend::Mpi {
        start_ranks(&shared, ranks);
    }
    for _ in 0..shared.config.processes {
        if shared.config.backend != Backend::Local {
            break;
        }
        match start_worker(&shared) {
            Ok(slot) => shared.lock().workers.push(slot),
            Err(e) => {
                shut_down(&mut shared.lock());
                return Err(e);
            }
        }
    }
    register_for_interrupts(&shared);
    let run_shared = Arc::clone(&shared);
    match std::thread::Builder::new()
        .name("mp-pool".into())
        .spawn(move || run(run_shared))
    {
        Ok(supervisor) => Ok((shared, supervisor)),
        Err(e) => {
            shut_down(&mut shared.lock());
            Err(Error::io("cannot start the pool's supervisor thread")(e))
        }
    }
}

/// Starts the pool's next worker.
fn start_worker(shared: &PoolCore) -> Result<WorkerSlot> {
    let n = shared.next_number();
    let name = format!("{}-{n}", shared.config.name);
    let init = &shared.config.init;
    let (child, channel) = start_child_frame_with(
        shared.config.start_method,
        Role::PoolWorker,
        init.bytes(),
        &init.fds(),
        &name,
        false,
    )?;
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
    Ok(WorkerSlot::new(
        child.id(),
        Link::Process(child),
        channel,
        send_buffer,
    ))
}

/// Takes the MPI job's worker ranks as the pool's workers and sends each the pool's first
/// message (its initializer). The ranks are the pool's until it stops.
#[cfg(feature = "mpi")]
fn start_ranks(shared: &PoolCore, ranks: Ranks) {
    let mut st = shared.lock();
    st.ranks = true;
    for link in ranks {
        // The kernel's default when it cannot be read (TCP's usual 16 KiB at least).
        let send_buffer = sys::grow_send_buffer(link.channel.fd(), SEND_BUFFER).unwrap_or(16384);
        let slot = WorkerSlot::new(
            link.pid,
            Link::Rank {
                rank: link.rank,
                host: link.host,
            },
            link.channel,
            send_buffer,
        );
        if shared.config.init.send(&slot.channel).is_err() {
            // Lost before it started: the supervisor sees its end-of-file.
            slot.kill();
        }
        st.workers.push(slot);
    }
}

#[cfg(not(feature = "mpi"))]
fn start_ranks(_: &PoolCore, ranks: Ranks) {
    match ranks.into_iter().next() {
        None => {}
        Some(never) => match never {},
    }
}

/// The supervisor thread's body.
fn run(shared: Arc<PoolCore>) {
    let mut ready = Vec::new();
    let mut fds: Vec<RawFd> = Vec::new();
    loop {
        let (timeout, missing) = {
            let mut st = shared.lock();
            if let PoolStatus::Stopping(reason) = &st.status {
                let reason = reason.clone();
                stop(&mut st, &reason);
                st.status = PoolStatus::Finished(Some(reason));
                shared.finished.notify_all();
                return;
            }
            reap_retired(&mut st);
            dispatch(&mut st, &shared.config);
            if matches!(st.status, PoolStatus::Closed) && st.outstanding == 0 {
                shut_down(&mut st);
                st.status = PoolStatus::Finished(None);
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
            let missing = match shared.config.backend {
                Backend::Local => shared.config.processes.saturating_sub(st.workers.len()),
                // Ranks are not replaced; without any, the pool cannot go on.
                Backend::Mpi => {
                    if st.workers.is_empty() {
                        st.status = PoolStatus::Stopping(StopReason::Broken(no_ranks_message()));
                        continue;
                    }
                    0
                }
            };
            (timeout, missing)
        };
        if missing > 0 {
            replace_workers(&shared, missing);
            continue;
        }
        #[allow(unsafe_code)]
        let borrowed: Vec<_> = fds
            .iter()
            // SAFETY: the wake-up descriptor lives as long as `shared`; the workers' channels
            // are only added or removed by this thread, so the ones listed above stay open
            // until this poll returns.
            .map(|&fd| unsafe { sys::borrow_raw_fd(fd) })
            .collect();
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
                // Its own deadlines are recomputed at the top of the loop.
                let _ = read_replies(&mut st, i - 1);
            }
        }
        check_timeouts(&mut st, shared.config.task_timeout);
        bury_dead(&mut st, &shared.config);
    }
}

/// Starts up to `missing` workers outside the lock; stops the pool if none can start.
fn replace_workers(shared: &PoolCore, missing: usize) {
    for _ in 0..missing {
        match start_worker(shared) {
            Ok(slot) => shared.lock().workers.push(slot),
            Err(e) => {
                let mut st = shared.lock();
                if st.workers.is_empty() {
                    st.status = PoolStatus::Stopping(StopReason::Broken(format!(
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

fn check_timeouts(st: &mut PoolState, limit: Option<Duration>) {
    let now = Instant::now();
    for slot in &mut st.workers {
        if slot.timed_out.is_some() || slot.dead {
            continue;
        }
        if let Some((deadline, limit)) = slot.deadline(limit) {
            if deadline <= now {
                tracing::warn!(target: "mp", "pool worker (pid {}) ran past the chunk limit of {limit:?}; killing it", slot.pid);
                slot.kill();
                slot.timed_out = Some(limit);
            }
        }
    }
}

/// Reaps dead workers and settles the tasks they held; retires idle retiring ones.
fn bury_dead(st: &mut PoolState, config: &PoolConfig) {
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
            let WorkerSlot { link, .. } = slot;
            st.retired.extend(link.into_child());
        } else {
            settle_death(st, slot, config);
        }
    }
}

fn settle_death(st: &mut PoolState, slot: WorkerSlot, config: &PoolConfig) {
    let WorkerSlot {
        link,
        pid,
        in_flight: mut lost,
        ready,
        timed_out,
        ..
    } = slot;
    let (status, rank) = link.bury(timed_out.is_some());
    let who = match &rank {
        Some((r, h)) => format!("rank {r} on {h} (pid {pid}) lost its connection"),
        None => format!("(pid {pid}) {status}"),
    };
    if !ready {
        // It never started a task: they all go back. Dying again and again while starting is
        // a broken environment or initializer, which would otherwise loop forever.
        st.startup_failures += 1;
        if st.startup_failures >= MAX_STARTUP_FAILURES {
            st.status = PoolStatus::Stopping(StopReason::Initializer(format!(
                "pool workers keep dying while starting (the last one {status})"
            )));
        }
        requeue(st, lost);
        return;
    }
    if let Some(running) = lost.pop_front() {
        let chunk = running.chunk;
        if let Some(limit) = timed_out {
            fail(st, chunk, ChunkFailure::Timeout { pid, limit });
        } else if status == ExitStatus::Signaled(libc::SIGINT) {
            // Interrupted on purpose: not a loss to retry.
            tracing::warn!(target: "mp", "pool worker (pid {pid}) {status}; its chunk is interrupted");
            fail(st, chunk, ChunkFailure::Interrupted);
        } else if config.retry && chunk.attempts == 0 {
            tracing::warn!(target: "mp", "pool worker {who}; retrying its chunk");
            let mut chunk = chunk;
            chunk.attempts += 1;
            st.pending.push_front(chunk);
        } else {
            tracing::warn!(target: "mp", "pool worker {who}; failing its chunk");
            fail(st, chunk, ChunkFailure::Died { pid, status, rank });
        }
    }
    requeue(st, lost);
}

/// Puts never-started tasks back at the head of the queue, in their order.
fn requeue(st: &mut PoolState, lost: VecDeque<InFlight>) {
    for f in lost.into_iter().rev() {
        st.pending.push_front(f.chunk);
    }
}

fn fail(st: &mut PoolState, chunk: Chunk, why: ChunkFailure) {
    chunk.job.complete(chunk.index, ChunkResult::Failed(why));
    st.outstanding -= 1;
}

fn reap_retired(st: &mut PoolState) {
    st.retired
        .retain_mut(|child| !matches!(child.try_wait(), Ok(Some(_)) | Err(_)));
}

/// Fails everything the pool holds with `reason` and stops every worker.
fn stop(st: &mut PoolState, reason: &StopReason) {
    let why = ChunkFailure::Stopped(reason.clone());
    while let Some(chunk) = st.pending.pop_front() {
        fail(st, chunk, why.clone());
    }
    let mut workers = std::mem::take(&mut st.workers);
    for slot in &mut workers {
        for f in std::mem::take(&mut slot.in_flight) {
            fail(st, f.chunk, why.clone());
        }
    }
    let mut children: Vec<Child> = workers
        .into_iter()
        .filter_map(|s| s.link.into_child())
        .collect();
    children.append(&mut st.retired);
    release_ranks(st);
    terminate_all(children);
}

/// The message when an MPI pool has no rank left.
fn no_ranks_message() -> String {
    #[cfg(feature = "mpi")]
    {
        crate::mpi::no_ranks_left_message()
    }
    #[cfg(not(feature = "mpi"))]
    {
        "no MPI worker ranks left".to_owned()
    }
}

/// An MPI pool whose connections are closed gives its ranks back (they reconnect).
fn release_ranks(st: &mut PoolState) {
    if std::mem::take(&mut st.ranks) {
        #[cfg(feature = "mpi")]
        crate::mpi::release_ranks();
    }
}

/// Closes every worker's connection (they exit when idle) and waits for them.
fn shut_down(st: &mut PoolState) {
    let mut children: Vec<Child> = std::mem::take(&mut st.workers)
        .into_iter()
        .filter_map(|s| s.link.into_child())
        .collect();
    children.append(&mut st.retired);
    release_ranks(st);
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
static POOLS: Mutex<Vec<Weak<PoolCore>>> = Mutex::new(Vec::new());

fn register_for_interrupts(shared: &Arc<PoolCore>) {
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
    let pools: Vec<Arc<PoolCore>> = POOLS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for shared in pools {
        shared.set_status(|s| {
            matches!(s, PoolStatus::Open | PoolStatus::Closed)
                .then_some(PoolStatus::Stopping(StopReason::Interrupted))
        });
    }
}
