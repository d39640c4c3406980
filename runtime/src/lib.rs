//! # mp — Python's `multiprocessing`, done right for Rust
//!
//! Real processes (the same binary, re-executed), typed messages, and the failure classes of
//! Python's module removed by construction:
//!
//! * only functions annotated with [`#[mp::worker]`](worker) can run in a child: passing a
//!   closure or a local fn is a **compile error**, not a run-time `PicklingError`;
//! * [`mp::main!`](main) is the `if __name__ == "__main__"` guard, and children are routed to
//!   their worker before `main` runs, so a missing guard can never fork-bomb;
//! * a child that panics, is killed, or outlives its parent gives an error, never a hang.
//!
//! ```
//! # mp::guard!();
//! #[mp::worker]
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let mut p = mp::spawn(square, 12)?;
//! assert_eq!(p.join()?, 144);
//! # Ok::<(), mp::Error>(())
//! ```
//!
//! ## Python → mp
//!
//! | Python `multiprocessing` | `mp` |
//! |---|---|
//! | `if __name__ == "__main__":` | [`mp::main!`](main) (test crates: [`mp::guard!`](guard)) |
//! | a top-level `def` passed as `target` | [`#[mp::worker]`](worker) |
//! | `Process(target, args)`, `start`, `join`, `exitcode` | [`Process`], [`spawn`] |
//! | `Pipe(duplex=True)` / `Pipe(False)` | [`pipe`] / [`pipe_one_way`] |
//! | `Queue`, `SimpleQueue`, `JoinableQueue` | [`Queue`], [`SimpleQueue`], [`JoinableQueue`] |
//! | `queue.Empty`, `queue.Full`, `EOFError` | [`Error::Empty`], [`Error::Full`], [`Error::Disconnected`] |
//! | `queue.ShutDown`, `Queue.shutdown(immediate)` | [`Error::ShutDown`], [`Queue::shutdown`], [`Queue::shutdown_immediate`] |
//! | `log_to_stderr`, `get_logger` | [`log_to_stderr`], [`get_logger`] |
//! | `Value`, `Array`, `RawValue`, `RawArray` | [`Value`], [`Array`], [`RawValue`], [`RawArray`] (element types: [`Plain`]) |
//! | `shared_memory.SharedMemory` | [`SharedMemory`] |
//! | `shared_memory.ShareableList`, `managers.SharedMemoryManager` | [`ShareableList`], [`SharedMemoryManager`] |
//! | `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore` | [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`] |
//! | `Event`, `Condition`, `Barrier`, `BrokenBarrierError` | [`Event`], [`Condition`], [`Barrier`], [`Error::BrokenBarrier`] |
//! | `Pool`, `map`, `starmap`, `imap`, `imap_unordered`, `apply`, `apply_async`, `map_async` | [`Pool`], [`PoolBuilder`], [`CallOptions`] (`chunksize`, `buffersize`, progress bar); `callback=` is [`Pool::apply_async_with`] |
//! | `AsyncResult`, `ProcessPoolExecutor`, `as_completed`, `wait` | [`AsyncResult`] (also a `Future`; `cancel`), [`Executor`], [`as_completed`], [`wait`] |
//! | `os.cpu_count()`, `os.process_cpu_count()` | [`host_cpu_count`], [`cpu_count`] |
//! | `current_process()` | [`current_process`] |
//! | `Manager()`, `manager.list()`, `.dict()`, `.Value()`, `.Namespace()`, `.Queue()`, `.Lock()`, `.Event()` | [`Manager`] ([`list`](Manager::list), [`dict`](Manager::dict), [`value`](Manager::value), [`queue`](Manager::queue), [`lock`](Manager::lock), [`event`](Manager::event)) → [`ListProxy`], [`DictProxy`], [`ValueProxy`], [`QueueProxy`], [`LockProxy`], [`EventProxy`] |
//! | `BaseManager(address, authkey)`, `.connect()`, `get_server().serve_forever()` | [`Manager::builder`], [`Manager::connect`], [`Manager::named`], [`ManagerServer`] |
//! | `connection.Listener(address, authkey)`, `connection.Client(address, authkey)` | [`Listener`], [`client`] → [`Connection`]; [`Address`] |
//!
//! ## Tests
//!
//! Test harnesses have no `main` of their own to wrap; put `mp::guard!();` once at the top of
//! each integration-test file (or crate) that starts processes, and `#[cfg(test)] mp::guard!();`
//! at the root of a library crate whose unit tests do. Children of test binaries, examples and
//! doctests are routed by the same pre-`main` hook.
//!
//! ## Guide
//!
//! The [`guide`] covers what cuts across the API: errors and `mp::Result<Result<T, E>>` (why
//! `??`, [`Process::join_flat`]), what happens on a panic, choosing a worker at run time
//! ([`Process::into_any`]), cancellation, what is fast (chunks, plain numbers, shared memory,
//! bytes), tests, and the limitations and platforms.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod any_process;
mod bootstrap;
mod codec;
pub mod connection;
mod error;
pub mod guide;
mod logging;
mod manager;
#[cfg(feature = "mpi")]
pub mod mpi;
mod pool;
mod process;
mod queue;
mod run_support;
mod shared;
mod sync;
mod sys;
mod wire;
mod worker;

