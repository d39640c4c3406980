//! `Executor`: `concurrent.futures.ProcessPoolExecutor` on top of [`Pool`], and
//! [`as_completed`] and [`wait`] over its futures. A thin layer: it must not reach past the
//! `Pool` API and the result handles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Pool;
use super::job::Completions;
use super::result::{AsyncResult, Imap};
use crate::error::{Error, Result};
use crate::worker::Worker;

/// A process pool executor in the style of Python's `concurrent.futures.ProcessPoolExecutor`:
/// [`submit`](Executor::submit) returns an [`AsyncResult`], which can be waited on
/// synchronously or `.await`ed, and [`as_completed`] yields results as they finish.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn cube(n: u64) -> u64 {
///     n * n * n
/// }
///
/// let executor = mp::Executor::new(2)?;
/// let futures: Vec<_> = (1..=4).map(|n| executor.submit(cube, n)).collect::<Result<_, _>>()?;
/// let mut cubes: Vec<u64> = mp::as_completed(futures).map(|f| f.get()).collect::<Result<_, _>>()?;
/// cubes.sort();
/// assert_eq!(cubes, [1, 8, 27, 64]);
/// executor.shutdown(true)?;
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Debug)]
pub struct Executor {
    pool: Pool,
}

impl Executor {
    /// An executor with `max_workers` processes.
    pub fn new(max_workers: usize) -> Result<Executor> {
        Ok(Executor {
            pool: Pool::new(max_workers)?,
        })
    }

    /// Starts `worker(args)` and returns its future at once (Python's `Executor.submit`).
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn add(a: u32, b: u32) -> u32 {
    ///     a + b
    /// }
    ///
    /// let executor = mp::Executor::new(2)?;
    /// let future = executor.submit(add, (2, 3))?;
    /// assert_eq!(future.get()?, 5);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn submit<W: Worker>(&self, worker: W, args: W::Args) -> Result<AsyncResult<W::Output>> {
        self.pool.apply_async(worker, args)
    }

    /// Runs `worker` over `items` and yields the results in order, lazily (Python's
    /// `Executor.map`).
    pub fn map<W: Worker, I: IntoIterator<Item = W::Args>>(
        &self,
        worker: W,
        items: I,
    ) -> Imap<'_, W, I::IntoIter> {
        self.pool.imap(worker, items)
    }

    /// [`map`](Executor::map) with Python's `timeout=`: a result not there within `timeout`
    /// of this call yields [`Error::Timeout`], the tasks still queued are cancelled, and the
    /// iterator ends.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let executor = mp::Executor::new(1)?;
    /// let out: Vec<_> = executor.map_timeout(nap, [1, 5_000], std::time::Duration::from_secs(1)).collect();
    /// assert_eq!(out[0].as_ref().ok(), Some(&1));
    /// assert!(matches!(out[1], Err(mp::Error::Timeout)));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn map_timeout<W: Worker, I: IntoIterator<Item = W::Args>>(
        &self,
        worker: W,
        items: I,
        timeout: Duration,
    ) -> Imap<'_, W, I::IntoIter> {
        let deadline = Instant::now() + timeout;
        self.pool.tasks().imap_until(worker, items, deadline)
    }

    /// The pool underneath, for `map`, `chunksize` and the rest.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Shuts the executor down (Python's `shutdown(wait)`): it accepts no more tasks, and
    /// the submitted ones, queued and running, still run to their end. With `wait`, it
    /// returns once they are done and the workers have exited; without, at once, while they
    /// finish in the background (their futures stay usable; the program's exit does not wait
    /// for them). To stop the workers at once, [`terminate`](Executor::terminate).
    pub fn shutdown(self, wait: bool) -> Result<()> {
        self.shutdown_with(wait, false)
    }

    /// Shuts the executor down after cancelling the queued tasks, which never run and whose
    /// futures get [`Error::Cancelled`]; the running ones finish in the background (Python's
    /// `shutdown(wait=False, cancel_futures=True)`).
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let executor = mp::Executor::new(1)?;
    /// let futures: Vec<_> = (0..6).map(|_| executor.submit(nap, 100)).collect::<Result<_, _>>()?;
    /// executor.shutdown_now();
    /// let last = futures.into_iter().last().unwrap();
    /// assert!(matches!(last.get(), Err(mp::Error::Cancelled)));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn shutdown_now(self) {
        // Without `wait` there is nothing to report.
        let _ = self.shutdown_with(false, true);
    }

    /// Python's `shutdown(wait, cancel_futures)`: [`shutdown`](Executor::shutdown), first
    /// cancelling the queued tasks if `cancel_futures`.
    pub fn shutdown_with(mut self, wait: bool, cancel_futures: bool) -> Result<()> {
        self.pool.close();
        if cancel_futures {
            self.pool.shared.cancel_queued();
        }
        if wait {
            self.pool.join()
        } else {
            // The supervisor thread runs on its own until the work is done; dropping the
            // pool without it terminates nothing.
            drop(self.pool.supervisor.take());
            Ok(())
        }
    }

    /// Stops the workers at once; unfinished tasks fail with
    /// [`Error::PoolTerminated`](crate::Error::PoolTerminated) ([`Pool::terminate`]).
    pub fn terminate(mut self) {
        self.pool.terminate();
    }
}

