//! Linux implementation of the platform contract (see `sys/mod.rs`): rustix wrappers, futexes
//! on shared words, memfd-backed mappings and the `.init_array` child hook.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use rustix::thread::futex;

/// The most descriptors one `sendmsg` may carry (the kernel's `SCM_MAX_FD` is 253).
pub(crate) const MAX_FDS_PER_MSG: usize = 253;

/// Asks for a send buffer of `bytes` on `sock` (the kernel caps the request at
/// `net.core.wmem_max`) and returns the size in force afterwards, whether or not the request
/// was granted.
pub(crate) fn grow_send_buffer(sock: BorrowedFd<'_>, bytes: usize) -> io::Result<usize> {
    let _ = rustix::net::sockopt::set_socket_send_buffer_size(sock, bytes);
    Ok(rustix::net::sockopt::socket_send_buffer_size(sock)?)
}

/// A connected pair of `AF_UNIX` stream sockets, close-on-exec, both above the standard
/// descriptors (see [`above_stdio`]).
pub(crate) fn socketpair_stream() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    Ok((above_stdio(a)?, above_stdio(b)?))
}

/// `fd` itself, or, if it took the number of a closed standard stream (0, 1 or 2), a
/// close-on-exec duplicate numbered 3 or above.
///
/// A process whose stdout or stderr is closed gets those numbers back for its next
/// descriptors; one handed to a child there would be taken for the child's own stdout.
pub(crate) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?)
}

/// A connected pair of `AF_UNIX` packet sockets (message boundaries kept), close-on-exec.
pub(crate) fn socketpair_packet() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A close-on-exec pipe `(read, write)`, both ends above the standard descriptors.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((above_stdio(read)?, above_stdio(write)?))
}

/// Sends `bufs` with `fds` attached (at most [`MAX_FDS_PER_MSG`]); returns the bytes sent.
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<usize> {
    debug_assert!(fds.len() <= MAX_FDS_PER_MSG);
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MSG))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many descriptors for one message"));
    }
    let mut flags = SendFlags::NOSIGNAL;
    if nonblocking {
        flags |= SendFlags::DONTWAIT;
    }
    loop {
        match rustix::net::sendmsg(sock, bufs, &mut control, flags) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return Ok(r?),
        }
    }
}

/// Receives into `buf`, appending any descriptors that came along to `fds` (close-on-exec).
/// Returns the bytes received; 0 means the peer closed its end.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut VecDeque<OwnedFd>,
    nonblocking: bool,
) -> io::Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MSG))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut flags = RecvFlags::CMSG_CLOEXEC;
    if nonblocking {
        flags |= RecvFlags::DONTWAIT;
    }
    let msg = loop {
        match rustix::net::recvmsg(sock, &mut [IoSliceMut::new(buf)], &mut control, flags) {
            Err(rustix::io::Errno::INTR) => continue,
            r => break r?,
        }
    };
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        return Err(io::Error::other(
            "descriptors were lost: control message truncated",
        ));
    }
    Ok(msg.bytes)
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos().into(),
    }
}

/// Waits until `fd` is readable (or its peer hung up); `false` when `timeout` passed first.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    poll_one(fd, PollFlags::IN, timeout)
}

/// Waits until `fd` is writable; `false` when `timeout` passed first.
pub(crate) fn poll_writable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    poll_one(fd, PollFlags::OUT, timeout)
}

fn poll_one(fd: BorrowedFd<'_>, flags: PollFlags, timeout: Option<Duration>) -> io::Result<bool> {
    let mut fds = [PollFd::from_borrowed_fd(fd, flags)];
    let ts = timeout.map(timespec);
    loop {
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Err(rustix::io::Errno::INTR) => continue,
            Ok(n) => return Ok(n > 0),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Blocks until `word` no longer holds `expected`, a wake arrives, or `timeout` passes.
/// The word may live in memory shared between processes (no `FUTEX_PRIVATE_FLAG`).
/// Spurious returns are allowed: callers re-check their condition.
///
/// The word must live in a [`SharedMapping`] made by `create` or `open` (with the
/// `portable-sync` feature, the mapping's parking table serves the wait; see `park.rs`).
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    if PARKING {
        return super::park::wait(word, expected, timeout);
    }
    let ts = timeout.map(timespec);
    // EAGAIN (value changed), ETIMEDOUT and EINTR all mean "re-check".
    let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
}

/// Wakes up to `n` waiters blocked on `word` in any process (`u32::MAX`: all of them).
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) {
    if PARKING {
        return super::park::wake(word, n);
    }
    // The kernel reads the count as a C `int`: `u32::MAX` would be -1, which wakes just one.
    let n = n.min(i32::MAX as u32);
    let _ = futex::wake(word, futex::Flags::empty(), n);
}