pub use any_process::AnyProcess;
pub use bootstrap::start_method::{
    START_METHOD_ENV, StartMethod, get_start_method, set_start_method,
};
pub use codec::MAX_MESSAGE;
pub use connection::{
    Address, Connection, DEFAULT_MAX_MESSAGE, Listener, NetConnection, PipeReader, PipeWriter,
    ToAddress, client, pipe, pipe_one_way,
};
pub use error::{Error, ExitStatus, Result, SendError};
pub use logging::{Level, Logger, get_logger, log_to_stderr};
pub use manager::{
    ArrayProxy, BarrierProxy, ConditionProxy, ConditionProxyGuard, DictIter, DictProxy, EventProxy,
    ListIter, ListProxy, LockProxy, LockProxyGuard, Managed, ManagedProxy, Manager, ManagerBuilder,
    ManagerServer, PoolProxy, Proxy, QueueProxy, RLockProxy, RLockProxyGuard, SemaphoreProxy,
    SemaphoreProxyGuard, SetProxy, ValueProxy,
};
pub use pool::executor::{
    AsCompleted, AsCompletedTimeout, Executor, ReturnWhen, as_completed, wait,
};
pub use pool::{AsyncResult, Backend, CallOptions, Imap, Pool, PoolBuilder};
pub use process::{
    ParentProcess, Process, ProcessInfo, active_children, current_process, parent_process, spawn,
};
pub use queue::{DEFAULT_QUEUE_CAPACITY, JoinableQueue, Queue, QueueIter, SimpleQueue};
pub use shared::{
    Array, ArrayGuard, ArrayReadGuard, RawArray, RawValue, ShareableItem, ShareableList,
    SharedMemory, SharedMemoryManager, SharedView, Value, ValueGuard,
};
pub use sync::{
    Barrier, BoundedSemaphore, Condition, ConditionGuard, Event, Lock, LockGuard, RLock,
    RLockGuard, Semaphore, SemaphoreGuard,
};
pub use sys::{AtomicCell, HasAtomic, Numeric, Plain, cpu_count, host_cpu_count};

/// Derives [`Plain`] for a `#[repr(C)]` struct whose fields are all `Plain`, checking at
/// compile time that it has no padding.
///
/// ```
/// #[derive(Clone, Copy, mp::Plain)]
/// #[repr(C)]
/// struct Stats {
///     count: u64,
///     mean: f64,
/// }
///
/// let s = mp::Value::new(Stats { count: 1, mean: 2.0 })?;
/// s.update(|s| s.count += 1)?;
/// assert_eq!(s.get()?.count, 2);
/// # Ok::<(), mp::Error>(())
/// ```
pub use mp_macros::Plain;
pub use worker::{Worker, registered_workers};

