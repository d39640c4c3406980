//! Ctrl-C during a blocking pool call: while at least one [`Armed`] guard lives, `SIGINT` runs a
//! handler that only writes a byte to a pipe (async-signal-safe); a listener reads the pipe in
//! [`wait_for_interrupt`]. When the last guard drops, the disposition that was in place before
//! (the default, or the program's own handler) is restored.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};

/// The pipe's write end, read by the handler (never closed once created).
static WRITE_END: AtomicI32 = AtomicI32::new(-1);
static PIPE: OnceLock<(OwnedFd, OwnedFd)> = OnceLock::new();

struct Disposition {
    armed: usize,
    previous: Option<libc::sigaction>,
}

static ARMED: Mutex<Disposition> = Mutex::new(Disposition {
    armed: 0,
    previous: None,
});

extern "C" fn on_sigint(_: libc::c_int) {
    let fd = WRITE_END.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: `write` is async-signal-safe; `fd` is the pipe's write end, which lives for
        // the rest of the process; the buffer is a local byte.
        unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    }
}

fn pipe() -> io::Result<&'static (OwnedFd, OwnedFd)> {
    if let Some(p) = PIPE.get() {
        return Ok(p);
    }
    let (read, write) = rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
    )?;
    // The read end blocks (the listener sleeps in `read`); the write end never does (a full
    // pipe already holds a pending interrupt).
    rustix::fs::fcntl_setfl(&read, rustix::fs::OFlags::empty())?;
    let p = PIPE.get_or_init(|| (read, write));
    WRITE_END.store(p.1.as_raw_fd(), Ordering::Relaxed);
    Ok(p)
}

/// While alive, `SIGINT` is reported through [`wait_for_interrupt`] instead of its previous
/// disposition.
#[derive(Debug)]
pub(crate) struct Armed(());

/// Routes `SIGINT` to [`wait_for_interrupt`] until the returned guard (and every other one)
/// is dropped.
pub(crate) fn arm() -> io::Result<Armed> {
    pipe()?;
    let mut state = ARMED.lock().unwrap_or_else(|e| e.into_inner());
    if state.armed == 0 {
        // SAFETY: an all-zero `sigaction` is a valid value (no flags, empty mask, SIG_DFL).
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: both pointers are valid for the call; `sigemptyset` initialises the mask.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: as above; the handler only calls `write` on a descriptor that is never closed.
        let r = unsafe {
            libc::sigemptyset(&raw mut action.sa_mask);
            libc::sigaction(libc::SIGINT, &raw const action, &raw mut previous)
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        state.previous = Some(previous);
    }
    state.armed += 1;
    Ok(Armed(()))
}

impl Drop for Armed {
    fn drop(&mut self) {
        let mut state = ARMED.lock().unwrap_or_else(|e| e.into_inner());
        state.armed -= 1;
        if state.armed == 0 {
            if let Some(previous) = state.previous.take() {
                // SAFETY: restores the disposition `sigaction` reported when arming.
                unsafe { libc::sigaction(libc::SIGINT, &raw const previous, std::ptr::null_mut()) };
            }
        }
    }
}

/// Blocks until a `SIGINT` arrives while armed. For one listener thread per process.
pub(crate) fn wait_for_interrupt() -> io::Result<()> {
    let read: RawFd = pipe()?.0.as_raw_fd();
    // SAFETY: the pipe is created once and kept open for the life of the process (`pipe()`
    // returns its static pair), so its read end outlives this loop.
    let fd = unsafe { super::borrow_raw_fd(read) };
    let mut buf = [0u8; 64];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