/// Whether waits on shared words use the portable parking tables instead of futexes.
const PARKING: bool = cfg!(feature = "portable-sync");

/// The bytes a mapping whose usable part is `len` bytes takes: with [`PARKING`], a parking
/// table follows the usable part.
fn parked_len(len: usize) -> usize {
    if PARKING {
        super::park::table_offset(len) + super::park::TABLE_BYTES
    } else {
        len
    }
}

/// What a new mapping does with its parking table.
#[derive(Clone, Copy, PartialEq)]
enum Park {
    /// None: a named segment, which other programs may share and no `mp` wait uses.
    None,
    /// Initialise it: the mapping is fresh memory of our own.
    Create,
    /// Use the one its creator initialised.
    Attach,
}

/// The calling process's id.
pub(crate) fn getpid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// The calling thread's id (equal to the process id in a single-threaded process).
///
/// Cached per thread: every lock operation needs it, and a system call would double the cost
/// of an uncontended lock. (`mp` never `fork`s without `exec`, so the cache cannot go stale.)
pub(crate) fn gettid() -> u32 {
    thread_local! {
        static TID: u32 = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    }
    TID.with(|t| *t)
}

/// This process's peak resident memory so far, in KiB (`VmHWM`).
pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The CPU the calling thread runs on now (a hint: it may move at any time).
pub(crate) fn current_cpu() -> u32 {
    rustix::thread::sched_getcpu() as u32
}

/// Whether the thread (or process) `tid` still runs: it exists and is not a zombie.
///
/// Reads `/proc/<tid>/stat`, which exists for every thread id, not only for process ids.
/// A recycled id looks alive; ids are recycled only after the whole `pid_max` range is used.
pub(crate) fn thread_alive(tid: u32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{tid}/stat")) else {
        return false;
    };
    // The state letter follows the last `)` (the command name may contain parentheses).
    let state = stat
        .iter()
        .rposition(|&b| b == b')')
        .and_then(|i| stat.get(i + 2).copied());
    !matches!(state, Some(b'Z' | b'X' | b'x') | None)
}

/// Sends `signal` (a raw signal number) to process `pid`.
pub(crate) fn kill(pid: u32, signal: i32) -> io::Result<()> {
    // SAFETY: `kill` has no memory-safety preconditions.
    let r = unsafe { libc::kill(pid as libc::pid_t, signal) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The conventional name of a signal, e.g. `SIGKILL`.
pub(crate) fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}

/// Ignores `SIGPIPE`, as std does before `main`; the child hook runs before std could.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: installing SIG_IGN for SIGPIPE has no memory-safety preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Raises the soft limit of open descriptors to the hard limit: descriptors in flight inside
/// queues count against it.
pub(crate) fn raise_fd_limit() {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, raised);
    }
}

/// Exits the process at once, running no destructors and no `atexit` handlers.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

/// Where a started child's stdout and stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpawnOutput {
    /// The parent's own.
    Inherit,
    /// Pipes the parent reads (`cargo mp run`'s prefixed output).
    Piped,
}

/// How a started child treats `SIGINT`, `SIGTERM` and `SIGHUP` from its first instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupts {
    /// As the parent does (a worker).
    Default,
    /// Ignored, set between `fork` and `exec` (ignored dispositions survive `exec`), so no
    /// signal can arrive in a window before the child ignores it itself: a helper that must
    /// outlive a Ctrl-C to clean up.
    Ignore,
}

