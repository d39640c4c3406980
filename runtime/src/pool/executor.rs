//! `Executor`: `concurrent.futures.ProcessPoolExecutor` on top of [`Pool`], and
//! [`as_completed`]. A thin layer: it must not reach past the `Pool` API and the result
//! handles.

use std::sync::Arc;

use super::Pool;
use super::job::Completions;
use super::result::{AsyncResult, Imap};
use crate::error::Result;
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

    /// The pool underneath, for `map`, `chunksize` and the rest.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Shuts the executor down: with `wait`, after the submitted tasks are done; without,
    /// at once, failing unfinished ones with [`Error::PoolTerminated`](crate::Error::PoolTerminated).
    pub fn shutdown(mut self, wait: bool) -> Result<()> {
        if wait {
            self.pool.close();
            self.pool.join()
        } else {
            self.pool.terminate();
            Ok(())
        }
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
    }
}

/// The iterator of [`as_completed`].
#[must_use = "iterators are lazy: nothing happens until it is iterated"]
pub struct AsCompleted<T> {
    results: Vec<Option<AsyncResult<T>>>,
    left: usize,
    completions: Arc<Completions>,
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
        let i = self.completions.next();
        self.left -= 1;
        self.results[i].take()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}
