//! `Pool`: a supervised pool of worker processes (Python's `multiprocessing.Pool`), and an
//! `Executor` in the style of `concurrent.futures.ProcessPoolExecutor`.
//!
//! See `supervisor.rs` for how tasks move and how deaths are handled, and `child.rs` for the
//! wire protocol and the worker side.

mod call;
pub(crate) mod child;
mod executor;
mod progress;
mod supervisor;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use self::call::{Call, Chunk};
use self::child::ToWorker;
use self::progress::Progress;
use self::supervisor::{Config, Shared, Status, Task};
use crate::channel::{self, Encoded, INLINE_MAX};
use crate::codec;
use crate::error::{Error, Result};
use crate::sys;
use crate::worker::Target;
use crate::worker::Worker;

pub(crate) use child::serve;
pub use executor::{AsCompleted, Executor, as_completed};

/// The payload of a chunk chosen automatically stays within this many bytes, which leaves
/// room in an inline frame for the headers (see [`Tasks::chunksize_for`]).
const INLINE_BUDGET: usize = INLINE_MAX - 256;

/// The number of CPUs this process may use: the host's CPUs narrowed by the CPU affinity mask
/// and by a cgroup CPU quota (a container started with `--cpus=1.5` counts 2). The default
/// size of a [`Pool`]. Python's `os.process_cpu_count()`, quota included.
///
/// ```
/// let n = mp::cpu_count();
/// assert!(n >= 1 && n <= mp::host_cpu_count().max(n));
/// ```
pub fn cpu_count() -> usize {
    sys::usable_cpu_count()
}

/// The number of online CPUs of the host, whatever this process may use (Python's
/// `multiprocessing.cpu_count()`).
///
/// ```
/// assert!(mp::host_cpu_count() >= 1);
/// ```
pub fn host_cpu_count() -> usize {
    sys::host_cpu_count()
}

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
///   workers, which ignore `SIGINT` themselves (no traceback from every worker).
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
    shared: Arc<Shared>,
    supervisor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.fmt(f)
    }
}

/// Configures a [`Pool`]: `Pool::builder().processes(4).initializer(..).build()`.
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<Result<Encoded>>,
    max_tasks_per_child: Option<usize>,
    retry: bool,
    task_timeout: Option<Duration>,
    name: String,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("initializer", &self.initializer.is_some())
            .field("max_tasks_per_child", &self.max_tasks_per_child)
            .field("retry", &self.retry)
            .field("task_timeout", &self.task_timeout)
            .finish()
    }
}