impl From<Pool> for Executor {
    fn from(pool: Pool) -> Executor {
        Executor { pool }
    }
}

/// Yields the given results as they finish, each ready to [`get`](AsyncResult::get) without
/// blocking (Python's `concurrent.futures.as_completed`).
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn nap(ms: u64) -> u64 {
///     std::thread::sleep(std::time::Duration::from_millis(ms));
///     ms
/// }
///
/// let pool = mp::Pool::new(2)?;
/// let slow = pool.apply_async(nap, 300)?;
/// let fast = pool.apply_async(nap, 1)?;
/// let order: Vec<u64> = mp::as_completed([slow, fast]).map(|r| r.get()).collect::<Result<_, _>>()?;
/// assert_eq!(order, [1, 300]);
/// # Ok::<(), mp::Error>(())
/// ```
///
/// [`with_timeout`](AsCompleted::with_timeout) gives Python's `timeout=`.
pub fn as_completed<T>(results: impl IntoIterator<Item = AsyncResult<T>>) -> AsCompleted<T> {
    let completions = Arc::new(Completions::default());
    let results: Vec<Option<AsyncResult<T>>> = results.into_iter().map(Some).collect();
    for (i, r) in results.iter().enumerate() {
        r.as_ref()
            .expect("just wrapped")
            .notify_when_ready(&completions, i);
    }
    AsCompleted {
        left: results.len(),
        results,
        completions,
        started: Instant::now(),
    }
}

/// The iterator of [`as_completed`].
#[must_use = "iterators are lazy: nothing happens until it is iterated"]
pub struct AsCompleted<T> {
    results: Vec<Option<AsyncResult<T>>>,
    left: usize,
    completions: Arc<Completions>,
    /// When [`as_completed`] was called: a time-out counts from there.
    started: Instant,
}

impl<T> std::fmt::Debug for AsCompleted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left)
            .finish()
    }
}

impl<T> Iterator for AsCompleted<T> {
    type Item = AsyncResult<T>;