/// Starts the current executable again with `env` added and the descriptors `inherit` kept
/// open (under their numbers, which must be above 2) across `exec`; every other descriptor
/// is closed in the child, whether or not it was close-on-exec (Python's `close_fds`). stdin
/// is `/dev/null`.
pub(crate) fn spawn_self(
    argv0: &str,
    args: &[OsString],
    env: &[(&str, String)],
    inherit: &[BorrowedFd<'_>],
    output: SpawnOutput,
    interrupts: Interrupts,
) -> io::Result<Child> {
    let exe = Path::new("/proc/self/exe");
    let mut cmd = Command::new(exe);
    cmd.arg0(argv0).args(args).stdin(Stdio::null());
    if output == SpawnOutput::Piped {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut keep: Vec<RawFd> = inherit.iter().map(|fd| fd.as_raw_fd()).collect();
    if keep.iter().any(|&fd| fd < 3) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a descriptor handed to a child must be numbered above 2",
        ));
    }
    keep.sort_unstable();
    keep.dedup();
    // Where `close_range` cannot mark descriptors (Linux before 5.11), the open ones are listed
    // now, in the parent, since listing allocates and the closure runs after `fork`.
    let listed: Vec<RawFd> = if close_range_cloexec_works() {
        Vec::new()
    } else {
        open_fds()?
    };
    // SAFETY: the closure runs between fork and exec; it only calls `fcntl`, `close_range` and
    // `signal`, which are async-signal-safe, and reads vectors allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if interrupts == Interrupts::Ignore {
                for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                    libc::signal(signal, libc::SIG_IGN);
                }
            }
            for &fd in &keep {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            // Everything else closes at `exec` (std's own error pipe is close-on-exec already).
            if listed.is_empty() {
                let mut first = 3;
                for &fd in keep.iter().chain(std::iter::once(&RawFd::MAX)) {
                    if fd > first {
                        mark_cloexec_range(first as u32, (fd - 1) as u32)?;
                    }
                    first = fd.saturating_add(1);
                }
            } else {
                for &fd in listed.iter().filter(|&&fd| fd > 2 && !keep.contains(&fd)) {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// `close_range(first, last, CLOSE_RANGE_CLOEXEC)`: marks a range of descriptors close-on-exec
/// (async-signal-safe: it runs between `fork` and `exec`).
fn mark_cloexec_range(first: u32, last: u32) -> io::Result<()> {
    // SAFETY: the raw system call takes three integers and touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            last,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this kernel has `close_range` with `CLOSE_RANGE_CLOEXEC` (Linux 5.11), probed once.
fn close_range_cloexec_works() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| {
        // An empty range above every possible descriptor: a no-op where supported.
        mark_cloexec_range(u32::MAX, u32::MAX).is_ok()
    })
}

/// The descriptors open in this process (from `/proc/self/fd`).
fn open_fds() -> io::Result<Vec<RawFd>> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        if let Some(fd) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
            fds.push(fd);
        }
    }
    Ok(fds)
}

/// This process's parent's pid (the reaper that adopted it, once the parent died).
pub(crate) fn parent_pid() -> u32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
}

/// How child `pid` ended, without reaping it (`waitid` with `WNOWAIT`); `None` while it runs.
pub(crate) fn peek_exit(pid: u32) -> io::Result<Option<std::process::ExitStatus>> {
    use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
    use std::os::unix::process::ExitStatusExt;
    let Some(pid) = Pid::from_raw(pid as i32) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    let Some(status) = waitid(WaitId::Pid(pid), options)? else {
        return Ok(None);
    };
    // A wait status as `waitpid` encodes it: the code in the second byte, or the signal.
    Ok(match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => Some(std::process::ExitStatus::from_raw((code & 0xff) << 8)),
        (None, Some(signal)) => Some(std::process::ExitStatus::from_raw(signal & 0x7f)),
        (None, None) => None,
    })
}

/// The pid of the process at the other end of a connected `AF_UNIX` socket.
pub(crate) fn peer_pid(sock: BorrowedFd<'_>) -> io::Result<u32> {
    let cred = rustix::net::sockopt::socket_peercred(sock)?;
    Ok(cred.pid.as_raw_nonzero().get() as u32)
}

/// Names this thread (`PR_SET_NAME`: what `ps`, `top` and `pgrep` show for a process's main
/// thread), cut to the kernel's 15 bytes at a character boundary.
pub(crate) fn set_thread_name(name: &str) {
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    if let Ok(name) = std::ffi::CString::new(&name[..end]) {
        let _ = rustix::thread::set_name(&name);
    }
}

/// The file name of the running executable (`/proc/self/exe`'s target), as `ps` should show
/// this program's children.
pub(crate) fn program_name() -> Option<String> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let name = exe.file_name()?.to_string_lossy().into_owned();
    // A binary replaced on disk reads as "name (deleted)".
    Some(name.trim_end_matches(" (deleted)").to_owned())
}

