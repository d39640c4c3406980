//! The one error type of `mp`, and the send error that hands the unsent value back.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::sync::Arc;

/// The exit code of a child that could not do what it was started for (a malformed bootstrap,
/// arguments it cannot decode, a result it cannot send): `EX_SOFTWARE`.
pub(crate) const CHILD_FAILED: i32 = 70;

/// The result type of `mp` operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

impl ExitStatus {
    /// Python's `exitcode` convention: the exit code, or `-signal` for a killed process.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(signal) => -signal,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Exited(code) => write!(f, "exited with code {code}"),
            ExitStatus::Signaled(signal) => {
                write!(f, "was killed by {}", crate::sys::signal_name(signal))
            }
        }
    }
}

/// Everything that can go wrong in `mp`.
///
/// Messages are lowercase and say what to do where there is something to do.
///
/// `Debug` prints the variant's name and its message (as `io::Error` and `anyhow` do), so a
/// `main` that returns `mp::Result<()>`, or an `unwrap`, says what to fix.
///
/// `Error` is `Serialize`/`Deserialize`: a worker returning `mp::Result<T>` hands its error to the
/// parent as it is, variant and data (an OS error keeps its kind, code and message).
#[derive(Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// An OS call failed.
    #[error("{context}: {source}")]
    Io {
        /// What `mp` was doing.
        context: Cow<'static, str>,
        /// The OS error (from another process: its kind, OS code and message). Shared, so an
        /// error reported to several waiters is one error.
        #[source]
        #[serde(with = "io_error")]
        source: Arc<io::Error>,
    },
    /// A value could not be encoded for another process.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// A message from another process could not be decoded (malformed or of another type).
    #[error("cannot decode message: {0}")]
    Decode(String),
    /// A frame announced more bytes than the receiver accepts; nothing was allocated for it.
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The announced or attempted size.
        len: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The bytes on a connection are not `mp` frames.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The other end is gone (Python's `EOFError` / `BrokenPipeError`).
    #[error("the other end of the connection is closed")]
    Disconnected,
    /// A blocking operation's timeout passed first.
    #[error("timed out")]
    Timeout,
    /// A non-blocking get found nothing (Python's `queue.Empty`).
    #[error("the queue is empty")]
    Empty,
    /// A non-blocking or timed put found no room (Python's `queue.Full`).
    #[error("the queue is full")]
    Full,
    /// This handle was closed with `close()`.
    #[error("the handle is closed")]
    Closed,
    /// The worker panicked; its message and source location came back.
    #[error("worker `{worker}` panicked{}: {message}", location.as_deref().map(|l| format!(" at {l}")).unwrap_or_default())]
    WorkerPanicked {
        /// The worker's registered name.
        worker: String,
        /// The panic message.
        message: String,
        /// `file:line:column` of the panic, when known.
        location: Option<String>,
    },
    /// The child ended without returning a result (killed by a signal, or exited early).
    #[error("process `{name}` (pid {pid}) {status} before returning a result")]
    ProcessDied {
        /// The process's name.
        name: String,
        /// Its process id.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
    },
    /// The child binary has no worker of that name and signature.
    #[error("worker `{name}` is not registered in the child binary{detail}")]
    WorkerNotFound {
        /// The worker's name.
        name: String,
        /// Why the lookup failed, when more is known.
        detail: String,
    },
    /// A child was about to be started from a binary whose entry point is not guarded.
    #[error(
        "cannot start a child process: this binary's entry point is not guarded by mp; \
         wrap `main` in `mp::main! {{ fn main() {{ .. }} }}` (or put `mp::guard!();` once in a \
         test crate)"
    )]
    MissingGuard,
    /// The `fork` start method was asked for while this process runs other threads: a lock one
    /// of them holds would stay locked forever in the copy. Use `StartMethod::ForkServer` (or
    /// the default `StartMethod::Spawn`), or fork before starting threads.
    #[error(
        "cannot fork: this process runs {threads} threads, and a lock one of them holds would \
         stay locked forever in the child; use the forkserver or spawn start method"
    )]
    ForkWithThreads {
        /// The threads counted, the caller's included.
        threads: usize,
    },
    /// A daemonic process tried to start a child (as in Python, daemons have no children).
    #[error("daemonic processes are not allowed to have children")]
    DaemonWithChildren,
    /// `start` was called twice.
    #[error("a process can be started only once")]
    AlreadyStarted,
    /// An operation needs a started process.
    #[error("the process has not been started")]
    NotStarted,
    /// The result was already taken by an earlier `join`.
    #[error("the process was already joined")]
    AlreadyJoined,
    /// `task_done` was called more often than messages were put (Python's `ValueError`).
    #[error("task_done() called more times than messages were put")]
    TaskDoneTooOften,
    /// The child ran but reported a failure that is not a panic.
    #[error("child process failed: {0}")]
    ChildFailed(String),
    /// The process or thread holding a lock died without releasing it (a robust mutex's
    /// `EOWNERDEAD`). The lock was recovered and is free again: check the data it protects,
    /// then acquire it again. Only the first acquirer after the death sees this error.
    #[error(
        "the holder of the lock (thread {tid}) died while holding it; the lock was recovered: \
         check the data it protects, then acquire again"
    )]
    OwnerDied {
        /// The thread id (for a single-threaded process: its pid) of the dead holder.
        tid: u32,
    },
    /// A non-blocking `try_` call found the lock or semaphore taken.
    #[error("the lock is held elsewhere; a blocking call would wait")]
    WouldBlock,
    /// A thread tried to take a non-reentrant lock it already holds (it would wait forever).
    #[error("this thread already holds the lock; use `mp::RLock` to acquire it re-entrantly")]
    Deadlock,
    /// A [`Barrier`](crate::Barrier) was broken by a timeout, `abort` or `reset` (Python's
    /// `BrokenBarrierError`).
    #[error("the barrier is broken (a party timed out, or it was aborted or reset)")]
    BrokenBarrier,
    /// A [`BoundedSemaphore`](crate::BoundedSemaphore) was released above its initial value.
    #[error("semaphore released too many times")]
    TooManyReleases,
    /// An index or range is outside a shared array or segment.
    #[error("index {index} is out of range for length {len}")]
    OutOfRange {
        /// The offending index (for a range: its end).
        index: usize,
        /// The length.
        len: usize,
    },
    /// An argument is invalid (Python's `ValueError`); the message says which and why.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A shared container changed size while it was being iterated over (Python's
    /// `RuntimeError: dictionary changed size during iteration`); the message names it.
    #[error("{0} changed size during iteration")]
    ChangedDuringIteration(String),
    /// A pool worker died (exit, signal, OOM kill, abort) while it held this task. The pool
    /// replaced the worker; with retries enabled this error means the retry was lost too.
    ///
    /// A worker rank of an MPI pool ([`Backend::Mpi`](crate::Backend::Mpi)) is not replaced:
    /// `rank` and `host` name it, `pid` is its process id on that host, and `status` is
    /// `Exited(-1)` (how a remote process ended is unknown; its connection was lost).
    #[error("{}while running task {task_index}{}", died_note(*pid, *status, *rank, host.as_deref()), chunk_note(*tasks))]
    WorkerDied {
        /// The dead worker's process id.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
        /// The task's index in its call's input (`0` for `apply`).
        task_index: usize,
        /// How many tasks were lost with it (its chunk); they start at `task_index`.
        tasks: usize,
        /// The worker's MPI rank, for a pool on MPI ranks.
        rank: Option<u32>,
        /// The host the lost rank ran on, for a pool on MPI ranks.
        host: Option<String>,
    },
    /// A task ran past the pool's per-task time limit; its worker was killed and replaced.
    #[error(
        "task {task_index} exceeded its time limit of {limit:?}; its worker (pid {pid}) was killed and replaced"
    )]
    TaskTimeout {
        /// The task's index in its call's input.
        task_index: usize,
        /// The limit (for a chunk of several tasks: the per-task limit times their number).
        limit: std::time::Duration,
        /// The killed worker's process id.
        pid: u32,
    },
    /// Ctrl-C (`SIGINT`) arrived while a pool call was blocking; the pool's workers were
    /// stopped and the pool accepts no more work. Also the error of a pool task whose worker
    /// alone was sent `SIGINT` (Python's `KeyboardInterrupt` in the worker); the pool replaced
    /// that worker and keeps serving.
    #[error("interrupted by SIGINT (Ctrl-C)")]
    Interrupted,
    /// The task was cancelled before it started ([`AsyncResult::cancel`](crate::AsyncResult::cancel),
    /// an executor shut down with its queued futures cancelled); it never ran.
    #[error("the task was cancelled before it started")]
    Cancelled,
    /// The pool was terminated (or dropped) before this task finished.
    #[error("the pool was terminated before the task finished")]
    PoolTerminated,
    /// The pool's initializer failed in a worker, so the pool stopped rather than start
    /// workers that fail again (Python's `Pool` restarts them forever).
    #[error("the pool's initializer failed in a worker: {0}")]
    InitializerFailed(String),
    /// The peer of a [`Listener`](crate::Listener), [`Connection`](crate::Connection)
    /// or [`Manager`](crate::Manager) connection did not pass the auth-key challenge (or did
    /// not speak the protocol); the connection was closed before any request was read.
    #[error("authentication failed: {0}")]
    AuthenticationFailed(String),
    /// The manager server is gone (shut down, or its process died), or cannot be reached; the
    /// objects it held are lost.
    #[error(
        "the manager at {address} is gone or unreachable (shut down, or its process died): {why}"
    )]
    ManagerGone {
        /// The manager's address.
        address: String,
        /// What happened on the connection.
        why: String,
    },
    /// A message received with
    /// [`Connection::recv_bytes_into`](crate::Connection::recv_bytes_into) is longer than the
    /// buffer given; here it is, whole (Python's `BufferTooShort`, whose `args[0]` is the
    /// message). Nothing is lost: the next receive reads the next message.
    #[error(
        "the buffer of {buffer} bytes is too short for the message of {} bytes",
        .message.len()
    )]
    BufferTooShort {
        /// The length of the buffer given.
        buffer: usize,
        /// The message received.
        message: Vec<u8>,
    },
    /// The queue was shut down ([`Queue::shutdown`](crate::Queue::shutdown), Python 3.13's
    /// `ShutDown`): no more `put`s; `get` returns what is left, then this error (at once after
    /// an immediate shutdown, which dropped the pending messages).
    #[error("the queue was shut down")]
    ShutDown,
}

