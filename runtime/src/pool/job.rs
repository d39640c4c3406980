//! A job: one pool call (an `apply`, a `map`, an `imap` stream; Python's pool calls it a
//! job too) as its chunks' results arrive, shared between the supervisor, which fills it, and
//! the caller's handle, which waits and decodes. Decoding happens in the caller's thread, so
//! the supervisor only moves frames.
//!
//! A job knows nothing of its pool. A caller that waits lends its thread to the pool through
//! the [`Pump`] it passes to the wait (the pool reads the replies that have arrived and feeds
//! its workers); this file must not import the pool's state or its supervisor.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use super::in_place::Placement;
use super::outcome::{ChunkFailure, ChunkResult};
use crate::sys;

/// Completion notices for [`as_completed`](crate::as_completed): indices of finished calls.
#[derive(Default)]
pub(crate) struct Completions {
    done: Mutex<VecDeque<usize>>,
    changed: Condvar,
}

impl Completions {
    /// Records `index` as finished.
    pub(crate) fn push(&self, index: usize) {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(index);
        self.changed.notify_all();
    }

    /// Waits for the next finished index (interruptible by Ctrl-C through the pool), until
    /// `deadline` if there is one (`None` once it has passed).
    pub(crate) fn next(&self, deadline: Option<Instant>) -> Option<usize> {
        let _armed = sys::arm_interrupts().ok();
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(i) = done.pop_front() {
                return Some(i);
            }
            done = match deadline {
                None => self.changed.wait(done).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    self.changed
                        .wait_timeout(done, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

/// Work a waiting caller does for the pool meanwhile: read the replies that have arrived and
/// hand the workers their next chunks (the pool's side is `PoolCore::read_arrived`). Must never
/// block; `()` is the pump of a pool that is gone.
pub(crate) trait Pump {
    /// Does what there is to do now, if anything; returns at once.
    fn pump(&self);
}

impl Pump for () {
    fn pump(&self) {}
}

/// One job: the results of its chunks as they arrive, and who waits for them.
pub(crate) struct Job {
    /// The worker's name, for panic errors.
    pub(crate) worker: &'static str,
    state: Mutex<JobState>,
    changed: Condvar,
    /// Chunks completed so far, readable without the lock: a waiter spins on it briefly
    /// before it sleeps.
    arrivals: AtomicUsize,
    /// The call's output, when replies are copied into it as they are read (`in_place.rs`).
    output: Mutex<Option<Box<dyn Placement>>>,
}

/// How long a waiting caller watches for its result before it sleeps: a short task's result
/// (an `apply`) comes back within it, and the caller then pays for no wake-up. Only a call
/// with at most one chunk still to come spins: while many are outstanding (a large `map`),
/// the caller sleeps between arrivals and leaves the CPUs to the workers.
const SPIN: Duration = Duration::from_micros(50);

struct JobState {
    arrived: BTreeMap<usize, ChunkResult>,
    /// Chunks in the order they arrived, kept only for a consumer that takes them so
    /// (`by_arrival`); an in-order consumer would let it grow without bound.
    order: VecDeque<usize>,
    by_arrival: bool,
    /// How many chunks the call has, once known.
    total: Option<usize>,
    completed: usize,
    cancelled: bool,
    /// A chunk was cancelled before it ran (`cancel.rs`).
    revoked: bool,
    /// A chunk failed or holds a panic: the call's result is an error.
    failed: bool,
    /// Threads asleep in `wait_for`.
    sleepers: usize,
    waker: Option<Waker>,
    listeners: Vec<(Arc<Completions>, usize)>,
    /// Callbacks run on every chunk's arrival before the call counts as finished: told
    /// (with its index) once every chunk has arrived, it [`release`](Job::release)s the call.
    held_by: Option<(Arc<Completions>, usize)>,
}

impl JobState {
    /// Every chunk has arrived.
    fn arrived_all(&self) -> bool {
        self.total == Some(self.completed)
    }

    /// Every chunk has arrived and no callback holds the call.
    fn finished(&self) -> bool {
        self.arrived_all() && self.held_by.is_none()
    }

    /// Tells whoever waits for the end what is due now that every chunk may have arrived.
    fn announce(&mut self) {
        if !self.arrived_all() {
            return;
        }
        if let Some((runner, index)) = &self.held_by {
            runner.push(*index);
            return;
        }
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        for (listener, index) in self.listeners.drain(..) {
            listener.push(index);
        }
    }
}

impl Job {
    /// A call of `worker` with `total` chunks (`None`: a stream, still growing), whose
    /// consumer takes chunks as they arrive (`by_arrival`) or by index.
    pub(crate) fn new(worker: &'static str, total: Option<usize>, by_arrival: bool) -> Arc<Job> {
        Arc::new(Job {
            worker,
            state: Mutex::new(JobState {
                arrived: BTreeMap::new(),
                order: VecDeque::new(),
                by_arrival,
                total,
                completed: 0,
                cancelled: false,
                revoked: false,
                failed: false,
                sleepers: 0,
                waker: None,
                listeners: Vec::new(),
                held_by: None,
            }),
            changed: Condvar::new(),
            arrivals: AtomicUsize::new(0),
            output: Mutex::new(None),
        })
    }

    /// Replies are to be copied into `output` as they are read, before any chunk is sent.
    pub(crate) fn set_output(&self, output: Box<dyn Placement>) {
        *self.output.lock().unwrap_or_else(|e| e.into_inner()) = Some(output);
    }

    /// Copies the encoded results `body` of chunk `chunk` (`len` tasks) into the call's output
    /// if it has one and they fit it (see [`Placement::place`]); whether they were copied.
    pub(crate) fn place(&self, chunk: usize, len: usize, body: &[u8]) -> bool {
        let mut output = self.output.lock().unwrap_or_else(|e| e.into_inner());
        output
            .as_mut()
            .is_some_and(|output| output.place(chunk, len, body))
    }

    /// Takes the call's output back (once every chunk has arrived).
    pub(crate) fn take_output(&self) -> Option<Box<dyn Placement>> {
        self.output.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn lock(&self) -> MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records chunk `chunk`'s result (the supervisor's side).
    pub(crate) fn complete(&self, chunk: usize, result: ChunkResult) {
        let mut st = self.lock();
        st.completed += 1;
        match &result {
            ChunkResult::Failed(ChunkFailure::Cancelled) => {
                st.revoked = true;
                st.failed = true;
            }
            ChunkResult::Failed(_) | ChunkResult::Done { panics: true, .. } => st.failed = true,
            ChunkResult::Done { panics: false, .. } | ChunkResult::Placed => {}
        }
        if st.cancelled {
            return;
        }
        st.arrived.insert(chunk, result);
        if st.by_arrival {
            st.order.push_back(chunk);
        }
        st.announce();
        self.arrivals.fetch_add(1, Ordering::Release);
        self.wake(st);
    }

    /// Fixes the number of chunks of a call started as a stream (`total: None`), once every
    /// chunk has been submitted.
    pub(crate) fn set_total(&self, total: usize) {
        let mut st = self.lock();
        st.total = Some(total);
        st.announce();
        self.wake(st);
    }

    /// Holds the call unfinished until [`release`](Job::release): `runner` is told `index`
    /// once every chunk has arrived (at once if they have), to run the call's callbacks.
    pub(crate) fn hold_for(&self, runner: &Arc<Completions>, index: usize) {
        let mut st = self.lock();
        st.held_by = Some((Arc::clone(runner), index));
        st.announce();
    }

    /// The callbacks have run: the call is finished for everyone else.
    pub(crate) fn release(&self) {
        let mut st = self.lock();
        st.held_by = None;
        st.announce();
        self.wake(st);
    }

    /// The caller lost interest: results still to come are dropped, pending tasks skipped.
    pub(crate) fn cancel(&self) {
        let mut st = self.lock();
        st.cancelled = true;
        st.arrived.clear();
    }

    /// Whether a chunk has arrived that was not taken yet.
    pub(crate) fn has_arrived(&self) -> bool {
        !self.lock().arrived.is_empty()
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// Whether a chunk was cancelled before it ran.
    pub(crate) fn revoked(&self) -> bool {
        self.lock().revoked
    }

    /// Whether a chunk has failed (or holds a panic) so far.
    pub(crate) fn failed(&self) -> bool {
        self.lock().failed
    }

    /// Whether every chunk has arrived.
    pub(crate) fn finished(&self) -> bool {
        self.lock().finished()
    }

    /// Waits until every chunk has arrived or `deadline` passes; whether they all did.
    pub(crate) fn wait_finished(&self, deadline: Option<Instant>, pump: &dyn Pump) -> bool {
        self.wait_for(deadline, JobState::finished, pump).is_some()
    }

    /// Waits for chunk `chunk` and takes it; `None` if `deadline` passes first.
    pub(crate) fn take(
        &self,
        chunk: usize,
        deadline: Option<Instant>,
        pump: &dyn Pump,
    ) -> Option<ChunkResult> {
        let mut st = self.wait_for(deadline, |st| st.arrived.contains_key(&chunk), pump)?;
        Some(st.arrived.remove(&chunk).expect("arrived"))
    }

    /// Waits for any chunk not yet taken and takes it (a `by_arrival` call's consumer);
    /// `None` if `deadline` passes first.
    pub(crate) fn take_any(
        &self,
        deadline: Option<Instant>,
        pump: &dyn Pump,
    ) -> Option<(usize, ChunkResult)> {
        self.take_any_of(deadline, 1, pump)
    }

    /// [`take_any`](Job::take_any), except that a caller who finds no chunk waiting sleeps
    /// until `batch` have arrived (the caller makes sure that many are still to come): one
    /// wake-up for several chunks, when nothing needs the caller sooner.
    pub(crate) fn take_any_of(
        &self,
        deadline: Option<Instant>,
        batch: usize,
        pump: &dyn Pump,
    ) -> Option<(usize, ChunkResult)> {
        let waiting = !self.lock().arrived.is_empty();
        let want = if waiting { 1 } else { batch.max(1) };
        let mut st = self.wait_for(deadline, |st| st.arrived.len() >= want, pump)?;
        let JobState { order, arrived, .. } = &mut *st;
        loop {
            let chunk = order
                .pop_front()
                .expect("every arrived chunk is in the arrival order");
            if let Some(result) = arrived.remove(&chunk) {
                return Some((chunk, result));
            }
        }
    }

    /// Blocks (with Ctrl-C routed to the pools) until `ready` holds or `deadline` passes;
    /// while it spins for a call's last chunk, it works `pump`.
    fn wait_for(
        &self,
        deadline: Option<Instant>,
        ready: impl Fn(&JobState) -> bool,
        pump: &dyn Pump,
    ) -> Option<MutexGuard<'_, JobState>> {
        let mut st = self.lock();
        if ready(&st) {
            return Some(st);
        }
        let _armed = sys::arm_interrupts().ok();
        if st
            .total
            .is_some_and(|total| total.saturating_sub(st.completed) <= 1)
        {
            // Watch for the arrival without the lock for a moment, reading the workers'
            // replies meanwhile, then check again.
            let seen = self.arrivals.load(Ordering::Acquire);
            drop(st);
            let spin_until = Instant::now() + SPIN;
            let until = deadline.map_or(spin_until, |d| d.min(spin_until));
            while self.arrivals.load(Ordering::Acquire) == seen && Instant::now() < until {
                pump.pump();
                std::hint::spin_loop();
            }
            st = self.lock();
        }
        loop {
            if ready(&st) {
                return Some(st);
            }
            let left = match deadline {
                None => None,
                Some(d) => Some(d.checked_duration_since(Instant::now())?),
            };
            st.sleepers += 1;
            st = match left {
                None => self.changed.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(left) => {
                    self.changed
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            st.sleepers -= 1;
        }
    }

    /// Wakes the threads asleep in [`wait_for`](Job::wait_for), if any (a wake-up is a
    /// system call even with nobody to wake: a `map` would pay one per chunk).
    fn wake(&self, st: MutexGuard<'_, JobState>) {
        let sleeping = st.sleepers > 0;
        drop(st);
        if sleeping {
            self.changed.notify_all();
        }
    }

    /// Registers a waker to wake when every chunk has arrived; whether they already have.
    pub(crate) fn register_waker(&self, waker: &Waker) -> bool {
        let mut st = self.lock();
        if st.finished() {
            return true;
        }
        match &mut st.waker {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
        false
    }

    /// Tells `listener` (with `index`) when every chunk has arrived (at once if they have).
    pub(crate) fn notify_when_finished(&self, listener: &Arc<Completions>, index: usize) {
        let mut st = self.lock();
        if st.finished() {
            drop(st);
            listener.push(index);
        } else {
            st.listeners.push((Arc::clone(listener), index));
        }
    }
}