/// Takes ownership of an inherited descriptor named by number (from the environment).
///
/// Returns `None` unless `fd` is open and refers to a socket or pipe; the caller must own it.
pub(crate) fn adopt_inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    if fd < 3 {
        return None;
    }
    // SAFETY: `fcntl(F_GETFD)` only queries; a closed descriptor yields -1.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return None;
    }
    // SAFETY: the descriptor is open, was handed to this process for this purpose by its parent
    // (its number came from the bootstrap variable) and nothing else in the process owns it.
    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let _ = rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC);
    Some(owned)
}

/// Blocks reading `fd` until end-of-file (every write end closed), then returns.
pub(crate) fn wait_for_eof(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 16];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => return,
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
    }
}

/// A shared, read-write mapping of a descriptor's memory (a memfd), unmapped on drop.
///
/// The memory may be written by other processes at any time, so it is never exposed as a
/// Rust reference to bytes: only atomics (through [`SharedMapping::atomic_u32`] and friends)
/// and explicit copies.
pub(crate) struct SharedMapping {
    ptr: NonNull<u8>,
    /// The usable bytes.
    len: usize,
    /// The bytes mapped: `len`, or more with a parking table behind them.
    mapped: usize,
    parked: bool,
    fd: OwnedFd,
}

// SAFETY: the mapping is plain shared memory; all access goes through atomics or copies whose
// races the owning protocol excludes. Nothing is tied to the creating thread.
unsafe impl Send for SharedMapping {}
// SAFETY: see `Send`; `&SharedMapping` only offers atomic access and copies.
unsafe impl Sync for SharedMapping {}

