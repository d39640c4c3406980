//! # Guide: errors, panics, performance, tests, limits
//!
//! What the API reference does not say in one place. Every example here runs as a doctest.
//!
//! - [Errors and `??`](#errors-and-)
//! - [Panics and dead processes](#panics-and-dead-processes)
//! - [Choosing a worker at run time](#choosing-a-worker-at-run-time)
//! - [Cancellation](#cancellation)
//! - [Performance: what is fast](#performance-what-is-fast)
//! - [Tests](#tests)
//! - [Limitations and platforms](#limitations-and-platforms)
//!
//! ## Errors and `??`
//!
//! Everything `mp` does returns [`mp::Result<T>`](crate::Result), with one error type,
//! [`mp::Error`](crate::Error). A worker may return a `Result` of its own; then joining it gives
//! **two** layers, `mp::Result<Result<T, E>>`:
//!
//! - the outer one is `mp`'s: the child could not start, died, or panicked
//!   ([`Error::ProcessDied`](crate::Error::ProcessDied),
//!   [`Error::WorkerPanicked`](crate::Error::WorkerPanicked), ...);
//! - the inner one is your worker's own `Err`, which crossed back to the parent as a value.
//!
//! They stay apart because they mean different things: a retry may help the first and not the
//! second. Where you do not care, `??` takes both apart in one expression (each `?` converts into
//! the function's error type), and [`Process::join_flat`](crate::Process::join_flat) gives one
//! `mp::Result<T>` for a worker whose error converts into `mp::Error` (`mp::Error` itself,
//! `std::io::Error`).
//!
//! A worker with an error type of its own makes it `Serialize` and `Deserialize` (it crosses
//! between processes like any result). `?` works on `mp` calls inside it once the type converts
//! from [`mp::Error`](crate::Error) and from [`mp::SendError<T>`](crate::SendError) (what
//! [`Queue::put`](crate::Queue::put) returns: the error and the value that was not sent):
//!
//! ```
//! # mp::guard!();
//! #[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
//! enum JobError {
//!     #[error("line {0:?} is not a number")]
//!     NotANumber(String),
//!     #[error(transparent)]
//!     Mp(#[from] mp::Error),
//! }
//!
//! // `put` hands the value back on failure; keep the error, drop the value.
//! impl<T> From<mp::SendError<T>> for JobError {
//!     fn from(e: mp::SendError<T>) -> JobError {
//!         JobError::Mp(e.into())
//!     }
//! }
//!
//! #[mp::worker]
//! fn parse_all(lines: Vec<String>, out: mp::Queue<u64>) -> Result<usize, JobError> {
//!     for line in &lines {
//!         let n = line.trim().parse().map_err(|_| JobError::NotANumber(line.clone()))?;
//!         out.put(n)?; // SendError<u64> -> JobError
//!     }
//!     Ok(lines.len())
//! }
//!
//! fn run() -> Result<u64, JobError> {
//!     let out = mp::Queue::new()?;
//!     let lines = vec!["1".to_string(), " 2".to_string()];
//!     // Outer `?`: mp's error (into JobError by #[from]); inner `?`: the worker's own.
//!     let count = mp::spawn(parse_all, (lines, out.clone()))?.join()??;
//!     let sum = (0..count).map(|_| out.get()).sum::<mp::Result<u64>>()?;
//!
//!     let bad = mp::spawn(parse_all, (vec!["x".to_string()], out))?.join()?;
//!     assert!(matches!(bad, Err(JobError::NotANumber(line)) if line == "x"));
//!     Ok(sum)
//! }
//! assert_eq!(run()?, 3);
//! # Ok::<(), JobError>(())
//! ```
//!
//! Without `thiserror`, a hand-written `Display` and `impl std::error::Error` do the same. In a
//! [`Pool`](crate::Pool), `pool.map(worker, items)?` gives a `Vec<Result<T, E>>`; collect it into
//! `Result<Vec<T>, E>` to stop at the first of your errors.
//!
//! ## Panics and dead processes
//!
//! - **A worker of a [`Process`](crate::Process) panics**: the child prints the panic on its
//!   stderr once (as Python prints a child's traceback) and exits; `join` returns
//!   [`Error::WorkerPanicked`](crate::Error::WorkerPanicked) with the worker's name, the panic
//!   message and its `file:line:column`.
//! - **A pool task panics**: that task fails with `Error::WorkerPanicked` (in `map`: the call
//!   returns the first error in input order; in `imap`: that item is an `Err`); nothing is
//!   printed, and the worker process lives on for the next tasks.
//! - **A child is killed** (a signal, the OOM killer, `exit` inside the worker): a `Process` gives
//!   [`Error::ProcessDied`](crate::Error::ProcessDied); a pool worker's tasks fail with
//!   [`Error::WorkerDied`](crate::Error::WorkerDied) (or are retried, with
//!   [`PoolBuilder::retry_lost_tasks`](crate::PoolBuilder::retry_lost_tasks)) and the worker is
//!   replaced. Never a hang (Python's `Pool` waits forever).
//! - **`main` panics** (or the parent is killed): every child notices at once that its parent is
//!   gone (its liveness pipe reports end-of-file) and exits, grandchildren too; nothing is left
//!   running. A `main` that *returns* first waits for its non-daemon children and terminates the
//!   daemon ones, as Python does at exit.
//!
//! ```
//! # mp::guard!();
//! #[mp::worker]
//! fn check(n: i32) -> i32 {
//!     assert!(n >= 0, "negative input {n}");
//!     n
//! }
//!
//! let err = mp::spawn(check, -1)?.join().unwrap_err();
//! assert!(matches!(&err, mp::Error::WorkerPanicked { message, .. } if message == "negative input -1"));
//!
//! let pool = mp::Pool::new(2)?;
//! assert!(matches!(pool.map(check, [1, -2, 3]), Err(mp::Error::WorkerPanicked { .. })));
//! assert_eq!(pool.map(check, [1, 2, 3])?, [1, 2, 3]); // the pool still works
//! # Ok::<(), mp::Error>(())
//! ```
//!
//! ## Choosing a worker at run time
//!
//! Every `#[mp::worker]` function is a type of its own, so `if`/`else` cannot return processes of
//! two workers as one type. Erase the type with [`Process::into_any`](crate::Process::into_any):
//! an [`AnyProcess`](crate::AnyProcess) joins to a `Box<dyn Any + Send>`, which you downcast to
//! the result type. The same goes for a `Vec` of processes of different workers.
//!
//! ```
//! # mp::guard!();
//! #[mp::worker]
//! fn quick(n: u64) -> u64 {
//!     n * (n + 1) / 2
//! }
//!
//! #[mp::worker]
//! fn thorough(n: u64) -> u64 {
//!     (1..=n).sum()
//! }
//!
//! let exact = std::env::var_os("EXACT").is_some();
//! let mut p = if exact {
//!     mp::spawn(thorough, 100)?.into_any()
//! } else {
//!     mp::spawn(quick, 100)?.into_any()
//! };
//! let sum = *p.join()?.downcast::<u64>().expect("both workers return u64");
//! assert_eq!(sum, 5050);
//! # Ok::<(), mp::Error>(())
//! ```
//!
//! When the choice is only about which worker a pool runs, a `match` whose arms each call
//! `pool.map(worker, ..)` needs no erasure: the arms return the same `Vec<T>`.
//!
//! ## Cancellation
//!
//! - A lazy [`imap`](crate::Pool::imap) / [`imap_unordered`](crate::Pool::imap_unordered):
//!   dropping the iterator cancels the tasks that were not sent yet.
//! - A whole pool: [`Pool::terminate`](crate::Pool::terminate) (also what dropping a `Pool`
//!   does) stops the workers; unfinished tasks fail with
//!   [`Error::PoolTerminated`](crate::Error::PoolTerminated).
//!   [`Executor::shutdown(false)`](crate::Executor::shutdown) does the same for an executor.
//! - One task that runs too long: [`PoolBuilder::task_timeout`](crate::PoolBuilder::task_timeout)
//!   kills and replaces its worker and fails the task with
//!   [`Error::TaskTimeout`](crate::Error::TaskTimeout).
//! - A process: [`Process::terminate`](crate::Process::terminate) (`SIGTERM`) or
//!   [`kill`](crate::Process::kill) (`SIGKILL`); [`join_timeout`](crate::Process::join_timeout)
//!   gives up waiting without stopping it.
//! - Ctrl-C in the parent stops a running pool promptly; its calls return
//!   [`Error::Interrupted`](crate::Error::Interrupted).
//!
//! A worker itself is never interrupted in the middle of its code except by ending its
//! process: check a shared [`Event`](crate::Event) in a long loop to stop it cooperatively.
//!
//! ## Performance: what is fast
//!
//! A value crosses to a child as bytes (bincode, with fixed-size little-endian integers), so
//! what costs is how those bytes are made and copied:
//!
//! - **Many small tasks: use a `Pool`, not a `Process` each.** Starting a process re-executes
//!   the binary, which costs far more than a small task; a pool pays it once per worker.
//! - **Chunks.** `map` on an input whose length is known (a range, a `Vec`) picks a chunk size
//!   itself: about four chunks per worker, as Python does, made smaller so a chunk fits in one
//!   64 KiB frame. For many tiny tasks from an input of unknown length (a lazy iterator) in
//!   [`imap`](crate::Pool::imap), set one: `pool.chunksize(1000).imap(f, items)`; Python's
//!   default of one task per message costs several times more on 10 000 small tasks.
//! - **Plain numbers are the fastest tasks.** For arguments and results that are primitive
//!   integers or floats, a pool chunk *is* the numbers' own memory: one copy each way, no
//!   per-element encoding.
//! - **Big arrays: share them, do not send them.** An [`Array<T>`](crate::Array),
//!   [`RawArray<T>`](crate::RawArray) or [`SharedMemory`](crate::SharedMemory) of a
//!   [`Plain`](crate::Plain) type crosses as one descriptor whatever its size; workers read
//!   and write it in place (disjoint [`lock_range`](crate::Array::lock_range)s do not wait for
//!   each other).
//! - **Bytes, strings and numeric vectors are one copy.** A `String`, a `Vec<u8>`, a
//!   `Vec<f64>` (any `Vec` or boxed slice of primitive numbers), wherever it sits in a value,
//!   is encoded as one block copy of its memory, not element by element. A message above
//!   256 KiB on a queue, or above 64 KiB on a pipe or pool channel, travels in a sealed memory
//!   file rather than through the socket; one of 4 MiB or more is encoded straight into that
//!   file, so its size costs one copy each way.
//! - **Few round trips.** A [`Manager`](crate::Manager) proxy call is a round trip to the
//!   server process; prefer the batched calls (`extend`, `get_many`, `update_with`) in loops.
//!
//! ## Tests
//!
//! Test binaries have no `mp::main!`. Mark each integration-test crate (each file of `tests/`)
//! that starts processes with one line at the top level:
//!
//! ```
//! mp::guard!();
//! ```
//!
//! For the **unit tests of a library crate**, put the guard at the crate root under
//! `#[cfg(test)]`, so it marks only the test binary, never an application that links your
//! library (that application's own `mp::main!` is its guard):
//!
//! ```
//! // src/lib.rs
//! #[cfg(test)]
//! mp::guard!();
//! ```
//!
//! Doctests need a (hidden) `# mp::guard!();` line, as in the examples of these docs. A child of
//! a test binary is routed to its worker before the harness starts, so tests never run twice;
//! it works under `cargo test` and `cargo nextest run` alike. Workers used by integration tests
//! must be defined in a library or in the test file: a test cannot call a worker from
//! `main.rs`.
//!
//! ## Limitations and platforms
//!
//! - **Linux only** for now. The OS calls live behind `runtime/src/sys/`; macOS and Windows
//!   are planned behind the same interface. The feature `portable-sync` switches the waits on
//!   shared words (locks, queues, events) from Linux futexes to the process-shared pthread
//!   mutexes and condition variables other platforms need, to test that path on Linux.
//! - **Processes are started by re-executing the same binary** (Python's `spawn`): the worker
//!   is found by name in the child, so it must be a non-generic, non-`async` function item
//!   annotated `#[mp::worker]`; its arguments and result must be `Serialize`,
//!   `DeserializeOwned`, `Send` and `'static`. The compiler checks all of it, with one error
//!   per mistake.
//! - **A worker in a dependency crate** that the binary never refers to may be dropped by the
//!   linker; refer to it (pass it to `spawn`/`map`) from the binary.
//! - A child checks the worker's name, signature and definition site against its parent's: a
//!   binary rebuilt while the parent runs gives
//!   [`Error::WorkerNotFound`](crate::Error::WorkerNotFound), never misread arguments.
