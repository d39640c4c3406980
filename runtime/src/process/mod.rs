//! `Process`: a registered worker running in a child process (the same binary, re-executed),
//! Python's `multiprocessing.Process`, with `spawn` and its `Drop` (a running child is
//! reaped in the background). What is known about processes (`current_process`, …) is in
//! `info.rs`; how a child is started and routed lives in `bootstrap/`. Must not know pools
//! or managers.

mod info;

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::bootstrap::identity::{identity, next_child_number};
use crate::bootstrap::reap::{
    Running, detach, register_running, status_of, unregister_running, wait_child,
};
use crate::bootstrap::spawn::{Outcome, Role, start_child_with};
use crate::bootstrap::start_method::StartMethod;
use crate::error::{Error, ExitStatus, Result};
use crate::sys::{self, Child};
use crate::wire::Channel;
use crate::worker::{Target, Worker};

pub use info::{ParentProcess, ProcessInfo, active_children, current_process, parent_process};

/// A started or not-yet-started child process running one worker call.
///
/// Mirrors Python's `multiprocessing.Process`: create it with [`Process::new`] (or start it at
/// once with [`spawn`]), then [`start`](Process::start), [`join`](Process::join),
/// [`is_alive`](Process::is_alive), [`exitcode`](Process::exitcode),
/// [`terminate`](Process::terminate) / [`kill`](Process::kill). `join` returns the worker's
/// return value; a panic, a signal or an early exit in the child comes back as an [`Error`].
///
/// Dropping a running `Process` does not stop the child: it is reaped in the background, and
/// `mp::main!` waits for it (or terminates it, if it is a daemon) when `main` returns.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn greet(name: String) -> String {
///     format!("hello, {name}")
/// }
///
/// let mut p = mp::Process::new(greet, "world".to_string()).with_name("greeter");
/// p.start()?;
/// assert_eq!(p.join()?, "hello, world");
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), mp::Error>(())
/// ```
pub struct Process<W: Worker> {
    worker: W,
    args: Option<W::Args>,
    name: String,
    daemon: bool,
    start_method: Option<StartMethod>,
    state: State,
    /// Readable once the child has ended (a pidfd), opened when it starts; kept after `join`.
    sentinel: Option<std::result::Result<OwnedFd, Error>>,
}

enum State {
    Created,
    Running { child: Child, channel: Box<Channel> },
    Joined { pid: u32, status: ExitStatus },
}

impl<W: Worker> fmt::Debug for Process<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("worker", &W::NAME)
            .field("pid", &self.pid())
            .field("daemon", &self.daemon)
            .field("start_method", &self.start_method)
            .finish()
    }
}