impl PoolBuilder {
    /// The number of worker processes (default: [`cpu_count`]).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// A worker each process runs once, with `args`, before its first task (Python's
    /// `initializer` and `initargs`). If it panics, the pool stops and every call returns
    /// [`Error::InitializerFailed`] (Python's `Pool` restarts failing workers forever).
    ///
    /// ```
    /// # mp::guard!();
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// static OFFSET: AtomicU64 = AtomicU64::new(0);
    ///
    /// #[mp::worker]
    /// fn set_offset(n: u64) {
    ///     OFFSET.store(n, Ordering::Relaxed);
    /// }
    ///
    /// #[mp::worker]
    /// fn add_offset(x: u64) -> u64 {
    ///     x + OFFSET.load(Ordering::Relaxed)
    /// }
    ///
    /// let pool = mp::Pool::builder().processes(2).initializer(set_offset, 100).build()?;
    /// assert_eq!(pool.map(add_offset, [1, 2, 3])?, [101, 102, 103]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn initializer<W: Worker>(mut self, worker: W, args: W::Args) -> Self {
        let target = Target::of(worker.__entry());
        self.initializer = Some(Encoded::new(&(Some(target), args)));
        self
    }

    /// Replaces a worker after it has run `n` tasks (Python's `maxtasksperchild`; a chunk of a
    /// `map` counts as one task, as in Python). Frees whatever a task leaks.
    #[doc(alias = "maxtasksperchild")]
    pub fn max_tasks_per_child(mut self, n: usize) -> Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// Whether a task whose worker died is run once more on a fresh worker before it fails
    /// with [`Error::WorkerDied`] (default: `false`). A task that kills every worker it runs
    /// on fails after its second attempt.
    pub fn retry_lost_tasks(mut self, retry: bool) -> Self {
        self.retry = retry;
        self
    }

    /// A time limit per task: a task still running after it is failed with
    /// [`Error::TaskTimeout`], and its worker is killed and replaced. A chunk of `k` tasks
    /// gets `k` times the limit (use `chunksize(1)` for exact limits).
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }

    /// The workers' name prefix (default `PoolWorker`): workers are `PoolWorker-1`, ...
    pub fn name(mut self, prefix: impl Into<String>) -> Self {
        self.name = prefix.into();
        self
    }

    /// Starts the workers. Fails if a process cannot start (including an unguarded entry
    /// point, see [`mp::main!`](crate::main)), if `processes` is 0, or if the initializer's
    /// arguments cannot be encoded.
    pub fn build(self) -> Result<Pool> {
        let processes = self.processes.unwrap_or_else(cpu_count);
        if processes == 0 {
            return Err(Error::InvalidArgument(
                "a pool needs at least one process".into(),
            ));
        }
        if self.max_tasks_per_child == Some(0) {
            return Err(Error::InvalidArgument(
                "max_tasks_per_child must be at least 1".into(),
            ));
        }
        if self.task_timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::InvalidArgument(
                "task_timeout must not be zero".into(),
            ));
        }
        let init = match self.initializer {
            Some(init) => init?,
            None => Encoded::new(&(None::<Target>, ()))?,
        };
        let shared = Shared::start(Config {
            processes,
            init,
            max_tasks_per_child: self.max_tasks_per_child,
            retry: self.retry,
            task_timeout: self.task_timeout,
            name: self.name,
        })?;
        let run = Arc::clone(&shared);
        let supervisor = match std::thread::Builder::new()
            .name("mp-pool".into())
            .spawn(move || supervisor::run(run))
        {
            Ok(supervisor) => supervisor,
            Err(e) => {
                shared.abandon();
                return Err(Error::io("cannot start the pool's supervisor thread")(e));
            }
        };
        Ok(Pool {
            shared,
            supervisor: Some(supervisor),
        })
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
        }
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.shared.processes()
    }

    fn tasks(&self) -> Tasks<'_> {
        Tasks {
            pool: self,
            chunksize: None,
            progress: false,
        }
    }

    /// Sets the chunk size of the next `map`-like call: `pool.chunksize(100).map(f, items)`
    /// (Python's `chunksize=` argument). Without it, `map`, `starmap` and `map_async` split
    /// the input into about four chunks per worker, as Python does, or into smaller chunks
    /// where a chunk of that size would not fit in one 64 KiB message (many small tasks:
    /// about 8 000 `u64` arguments a chunk), which moves them faster; `imap` sends tasks one
    /// at a time.
    pub fn chunksize(&self, n: usize) -> Tasks<'_> {
        self.tasks().chunksize(n)
    }

    /// Shows a progress bar on stderr during the next `map`-like call (only when stderr is a
    /// terminal): `pool.progress().map(f, items)`.
    pub fn progress(&self) -> Tasks<'_> {
        self.tasks().progress()
    }

    /// Runs `worker` on every item, in parallel, and returns the results in input order
    /// (Python's `Pool.map`). Waits for every task; the first error in input order is
    /// returned. To get every result, failures included, collect an
    /// [`imap`](Pool::imap) instead.
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
    pub fn imap_unordered<W: Worker, I: IntoIterator<Item = W::Args>>(
        &self,
        worker: W,
        items: I,
    ) -> Imap<'_, W, I::IntoIter> {
        self.tasks().imap_unordered(worker, items)
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
        let call = Call::new(&self.shared, W::NAME, Some(1), true);
        self.submit_chunk(worker, &call, 0, vec![args])?;
        Ok(AsyncResult::new(call, 1, 1, |call, n, chunksize| {
            let mut one = Submitted {
                chunksize,
                items: n,
            };
            let mut v = collect::<W::Output>(call, n, &Progress::off(), &mut one)?;
            Ok(v.pop().expect("one result for one task"))
        }))
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

    /// Accepts no more tasks; the workers exit once the queued ones are done (Python's
    /// `close`). Then [`join`](Pool::join).
    pub fn close(&self) {
        self.shared
            .set_status(|s| matches!(s, Status::Open).then_some(Status::Closed));
    }

    /// Stops the workers at once (`SIGTERM`, then `SIGKILL` after 200 ms); tasks not yet done
    /// fail with [`Error::PoolTerminated`] (Python's `terminate`). Dropping the pool does
    /// this too.
    pub fn terminate(&mut self) {
        self.shared.set_status(|s| {
            matches!(s, Status::Open | Status::Closed)
                .then_some(Status::Stopping(call::StopReason::Terminated))
        });
        self.wait_supervisor();
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
        if matches!(self.shared.lock().status, Status::Open) {
            return Err(Error::InvalidArgument(
                "join() needs close() or terminate() first".into(),
            ));
        }
        self.shared.wait_finished();
        self.wait_supervisor();
        match &self.shared.lock().status {
            Status::Finished(Some(call::StopReason::Interrupted)) => Err(Error::Interrupted),
            _ => Ok(()),
        }
    }

    fn wait_supervisor(&mut self) {
        if let Some(handle) = self.supervisor.take() {
            let _ = handle.join();
        }
    }

    /// Submits chunk `chunk` of `call`: `items`, encoded by [`encode_chunk`].
    fn submit_chunk<W: Worker>(
        &self,
        worker: W,
        call: &Arc<Call>,
        chunk: usize,
        items: Vec<W::Args>,
    ) -> Result<()> {
        let header = ToWorker::Task(Target::of(worker.__entry()));
        let task = Task {
            call: Arc::clone(call),
            chunk,
            len: items.len(),
            msg: encode_chunk(&header, items)?,
            attempts: 0,
        };
        self.shared.submit(task)
    }
}

