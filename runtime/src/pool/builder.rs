//! [`PoolBuilder`]: a pool's settings before it starts, and [`build`](PoolBuilder::build),
//! which checks them, prepares the initializer (for MPI ranks too) and starts the pool. It must
//! not start or manage workers itself: that is `supervisor.rs`'s.

use std::sync::OnceLock;
use std::time::Duration;

use super::core::PoolConfig;
use super::wire::Encoded;
use super::{Backend, Pool, link, supervisor};
use crate::error::{Error, Result};
use crate::worker::{Target, Worker};

/// Configures a [`Pool`]: `Pool::builder().processes(4).initializer(..).build()`.
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder {
    pub(super) processes: Option<usize>,
    pub(super) initializer: Option<Result<Encoded>>,
    pub(super) max_tasks_per_child: Option<usize>,
    pub(super) retry: bool,
    pub(super) task_timeout: Option<Duration>,
    pub(super) name: String,
    pub(super) start_method: Option<crate::StartMethod>,
    pub(super) backend: Option<Backend>,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("initializer", &self.initializer.is_some())
            .field("max_tasks_per_child", &self.max_tasks_per_child)
            .field("retry", &self.retry)
            .field("task_timeout", &self.task_timeout)
            .field("start_method", &self.start_method)
            .field("backend", &self.backend)
            .finish()
    }
}

impl PoolBuilder {
    /// The number of worker processes (default: [`cpu_count`](crate::cpu_count)).
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

    /// Starts the workers (and their replacements) by `method` instead of the process-wide
    /// start method ([`get_start_method`](crate::get_start_method)); Python's
    /// `get_context(method).Pool(...)`.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let pool = mp::Pool::builder()
    ///     .processes(2)
    ///     .start_method(mp::StartMethod::ForkServer)
    ///     .build()?;
    /// assert_eq!(pool.map(square, [1, 2, 3])?, [1, 4, 9]);
    /// # Ok::<(), mp::Error>(())
    /// ```
    #[doc(alias = "get_context")]
    pub fn start_method(mut self, method: crate::StartMethod) -> Self {
        self.start_method = Some(method);
        self
    }

    /// Where the workers run: local child processes ([`Backend::Local`], the default) or the
    /// ranks of the MPI job this program runs in ([`Backend::Mpi`], feature `mpi`: one worker
    /// per rank ≥ 1, or [`processes`](PoolBuilder::processes) of them). Without this call the
    /// environment variable `MP_BACKEND` (`local` or `mpi`) decides, so an unchanged program
    /// moves to a cluster with `MP_BACKEND=mpi`.
    ///
    /// ```
    /// # mp::guard!();
    /// let pool = mp::Pool::builder().backend(mp::Backend::Local).processes(1).build()?;
    /// assert_eq!(pool.processes(), 1);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Starts the workers. Fails if a process cannot start (including an unguarded entry
    /// point, see [`mp::main!`](crate::main)), if `processes` is 0, or if the initializer's
    /// arguments cannot be encoded.
    pub fn build(self) -> Result<Pool> {
        let backend = match self.backend {
            Some(backend) => backend,
            None => link::backend_from_env()?,
        };
        let processes = self.processes.unwrap_or_else(crate::cpu_count);
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
        let (init, ranks) = match backend {
            Backend::Local => (init, Vec::new()),
            Backend::Mpi => {
                if self.max_tasks_per_child.is_some() {
                    return Err(Error::InvalidArgument(
                        "max_tasks_per_child cannot be used with Backend::Mpi: an MPI rank cannot \
                         be replaced"
                            .into(),
                    ));
                }
                if self.start_method.is_some() {
                    return Err(Error::InvalidArgument(
                        "start_method cannot be used with Backend::Mpi: the MPI launcher starts \
                         the ranks"
                            .into(),
                    ));
                }
                let init = init
                    .into_network()
                    .map_err(|e| network_refusal(e, "initializer"))?;
                (init, take_ranks(self.processes)?)
            }
        };
        let processes = match backend {
            Backend::Local => processes,
            Backend::Mpi => ranks.len(),
        };
        let (shared, supervisor) = supervisor::start(
            PoolConfig {
                processes,
                init,
                max_tasks_per_child: self.max_tasks_per_child,
                retry: self.retry,
                task_timeout: self.task_timeout,
                name: self.name,
                start_method: self.start_method,
                backend,
            },
            ranks,
        )?;
        Ok(Pool {
            shared,
            supervisor: Some(supervisor),
            callbacks: OnceLock::new(),
        })
    }
}

/// The worker ranks for an MPI pool.
#[cfg(feature = "mpi")]
fn take_ranks(processes: Option<usize>) -> Result<link::Ranks> {
    crate::mpi::take_ranks(processes)
}

#[cfg(not(feature = "mpi"))]
fn take_ranks(_: Option<usize>) -> Result<link::Ranks> {
    Err(link::mpi_missing())
}

/// The error for a value that cannot travel to an MPI rank, naming what it was.
pub(crate) fn network_refusal(error: Error, what: &str) -> Error {
    match error {
        Error::Encode(_) => Error::Encode(format!(
            "the {what} holds a local OS handle (a Queue, Pipe end, Value, Array, lock or \
             SharedMemory), which cannot travel to an MPI rank; share it through a Manager \
             proxy instead"
        )),
        other => other,
    }
}
