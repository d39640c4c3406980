//! `Process`: a registered worker running in a child process (the same binary, re-executed),
//! plus the child side of the bootstrap. See `BOOTSTRAP.md` beside this file for the protocol.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::channel::{self, Channel, Frame};
use crate::error::{Error, ExitStatus, Result};
use crate::sys;
use crate::worker::{self, Worker};

/// The environment variable that marks a child: `bootstrap_fd,liveness_fd`.
const BOOTSTRAP_ENV: &str = "__MP_BOOTSTRAP";
/// Set by `cargo mp workers`: the binary prints its workers (`name\tsignature\tlocation`
/// lines) from the pre-`main` hook and exits.
const LIST_WORKERS_ENV: &str = "__MP_LIST_WORKERS";

/// The exit code of a child that could not do what it was started for (a malformed bootstrap,
/// arguments it cannot decode, a result it cannot send): `EX_SOFTWARE`.
pub(crate) const CHILD_FAILED: i32 = 70;

/// Set by `mp::main!` when the guarded `main` starts.
static MAIN_ENTERED: AtomicBool = AtomicBool::new(false);
/// Numbers `Process-N` names.
static COUNTER: AtomicU64 = AtomicU64::new(1);

/// Who this process is: filled in by the bootstrap in a child, defaults in the main process.
struct Identity {
    name: String,
    daemon: bool,
    parent: Option<u32>,
}

static IDENTITY: OnceLock<Identity> = OnceLock::new();

fn identity() -> &'static Identity {
    IDENTITY.get_or_init(|| Identity {
        name: "MainProcess".to_owned(),
        daemon: false,
        parent: None,
    })
}

/// What `mp` knows about the current process (Python's `current_process()`).
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    name: &'static str,
    pid: u32,
    daemon: bool,
    parent: Option<u32>,
}

impl ProcessInfo {
    /// `MainProcess` in the main process, the child's name (e.g. `Process-1`) in a child.
    pub fn name(&self) -> &str {
        self.name
    }
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// Whether this process was started as a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }
    /// The parent's pid, when this process was started by `mp`.
    pub fn parent_pid(&self) -> Option<u32> {
        self.parent
    }
}

/// The current process's name and pid (Python's `multiprocessing.current_process()`).
///
/// ```
/// assert_eq!(mp::current_process().name(), "MainProcess");
/// assert_eq!(mp::current_process().pid(), std::process::id());
/// ```
pub fn current_process() -> ProcessInfo {
    let id = identity();
    ProcessInfo {
        name: &id.name,
        pid: sys::getpid(),
        daemon: id.daemon,
        parent: id.parent,
    }
}

/// A registered worker, named the way a child's registry finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Target {
    pub(crate) worker: String,
    signature: String,
    location: String,
}

impl Target {
    pub(crate) fn of(entry: &worker::WorkerEntry) -> Target {
        Target {
            worker: entry.name.to_owned(),
            signature: entry.signature.to_owned(),
            location: entry.location.to_owned(),
        }
    }

    /// The child's registry entry for this target, or why there is none.
    pub(crate) fn lookup(&self) -> std::result::Result<&'static worker::WorkerEntry, String> {
        worker::lookup(&self.worker, &self.signature, &self.location)
    }
}

/// What a child is started for.
#[derive(Serialize, Deserialize)]
pub(crate) enum Role {
    /// One call of a worker; its arguments follow, its outcome is the reply.
    Call(Target),
    /// A pool worker: an initializer message follows, then tasks (see `pool/child.rs`).
    PoolWorker,
    /// A manager's server: its listening socket and key follow (see `manager/mod.rs`).
    ManagerServer,
}

#[derive(Serialize, Deserialize)]
struct Bootstrap {
    role: Role,
    name: String,
    daemon: bool,
    log_level: Option<u8>,
    parent: u32,
    /// The process tree's resource tracker (see `shared/tracker.rs`).
    tracker: String,
}