/// The frame of a chunk of tasks. Numbers are not copied: the frame ends with a view of the
/// chunk's own vector, which it keeps, and is written to the worker's socket from there.
fn encode_chunk<T: serde::Serialize + 'static>(
    header: &ToWorker,
    items: Vec<T>,
) -> Result<Encoded> {
    let count = items.len();
    match channel::numbers(items) {
        Ok(source) => {
            let len = source.bytes().len();
            Encoded::header_and_shared(header, &source, 0..len, count)
        }
        Err(items) => Encoded::header_and_seq(header, &items),
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.supervisor.is_some() {
            self.terminate();
        }
    }
}

/// Options for one `map`-like call: from [`Pool::chunksize`] or [`Pool::progress`].
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// let pool = mp::Pool::new(2)?;
/// let squares = pool.chunksize(10).progress().map(square, 0..1000)?;
/// assert_eq!(squares[999], 998_001);
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
#[must_use = "call `map`, `imap`, ... on it"]
pub struct Tasks<'p> {
    pool: &'p Pool,
    chunksize: Option<usize>,
    progress: bool,
}

impl<'p> Tasks<'p> {
    /// Sets the chunk size: tasks travel to workers `n` at a time.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n);
        self
    }

    /// Shows a progress bar on stderr (only when stderr is a terminal).
    pub fn progress(mut self) -> Self {
        self.progress = true;
        self
    }

    /// The chunk size for `n` items, the first of which is `sample`: the one set, or an
    /// automatic one. Automatic is Python's choice (about four chunks per worker), made
    /// smaller where needed so that a chunk's tasks, and its results when their size is
    /// known, fit in one inline frame: a small frame goes through the socket in one copy each
    /// way, while a larger one needs a shared buffer of its own, whose set-up and page-cache
    /// work cost more than they save (a million `u64` squares: about 8 ms in inline chunks
    /// against 13 ms in eight large ones).
    fn chunksize_for<W: Worker>(&self, n: usize, sample: Option<&W::Args>) -> Result<usize> {
        match self.chunksize {
            Some(0) => Err(Error::InvalidArgument(
                "chunksize must be at least 1".into(),
            )),
            Some(c) => Ok(c),
            None => {
                let python = n.div_ceil(self.pool.processes() * 4).max(1);
                let sample = sample.map_or(&[][..], std::slice::from_ref);
                let per_task = codec::size_hint(sample).max(codec::size_hint::<W::Output>(&[]));
                let inline = match per_task {
                    Some(bytes) => (INLINE_BUDGET / bytes.max(1)).max(1),
                    None => usize::MAX,
                };
                Ok(python.min(inline))
            }
        }
    }

    /// [`Pool::map`] with these options.
    pub fn map<W: Worker>(
        self,
        worker: W,
        items: impl IntoIterator<Item = W::Args>,
    ) -> Result<Vec<W::Output>> {
        let items = items.into_iter();
        match exact_len(&items) {
            Some(n) => self.map_input(worker, items, n),
            None => {
                let items: Vec<W::Args> = items.collect();
                let n = items.len();
                self.map_input(worker, items.into_iter(), n)
            }
        }
    }

    fn map_input<W: Worker>(
        self,
        worker: W,
        input: impl Iterator<Item = W::Args>,
        n: usize,
    ) -> Result<Vec<W::Output>> {
        // Enough chunks ahead that every worker holds its fill and a few more wait queued
        // while the caller sleeps; the rest is cut from the input as results come in, so the
        // chunks alive at once (and their memory) do not grow with the input.
        let mut feed = self.feed(worker, input, n, 8 * self.pool.processes())?;
        feed.refill(0)?;
        let call = Arc::clone(&feed.call);
        collect(&call, n, &Progress::new(self.progress, Some(n)), &mut feed)
    }

    /// A feed for a `map`-like call over `input`, which announces `n` items, keeping at most
    /// `window` chunks in flight.
    fn feed<W: Worker, I: Iterator<Item = W::Args>>(
        &self,
        worker: W,
        input: I,
        n: usize,
        window: usize,
    ) -> Result<InputFeed<'p, W, I>> {
        let mut input = input.fuse().peekable();
        let chunksize = self.chunksize_for::<W>(n, input.peek())?;
        Ok(InputFeed {
            pool: self.pool,
            worker,
            call: Call::new(&self.pool.shared, W::NAME, None, true),
            input,
            chunksize,
            window,
            lens: Vec::new(),
            items: 0,
            ended: false,
        })
    }

    /// [`Pool::starmap`] with these options.
    pub fn starmap<W: Worker>(
        self,
        worker: W,
        items: impl IntoIterator<Item = W::Args>,
    ) -> Result<Vec<W::Output>> {
        self.map(worker, items)
    }

    /// [`Pool::map_async`] with these options (the progress bar does not apply). Every chunk
    /// is submitted before it returns: nobody is there to feed the workers later.
    pub fn map_async<W: Worker>(
        self,
        worker: W,
        items: impl IntoIterator<Item = W::Args>,
    ) -> Result<AsyncResult<Vec<W::Output>>> {
        let items = items.into_iter();
        match exact_len(&items) {
            Some(n) => self.map_async_input(worker, items, n),
            None => {
                let items: Vec<W::Args> = items.collect();
                let n = items.len();
                self.map_async_input(worker, items.into_iter(), n)
            }
        }
    }

    fn map_async_input<W: Worker>(
        self,
        worker: W,
        input: impl Iterator<Item = W::Args>,
        n: usize,
    ) -> Result<AsyncResult<Vec<W::Output>>> {
        let mut feed = self.feed(worker, input, n, usize::MAX)?;
        feed.refill(0)?;
        Ok(AsyncResult::new(
            Arc::clone(&feed.call),
            feed.items,
            feed.chunksize,
            |call, items, chunksize| {
                let mut all = Submitted { chunksize, items };
                collect::<W::Output>(call, items, &Progress::off(), &mut all)
            },
        ))
    }

    /// [`Pool::imap`] with these options (default chunk size 1).
    pub fn imap<W: Worker, I: IntoIterator<Item = W::Args>>(
        self,
        worker: W,
        items: I,
    ) -> Imap<'p, W, I::IntoIter> {
        Imap::new(self, worker, items.into_iter(), true)
    }

    /// [`Pool::imap_unordered`] with these options (default chunk size 1).
    pub fn imap_unordered<W: Worker, I: IntoIterator<Item = W::Args>>(
        self,
        worker: W,
        items: I,
    ) -> Imap<'p, W, I::IntoIter> {
        Imap::new(self, worker, items.into_iter(), false)
    }
}

