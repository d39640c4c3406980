//! `Pool`: a supervised pool of worker processes (Python's `multiprocessing.Pool`), and an
//! `Executor` in the style of `concurrent.futures.ProcessPoolExecutor`. This file is the
//! public API's [`Pool`]; `builder.rs` holds [`PoolBuilder`] and `options.rs` [`CallOptions`].
//! None of them holds machinery.
//!
//! The rest, from the caller down: `map.rs` cuts inputs into chunks and feeds them,
//! `result.rs` holds the handles a call returns, `job.rs` one call's arriving chunks and its
//! waits, `outcome.rs` a chunk's reply and its decoding, `core.rs` the state shared with the
//! supervisor and the moves anyone may make on it, `supervisor.rs` the thread and the workers'
//! lives, `child.rs` the wire protocol and the worker side, `executor.rs` `Executor`,
//! `as_completed` and `wait`, `input.rs` an `imap` input that fails, `cancel.rs` withdrawing
//! queued chunks, `callbacks.rs` the thread that runs result callbacks. See `core.rs` and
//! `supervisor.rs` for how tasks move and how deaths are handled.

mod builder;
mod callbacks;
mod cancel;
pub(crate) mod child;
mod core;
pub(crate) mod executor;
mod in_place;
mod input;
mod job;
mod link;
mod map;
mod options;
mod outcome;
mod progress;
mod result;
mod supervisor;
pub(crate) mod wire;

use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use self::callbacks::Callbacks;
use self::core::{PoolCore, PoolStatus};
use self::job::Job;
use self::map::{Cut, collect, submit_chunk};
use self::outcome::StopReason;
use self::progress::Progress;
use crate::error::{Error, Result};
use crate::worker::Worker;

pub use builder::PoolBuilder;
pub(crate) use child::serve;
pub use link::Backend;
pub use options::CallOptions;
use result::Submitted;
pub use result::{AsyncResult, Imap};

/// A pool of worker processes that run registered workers on many inputs (Python's
/// `multiprocessing.Pool`).
///
/// * `map`, `starmap`, `imap`, `imap_unordered`, `apply`, `apply_async`, `map_async`, with
///   chunking (automatic like Python's, or [`chunksize`](Pool::chunksize)).
/// * **Supervised**: a worker that dies (exit, signal, OOM kill, abort) is noticed at once and
///   replaced; the task it held fails with [`Error::WorkerDied`] naming the pid, the exit
///   status and the task index, or is retried once
///   ([`retry_lost_tasks`](PoolBuilder::retry_lost_tasks)). Python's `Pool` hangs forever.
/// * A panic fails its task only, with [`Error::WorkerPanicked`]; the other results arrive.
/// * **Ctrl-C** during a blocking call returns [`Error::Interrupted`] at once and stops the
///   workers (quietly: no traceback from every worker). A `SIGINT` sent to one worker alone
///   fails only its task with [`Error::Interrupted`] (Python's `KeyboardInterrupt` in the
///   worker); the pool replaces that worker and goes on.
/// * Dropping the pool terminates its workers (as Python's `with Pool() as p:` does) and never
///   blocks for long; [`close`](Pool::close) + [`join`](Pool::join) finish the work first.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// let pool = mp::Pool::new(2)?;
/// assert_eq!(pool.map(square, 0..10)?, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
/// assert_eq!(pool.apply(square, 12)?, 144);
/// # Ok::<(), mp::Error>(())
/// ```
pub struct Pool {
    shared: Arc<PoolCore>,
    supervisor: Option<JoinHandle<()>>,
    /// The thread that runs `apply_async_with` / `map_async_with` callbacks, once needed.
    callbacks: OnceLock<Callbacks>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.fmt(f)
    }
}