/// What the child sends back: the worker's return value, or why there is none.
#[derive(Serialize, Deserialize)]
enum Outcome<T> {
    Returned(T),
    Panicked {
        message: String,
        location: Option<String>,
    },
    Failed(Error),
    NotFound(String),
}

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
/// let mut p = mp::Process::new(greet, "world".to_string()).name("greeter");
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
    state: State,
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
    /// assert!(p.get_name().starts_with("Process-"));
    /// assert_eq!(p.pid(), None);
    /// ```
    pub fn new(worker: W, args: W::Args) -> Process<W> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
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
            state: State::Created,
        }
    }

    /// Sets the process's name (shown in logs and errors).
    ///
    /// ```
    /// # #[mp::worker] fn nothing() {}
    /// let p = mp::Process::new(nothing, ()).name("loader");
    /// assert_eq!(p.get_name(), "loader");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Marks the process as a daemon: `mp::main!` terminates it, instead of waiting for it, when
    /// `main` returns; and it may not start children of its own. The default is the daemon flag
    /// of the current process (as in Python).
    ///
    /// ```
    /// # #[mp::worker] fn nothing() {}
    /// let p = mp::Process::new(nothing, ()).daemon(true);
    /// assert!(p.is_daemon());
    /// ```
    ///
    /// # Panics
    /// If the process was already started (Python raises too); [`set_daemon`](Process::set_daemon)
    /// returns an error instead.
    pub fn daemon(mut self, daemon: bool) -> Self {
        if let Err(e) = self.set_daemon(daemon) {
            panic!("Process::daemon: {e}");
        }
        self
    }

    /// Sets the daemon flag (see [`daemon`](Process::daemon)); refused with
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

    /// The process's name.
    pub fn get_name(&self) -> &str {
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

    /// Starts the child. Fails if called twice, if this binary's entry point is not guarded
    /// (see [`mp::main!`](crate::main)), or if the arguments cannot be encoded; the arguments
    /// are encoded before any process is started.
    pub fn start(&mut self) -> Result<()> {
        if !matches!(self.state, State::Created) {
            return Err(Error::AlreadyStarted);
        }
        let args = self.args.as_ref().expect("args present until started");
        let role = Role::Call(Target::of(self.worker.__entry()));
        let (child, channel) = start_child(role, args, &self.name, self.daemon)?;
        self.args = None;
        register_running(child.id(), self.daemon);
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
    pub fn is_alive(&mut self) -> bool {
        match &mut self.state {
            State::Running { child, .. } => matches!(child.try_wait(), Ok(None)),
            _ => false,
        }
    }

    /// Python's `exitcode`: `None` while running (or not started), the exit code once ended,
    /// `-N` if killed by signal `N`.
    pub fn exitcode(&mut self) -> Option<i32> {
        match &mut self.state {
            State::Created => None,
            State::Running { child, .. } => {
                child.try_wait().ok().flatten().map(|s| status_of(s).code())
            }
            State::Joined { status, .. } => Some(status.code()),
        }
    }

    /// Asks the child to stop (`SIGTERM`). Then [`join`](Process::join) it.
    pub fn terminate(&mut self) -> Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// Stops the child at once (`SIGKILL`). Then [`join`](Process::join) it.
    pub fn kill(&mut self) -> Result<()> {
        self.signal(libc::SIGKILL)
    }

    fn signal(&mut self, signal: i32) -> Result<()> {
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

pub(crate) fn status_of(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(signal) => ExitStatus::Signaled(signal),
        None => ExitStatus::Exited(status.code().unwrap_or(-1)),
    }
}

fn wait_child(child: &mut Child) -> Result<ExitStatus> {
    let status = child
        .wait()
        .map(status_of)
        .map_err(Error::io("cannot wait for the child"))?;
    crate::supervision::record_exit(child.id(), status);
    Ok(status)
}

/// Children that are running, by pid, with whether they are daemons.
static RUNNING: Mutex<Vec<(u32, bool)>> = Mutex::new(Vec::new());
/// Reapers of children whose handles were dropped while running: `(pid, daemon, reaper)`.
static DETACHED: Mutex<Vec<(u32, bool, JoinHandle<()>)>> = Mutex::new(Vec::new());

fn register_running(pid: u32, daemon: bool) {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((pid, daemon));
}

fn unregister_running(pid: u32) {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&(p, _)| p != pid);
}

fn detach(mut child: Child) {
    let pid = child.id();
    let daemon = RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|&&(p, _)| p == pid)
        .is_some_and(|&(_, d)| d);
    let reaper = std::thread::Builder::new()
        .name(format!("mp-reaper-{pid}"))
        .spawn(move || {
            if let Ok(status) = child.wait() {
                crate::supervision::record_exit(pid, status_of(status));
            }
            unregister_running(pid);
        });
    if let Ok(reaper) = reaper {
        DETACHED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((pid, daemon, reaper));
    }
}