/// The length of an input that knows it exactly (a range, a vector): such an input is cut
/// into chunks as it is read; another is read whole first, since the automatic chunk size
/// needs the count.
fn exact_len(input: &impl Iterator) -> Option<usize> {
    match input.size_hint() {
        (lo, Some(hi)) if lo == hi => Some(lo),
        _ => None,
    }
}

/// The submitting side of a `map`-like call, as [`collect`] sees it.
trait Feed {
    /// Submits more chunks, if any are due now that `taken` results have been taken.
    fn refill(&mut self, taken: usize) -> Result<()>;
    /// The number of tasks in chunk `k` (submitted already).
    fn len_of(&self, k: usize) -> usize;
    /// The chunk size: chunk `k` starts at task `k * chunksize`.
    fn chunksize(&self) -> usize;
    /// Once the input has ended and everything is submitted: the numbers of chunks and tasks.
    fn totals(&self) -> Option<(usize, usize)>;
}

/// Cuts a call's input into chunks and submits them, keeping at most `window` chunks in
/// flight. The call's chunk count is fixed when the input ends, so an iterator that misstates
/// its length loses or invents nothing.
struct InputFeed<'p, W: Worker, I: Iterator<Item = W::Args>> {
    pool: &'p Pool,
    worker: W,
    call: Arc<Call>,
    input: std::iter::Peekable<std::iter::Fuse<I>>,
    chunksize: usize,
    window: usize,
    /// The length of every chunk submitted.
    lens: Vec<usize>,
    /// Tasks read from the input.
    items: usize,
    ended: bool,
}