    fn next(&mut self) -> Option<AsyncResult<T>> {
        if self.left == 0 {
            return None;
        }
        let i = self.completions.next(None).expect("no deadline");
        self.left -= 1;
        self.results[i].take()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<T> AsCompleted<T> {
    /// Python's `as_completed(fs, timeout)`: yields `Ok` results as they finish; if they are
    /// not all done within `timeout` of the [`as_completed`] call, yields
    /// [`Error::Timeout`] once and ends (the others keep running; they are dropped, so
    /// detached, unless taken back with [`into_remaining`](AsCompletedTimeout::into_remaining)).
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let pool = mp::Pool::new(2)?;
    /// let futures = [pool.apply_async(nap, 1)?, pool.apply_async(nap, 5_000)?];
    /// let mut done = mp::as_completed(futures).with_timeout(std::time::Duration::from_secs(1));
    /// assert_eq!(done.next().unwrap()?.get()?, 1);
    /// assert!(matches!(done.next(), Some(Err(mp::Error::Timeout))));
    /// assert!(done.next().is_none());
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn with_timeout(self, timeout: Duration) -> AsCompletedTimeout<T> {
        AsCompletedTimeout {
            deadline: self.started + timeout,
            inner: self,
            timed_out: false,
        }
    }
}

/// The iterator of [`AsCompleted::with_timeout`].
#[must_use = "iterators are lazy: nothing happens until it is iterated"]
pub struct AsCompletedTimeout<T> {
    inner: AsCompleted<T>,
    deadline: Instant,
    timed_out: bool,
}

impl<T> std::fmt::Debug for AsCompletedTimeout<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompletedTimeout")
            .field("left", &self.inner.left)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl<T> AsCompletedTimeout<T> {
    /// The results not yet yielded (after a time-out: the unfinished ones).
    pub fn into_remaining(self) -> Vec<AsyncResult<T>> {
        self.inner.results.into_iter().flatten().collect()
    }
}

impl<T> Iterator for AsCompletedTimeout<T> {
    type Item = Result<AsyncResult<T>>;

    fn next(&mut self) -> Option<Result<AsyncResult<T>>> {
        if self.inner.left == 0 || self.timed_out {
            return None;
        }
        match self.inner.completions.next(Some(self.deadline)) {
            Some(i) => {
                self.inner.left -= 1;
                self.inner.results[i].take().map(Ok)
            }
            None => {
                self.timed_out = true;
                Some(Err(Error::Timeout))
            }
        }
    }
}

/// When [`wait`] returns (Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION`, `ALL_COMPLETED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as one future is done (or cancelled).
    FirstCompleted,
    /// As soon as one future is done with an error (a panic, a dead worker, a cancellation,
    /// ...), or all are done.
    FirstException,
    /// When all are done.
    AllCompleted,
}

/// Waits for `futures` until `return_when` holds or `timeout` passes (`None`: no limit), and
/// splits them into `(done, not_done)`, each in the order given (Python's
/// `concurrent.futures.wait`). No result is taken: `get` each one.
///
/// ```
/// # mp::guard!();
/// use mp::ReturnWhen;
///
/// #[mp::worker]
/// fn nap(ms: u64) -> u64 {
///     std::thread::sleep(std::time::Duration::from_millis(ms));
///     ms
/// }
///
/// let pool = mp::Pool::new(2)?;
/// let futures = vec![pool.apply_async(nap, 5_000)?, pool.apply_async(nap, 1)?];
/// let (done, not_done) = mp::wait(futures, ReturnWhen::FirstCompleted, None);
/// assert_eq!(done.len(), 1);
/// assert_eq!(not_done.len(), 1);
/// assert_eq!(done.into_iter().next().unwrap().get()?, 1);
/// # Ok::<(), mp::Error>(())
/// ```
pub fn wait<T>(
    futures: impl IntoIterator<Item = AsyncResult<T>>,
    return_when: ReturnWhen,
    timeout: Option<Duration>,
) -> (Vec<AsyncResult<T>>, Vec<AsyncResult<T>>) {
    let deadline = timeout.map(|t| Instant::now() + t);
    let futures: Vec<AsyncResult<T>> = futures.into_iter().collect();
    let completions = Arc::new(Completions::default());
    for (i, f) in futures.iter().enumerate() {
        f.notify_when_ready(&completions, i);
    }
    let holds = |futures: &[AsyncResult<T>]| {
        let all = futures.iter().all(AsyncResult::ready);
        match return_when {
            ReturnWhen::FirstCompleted => {
                futures.is_empty() || futures.iter().any(AsyncResult::ready)
            }
            ReturnWhen::FirstException => all || futures.iter().any(AsyncResult::failed),
            ReturnWhen::AllCompleted => all,
        }
    };
    // Each completion wakes the wait once; the condition is read from the futures themselves.
    while !holds(&futures) && completions.next(deadline).is_some() {}
    futures.into_iter().partition(AsyncResult::ready)
}