/// The write end stays open in this process for its whole life; children hold the read end
/// and exit when it reports end-of-file, i.e. when this process is gone (even by `SIGKILL`).
fn liveness_read_end() -> Result<&'static OwnedFd> {
    static LIVENESS: OnceLock<(OwnedFd, OwnedFd)> = OnceLock::new();
    if let Some((read, _)) = LIVENESS.get() {
        return Ok(read);
    }
    let pair = sys::pipe().map_err(Error::io("cannot create the liveness pipe"))?;
    Ok(&LIVENESS.get_or_init(|| pair).0)
}

/// Whether this process may start children: its entry point was guarded, or it is itself a
/// child started by `mp` (routed to its worker before `main`, so it can never run the
/// unguarded user code that would fork-bomb).
fn guarded() -> bool {
    MAIN_ENTERED.load(Ordering::Relaxed)
        || !worker::GUARDS.is_empty()
        || identity().parent.is_some()
}

/// Starts a child for `role`, sending it `args` after the bootstrap message.
pub(crate) fn start_child<A: Serialize + ?Sized>(
    role: Role,
    args: &A,
    name: &str,
    daemon: bool,
) -> Result<(Child, Channel)> {
    // Encode first: a value that cannot travel fails before any process exists.
    let mut args_frame = Vec::new();
    let mut raw_fds = Vec::new();
    let sealed = channel::encode_frame(args, &mut args_frame, &mut raw_fds)?;
    let mut fds: Vec<_> = raw_fds.iter().map(|&fd| sys::borrow_raw_fd(fd)).collect();
    if let Some(s) = &sealed {
        fds.push(s.fd());
    }
    start_child_frame(role, &args_frame, &fds, name, daemon)
}

fn check_may_spawn() -> Result<()> {
    // Reading the hook keeps it (and its `.init_array` entry) in every binary that spawns.
    std::hint::black_box(&sys::CHILD_HOOK);
    if !guarded() {
        return Err(Error::MissingGuard);
    }
    if identity().daemon {
        return Err(Error::DaemonWithChildren);
    }
    Ok(())
}