/// Starts `worker(args)` in a new child process at once (Python's `Process(...).start()`).
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn add(a: i32, b: i32) -> i32 {
///     a + b
/// }
///
/// let mut p = mp::spawn(add, (2, 3))?;
/// assert_eq!(p.join()?, 5);
/// # Ok::<(), mp::Error>(())
/// ```
pub fn spawn<W: Worker>(worker: W, args: W::Args) -> Result<Process<W>> {
    let mut p = Process::new(worker, args);
    p.start()?;
    Ok(p)
}

impl<W: Worker> Process<W> {
    /// A process that will run `worker(args)` once started; named `Process-N` by default.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn nothing() {}
    ///
    /// let p = mp::Process::new(nothing, ());
    /// assert!(p.name().starts_with("Process-"));
    /// assert_eq!(p.pid(), None);
    /// ```
    pub fn new(worker: W, args: W::Args) -> Process<W> {
        let n = next_child_number();
        let name = match identity().parent {
            None => format!("Process-{n}"),
            Some(_) => format!("{}:{n}", identity().name),
        };
        Process {
            worker,
            args: Some(args),
            name,
            // As in Python, a process inherits the daemon flag of the process creating it.
            daemon: identity().daemon,
            start_method: None,
            state: State::Created,
            sentinel: None,
        }
    }

    /// The process with this name (shown in logs, errors and `cargo mp run`'s output; the
    /// child's [`current_process`](crate::current_process) reports it).
    ///
    /// ```
    /// # #[mp::worker] fn nothing() {}
    /// let p = mp::Process::new(nothing, ()).with_name("loader");
    /// assert_eq!(p.name(), "loader");
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Renames the process (Python's `p.name = ...`). A running child keeps the name it was
    /// started with; this handle's errors and logs use the new one.
    ///
    /// ```
    /// # #[mp::worker] fn nothing() {}
    /// let mut p = mp::Process::new(nothing, ());
    /// p.set_name("loader");
    /// assert_eq!(p.name(), "loader");
    /// ```
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// Marks the process as a daemon: `mp::main!` terminates it, instead of waiting for it, when
    /// `main` returns; and it may not start children of its own. The default is the daemon flag
    /// of the current process (as in Python).
    ///
    /// ```
    /// # #[mp::worker] fn nothing() {}
    /// let p = mp::Process::new(nothing, ()).with_daemon(true);
    /// assert!(p.is_daemon());
    /// ```
    ///
    /// # Panics
    /// If the process was already started (Python raises too); [`set_daemon`](Process::set_daemon)
    /// returns an error instead.
    #[doc(alias = "daemon")]
    pub fn with_daemon(mut self, daemon: bool) -> Self {
        if let Err(e) = self.set_daemon(daemon) {
            panic!("Process::with_daemon: {e}");
        }
        self
    }

    /// Sets the daemon flag (see [`with_daemon`](Process::with_daemon)); refused with
    /// [`Error::AlreadyStarted`] once the process was started, since the child already runs
    /// with the flag it was given.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn nothing() {}
    ///
    /// let mut p = mp::Process::new(nothing, ());
    /// p.set_daemon(true)?;
    /// p.start()?;
    /// assert!(matches!(p.set_daemon(false), Err(mp::Error::AlreadyStarted)));
    /// assert!(p.is_daemon());
    /// p.join()?;
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn set_daemon(&mut self, daemon: bool) -> Result<()> {
        if !matches!(self.state, State::Created) {
            return Err(Error::AlreadyStarted);
        }
        self.daemon = daemon;
        Ok(())
    }

    /// Starts this process by `method` (Python's `get_context(method).Process(...)`), instead
    /// of the process-wide method ([`get_start_method`](crate::get_start_method)).
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let mut p = mp::Process::new(square, 7).with_start_method(mp::StartMethod::ForkServer);
    /// assert_eq!(p.start_method(), Some(mp::StartMethod::ForkServer));
    /// p.start()?;
    /// assert_eq!(p.join()?, 49);
    /// # Ok::<(), mp::Error>(())
    /// ```
    #[doc(alias = "get_context")]
    pub fn with_start_method(mut self, method: StartMethod) -> Self {
        self.start_method = Some(method);
        self
    }

    /// The start method chosen for this process, if any (`None`: the process-wide one).
    ///
    /// ```
    /// # #[mp::worker] fn nothing() {}
    /// assert_eq!(mp::Process::new(nothing, ()).start_method(), None);
    /// ```
    pub fn start_method(&self) -> Option<StartMethod> {
        self.start_method
    }

    /// The process's name (Python's `p.name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is a daemon process.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// The child's pid once started.
    pub fn pid(&self) -> Option<u32> {
        match &self.state {
            State::Created => None,
            State::Running { child, .. } => Some(child.id()),
            State::Joined { pid, .. } => Some(*pid),
        }
    }

    /// A descriptor that becomes readable when the child ends (Python's `sentinel`; a pidfd),
    /// to poll with others: pass the process itself to
    /// [`connection::wait`](crate::connection::wait), or the descriptor to your own event
    /// loop. It stays valid, and readable, after [`join`](Process::join).
    /// [`Error::NotStarted`] before [`start`](Process::start); an I/O error on kernels before
    /// Linux 5.3, which have no pidfds.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// let mut p = mp::spawn(nap, 20)?;
    /// let sentinel = p.sentinel()?;
    /// assert_eq!(mp::connection::wait(&[&sentinel], None)?, [0]);
    /// p.join()?;
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn sentinel(&self) -> Result<BorrowedFd<'_>> {
        match &self.sentinel {
            None => Err(Error::NotStarted),
            Some(Ok(fd)) => Ok(fd.as_fd()),
            Some(Err(e)) => Err(e.clone()),
        }
    }

    /// Starts the child. Fails if called twice, if this binary's entry point is not guarded
    /// (see [`mp::main!`](crate::main)), or if the arguments cannot be encoded; the arguments
    /// are encoded before any process is started.
    pub fn start(&mut self) -> Result<()> {
        if !matches!(self.state, State::Created) {
            return Err(Error::AlreadyStarted);
        }
        let args = self.args.as_ref().expect("args present until started");
        let role = Role::Call(Target::of(self.worker.__entry()));
        let (child, channel) =
            start_child_with(self.start_method, role, args, &self.name, self.daemon)?;
        // Opened now, while the child cannot have been reaped: its pid is still its own.
        self.sentinel = Some(
            sys::pidfd_open(child.id())
                .map_err(Error::io("cannot open a descriptor for the child (pidfd)")),
        );
        self.args = None;
        register_running(Running {
            pid: child.id(),
            daemon: self.daemon,
            name: self.name.clone(),
        });
        self.state = State::Running {
            child,
            channel: Box::new(channel),
        };
        Ok(())
    }

    /// Waits for the worker to finish and returns its result.
    ///
    /// A panic in the worker is [`Error::WorkerPanicked`]; a child killed by a signal or exiting
    /// without a result is [`Error::ProcessDied`]. A second `join` is [`Error::AlreadyJoined`].
    pub fn join(&mut self) -> Result<W::Output> {
        self.join_inner(None)
    }

    /// Like [`join`](Process::join), but gives up after `timeout` with [`Error::Timeout`],
    /// leaving the process running (join again later).
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// let mut p = mp::spawn(nap, 300)?;
    /// assert!(matches!(p.join_timeout(std::time::Duration::from_millis(10)), Err(mp::Error::Timeout)));
    /// assert!(p.is_alive());
    /// p.join()?;
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<W::Output> {
        self.join_inner(Some(timeout))
    }

    fn join_inner(&mut self, timeout: Option<Duration>) -> Result<W::Output> {
        let (child, channel) = match &mut self.state {
            State::Created => return Err(Error::NotStarted),
            State::Joined { .. } => return Err(Error::AlreadyJoined),
            State::Running { child, channel } => (child, channel),
        };
        let outcome = match channel.recv_frame(timeout) {
            Err(Error::Timeout) => return Err(Error::Timeout),
            Ok(frame) => Some(frame.decode::<Outcome<W::Output>>()),
            Err(_) => None,
        };
        let pid = child.id();
        let status = wait_child(child)?;
        self.state = State::Joined { pid, status };
        unregister_running(pid);
        let died = || Error::ProcessDied {
            name: self.name.clone(),
            pid,
            status,
        };
        match outcome {
            None => Err(died()),
            Some(Err(e)) => Err(e),
            Some(Ok(Outcome::Returned(value))) => Ok(value),
            Some(Ok(Outcome::Panicked { message, location })) => Err(Error::WorkerPanicked {
                worker: W::NAME.to_owned(),
                message,
                location,
            }),
            Some(Ok(Outcome::Failed(error))) => Err(error),
            Some(Ok(Outcome::NotFound(detail))) => Err(Error::WorkerNotFound {
                name: W::NAME.to_owned(),
                detail,
            }),
        }
    }

    /// Whether the child has been started and has not yet ended.
    pub fn is_alive(&self) -> bool {
        match &self.state {
            State::Running { child, .. } => matches!(sys::peek_exit(child.id()), Ok(None)),
            _ => false,
        }
    }

    /// Python's `exitcode`: `None` while running (or not started), the exit code once ended,
    /// `-N` if killed by signal `N`.
    pub fn exitcode(&self) -> Option<i32> {
        match &self.state {
            State::Created => None,
            State::Running { child, .. } => {
                // Read without reaping: `join` still collects the child and its result.
                sys::peek_exit(child.id())
                    .ok()
                    .flatten()
                    .map(|s| status_of(s).code())
            }
            State::Joined { status, .. } => Some(status.code()),
        }
    }

    /// Asks the child to stop (`SIGTERM`). Then [`join`](Process::join) it.
    pub fn terminate(&mut self) -> Result<()> {
        self.signal(sys::Signal::Terminate)
    }

    /// Stops the child at once (`SIGKILL`). Then [`join`](Process::join) it.
    pub fn kill(&mut self) -> Result<()> {
        self.signal(sys::Signal::Kill)
    }

    fn signal(&mut self, signal: sys::Signal) -> Result<()> {
        match &mut self.state {
            State::Created => Err(Error::NotStarted),
            State::Joined { .. } => Ok(()),
            State::Running { child, .. } => {
                if matches!(child.try_wait(), Ok(None)) {
                    sys::kill(child.id(), signal).map_err(Error::io("cannot signal the child"))?;
                }
                Ok(())
            }
        }
    }
}

impl<W: Worker> Drop for Process<W> {
    fn drop(&mut self) {
        if let State::Running { child, .. } = &mut self.state {
            if matches!(child.try_wait(), Ok(Some(_))) {
                unregister_running(child.id());
                return;
            }
            // Still running: keep it alive (as Python does) but never leave a zombie.
            let State::Running { child, channel } =
                std::mem::replace(&mut self.state, State::Created)
            else {
                unreachable!()
            };
            drop(channel);
            detach(child);
        }
    }
}
