//! The handles a pool call returns: [`AsyncResult`] (`apply_async`, `map_async`,
//! `Executor::submit`; also a `Future`) and [`Imap`] (`imap`, `imap_unordered`, an iterator
//! that keeps its feeder going). They wait on their call and decode in the caller's thread;
//! they must not reach into the pool's state beyond submitting chunks and helping it read.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::core::PoolCore;
use super::job::{Completions, Job, Pump};
use super::map::{Cut, Feed, Feeder, exact_len};
use super::outcome::Decoded;
use super::progress::Progress;
use crate::error::{Error, Result};
use crate::worker::Worker;

/// The pending result of [`Pool::apply_async`](crate::Pool::apply_async),
/// [`Pool::map_async`](crate::Pool::map_async) or [`Executor::submit`](crate::Executor::submit)
/// (Python's `AsyncResult` and `concurrent.futures.Future`).
///
/// Wait with [`get`](AsyncResult::get) / [`get_timeout`](AsyncResult::get_timeout) /
/// [`wait`](AsyncResult::wait), poll with [`ready`](AsyncResult::ready), or `.await` it
/// (it is a [`Future`]; no particular async runtime is needed).
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
    finish: fn(&Job, Cut, &dyn Pump) -> Result<T>,
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
        finish: fn(&Job, Cut, &dyn Pump) -> Result<T>,
    ) -> AsyncResult<T> {
        AsyncResult {
            job,
            pool: Arc::downgrade(pool),
            cut,
            finish,
            taken: false,
        }
    }

    /// Whether the result is there (success or failure); never blocks.
    pub fn ready(&self) -> bool {
        self.cut.items == 0 || self.job.finished()
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
pub struct Imap<'p, W: Worker, I> {
    /// The feeder, or why there is none (a chunk size of 0), to be yielded first.
    feed: std::result::Result<Feeder<'p, W, I>, Option<Error>>,
    ordered: bool,
    /// Chunks consumed.
    taken: usize,
    stopped: bool,
    buffer: std::vec::IntoIter<Result<W::Output>>,
    progress: Progress,
}

impl<W: Worker, I> std::fmt::Debug for Imap<'_, W, I> {
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

impl<'p, W: Worker, I: Iterator<Item = W::Args>> Imap<'p, W, I> {
    /// The iterator of a new call of `worker` on `shared` over `input`, in chunks of
    /// `chunksize` (default 1), with a progress bar if asked.
    pub(super) fn new(
        shared: &'p PoolCore,
        chunksize: Option<usize>,
        progress: bool,
        (worker, input): (W, I),
        ordered: bool,
    ) -> Self {
        // The bar has a total when the input knows its exact length.
        let progress = Progress::new(progress, exact_len(&input));
        let window = 4 * shared.processes();
        let feed = Feeder::new(shared, chunksize, worker, input, None, window, !ordered);
        Imap {
            feed: feed.map_err(Some),
            ordered,
            taken: 0,
            stopped: false,
            buffer: Vec::new().into_iter(),
            progress,
        }
    }
}

impl<W: Worker, I: Iterator<Item = W::Args>> Iterator for Imap<'_, W, I> {
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
                return None;
            }
            let (k, result) = if self.ordered {
                (self.taken, feed.job.take(self.taken, feed.shared))
            } else {
                feed.job.take_any(feed.shared)
            };
            self.taken += 1;
            let len = feed.cut.len_of(k);
            self.progress.inc(len);
            let first = k * feed.cut.chunksize;
            self.buffer = Decoded::decode(result, first, len, W::NAME, None)
                .into_results()
                .into_iter();
        }
    }
}

impl<W: Worker, I> Drop for Imap<'_, W, I> {
    fn drop(&mut self) {
        if let Ok(feed) = &self.feed {
            feed.job.cancel();
        }
    }
}
