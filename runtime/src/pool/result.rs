//! The handles a pool call returns: [`AsyncResult`] (`apply_async`, `map_async`,
//! `Executor::submit`; also a `Future`) and [`Imap`] (`imap`, `imap_unordered`, an iterator
//! that keeps its feeder going). They wait on their call and decode in the caller's thread;
//! they must not reach into the pool's state beyond submitting chunks and helping it read.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::callbacks::{Callbacks, Slot};
use super::core::PoolCore;
use super::input::{Convert, FailureCell, Guarded, InputFailure};
use super::job::{Completions, Job, Pump};
use super::map::{Cut, Feed, Feeder, Finish, exact_len};
use super::outcome::Decoded;
use super::progress::Progress;
use crate::error::{Error, Result};
use crate::worker::Worker;

/// A call submitted whole: its job, how it was cut, and how its result is decoded.
pub(super) type Submitted<T> = (Arc<Job>, Cut, Finish<T>);

/// The feeder of an `imap` call: its input guarded (`input.rs`).
type ImapFeeder<'p, W, I> = Feeder<'p, W, Guarded<I, <W as Worker>::Args>>;

/// The pending result of [`Pool::apply_async`](crate::Pool::apply_async),
/// [`Pool::map_async`](crate::Pool::map_async) or [`Executor::submit`](crate::Executor::submit)
/// (Python's `AsyncResult` and `concurrent.futures.Future`).
///
/// Wait with [`get`](AsyncResult::get) / [`get_timeout`](AsyncResult::get_timeout) /
/// [`wait`](AsyncResult::wait), poll with [`ready`](AsyncResult::ready), or `.await` it
/// (it is a [`Future`]; no particular async runtime is needed).
///
/// [`cancel`](AsyncResult::cancel) withdraws a call no worker has started (as
/// `concurrent.futures.Future.cancel`). **Dropping** the handle does not cancel: the call is
/// detached and still runs to its end (its result is thrown away), as in Python.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// let pool = mp::Pool::new(2)?;
/// let squares = pool.map_async(square, 0..4)?;
/// assert!(squares.wait_timeout(std::time::Duration::from_secs(10)));
/// assert_eq!(squares.get()?, [0, 1, 4, 9]);
/// # Ok::<(), mp::Error>(())
/// ```
#[must_use = "the result is lost unless you get or await it"]
pub struct AsyncResult<T> {
    job: Arc<Job>,
    /// The pool, which a waiter helps through its pump while it lasts.
    pool: Weak<PoolCore>,
    /// The call's chunks, all submitted.
    cut: Cut,
    finish: Finish<T>,
    /// Where the callback thread leaves the result, for a call with callbacks (it decoded
    /// it; `finish` is not run again).
    slot: Option<Slot<T>>,
    taken: bool,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("worker", &self.job.worker)
            .field("tasks", &self.cut.items)
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T> AsyncResult<T> {
    /// The handle of `call` on `pool`, cut as `cut` (every chunk submitted), whose chunks
    /// `finish` decodes.
    pub(super) fn new(
        job: Arc<Job>,
        pool: &Arc<PoolCore>,
        cut: Cut,
        finish: Finish<T>,
    ) -> AsyncResult<T> {
        AsyncResult {
            job,
            pool: Arc::downgrade(pool),
            cut,
            finish,
            slot: None,
            taken: false,
        }
    }

    /// Like [`new`](AsyncResult::new), with `on_ok` or `on_err` run by the pool's
    /// `callbacks` thread on the result before the call counts as finished.
    pub(super) fn with_callbacks(
        job: Arc<Job>,
        pool: &Arc<PoolCore>,
        (cut, finish): (Cut, Finish<T>),
        callbacks: &Callbacks,
        (on_ok, on_err): (
            impl FnOnce(&T) + Send + 'static,
            impl FnOnce(&Error) + Send + 'static,
        ),
    ) -> AsyncResult<T>
    where
        T: Send + 'static,
    {
        let slot = callbacks.register(&job, Arc::downgrade(pool), (cut, finish), on_ok, on_err);
        AsyncResult {
            slot: Some(slot),
            ..AsyncResult::new(job, pool, cut, finish)
        }
    }

    /// Whether the result is there (success, failure or cancellation); never blocks.
    pub fn ready(&self) -> bool {
        self.cut.items == 0 || self.job.finished()
    }

    /// Python's `Future.done`: the same as [`ready`](AsyncResult::ready).
    pub fn done(&self) -> bool {
        self.ready()
    }

    /// Cancels the call if no worker has been given any of its tasks yet: they never run, and
    /// [`get`](AsyncResult::get) returns [`Error::Cancelled`]. Returns whether the call is
    /// cancelled (Python's `Future.cancel`): `false` once a task is in a worker or the
    /// result is there, and then nothing changes; a running task is never interrupted (to
    /// stop one, [`terminate`](crate::Pool::terminate) the pool or give it a
    /// [`task_timeout`](crate::PoolBuilder::task_timeout)).
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let pool = mp::Pool::new(1)?;
    /// let busy: Vec<_> = (0..3).map(|_| pool.apply_async(nap, 200)).collect::<Result<_, _>>()?;
    /// let queued = pool.apply_async(nap, 1)?;
    /// assert!(queued.cancel());
    /// assert!(queued.cancelled());
    /// assert!(matches!(queued.get(), Err(mp::Error::Cancelled)));
    /// for b in busy {
    ///     assert_eq!(b.get()?, 200);
    /// }
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn cancel(&self) -> bool {
        if self.cancelled() {
            return true;
        }
        match self.pool.upgrade() {
            Some(pool) => pool.cancel_job(&self.job, self.cut.chunks),
            None => false,
        }
    }

    /// Whether the call was cancelled: by [`cancel`](AsyncResult::cancel), or by an
    /// [`Executor`](crate::Executor) shut down with its queued futures cancelled (Python's
    /// `Future.cancelled`).
    pub fn cancelled(&self) -> bool {
        self.job.revoked()
    }

    /// Whether a worker holds a task of the call (it runs, or waits in that worker behind
    /// another task) and the result is not there yet; such a call can no longer be cancelled
    /// (Python's `Future.running`).
    pub fn running(&self) -> bool {
        !self.ready()
            && self
                .pool
                .upgrade()
                .is_some_and(|p| p.job_in_worker(&self.job))
    }

    /// Whether the result is there and is an error (without taking it); `false` while it is
    /// not there.
    pub(crate) fn failed(&self) -> bool {
        self.ready() && self.job.failed()
    }

    /// Blocks until the result is there.
    pub fn wait(&self) {
        self.with_pump(|pump| self.job.wait_finished(None, pump));
    }

    /// Blocks until the result is there or `timeout` passes; whether it is there.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.cut.items == 0 || self.with_pump(|pump| self.job.wait_finished(Some(deadline), pump))
    }

