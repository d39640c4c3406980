//! Starting the current executable again with chosen descriptors (every other one closed),
//! and the `.init_array` hook that routes such a child before `main`.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io::{self};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

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
    // A local child is never an MPI rank: the launcher's variables stay with this process (a
    // child that inherits them and calls `MPI_Init` fails and garbles the launcher's output).
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("OMPI_") || k.starts_with("PMIX_") || k.starts_with("PMI_") {
            cmd.env_remove(&key);
        }
    }
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