/// Starts a child for `role`, sending it an already encoded argument frame with `fds`.
pub(crate) fn start_child_frame(
    role: Role,
    args_frame: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
    name: &str,
    daemon: bool,
) -> Result<(Child, Channel)> {
    check_may_spawn()?;
    let what = match &role {
        Role::Call(target) => format!("running `{}`", target.worker),
        Role::PoolWorker => "as a pool worker".to_owned(),
        Role::ManagerServer => "as a manager server".to_owned(),
    };
    let bootstrap = Bootstrap {
        role,
        name: name.to_owned(),
        daemon,
        log_level: crate::logging::level_code(),
        parent: sys::getpid(),
        tracker: crate::shared::tracker_tree_name().to_owned(),
    };
    let (ours, theirs) =
        sys::socketpair_stream().map_err(Error::io("cannot create a socket pair"))?;
    let liveness = liveness_read_end()?;
    let env = [(
        BOOTSTRAP_ENV,
        format!("{},{}", theirs.as_raw_fd(), liveness.as_raw_fd()),
    )];
    let argv: Vec<_> = std::env::args_os().collect();
    let argv0 = argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mp-child".into());
    let rest = argv.get(1..).unwrap_or(&[]);
    let piped = crate::supervision::prefix_output();
    let inherit = [theirs.as_fd(), liveness.as_fd()];
    let output = match piped {
        true => sys::SpawnOutput::Piped,
        false => sys::SpawnOutput::Inherit,
    };
    let mut child = sys::spawn_self(
        &argv0,
        rest,
        &env,
        &inherit,
        output,
        sys::Interrupts::Default,
    )
    .map_err(Error::io("cannot start the child process"))?;
    if piped {
        crate::supervision::forward_output(&mut child, name);
    }
    crate::supervision::record_start(child.id(), name);
    drop(theirs);
    let channel = Channel::new(ours);
    let sent = channel
        .send(&bootstrap)
        .and_then(|()| channel::send_frame_bytes(channel.fd(), args_frame, fds));
    if let Err(e) = sent {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    tracing::debug!(target: "mp", "started {name} (pid {}) {what}", child.id());
    Ok((child, channel))
}

/// Called by `mp::main!` before the user's `main` body.
#[doc(hidden)]
pub fn enter_main() {
    child_entry();
    MAIN_ENTERED.store(true, Ordering::Relaxed);
}

/// Called by `mp::main!` after the user's `main` body: like Python at exit, terminates daemon
/// children and waits for the others.
#[doc(hidden)]
pub fn leave_main() {
    finish_children();
    crate::supervision::drain_output();
    crate::supervision::record_peak();
}

/// What a process does as it ends through `mp` (Python's `util._exit_function`): terminates
/// its daemon children and waits for the others, so none is left running or a zombie.
fn finish_children() {
    let running: Vec<(u32, bool)> = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (pid, daemon) in running {
        if daemon {
            let _ = sys::kill(pid, libc::SIGTERM);
        }
    }
    let detached = std::mem::take(&mut *DETACHED.lock().unwrap_or_else(|e| e.into_inner()));
    for (_, _, reaper) in detached {
        let _ = reaper.join();
    }
}

/// The child side, run by the pre-`main` hook: if this process was started by `mp`, run the
/// worker it was started for and exit; otherwise return at once.
pub(crate) fn child_entry() {
    if std::env::var_os(LIST_WORKERS_ENV).is_some() {
        // `cargo mp workers`: print the registry and exit before any user code runs.
        for entry in worker::WORKERS.iter() {
            println!("{}\t{}\t{}", entry.name, entry.signature, entry.location);
        }
        std::process::exit(0);
    }
    if let Some(spec) = std::env::var_os(crate::shared::TRACKER_ENV) {
        sys::unset_env(crate::shared::TRACKER_ENV);
        name_after_program();
        std::process::exit(crate::shared::run_tracker(&spec.to_string_lossy()));
    }
    let Some(spec) = std::env::var_os(BOOTSTRAP_ENV) else {
        return;
    };
    sys::unset_env(BOOTSTRAP_ENV);
    sys::ignore_sigpipe();
    sys::raise_fd_limit();
    name_after_program();
    let code = run_child(&spec.to_string_lossy());
    finish_children();
    crate::supervision::record_peak();
    crate::supervision::drain_output();
    std::process::exit(code);
}

/// Shows this child in `ps`, `top` and `pgrep` under the program's name (as Python's children
/// show as `python`), not as `exe` (the name of `/proc/self/exe`, which it was started from).
fn name_after_program() {
    if let Some(name) = sys::program_name() {
        sys::set_thread_name(&name);
    }
}

fn run_child(spec: &str) -> i32 {
    let mut fds = spec
        .split(',')
        .map(|s| s.parse::<i32>().ok().and_then(sys::adopt_inherited_fd));
    let (Some(Some(boot)), Some(Some(liveness))) = (fds.next(), fds.next()) else {
        eprintln!("mp: malformed {BOOTSTRAP_ENV}={spec:?}; was this process started by mp?");
        return CHILD_FAILED;
    };
    // Die with the parent: the liveness pipe reports end-of-file when the parent is gone.
    let _ = std::thread::Builder::new()
        .name("mp-liveness".into())
        .spawn(move || {
            sys::wait_for_eof(liveness.as_fd());
            sys::exit_now(1);
        });
    let channel = Channel::new(boot);
    let bootstrap: Bootstrap = match channel.recv_frame(None).and_then(Frame::decode) {
        Ok(b) => b,
        Err(Error::Disconnected) => return 1,
        Err(e) => {
            eprintln!("mp: cannot read the bootstrap message: {e}");
            return CHILD_FAILED;
        }
    };
    let _ = IDENTITY.set(Identity {
        name: bootstrap.name.clone(),
        daemon: bootstrap.daemon,
        parent: Some(bootstrap.parent),
    });
    crate::shared::adopt_tracker_tree_name(bootstrap.tracker);
    crate::logging::install_from_code(bootstrap.log_level);
    let args = match channel.recv_frame(None) {
        Ok(frame) => frame,
        Err(_) => return 1,
    };
    let target = match bootstrap.role {
        Role::Call(target) => target,
        Role::PoolWorker => return crate::pool::serve(&channel, args),
        Role::ManagerServer => return crate::manager::serve_child(&channel, args),
    };
    let entry = match target.lookup() {
        Ok(entry) => entry,
        Err(detail) => {
            let _ = channel.send(&Outcome::<()>::NotFound(detail));
            return CHILD_FAILED;
        }
    };
    tracing::info!(target: "mp", "child process calling `{}`", entry.name);
    let code = (entry.invoke)(Invocation {
        args,
        reply: &channel,
        kind: InvocationKind::Call,
    });
    tracing::info!(target: "mp", "process exiting with exitcode {code}");
    code
}

/// A worker call in a child: the encoded arguments, where the result goes, and what kind of
/// call it is.
#[doc(hidden)]
pub struct Invocation<'a> {
    pub(crate) args: Frame,
    pub(crate) reply: &'a Channel,
    pub(crate) kind: InvocationKind,
}