impl Pool {
    /// A pool of `processes` workers. `Pool::new(mp::cpu_count())` is the usual size.
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// A builder for the other options: initializer, `max_tasks_per_child`, retries, per-task
    /// time limit.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            initializer: None,
            max_tasks_per_child: None,
            retry: false,
            task_timeout: None,
            name: "PoolWorker".to_owned(),
            start_method: None,
            backend: None,
        }
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.shared.processes()
    }

    fn tasks(&self) -> CallOptions<'_> {
        CallOptions {
            pool: self,
            chunksize: None,
            buffersize: None,
            progress: false,
        }
    }

    /// Sets the chunk size of the next `map`-like call: `pool.chunksize(100).map(f, items)`
    /// (Python's `chunksize=` argument). Without it, `map`, `starmap` and `map_async` split
    /// the input into about four chunks per worker, as Python does, or into smaller chunks
    /// where a chunk of that size would not fit in one 64 KiB message (many small tasks:
    /// about 8 000 `u64` arguments a chunk), which moves them faster. `imap` and
    /// `imap_unordered` choose the same way when the input knows its exact length (a range,
    /// a vector), and otherwise send tasks one at a time; `chunksize(1)` forces that.
    pub fn chunksize(&self, n: usize) -> CallOptions<'_> {
        self.tasks().chunksize(n)
    }

    /// Bounds how far the next `imap`-like call reads its input ahead of the consumer: at
    /// most `n` tasks (rounded up to whole chunks) are submitted and not yet yielded (Python
    /// 3.14's `buffersize`). The default is four chunks per worker. Fails the call with
    /// [`Error::InvalidArgument`] if `n` is 0.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// let pool = mp::Pool::new(2)?;
    /// let squares: Vec<u64> = pool.buffersize(4).imap(square, 0..10).collect::<Result<_, _>>()?;
    /// assert_eq!(squares[9], 81);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn buffersize(&self, n: usize) -> CallOptions<'_> {
        self.tasks().buffersize(n)
    }

    /// Shows a progress bar on stderr during the next `map`-like call (only when stderr is a
    /// terminal): `pool.progress().map(f, items)`.
    pub fn progress(&self) -> CallOptions<'_> {
        self.tasks().progress()
    }

    /// Runs `worker` on every item, in parallel, and returns the results in input order
    /// (Python's `Pool.map`). Waits for every task; the first error in input order is
    /// returned. To get every result, failures included, collect an
    /// [`imap`](Pool::imap) instead.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// let pool = mp::Pool::new(2)?;
    /// assert_eq!(pool.map(square, 1..=5)?, [1, 4, 9, 16, 25]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn map<W: Worker>(
        &self,
        worker: W,
        items: impl IntoIterator<Item = W::Args>,
    ) -> Result<Vec<W::Output>> {
        self.tasks().map(worker, items)
    }

    /// Python's `Pool.starmap`. A worker with several parameters takes them as a tuple, so
    /// this is [`map`](Pool::map) over tuples; it exists for readers coming from Python.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn multiply(a: i64, b: i64) -> i64 {
    ///     a * b
    /// }
    ///
    /// let pool = mp::Pool::new(2)?;
    /// assert_eq!(pool.starmap(multiply, [(1, 2), (3, 4), (5, 6)])?, [2, 12, 30]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn starmap<W: Worker>(
        &self,
        worker: W,
        items: impl IntoIterator<Item = W::Args>,
    ) -> Result<Vec<W::Output>> {
        self.tasks().map(worker, items)
    }

    /// Runs `worker` on the items lazily and yields the results in input order as they
    /// become available (Python's `Pool.imap`). Only a bounded window of tasks is in flight,
    /// so an endless iterator works; dropping the iterator cancels what is still queued.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// let pool = mp::Pool::new(2)?;
    /// let firsts: Vec<u64> = pool.imap(square, 0..).take(5).collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, [0, 1, 4, 9, 16]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn imap<W: Worker, I: IntoIterator<Item = W::Args>>(
        &self,
        worker: W,
        items: I,
    ) -> Imap<'_, W, I::IntoIter> {
        self.tasks().imap(worker, items)
    }

    /// Like [`imap`](Pool::imap), but yields results in the order they finish (Python's
    /// `Pool.imap_unordered`).
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn length(word: String) -> usize {
    ///     word.len()
    /// }
    ///
    /// let pool = mp::Pool::new(2)?;
    /// let words = ["one", "three", "eleven"].map(String::from);
    /// let mut lengths = Vec::new();
    /// for n in pool.imap_unordered(length, words) {
    ///     lengths.push(n?); // in the order the tasks finish
    /// }
    /// lengths.sort();
    /// assert_eq!(lengths, [3, 5, 6]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn imap_unordered<W: Worker, I: IntoIterator<Item = W::Args>>(
        &self,
        worker: W,
        items: I,
    ) -> Imap<'_, W, I::IntoIter> {
        self.tasks().imap_unordered(worker, items)
    }

    /// [`imap`](Pool::imap) over a fallible input (lines of a file, records being parsed):
    /// at the first `Err` item the input stops being read; the results of the items before
    /// it are yielded first, then that error, and the iterator ends. (Where Python's `imap`
    /// raises the input iterator's exception.) A panic in the input iterator is treated the
    /// same way in [`imap`](Pool::imap) too: it is resumed in the consumer at its place.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// let pool = mp::Pool::new(2)?;
    /// let input = ["1", "2", "x", "4"].map(|s| s.parse::<u64>().map_err(|e| mp::Error::InvalidArgument(e.to_string())));
    /// let out: Vec<mp::Result<u64>> = pool.try_imap(square, input).collect();
    /// assert_eq!(out.len(), 3);
    /// assert_eq!(out[1].as_ref().ok(), Some(&4));
    /// assert!(matches!(out[2], Err(mp::Error::InvalidArgument(_))));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn try_imap<W, E, I>(&self, worker: W, items: I) -> Imap<'_, W, I::IntoIter>
    where
        W: Worker,
        E: Into<Error>,
        I: IntoIterator<Item = std::result::Result<W::Args, E>>,
    {
        self.tasks().try_imap(worker, items)
    }

    /// [`try_imap`](Pool::try_imap) yielding results in the order they finish.
    pub fn try_imap_unordered<W, E, I>(&self, worker: W, items: I) -> Imap<'_, W, I::IntoIter>
    where
        W: Worker,
        E: Into<Error>,
        I: IntoIterator<Item = std::result::Result<W::Args, E>>,
    {
        self.tasks().try_imap_unordered(worker, items)
    }

    /// Runs `worker(args)` in a worker and waits for the result (Python's `Pool.apply`).
    pub fn apply<W: Worker>(&self, worker: W, args: W::Args) -> Result<W::Output> {
        self.apply_async(worker, args)?.get()
    }

    /// Starts `worker(args)` in a worker and returns a handle to its result at once (Python's
    /// `Pool.apply_async`). The handle is also a [`Future`].
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// let pool = mp::Pool::new(2)?;
    /// let pending: Vec<_> = (0..4).map(|n| pool.apply_async(square, n)).collect::<Result<_, _>>()?;
    /// let results: Vec<u64> = pending.into_iter().map(|r| r.get()).collect::<Result<_, _>>()?;
    /// assert_eq!(results, [0, 1, 4, 9]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn apply_async<W: Worker>(
        &self,
        worker: W,
        args: W::Args,
    ) -> Result<AsyncResult<W::Output>> {
        let (job, cut, finish) = self.submit_one(worker, args)?;
        Ok(AsyncResult::new(job, &self.shared, cut, finish))
    }

    /// [`apply_async`](Pool::apply_async) with Python's `callback` and `error_callback`:
    /// the pool's callback thread (one per pool, started on first use) passes the result to
    /// `callback`, or its error to `error_callback`, as soon as it arrives, before the handle
    /// reports it ready; [`get`](AsyncResult::get) then returns the same result. Callbacks
    /// run one at a time, in the order calls finish, so they should be short; a callback that
    /// blocks holds up the others, and [`join`](Pool::join), [`terminate`](Pool::terminate)
    /// and drop wait for every registered callback to run (a terminated call's gets
    /// [`Error::PoolTerminated`]). A callback that panics is caught and logged (`tracing`,
    /// target `mp`): the result still reaches `get` and the pool goes on (Python's pool
    /// hangs).
    ///
    /// ```
    /// # mp::guard!();
    /// use std::sync::mpsc;
    ///
    /// #[mp::worker]
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// let pool = mp::Pool::new(2)?;
    /// let (tx, rx) = mpsc::channel();
    /// let errors = tx.clone();
    /// let result = pool.apply_async_with(
    ///     square,
    ///     7,
    ///     move |v: &u64| tx.send(Ok(*v)).unwrap(),
    ///     move |e: &mp::Error| errors.send(Err(e.to_string())).unwrap(),
    /// )?;
    /// assert_eq!(result.get()?, 49);
    /// assert_eq!(rx.recv().unwrap(), Ok(49));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn apply_async_with<W: Worker>(
        &self,
        worker: W,
        args: W::Args,
        callback: impl FnOnce(&W::Output) + Send + 'static,
        error_callback: impl FnOnce(&Error) + Send + 'static,
    ) -> Result<AsyncResult<W::Output>> {
        let callbacks = self.callbacks()?;
        let (job, cut, finish) = self.submit_one(worker, args)?;
        Ok(AsyncResult::with_callbacks(
            job,
            &self.shared,
            (cut, finish),
            callbacks,
            (callback, error_callback),
        ))
    }

    /// Submits one task: its call, cut, and decoder.
    fn submit_one<W: Worker>(&self, worker: W, args: W::Args) -> Result<Submitted<W::Output>> {
        let job = Job::new(W::NAME, Some(1), true);
        submit_chunk(&self.shared, worker, &job, 0, vec![args])?;
        Ok((job, Cut::whole(1, 1), |job, mut cut, pump| {
            let mut v = collect::<W::Output>(job, &Progress::off(), &mut cut, pump)?;
            Ok(v.pop().expect("one result for one task"))
        }))
    }

    /// The callback thread, started on first use.
    fn callbacks(&self) -> Result<&Callbacks> {
        if let Some(callbacks) = self.callbacks.get() {
            return Ok(callbacks);
        }
        if let Err(extra) = self.callbacks.set(Callbacks::start()?) {
            // Another thread started one first.
            extra.close(false);
        }
        Ok(self.callbacks.get().expect("just set"))
    }

    /// Lets the callback thread end once the callbacks registered have run; with `wait`,
    /// waits for that (the pool has stopped, so every call has finished).
    fn close_callbacks(&self, wait: bool) {
        if let Some(callbacks) = self.callbacks.get() {
            callbacks.close(wait);
        }
    }

    /// Starts a [`map`](Pool::map) and returns a handle to its results at once (Python's
    /// `Pool.map_async`).
    pub fn map_async<W: Worker>(
        &self,
        worker: W,
        items: impl IntoIterator<Item = W::Args>,
    ) -> Result<AsyncResult<Vec<W::Output>>> {
        self.tasks().map_async(worker, items)
    }

    /// [`map_async`](Pool::map_async) with Python's `callback` (given every result, in
    /// order) and `error_callback` (given the first error in input order); see
    /// [`apply_async_with`](Pool::apply_async_with) for where and when they run.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// let pool = mp::Pool::new(2)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let squares = pool.map_async_with(square, 0..4, move |v: &Vec<u64>| tx.send(v.iter().sum::<u64>()).unwrap(), |_| {})?;
    /// assert_eq!(squares.get()?, [0, 1, 4, 9]);
    /// assert_eq!(rx.recv().unwrap(), 14);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn map_async_with<W: Worker>(
        &self,
        worker: W,
        items: impl IntoIterator<Item = W::Args>,
        callback: impl FnOnce(&Vec<W::Output>) + Send + 'static,
        error_callback: impl FnOnce(&Error) + Send + 'static,
    ) -> Result<AsyncResult<Vec<W::Output>>> {
        self.tasks()
            .map_async_with(worker, items, callback, error_callback)
    }

    /// Accepts no more tasks; the workers exit once the queued ones are done (Python's
    /// `close`). Then [`join`](Pool::join).
    pub fn close(&self) {
        self.shared
            .set_status(|s| matches!(s, PoolStatus::Open).then_some(PoolStatus::Closed));
    }

    /// Stops the workers at once (`SIGTERM`, then `SIGKILL` after 200 ms); tasks not yet done
    /// fail with [`Error::PoolTerminated`] (Python's `terminate`). Dropping the pool does
    /// this too.
    pub fn terminate(&mut self) {
        self.shared.set_status(|s| {
            matches!(s, PoolStatus::Open | PoolStatus::Closed)
                .then_some(PoolStatus::Stopping(StopReason::Terminated))
        });
        self.wait_supervisor();
        self.close_callbacks(true);
    }

    /// Waits for the workers to finish and exit after [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate) (Python's `join`); an error if neither was called, and
    /// [`Error::Interrupted`] if Ctrl-C stopped the pool.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// let mut pool = mp::Pool::new(2)?;
    /// let squares = pool.map_async(square, 0..100)?;
    /// pool.close();
    /// pool.join()?;
    /// assert_eq!(squares.get()?.len(), 100);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn join(&mut self) -> Result<()> {
        if matches!(self.shared.lock().status, PoolStatus::Open) {
            return Err(Error::InvalidArgument(
                "join() needs close() or terminate() first".into(),
            ));
        }
        self.shared.wait_finished();
        self.wait_supervisor();
        self.close_callbacks(true);
        match &self.shared.lock().status {
            PoolStatus::Finished(Some(StopReason::Interrupted)) => Err(Error::Interrupted),
            _ => Ok(()),
        }
    }

    fn wait_supervisor(&mut self) {
        if let Some(handle) = self.supervisor.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.supervisor.is_some() {
            self.terminate();
        } else {
            // Joined, or shut down to finish in the background: the callback thread ends on
            // its own once the calls it waits for are done.
            self.close_callbacks(false);
        }
    }
}