impl SharedMapping {
    /// Creates `len` bytes of zeroed anonymous shared memory (a memfd named `name`).
    pub(crate) fn create(name: &str, len: usize) -> io::Result<Self> {
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        rustix::fs::ftruncate(&fd, parked_len(len) as u64)?;
        // Size is fixed from now on: a peer cannot shrink it under our mapping.
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW)?;
        Self::map(fd, len, Park::Create)
    }

    /// Maps memory received from another process; checks that it is at least `len` bytes and
    /// cannot shrink.
    pub(crate) fn open(fd: OwnedFd, len: usize) -> io::Result<Self> {
        let seals = rustix::fs::fcntl_get_seals(&fd)?;
        let size = rustix::fs::fstat(&fd)?.st_size as u64;
        if !seals.contains(SealFlags::SHRINK) || size < parked_len(len) as u64 {
            return Err(io::Error::other(
                "shared memory descriptor is not a sealed segment of the expected size",
            ));
        }
        Self::map(fd, len, Park::Attach)
    }

    /// Creates a named POSIX shared memory segment (`/dev/shm/<name>`) of `len` zeroed bytes;
    /// fails if the name exists. The caller unlinks it.
    pub(crate) fn create_named(name: &str, len: usize) -> io::Result<Self> {
        use rustix::shm::{Mode, OFlags};
        let fd = rustix::shm::open(
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
            Mode::RUSR | Mode::WUSR,
        )?;
        if let Err(e) = rustix::fs::ftruncate(&fd, len as u64) {
            let _ = rustix::shm::unlink(name);
            return Err(e.into());
        }
        Self::map(fd, len, Park::None).inspect_err(|_| {
            let _ = rustix::shm::unlink(name);
        })
    }

    /// Opens an existing named segment; returns the mapping of its whole current size.
    pub(crate) fn open_named(name: &str) -> io::Result<Self> {
        use rustix::shm::{Mode, OFlags};
        let fd = rustix::shm::open(name, OFlags::RDWR, Mode::empty())?;
        let size = usize::try_from(rustix::fs::fstat(&fd)?.st_size).unwrap_or(0);
        if size == 0 {
            return Err(io::Error::other("the shared memory segment is empty"));
        }
        Self::map(fd, size, Park::None)
    }

    /// Maps a named segment's descriptor received from another process (named segments cannot
    /// be sealed; only the size is checked).
    pub(crate) fn open_unsealed(fd: OwnedFd, len: usize) -> io::Result<Self> {
        let size = rustix::fs::fstat(&fd)?.st_size as u64;
        if size < len as u64 || len == 0 {
            return Err(io::Error::other(
                "shared memory descriptor is smaller than announced",
            ));
        }
        Self::map(fd, len, Park::None)
    }

    fn map(fd: OwnedFd, len: usize, park: Park) -> io::Result<Self> {
        let parked = PARKING && park != Park::None;
        let mapped = if parked { parked_len(len) } else { len };
        // SAFETY: a fresh mapping (null hint) of a descriptor we own; the kernel picks the
        // address, so no existing memory is affected.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                mapped,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        let mut map = Self {
            ptr,
            len,
            mapped,
            parked: false,
            fd,
        };
        if !parked {
            return Ok(map);
        }
        let start = ptr.as_ptr() as usize;
        let table = start + super::park::table_offset(len);
        if park == Park::Create {
            // SAFETY: the table's bytes lie inside the fresh mapping (`mapped` counts them),
            // aligned (`table_offset`), zeroed (a new memfd), and no other process has them.
            unsafe { super::park::init_table(table as *mut u8)? };
        }
        super::park::register(start, start + len, table);
        map.parked = true;
        Ok(map)
    }

    /// The descriptor backing the mapping (to send it to another process).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The mapping's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The atomic word at byte `offset` (4-aligned, in bounds: checked).
    pub(crate) fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        assert!(
            offset % 4 == 0 && offset + 4 <= self.len,
            "atomic out of bounds"
        );
        // SAFETY: in bounds and aligned (checked; the mapping is page-aligned); the memory is
        // valid for the lifetime of `self`, and every access to it is atomic.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// The 64-bit atomic at byte `offset` (8-aligned, in bounds: checked).
    pub(crate) fn atomic_u64(&self, offset: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(
            offset % 8 == 0 && offset + 8 <= self.len,
            "atomic out of bounds"
        );
        // SAFETY: as in `atomic_u32`.
        unsafe {
            &*self
                .ptr
                .as_ptr()
                .add(offset)
                .cast::<std::sync::atomic::AtomicU64>()
        }
    }

    /// The atomic `A` at byte `offset` (aligned for `A`, in bounds: checked).
    pub(crate) fn atomic<A: super::AtomicCell>(&self, offset: usize) -> &A {
        self.check::<A>(offset, 1);
        // SAFETY: in bounds and aligned (checked); `A` is a std atomic, valid when zeroed and
        // for any bits another process stored through the same atomic type; every access to
        // the word goes through atomics.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<A>() }
    }

    /// Asserts that `count` values of `T` fit at `offset`, aligned.
    fn check<T>(&self, offset: usize, count: usize) {
        let bytes = count.checked_mul(size_of::<T>());
        assert!(
            offset % align_of::<T>() == 0
                && bytes
                    .and_then(|b| b.checked_add(offset))
                    .is_some_and(|end| end <= self.len),
            "shared memory access out of bounds"
        );
    }

    /// Reads the value at byte `offset` (a copy; another process may be writing it, in which
    /// case the copy may mix old and new bytes, but every byte pattern of `T` read back was
    /// written as a `T`).
    pub(crate) fn read_plain<T: super::Plain>(&self, offset: usize) -> T {
        self.check::<T>(offset, 1);
        // SAFETY: in bounds and aligned (checked). A volatile read of plain data: the compiler
        // may not assume the memory is unchanged between reads, which it is not.
        unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(offset).cast::<T>()) }
    }

    /// Writes `value` at byte `offset`.
    pub(crate) fn write_plain<T: super::Plain>(&self, offset: usize, value: T) {
        self.check::<T>(offset, 1);
        // SAFETY: in bounds and aligned (checked); `T` is plain data, so no destructor or
        // pointer is involved.
        unsafe { std::ptr::write_volatile(self.ptr.as_ptr().add(offset).cast::<T>(), value) }
    }

    /// Copies `dst.len()` values starting at byte `offset` into `dst`.
    pub(crate) fn read_slice<T: super::Plain>(&self, offset: usize, dst: &mut [T]) {
        self.check::<T>(offset, dst.len());
        // SAFETY: the source range is in bounds and aligned (checked) and cannot overlap `dst`,
        // which is ordinary memory of this process.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset).cast::<T>(),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }

    /// Copies `src` into the mapping starting at byte `offset`.
    pub(crate) fn write_slice<T: super::Plain>(&self, offset: usize, src: &[T]) {
        self.check::<T>(offset, src.len());
        // SAFETY: as in `read_slice`, in the other direction.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.ptr.as_ptr().add(offset).cast::<T>(),
                src.len(),
            )
        }
    }

    /// A shared slice of `len` values of `T` at byte `offset` (bounds and alignment checked).
    ///
    /// # Safety
    ///
    /// For as long as the slice lives, no thread or process may write the range: the caller
    /// holds a read lock that every writer of the range honours.
    pub(crate) unsafe fn slice<T: super::Plain>(&self, offset: usize, len: usize) -> &[T] {
        self.check::<T>(offset, len);
        // SAFETY: in bounds and aligned (checked); `T` is valid for the bytes stored there
        // (`Plain`); the absence of writers is the caller's obligation.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset).cast::<T>(), len) }
    }

    /// A mutable slice of `len` values of `T` at byte `offset` (bounds and alignment checked).
    ///
    /// # Safety
    ///
    /// For as long as the slice lives, no other thread or process may access the range: the
    /// caller holds a lock that every accessor of the range honours.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut<T: super::Plain>(&self, offset: usize, len: usize) -> &mut [T] {
        self.check::<T>(offset, len);
        // SAFETY: in bounds and aligned (checked); `T` is valid for the bytes stored there
        // (`Plain`); exclusivity is the caller's obligation.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset).cast::<T>(), len) }
    }

    /// Copies `src` into the mapping at `offset` (bounds checked).
    pub(crate) fn write_at(&self, offset: usize, src: &[u8]) {
        assert!(
            offset
                .checked_add(src.len())
                .is_some_and(|end| end <= self.len),
            "write out of bounds"
        );
        // SAFETY: the range is in bounds (checked) and does not overlap `src`, which is local
        // memory; the queue protocol gives this process exclusive use of the range.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len())
        }
    }

    /// Copies from the mapping at `offset` into `dst` (bounds checked).
    pub(crate) fn read_at(&self, offset: usize, dst: &mut [u8]) {
        assert!(
            offset
                .checked_add(dst.len())
                .is_some_and(|end| end <= self.len),
            "read out of bounds"
        );
        // SAFETY: in bounds (checked), non-overlapping with `dst`; the protocol guarantees no
        // process writes this range while it is read.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        if self.parked {
            super::park::unregister(self.ptr.as_ptr() as usize);
        }
        // SAFETY: `ptr`/`mapped` describe a mapping created in `map` and not yet unmapped; no
        // reference into it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.mapped) };
    }
}