    /// Runs `f` with the pool's pump, or with none if the pool is gone.
    fn with_pump<R>(&self, f: impl FnOnce(&dyn Pump) -> R) -> R {
        match self.pool.upgrade() {
            Some(pool) => f(&*pool),
            None => f(&()),
        }
    }

    /// Waits for the result and returns it.
    pub fn get(mut self) -> Result<T> {
        self.take()
    }

    /// Waits at most `timeout` for the result: [`Error::Timeout`] if it is not there yet (the
    /// handle stays usable). A result is handed out once; asking again is an error.
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        if !self.wait_timeout(timeout) {
            return Err(Error::Timeout);
        }
        self.take()
    }

    fn take(&mut self) -> Result<T> {
        if self.taken {
            return Err(Error::InvalidArgument(
                "this result was already taken".into(),
            ));
        }
        self.taken = true;
        if let Some(slot) = &self.slot {
            self.wait();
            let stored = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            return stored.expect("a released call with callbacks has its result stored");
        }
        self.with_pump(|pump| (self.finish)(&self.job, self.cut, pump))
    }

    /// Tells `listener` (with `index`) when the result is there (at once if it is).
    pub(super) fn notify_when_ready(&self, listener: &Arc<Completions>, index: usize) {
        if self.cut.items == 0 {
            listener.push(index);
        } else {
            self.job.notify_when_finished(listener, index);
        }
    }
}

impl<T> Future for AsyncResult<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = self.get_mut();
        if this.taken || this.cut.items == 0 || this.job.register_waker(cx.waker()) {
            Poll::Ready(this.take())
        } else {
            Poll::Pending
        }
    }
}

/// The iterator of [`Pool::imap`](crate::Pool::imap) and
/// [`Pool::imap_unordered`](crate::Pool::imap_unordered): yields one `Result` per input item.
/// A task that panicked or whose worker died yields its error and the others still arrive;
/// when the pool stops (Ctrl-C, terminate) the rest yield its error and the iterator ends.
/// An input that fails ([`try_imap`](crate::Pool::try_imap)'s `Err` item, or a panic in the
/// input iterator) ends the input there: the results of the items before it come first, then
/// its error (or its panic, resumed in the consumer's thread), and the iterator ends.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// let pool = mp::Pool::new(2)?;
/// let mut squares = pool.imap(square, [3, 4]);
/// assert_eq!(squares.next().transpose()?, Some(9));
/// assert_eq!(squares.next().transpose()?, Some(16));
/// assert!(squares.next().is_none());
/// # Ok::<(), mp::Error>(())
/// ```
#[must_use = "iterators are lazy: nothing runs until it is iterated"]
pub struct Imap<'p, W: Worker, I: Iterator> {
    /// The feeder, or why there is none (a chunk size of 0), to be yielded first.
    feed: std::result::Result<ImapFeeder<'p, W, I>, Option<Error>>,
    /// Why the input ended early, if it did: met once every result before it is taken.
    failure: FailureCell,
    /// Results not there by then yield [`Error::Timeout`] (`Executor::map_timeout`).
    deadline: Option<Instant>,
    ordered: bool,
    /// Chunks consumed.
    taken: usize,
    stopped: bool,
    buffer: std::vec::IntoIter<Result<W::Output>>,
    progress: Progress,
}