impl<W: Worker, I: Iterator<Item = W::Args>> Feed for InputFeed<'_, W, I> {
    fn refill(&mut self, taken: usize) -> Result<()> {
        while !self.ended && self.lens.len() - taken < self.window {
            let chunk: Vec<W::Args> = self.input.by_ref().take(self.chunksize).collect();
            if chunk.is_empty() {
                self.ended = true;
                self.call.set_total(self.lens.len());
                break;
            }
            let (k, len) = (self.lens.len(), chunk.len());
            if let Err(e) = self.pool.submit_chunk(self.worker, &self.call, k, chunk) {
                self.call.cancel();
                return Err(e);
            }
            self.lens.push(len);
            self.items += len;
        }
        Ok(())
    }

    fn len_of(&self, k: usize) -> usize {
        self.lens[k]
    }

    fn chunksize(&self) -> usize {
        self.chunksize
    }

    fn totals(&self) -> Option<(usize, usize)> {
        self.ended.then_some((self.lens.len(), self.items))
    }
}

/// A call whose `items` tasks were all submitted in chunks of `chunksize` (a `map_async`).
struct Submitted {
    chunksize: usize,
    items: usize,
}

impl Feed for Submitted {
    fn refill(&mut self, _taken: usize) -> Result<()> {
        Ok(())
    }

    fn len_of(&self, k: usize) -> usize {
        self.chunksize.min(self.items - k * self.chunksize)
    }

    fn chunksize(&self) -> usize {
        self.chunksize
    }