fn died_note(pid: u32, status: ExitStatus, rank: Option<u32>, host: Option<&str>) -> String {
    match rank {
        Some(rank) => format!(
            "pool worker rank {rank} on {} (pid {pid}) lost its connection ",
            host.unwrap_or("an unknown host")
        ),
        None => format!("pool worker (pid {pid}) {status} "),
    }
}

fn chunk_note(tasks: usize) -> String {
    if tasks > 1 {
        format!(" (its chunk of {tasks} tasks, starting there, was lost)")
    } else {
        String::new()
    }
}

impl Error {
    /// The variant's name, for `Debug`.
    fn variant_name(&self) -> &'static str {
        match self {
            Error::Io { .. } => "Io",
            Error::Encode(..) => "Encode",
            Error::Decode(..) => "Decode",
            Error::TooLarge { .. } => "TooLarge",
            Error::Malformed(..) => "Malformed",
            Error::Disconnected => "Disconnected",
            Error::Timeout => "Timeout",
            Error::Empty => "Empty",
            Error::Full => "Full",
            Error::Closed => "Closed",
            Error::WorkerPanicked { .. } => "WorkerPanicked",
            Error::ProcessDied { .. } => "ProcessDied",
            Error::WorkerNotFound { .. } => "WorkerNotFound",
            Error::MissingGuard => "MissingGuard",
            Error::ForkWithThreads { .. } => "ForkWithThreads",
            Error::DaemonWithChildren => "DaemonWithChildren",
            Error::AlreadyStarted => "AlreadyStarted",
            Error::NotStarted => "NotStarted",
            Error::AlreadyJoined => "AlreadyJoined",
            Error::TaskDoneTooOften => "TaskDoneTooOften",
            Error::ChildFailed(..) => "ChildFailed",
            Error::OwnerDied { .. } => "OwnerDied",
            Error::WouldBlock => "WouldBlock",
            Error::Deadlock => "Deadlock",
            Error::BrokenBarrier => "BrokenBarrier",
            Error::TooManyReleases => "TooManyReleases",
            Error::OutOfRange { .. } => "OutOfRange",
            Error::InvalidArgument(..) => "InvalidArgument",
            Error::ChangedDuringIteration(..) => "ChangedDuringIteration",
            Error::WorkerDied { .. } => "WorkerDied",
            Error::TaskTimeout { .. } => "TaskTimeout",
            Error::Interrupted => "Interrupted",
            Error::Cancelled => "Cancelled",
            Error::PoolTerminated => "PoolTerminated",
            Error::InitializerFailed(..) => "InitializerFailed",
            Error::AuthenticationFailed(..) => "AuthenticationFailed",
            Error::ManagerGone { .. } => "ManagerGone",
            Error::BufferTooShort { .. } => "BufferTooShort",
            Error::ShutDown => "ShutDown",
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { context, source } => f
                .debug_struct("Io")
                .field("context", context)
                .field("source", source)
                .field("message", &format_args!("{self}"))
                .finish(),
            _ => write!(f, "{}({:?})", self.variant_name(), self.to_string()),
        }
    }
}