/// How a child runs a worker.
pub(crate) enum InvocationKind {
    /// A `Process`: one call, outcome sent back, the return value is the exit code.
    Call,
    /// A pool's initializer (see `pool/child.rs`).
    PoolInit,
    /// A chunk of pool tasks (see `pool/child.rs`).
    PoolBatch,
}

/// Runs worker `W` on an invocation; for a `Process`, returns the exit code.
pub(crate) fn invoke<W: Worker>(inv: Invocation<'_>) -> i32 {
    match inv.kind {
        InvocationKind::Call => invoke_call::<W>(inv),
        InvocationKind::PoolInit => crate::pool::run_init::<W>(inv),
        InvocationKind::PoolBatch => crate::pool::run_batch::<W>(inv),
    }
}

/// Decodes `W`'s arguments, calls it (catching panics), sends the outcome, returns the exit code.
fn invoke_call<W: Worker>(inv: Invocation<'_>) -> i32 {
    let args: W::Args = match inv.args.decode() {
        Ok(args) => args,
        Err(e) => {
            let _ = inv.reply.send(&Outcome::<()>::Failed(e));
            return CHILD_FAILED;
        }
    };
    let outcome = match catch_panic(PanicReport::Print(W::NAME), || W::INSTANCE.call(args)) {
        Ok(value) => Outcome::Returned(value),
        Err((message, location)) => Outcome::Panicked { message, location },
    };
    let code = if matches!(outcome, Outcome::Returned(_)) {
        0
    } else {
        1
    };
    match inv.reply.send(&outcome) {
        Ok(()) => code,
        Err(Error::Disconnected) => code,
        // The value could not be encoded (or is over the limit): the parent gets that error
        // as it is, `Error::Encode` or `Error::TooLarge`.
        Err(e) => {
            let _ = inv.reply.send(&Outcome::<()>::Failed(e));
            CHILD_FAILED
        }
    }
}