/// A sealed, immutable buffer in its own memfd: how large messages travel between processes.
pub(crate) struct SealedBuffer {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the memory is sealed against writes, so shared read-only access is race-free.
unsafe impl Send for SealedBuffer {}
// SAFETY: as for `Send`.
unsafe impl Sync for SealedBuffer {}

impl SealedBuffer {
    /// Copies `parts` into a new memfd and seals it against every change.
    pub(crate) fn create(parts: &[&[u8]]) -> io::Result<Self> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let fd = rustix::fs::memfd_create(
            "mp-message",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        let mut off = 0u64;
        for part in parts {
            let mut done = 0;
            while done < part.len() {
                done += rustix::io::pwrite(&fd, &part[done..], off + done as u64)?;
            }
            off += part.len() as u64;
        }
        rustix::fs::fcntl_add_seals(
            &fd,
            SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
        )?;
        Self::map(fd, len)
    }

    /// Maps a buffer received from another process; it must be sealed against writes and
    /// shrinking and hold exactly `len` bytes.
    pub(crate) fn open(fd: OwnedFd, len: usize) -> io::Result<Self> {
        let seals = rustix::fs::fcntl_get_seals(&fd)?;
        let size = rustix::fs::fstat(&fd)?.st_size as u64;
        if !seals.contains(SealFlags::SHRINK | SealFlags::WRITE) || size != len as u64 {
            return Err(io::Error::other(
                "message buffer is not sealed or has the wrong size",
            ));
        }
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Ok(Self {
                ptr: NonNull::dangling(),
                len,
                fd,
            });
        }
        // SAFETY: a fresh read-only shared mapping at an address the kernel chooses.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, len, fd })
    }