/// How an OS error crosses processes: its kind (by name), its OS error code if it has one, and
/// its message; read back as an `io::Error` of the same kind (and code).
mod io_error {
    use std::io;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Wire {
        kind: String,
        code: Option<i32>,
        message: String,
    }

    pub(super) fn serialize<S: Serializer>(e: &Arc<io::Error>, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            kind: format!("{:?}", e.kind()),
            code: e.raw_os_error(),
            message: e.to_string(),
        }
        .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<io::Error>, D::Error> {
        let wire = Wire::deserialize(d)?;
        Ok(Arc::new(match wire.code {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(kind_named(&wire.kind), wire.message),
        }))
    }

    /// The kind whose `Debug` name is `name` (`Other` for one this build does not know).
    fn kind_named(name: &str) -> io::ErrorKind {
        use io::ErrorKind::*;
        [
            NotFound,
            PermissionDenied,
            ConnectionRefused,
            ConnectionReset,
            ConnectionAborted,
            NotConnected,
            AddrInUse,
            AddrNotAvailable,
            BrokenPipe,
            AlreadyExists,
            WouldBlock,
            InvalidInput,
            InvalidData,
            TimedOut,
            WriteZero,
            Interrupted,
            Unsupported,
            UnexpectedEof,
            OutOfMemory,
            HostUnreachable,
            NetworkUnreachable,
            NetworkDown,
            NotADirectory,
            IsADirectory,
            DirectoryNotEmpty,
            ReadOnlyFilesystem,
            StorageFull,
            NotSeekable,
            QuotaExceeded,
            FileTooLarge,
            ResourceBusy,
            ExecutableFileBusy,
            Deadlock,
            CrossesDevices,
            TooManyLinks,
            ArgumentListTooLong,
            StaleNetworkFileHandle,
        ]
        .into_iter()
        .find(|k| format!("{k:?}") == name)
        .unwrap_or(Other)
    }
}