/// A caught panic: its message and `file:line:column`.
pub(crate) type PanicInfo = (String, Option<String>);

/// Whether a caught panic is also printed on this process's stderr.
#[derive(Clone, Copy)]
pub(crate) enum PanicReport {
    /// A `Process`'s worker: printed once, here, as Python prints a child's traceback (the
    /// parent gets the message and location as `Error::WorkerPanicked`).
    Print(&'static str),
    /// A pool task: only returned (Python's `Pool` re-raises in the caller and prints nothing
    /// in the worker; a map of many failing tasks would flood stderr).
    Quiet,
}

static LAST_PANIC: Mutex<Option<PanicInfo>> = Mutex::new(None);
thread_local! {
    /// The worker whose panic this thread prints (`PanicReport::Print`), if any.
    static REPORT: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Runs `f`, turning a panic into its message and location. The default hook's report is kept
/// for panics on other threads; on this thread `report` says whether it is printed.
pub(crate) fn catch_panic<R>(report: PanicReport, f: impl FnOnce() -> R) -> Result<R, PanicInfo> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        let worker_thread = std::thread::current().id();
        panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() != worker_thread {
                return default(info);
            }
            let message = payload_message(info.payload());
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            if let Some(worker) = REPORT.get() {
                print_panic(worker, &message, location.as_deref());
            }
            *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some((message, location));
        }));
    });
    REPORT.set(match report {
        PanicReport::Print(worker) => Some(worker),
        PanicReport::Quiet => None,
    });
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        LAST_PANIC
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| (payload_message(&*payload), None))
    })
}

/// A child's report of its worker's panic on its own stderr: who, where, what, and a backtrace
/// when `RUST_BACKTRACE` (or `RUST_LIB_BACKTRACE`) asks for one.
fn print_panic(worker: &str, message: &str, location: Option<&str>) {
    use std::backtrace::{Backtrace, BacktraceStatus};
    use std::io::Write;
    let me = current_process();
    let at = location.map(|l| format!(" at {l}")).unwrap_or_default();
    let mut text = format!(
        "process `{}` (pid {}): worker `{worker}` panicked{at}:\n{message}\n",
        me.name(),
        me.pid()
    );
    let backtrace = Backtrace::capture();
    match backtrace.status() {
        BacktraceStatus::Captured => text.push_str(&format!("stack backtrace:\n{backtrace}\n")),
        _ => text.push_str("note: run with `RUST_BACKTRACE=1` to display a backtrace\n"),
    }
    // One write: the report is not interleaved with other output of this process.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A panic payload as text: the message of `panic!`, or for `panic_any` the value and its type
/// where the type is a common one.
fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        return (*s).to_owned();
    }
    if let Some(s) = payload.downcast_ref::<String>() {
        return s.clone();
    }
    macro_rules! known {
        ($($t:ty),*) => {$(
            if let Some(v) = payload.downcast_ref::<$t>() {
                return format!("panic payload of type `{}`: {v:?}", stringify!($t));
            }
        )*};
    }
    known!(
        i8,
        i16,
        i32,
        i64,
        i128,
        isize,
        u8,
        u16,
        u32,
        u64,
        u128,
        usize,
        f32,
        f64,
        bool,
        char,
        Error,
        std::io::Error,
        Box<dyn std::error::Error + Send + Sync>
    );
    "panic payload of a type other than a string (`std::panic::panic_any` with a value that \
     is not `&str` or `String`)"
        .to_owned()
}