impl<W: Worker, I: Iterator> std::fmt::Debug for Imap<'_, W, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut = self.feed.as_ref().map(|feed| feed.cut).ok();
        f.debug_struct("Imap")
            .field("worker", &W::NAME)
            .field("ordered", &self.ordered)
            .field("chunksize", &cut.map(|c| c.chunksize))
            .field("in_flight", &cut.map_or(0, |c| c.chunks - self.taken))
            .finish()
    }
}

/// How an `imap` call is fed: [`CallOptions`](crate::CallOptions)' settings and a deadline.
pub(super) struct ImapOptions {
    pub(super) chunksize: Option<usize>,
    /// Tasks read ahead of the consumer at most (rounded up to whole chunks).
    pub(super) buffersize: Option<usize>,
    pub(super) progress: bool,
    pub(super) ordered: bool,
    pub(super) deadline: Option<Instant>,
}

impl<'p, W: Worker, I: Iterator> Imap<'p, W, I> {
    /// The iterator of a new call of `worker` on `shared` over `input`, whose items become
    /// arguments through `convert`. The chunk size is `options.chunksize`, else automatic for
    /// an input that knows its length, else 1.
    pub(super) fn new(
        shared: &'p PoolCore,
        options: ImapOptions,
        (worker, input, convert): (W, I, Convert<I, W::Args>),
    ) -> Self {
        let (input, failure) = Guarded::new(input, convert);
        // The bar has a total, and the chunks an automatic size, when the input knows its
        // exact length.
        let n = exact_len(&input);
        let progress = Progress::new(options.progress, n);
        let window = 4 * shared.processes();
        let feed = Feeder::new(
            shared,
            options.chunksize,
            worker,
            input,
            n,
            window,
            !options.ordered,
        );
        let feed = feed.and_then(|mut feed| {
            match options.buffersize {
                Some(0) => {
                    return Err(Error::InvalidArgument(
                        "buffersize must be at least 1".into(),
                    ));
                }
                Some(b) => feed.window = b.div_ceil(feed.cut.chunksize).max(1),
                None => {}
            }
            Ok(feed)
        });
        Imap {
            feed: feed.map_err(Some),
            failure,
            deadline: options.deadline,
            ordered: options.ordered,
            taken: 0,
            stopped: false,
            buffer: Vec::new().into_iter(),
            progress,
        }
    }
}

impl<W: Worker, I: Iterator> Iterator for Imap<'_, W, I> {
    type Item = Result<W::Output>;

    fn next(&mut self) -> Option<Result<W::Output>> {
        loop {
            if let Some(r) = self.buffer.next() {
                return Some(r);
            }
            if self.stopped {
                return None;
            }
            let feed = match &mut self.feed {
                Ok(feed) => feed,
                Err(why) => {
                    self.stopped = true;
                    return why.take().map(Err);
                }
            };
            if let Err(e) = feed.refill(self.taken) {
                self.stopped = true;
                return Some(Err(e));
            }
            if self.taken == feed.cut.chunks {
                self.stopped = true;
                let failure = self
                    .failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                return match failure {
                    None => None,
                    Some(InputFailure::Error(e)) => Some(Err(e)),
                    Some(InputFailure::Panic(payload)) => std::panic::resume_unwind(payload),
                };
            }
            let taken = if self.ordered {
                let k = self.taken;
                feed.job.take(k, self.deadline, feed.shared).map(|r| (k, r))
            } else {
                feed.job.take_any(self.deadline, feed.shared)
            };
            let Some((k, result)) = taken else {
                // Past the deadline: the rest is cancelled, as Python's `Executor.map` does.
                self.stopped = true;
                feed.job.cancel();
                return Some(Err(Error::Timeout));
            };
            self.taken += 1;
            let len = feed.cut.len_of(k);
            self.progress.inc(len);
            let first = k * feed.cut.chunksize;
            self.buffer = Decoded::decode(result, first, len, W::NAME)
                .into_results()
                .into_iter();
        }
    }
}

impl<W: Worker, I: Iterator> Drop for Imap<'_, W, I> {
    fn drop(&mut self) {
        if let Ok(feed) = &self.feed {
            feed.job.cancel();
        }
    }
}