impl Error {
    pub(crate) fn io(context: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| match source.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Error::Disconnected,
            _ => Error::os(context, source),
        }
    }

    /// An OS error as it is (`Error::io` reads a broken pipe as `Disconnected`).
    pub(crate) fn os(context: &'static str, source: io::Error) -> Error {
        Error::Io {
            context: Cow::Borrowed(context),
            source: Arc::new(source),
        }
    }
}

/// An OS error, e.g. from `std::fs` inside a worker, so `?` works on it in a function returning
/// `mp::Result` (the error keeps its kind; its context says only that an operation failed).
///
/// ```
/// #[mp::worker]
/// fn read_config(path: String) -> mp::Result<String> {
///     Ok(std::fs::read_to_string(path)?)
/// }
///
/// let err = read_config("/no/such/file".to_string()).unwrap_err();
/// assert!(matches!(&err, mp::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound));
/// ```
impl From<io::Error> for Error {
    fn from(source: io::Error) -> Error {
        Error::os("an I/O operation failed", source)
    }
}

/// A failed send or put: the error, and the value that was not sent.
///
/// Converts into [`Error`] with `?` (dropping the value).
///
/// ```
/// # mp::guard!();
/// let q = mp::Queue::<u32>::with_maxsize(1)?;
/// q.put(1)?;
/// let err = q.try_put(2).unwrap_err();
/// assert!(matches!(err.error, mp::Error::Full));
/// assert_eq!(err.value, 2);
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Debug)]
pub struct SendError<T> {
    /// Why it failed.
    pub error: Error,
    /// The value, handed back.
    pub value: T,
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl<T: fmt::Debug> std::error::Error for SendError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<T> From<SendError<T>> for Error {
    fn from(e: SendError<T>) -> Error {
        e.error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(e: &Error) -> Error {
        let mut bytes = Vec::new();
        crate::codec::encode(e, &mut bytes, &mut Vec::new()).unwrap();
        crate::codec::decode(&bytes, Vec::new()).unwrap()
    }

    #[test]
    fn an_os_error_crosses_with_its_kind_and_code() {
        let e = Error::io("cannot open the file")(io::Error::from_raw_os_error(libc::EMFILE));
        match round_trip(&e) {
            Error::Io { context, source } => {
                assert_eq!(context, "cannot open the file");
                assert_eq!(source.raw_os_error(), Some(libc::EMFILE));
            }
            other => panic!("{other:?}"),
        }
        let e = Error::io("cannot parse")(io::Error::new(io::ErrorKind::InvalidData, "bad"));
        match round_trip(&e) {
            Error::Io { source, .. } => {
                assert_eq!(source.kind(), io::ErrorKind::InvalidData);
                assert_eq!(source.to_string(), "bad");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_variant_keeps_its_data_across_processes() {
        let e = Error::WorkerDied {
            pid: 7,
            status: ExitStatus::Signaled(9),
            task_index: 3,
            tasks: 2,
            rank: None,
            host: None,
        };
        assert_eq!(round_trip(&e).to_string(), e.to_string());
        assert!(matches!(
            e.clone(),
            Error::WorkerDied {
                pid: 7,
                task_index: 3,
                tasks: 2,
                ..
            }
        ));
        assert_eq!(
            format!("{:?}", Error::Timeout),
            "Timeout(\"timed out\")".to_owned()
        );
    }
}