    fn totals(&self) -> Option<(usize, usize)> {
        Some((self.items.div_ceil(self.chunksize), self.items))
    }
}

/// Takes every chunk of a call as it arrives, decoding each, and keeps `feed` submitting;
/// the results in input order, or the first error in input order. `n` is the number of tasks
/// the input announced. Numbers are decoded straight into their place in the output; other
/// values chunk by chunk, joined at the end.
fn collect<O: DeserializeOwned + 'static>(
    call: &Call,
    n: usize,
    progress: &Progress,
    feed: &mut dyn Feed,
) -> Result<Vec<O>> {
    let chunksize = feed.chunksize();
    let mut placed: Option<Vec<O>> = sys::numeric_zeroed(n);
    let mut parts: BTreeMap<usize, Vec<O>> = BTreeMap::new();
    let mut first_error: Option<(usize, Error)> = None;
    let mut taken = 0;
    while feed.totals().is_none_or(|(chunks, _)| taken < chunks) {
        let (k, result) = call.take_any();
        taken += 1;
        let (first, len) = (k * chunksize, feed.len_of(k));
        if let Some(out) = placed.as_mut().filter(|out| out.len() < first + len) {
            // The input holds more than it announced.
            out.extend(sys::numeric_zeroed::<O>(first + len - out.len()).expect("numbers"));
        }
        let dest = placed.as_mut().map(|out| &mut out[first..first + len]);
        match Chunk::decode(result, first, len, call.worker, dest) {
            Chunk::Placed => {}
            Chunk::Values(values) => {
                parts.insert(k, values);
            }
            Chunk::Mixed(results) => {
                let failed = results
                    .into_iter()
                    .enumerate()
                    .find_map(|(j, r)| r.err().map(|e| (first + j, e)));
                if let Some((i, e)) = failed {
                    if first_error.as_ref().is_none_or(|(earlier, _)| i < *earlier) {
                        first_error = Some((i, e));
                    }
                }
            }
        }
        progress.inc(len);
        if feed.totals().is_none_or(|(chunks, _)| taken < chunks) {
            // Awake anyway: read what else has arrived and feed the workers meanwhile.
            call.help();
        }
        if let Err(e) = feed.refill(taken) {
            first_error.get_or_insert((usize::MAX, e));
            break;
        }
    }
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    let (_, items) = feed.totals().expect("the loop ends once the input has");
    if let Some(mut out) = placed {
        out.truncate(items);
        return Ok(out);
    }
    Ok(parts.into_values().flatten().collect())
}

/// The pending result of [`Pool::apply_async`], [`Pool::map_async`] or
/// [`Executor::submit`] (Python's `AsyncResult` and `concurrent.futures.Future`).
///
/// Wait with [`get`](AsyncResult::get) / [`get_timeout`](AsyncResult::get_timeout) /
/// [`wait`](AsyncResult::wait), poll with [`ready`](AsyncResult::ready), or `.await` it
/// (it is a [`Future`]; no particular async runtime is needed).
#[must_use = "the result is lost unless you get or await it"]
pub struct AsyncResult<T> {
    call: Arc<Call>,
    n: usize,
    chunksize: usize,
    finish: fn(&Call, usize, usize) -> Result<T>,
    taken: bool,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("worker", &self.call.worker)
            .field("tasks", &self.n)
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T> AsyncResult<T> {
    fn new(
        call: Arc<Call>,
        n: usize,
        chunksize: usize,
        finish: fn(&Call, usize, usize) -> Result<T>,
    ) -> AsyncResult<T> {
        AsyncResult {
            call,
            n,
            chunksize,
            finish,
            taken: false,
        }
    }

    /// Whether the result is there (success or failure); never blocks.
    pub fn ready(&self) -> bool {
        self.n == 0 || self.call.finished()
    }

    /// Blocks until the result is there.
    pub fn wait(&self) {
        self.call.wait_finished(None);
    }

    /// Blocks until the result is there or `timeout` passes; whether it is there.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.n == 0 || self.call.wait_finished(Some(Instant::now() + timeout))
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
        (self.finish)(&self.call, self.n, self.chunksize)
    }