/// Exempts an item from the named `cargo mp check` lints (rustc rejects unknown tool lints in
/// `#[allow(..)]`, so `mp` has its own attribute). It changes nothing in the item; the linter
/// reads it.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn crash() {
///     std::process::abort();
/// }
///
/// #[mp::allow(hardcoded-pool-size, pool-in-loop)]
/// fn demo() -> mp::Result<()> {
///     let pool = mp::Pool::new(2)?; // two processes on purpose
///     pool.close();
///     Ok(())
/// }
/// # demo()?;
/// # Ok::<(), mp::Error>(())
/// ```
pub use mp_macros::allow;

/// Registers a function as a worker that child processes can run.
///
/// The function stays callable as before. Its parameters become the worker's arguments (one
/// parameter: its type; several: a tuple; none: `()`); parameter and return types must be
/// `Serialize + DeserializeOwned + Send + 'static`. Generic, `async` and `self` functions are
/// rejected at compile time with a message saying why; a type that cannot cross is an error at
/// that parameter naming the derive to add. One mistake is one error: the call sites of a
/// rejected function add none.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn multiply(a: i64, b: i64) -> i64 {
///     a * b
/// }
///
/// assert_eq!(multiply(6, 7), 42);
/// assert_eq!(mp::spawn(multiply, (6, 7))?.join()?, 42);
/// # Ok::<(), mp::Error>(())
/// ```
pub use mp_macros::worker;

/// The `if __name__ == "__main__"` guard: wraps `main` so that starting children is allowed,
/// and, when `main` returns, waits for non-daemon children and terminates daemon ones.
///
/// Accepts `mp::main! { fn main() { ... } }` (any return type `main` may have, attributes such
/// as `#[tokio::main]` included) or `mp::main!(path::to::real_main);`.
///
/// ```no_run
/// #[mp::worker]
/// fn hello() {
///     println!("hello from {}", mp::current_process().name());
/// }
///
/// mp::main! {
///     fn main() -> Result<(), mp::Error> {
///         mp::spawn(hello, ())?.join()?;
///         Ok(())
///     }
/// }
/// ```
pub use mp_macros::main;

/// Marks a binary without an `mp::main!` (a test harness: integration tests, doctests) as
/// guarded, so its tests may start processes. Put it once per test crate, at the top level.
///
/// Children of such binaries are routed to their worker by `mp`'s pre-`main` hook, so a test
/// harness never runs twice.
///
/// ```
/// mp::guard!();
/// ```
#[macro_export]
macro_rules! guard {
    () => {
        const _: () = {
            #[$crate::__private::linkme::distributed_slice($crate::__private::GUARDS)]
            #[linkme(crate = $crate::__private::linkme)]
            static GUARD: u8 = 0;
        };
    };
}

#[doc(hidden)]
pub mod __private {
    //! Names used by generated code. Not public API.
    pub use crate::bootstrap::reap::leave_main;
    pub use crate::bootstrap::route::enter_main;
    pub use crate::manager::{MANAGED_TYPES, ManagedType};
    pub use crate::sys::Plain;
    pub use crate::worker::Invocation;
    pub use crate::worker::{GUARDS, SealedWorker, WORKERS, WorkerEntry};

    /// The pid of the resource tracker this process is connected to (it connects on its
    /// first named `SharedMemory::create`); for `mp`'s own tests.
    pub fn resource_tracker_pid() -> Option<u32> {
        crate::shared::tracker_pid()
    }

    /// Compile-time check, emitted by `#[derive(mp::Plain)]`, that a field type is `Plain`.
    pub const fn assert_plain<T: Plain>() {}
    pub use linkme;
    pub use serde;

    /// `<T as Gate<{ CHECK }>>::Ty` is `T` once the constant `CHECK` evaluates, and rustc's
    /// error type when `CHECK` failed to compile: `#[mp::worker]` writes each later check, and
    /// the `Worker` impl's types, through it, so one failed check is one error. Public (the
    /// projection appears in a `Worker` impl, which may be public).
    pub trait Gate<const CHECK: usize> {
        /// `Self`.
        type Ty: ?Sized;
    }

    impl<T: ?Sized, const CHECK: usize> Gate<CHECK> for T {
        type Ty = T;
    }
}