    /// The descriptor, to send along with a message.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The buffer's bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes (or is dangling with len 0) for the lifetime
        // of `self`, and the seals guarantee no process can modify or truncate them.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SealedBuffer {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmaps the mapping made in `map`; `as_slice` borrows end with `self`.
            let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// The pre-`main` hook: a child started by `mp` (marked in its environment) is routed to its
/// worker here and exits, before any user code or test harness runs.
///
/// `#[used]` keeps the entry; `spawn` reads this static, so any binary that can start a child
/// links it.
#[used]
#[unsafe(link_section = ".init_array")]
pub(crate) static CHILD_HOOK: extern "C" fn() = child_hook;

extern "C" fn child_hook() {
    crate::bootstrap::route::child_entry();
}

/// Borrows a raw descriptor that the caller knows is open for `'a`.
pub(crate) fn borrow_raw_fd<'a>(fd: RawFd) -> BorrowedFd<'a> {
    // SAFETY: callers pass descriptors owned by handles that outlive the borrow (they are
    // collected while encoding a value the caller holds until the send returns).
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Removes the name of a POSIX shared memory segment (`shm_unlink`).
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    Ok(rustix::shm::unlink(name)?)
}

/// Ignores `SIGINT` and `SIGTERM` in this process (a helper that must outlive a Ctrl-C or a
/// group-wide terminate to clean up).
pub(crate) fn ignore_interrupts() {
    // SAFETY: installs the `SIG_IGN` disposition, which runs no code in this process.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
}

/// Removes a variable from this process's environment.
///
/// Called only from the pre-`main` hook, before any thread other than the main one exists.
pub(crate) fn unset_env(key: &str) {
    // SAFETY: runs before `main` in a freshly started child, where no other thread can be
    // reading the environment concurrently.
    unsafe { std::env::remove_var(key) }
}

/// Ignores `SIGINT` in this process (a pool worker: Ctrl-C is the parent's to handle).
pub(crate) fn ignore_sigint() {
    // SAFETY: installs the `SIG_IGN` disposition, which runs no code in this process.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

/// A wake-up descriptor (an `eventfd`): [`notify`](Wakeup::notify) makes it readable until
/// [`drain`](Wakeup::drain); for a thread that waits in [`poll_many`].
#[derive(Debug)]
pub(crate) struct Wakeup {
    fd: OwnedFd,
}

impl Wakeup {
    pub(crate) fn new() -> io::Result<Wakeup> {
        let fd = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        Ok(Wakeup { fd })
    }

    /// Makes the descriptor readable (idempotent until drained).
    pub(crate) fn notify(&self) {
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Consumes pending notifications.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut buf);
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Waits until at least one of `fds` is readable or hung up, or `timeout` passes; pushes the
/// indices of the ready ones onto `ready` (left empty on timeout).
pub(crate) fn poll_many(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
    ready: &mut Vec<usize>,
) -> io::Result<()> {
    ready.clear();
    let mut set: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
        .collect();
    let ts = timeout.map(timespec);
    loop {
        match rustix::event::poll(&mut set, ts.as_ref()) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => break,
        }
    }
    ready.extend(
        set.iter()
            .enumerate()
            .filter(|(_, p)| !p.revents().is_empty())
            .map(|(i, _)| i),
    );
    Ok(())
}

/// Waits for a child to end, at most `timeout`; `None` if it is still running.
pub(crate) fn wait_child_timeout(
    child: &mut Child,
    timeout: Duration,
) -> io::Result<Option<std::process::ExitStatus>> {
    let deadline = std::time::Instant::now() + timeout;
    let mut pause = Duration::from_micros(100);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// A close-on-exec duplicate of `fd`.
pub(crate) fn dup_fd(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 3)?)
}

#[cfg(all(test, feature = "portable-sync"))]
mod tests {
    use super::*;

    #[test]
    fn portable_sync_gives_created_and_opened_mappings_a_parking_table() {
        let created = SharedMapping::create("mp-test", 100).unwrap();
        let opened = SharedMapping::open(dup_fd(created.fd()).unwrap(), 100).unwrap();
        for map in [&created, &opened] {
            assert!(map.parked && map.mapped > map.len);
        }
        let word = opened.atomic_u32(8);
        word.store(1, std::sync::atomic::Ordering::SeqCst);
        futex_wake(word, 1);
        futex_wait(created.atomic_u32(8), 0, None); // differs: returns at once
        let named = format!("/mp-park-test-{}", getpid());
        let plain = SharedMapping::create_named(&named, 100).unwrap();
        shm_unlink(&named).unwrap();
        assert!(!plain.parked && plain.mapped == plain.len);
    }
}
