//! Starting the current executable again with chosen descriptors (every other one closed),
//! and the `.init_array` hook that routes such a child before `main`.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io::{self};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::fork::Child;

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
/// is `/dev/null`. Started by `posix_spawn` where glibc can close the other descriptors
/// itself (2.34 and later), else by `fork` and `exec` (and always so for
/// [`Interrupts::Ignore`], which `posix_spawn` cannot set).
pub(crate) fn spawn_self(
    argv0: &str,
    args: &[OsString],
    env: &[(&str, String)],
    inherit: &[BorrowedFd<'_>],
    output: SpawnOutput,
    interrupts: Interrupts,
) -> io::Result<Child> {
    if interrupts == Interrupts::Default
        && let Some(child) = posix_spawn_self(argv0, args, env, inherit, output)?
    {
        return Ok(child);
    }
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
    cmd.spawn().map(Child::from_std)
}

/// `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34), looked up at run time so that a
/// binary built here still starts on an older glibc (which takes the `fork` path instead).
type AddCloseFrom =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, libc::c_int) -> libc::c_int;

fn add_close_from() -> Option<AddCloseFrom> {
    static FOUND: std::sync::OnceLock<Option<AddCloseFrom>> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        // SAFETY: `dlsym` with a NUL-terminated name only looks the symbol up.
        let sym = unsafe {
            libc::dlsym(
                libc::RTLD_DEFAULT,
                c"posix_spawn_file_actions_addclosefrom_np".as_ptr(),
            )
        };
        if sym.is_null() {
            return None;
        }
        // SAFETY: glibc's symbol of this name has exactly this signature.
        Some(unsafe { std::mem::transmute::<*mut libc::c_void, AddCloseFrom>(sym) })
    })
}

/// `spawn_self` by `posix_spawn` (a `vfork`-style start: the parent's page tables are not
/// copied, and it takes no copy-on-write faults until the child has called `exec`), which
/// costs a fraction of `fork` + `exec` from a large parent. `None` when this glibc cannot close
/// every other descriptor in the child (before 2.34).
fn posix_spawn_self(
    argv0: &str,
    args: &[OsString],
    env: &[(&str, String)],
    inherit: &[BorrowedFd<'_>],
    output: SpawnOutput,
) -> io::Result<Option<Child>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Some(close_from) = add_close_from() else {
        return Ok(None);
    };
    let nul = |e: std::ffi::NulError| io::Error::new(io::ErrorKind::InvalidInput, e);
    let mut argv = vec![CString::new(argv0).map_err(nul)?];
    for a in args {
        argv.push(CString::new(a.as_bytes()).map_err(nul)?);
    }
    let mut envp = Vec::new();
    for (k, v) in std::env::vars_os() {
        if env.iter().any(|(key, _)| k.as_bytes() == key.as_bytes()) {
            continue;
        }
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        envp.push(CString::new(kv).map_err(nul)?);
    }
    for (k, v) in env {
        envp.push(CString::new(format!("{k}={v}")).map_err(nul)?);
    }
    let mut argv_ptrs: Vec<*mut libc::c_char> =
        argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut envp_ptrs: Vec<*mut libc::c_char> =
        envp.iter().map(|a| a.as_ptr().cast_mut()).collect();
    envp_ptrs.push(std::ptr::null_mut());

    let keep: Vec<RawFd> = inherit.iter().map(|fd| fd.as_raw_fd()).collect();
    if keep.iter().any(|&fd| fd < 3) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a descriptor handed to a child must be numbered above 2",
        ));
    }
    let top = keep.iter().copied().max().unwrap_or(2);
    // Close-on-exec copies above every kept number: `dup2` from each onto its kept number
    // clears close-on-exec there, in the child only.
    let staged = inherit
        .iter()
        .map(|fd| Ok(rustix::io::fcntl_dupfd_cloexec(fd, top + 1)?))
        .collect::<io::Result<Vec<std::os::fd::OwnedFd>>>()?;
    let pipes = match output {
        SpawnOutput::Piped => Some((super::socket::pipe()?, super::socket::pipe()?)),
        SpawnOutput::Inherit => None,
    };

    let check = |r: libc::c_int| match r {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    };
    let mut pid: libc::pid_t = 0;
    // SAFETY: the attribute and file-action objects are initialised before use and destroyed
    // after; every pointer passed (paths, argv, envp) points into vectors and strings that
    // outlive the call; the descriptors named are open until it returns.
    unsafe {
        let mut actions = std::mem::MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        check(libc::posix_spawn_file_actions_init(actions.as_mut_ptr()))?;
        let mut attr = std::mem::MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        if let Err(e) = check(libc::posix_spawnattr_init(attr.as_mut_ptr())) {
            libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr());
            return Err(e);
        }
        let a = actions.as_mut_ptr();
        let at = attr.as_mut_ptr();
        let result = (|| {
            check(libc::posix_spawn_file_actions_addopen(
                a,
                0,
                c"/dev/null".as_ptr(),
                libc::O_RDONLY,
                0,
            ))?;
            if let Some(((_, out), (_, err))) = &pipes {
                check(libc::posix_spawn_file_actions_adddup2(
                    a,
                    out.as_raw_fd(),
                    1,
                ))?;
                check(libc::posix_spawn_file_actions_adddup2(
                    a,
                    err.as_raw_fd(),
                    2,
                ))?;
            }
            for (stage, &fd) in staged.iter().zip(&keep) {
                check(libc::posix_spawn_file_actions_adddup2(
                    a,
                    stage.as_raw_fd(),
                    fd,
                ))?;
            }
            // Below the highest kept number, close the others one by one (closing one that is
            // not open is not an error there); above it, all at once.
            for fd in 3..top {
                if !keep.contains(&fd) {
                    check(libc::posix_spawn_file_actions_addclose(a, fd))?;
                }
            }
            check(close_from(a, top + 1))?;
            let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(empty.as_mut_ptr());
            check(libc::posix_spawnattr_setsigmask(at, empty.as_ptr()))?;
            let mut pipe_only = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(pipe_only.as_mut_ptr());
            libc::sigaddset(pipe_only.as_mut_ptr(), libc::SIGPIPE);
            check(libc::posix_spawnattr_setsigdefault(at, pipe_only.as_ptr()))?;
            check(libc::posix_spawnattr_setflags(
                at,
                (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
            ))?;
            check(libc::posix_spawn(
                &mut pid,
                c"/proc/self/exe".as_ptr(),
                a,
                at,
                argv_ptrs.as_ptr(),
                envp_ptrs.as_ptr(),
            ))
        })();
        libc::posix_spawnattr_destroy(at);
        libc::posix_spawn_file_actions_destroy(a);
        result?;
    }
    let (stdout, stderr) = match pipes {
        Some(((out, _), (err, _))) => (Some(out.into()), Some(err.into())),
        None => (None, None),
    };
    Ok(Some(Child::from_pid(pid as u32, stdout, stderr)))
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