    pub(crate) fn call(&self) -> &Arc<Call> {
        &self.call
    }
}

impl<T> Future for AsyncResult<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = self.get_mut();
        if this.taken || this.n == 0 || this.call.register_waker(cx.waker()) {
            Poll::Ready(this.take())
        } else {
            Poll::Pending
        }
    }
}

/// The iterator of [`Pool::imap`] and [`Pool::imap_unordered`]: yields one `Result` per input
/// item. A task that panicked or whose worker died yields its error and the others still
/// arrive; when the pool stops (Ctrl-C, terminate) the rest yield its error and the iterator
/// ends.
#[must_use = "iterators are lazy: nothing runs until it is iterated"]
pub struct Imap<'p, W: Worker, I> {
    tasks: Tasks<'p>,
    worker: W,
    input: I,
    ordered: bool,
    chunksize: usize,
    window: usize,
    call: Arc<Call>,
    /// Chunks submitted, and consumed.
    submitted: usize,
    taken: usize,
    /// Lengths of the chunks in flight.
    lens: BTreeMap<usize, usize>,
    exhausted: bool,
    stopped: bool,
    buffer: std::vec::IntoIter<Result<W::Output>>,
    progress: Progress,
}

impl<W: Worker, I> std::fmt::Debug for Imap<'_, W, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("worker", &W::NAME)
            .field("ordered", &self.ordered)
            .field("chunksize", &self.chunksize)
            .field("in_flight", &(self.submitted - self.taken))
            .finish()
    }
}

impl<'p, W: Worker, I: Iterator<Item = W::Args>> Imap<'p, W, I> {
    fn new(tasks: Tasks<'p>, worker: W, input: I, ordered: bool) -> Self {
        // The bar has a total when the input knows its exact length.
        let total = match input.size_hint() {
            (lo, Some(hi)) if lo == hi => Some(lo),
            _ => None,
        };
        Imap {
            worker,
            input,
            ordered,
            chunksize: tasks.chunksize.unwrap_or(1),
            window: 4 * tasks.pool.processes(),
            call: Call::new(&tasks.pool.shared, W::NAME, None, !ordered),
            submitted: 0,
            taken: 0,
            lens: BTreeMap::new(),
            exhausted: false,
            stopped: false,
            buffer: Vec::new().into_iter(),
            progress: Progress::new(tasks.progress, total),
            tasks,
        }
    }

    /// Keeps the window of chunks in flight full.
    fn top_up(&mut self) -> Result<()> {
        if self.chunksize == 0 {
            return Err(Error::InvalidArgument(
                "chunksize must be at least 1".into(),
            ));
        }
        while !self.exhausted && self.submitted - self.taken < self.window {
            let items: Vec<W::Args> = self.input.by_ref().take(self.chunksize).collect();
            if items.len() < self.chunksize {
                self.exhausted = true;
            }
            if items.is_empty() {
                break;
            }
            let k = self.submitted;
            self.lens.insert(k, items.len());
            self.tasks
                .pool
                .submit_chunk(self.worker, &self.call, k, items)?;
            self.submitted += 1;
        }
        Ok(())
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
            if let Err(e) = self.top_up() {
                self.stopped = true;
                return Some(Err(e));
            }
            if self.taken == self.submitted {
                return None;
            }
            let (k, result) = if self.ordered {
                (self.taken, self.call.take(self.taken))
            } else {
                self.call.take_any()
            };
            self.taken += 1;
            let len = self.lens.remove(&k).expect("a chunk in flight");
            self.progress.inc(len);
            let first = k * self.chunksize;
            self.buffer = Chunk::decode(result, first, len, W::NAME, None)
                .into_results()
                .into_iter();
        }
    }
}

impl<W: Worker, I> Drop for Imap<'_, W, I> {
    fn drop(&mut self) {
        self.call.cancel();
    }
}
