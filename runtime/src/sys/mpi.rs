//! The MPI calls `mp` makes (feature `mpi`), bound through our C shim `csrc/mpi_shim.c` (built by
//! `build.rs` with the flags of `mpicc -show`): init at `MPI_THREAD_SERIALIZED` with errors
//! returned, rank and size of `MPI_COMM_WORLD`, the processor name, a broadcast of bytes, abort,
//! finalize, and the library's version. Each wrapper is a one-liner over typed arguments that
//! turns MPI's error code into `io::Result`.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::io;

// SAFETY: the declarations match `csrc/mpi_shim.c` exactly (plain C types only).
unsafe extern "C" {
    fn mp_mpi_init(provided: *mut c_int) -> c_int;
    fn mp_mpi_rank(rank: *mut c_int) -> c_int;
    fn mp_mpi_size(size: *mut c_int) -> c_int;
    fn mp_mpi_processor_name(buf: *mut c_char, len: *mut c_int) -> c_int;
    fn mp_mpi_max_name() -> c_int;
    fn mp_mpi_bcast(buf: *mut c_void, len: c_int, root: c_int) -> c_int;
    fn mp_mpi_abort(code: c_int) -> c_int;
    fn mp_mpi_finalize() -> c_int;
    fn mp_mpi_finalized(flag: *mut c_int) -> c_int;
    fn mp_mpi_library_version(buf: *mut c_char, cap: c_int) -> c_int;
}

/// Which MPI the build linked, as `build.rs` found it in the headers: `openmpi 4.1.4`.
pub(crate) const LINKED: &str = env!("MP_MPI_LINKED");

fn check(rc: c_int, what: &str) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what} failed with MPI error {rc}"
        )))
    }
}

/// `MPI_Init_thread(MPI_THREAD_SERIALIZED)`; returns the thread level provided.
pub(crate) fn init() -> io::Result<i32> {
    let mut provided: c_int = 0;
    // SAFETY: `provided` is a valid out-pointer; argc/argv are passed as NULL (allowed since MPI-2).
    check(unsafe { mp_mpi_init(&mut provided) }, "MPI_Init_thread")?;
    Ok(provided)
}

/// This process's rank in `MPI_COMM_WORLD`.
pub(crate) fn rank() -> io::Result<u32> {
    let mut rank: c_int = 0;
    // SAFETY: a valid out-pointer; MPI is initialised by the caller.
    check(unsafe { mp_mpi_rank(&mut rank) }, "MPI_Comm_rank")?;
    Ok(rank as u32)
}

/// The number of ranks in `MPI_COMM_WORLD`.
pub(crate) fn size() -> io::Result<u32> {
    let mut size: c_int = 0;
    // SAFETY: a valid out-pointer; MPI is initialised by the caller.
    check(unsafe { mp_mpi_size(&mut size) }, "MPI_Comm_size")?;
    Ok(size as u32)
}

/// `MPI_Get_processor_name`: the host this rank runs on.
pub(crate) fn processor_name() -> io::Result<String> {
    // SAFETY: a constant query.
    let cap = unsafe { mp_mpi_max_name() }.max(1) as usize;
    let mut buf = vec![0u8; cap + 1];
    let mut len: c_int = 0;
    // SAFETY: `buf` holds MPI_MAX_PROCESSOR_NAME bytes (plus one), as the call requires.
    let rc = unsafe { mp_mpi_processor_name(buf.as_mut_ptr().cast(), &mut len) };
    check(rc, "MPI_Get_processor_name")?;
    buf.truncate((len.max(0) as usize).min(cap));
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// `MPI_Bcast` of `buf` from `root`: every rank passes a buffer of the same length.
pub(crate) fn bcast(buf: &mut [u8], root: u32) -> io::Result<()> {
    let len =
        c_int::try_from(buf.len()).map_err(|_| io::Error::other("broadcast buffer too large"))?;
    // SAFETY: `buf` is valid for `len` bytes of writes (the receivers) and reads (the root).
    let rc = unsafe { mp_mpi_bcast(buf.as_mut_ptr().cast(), len, root as c_int) };
    check(rc, "MPI_Bcast")
}

/// `MPI_Abort(MPI_COMM_WORLD, code)`: ends every rank of the job.
pub(crate) fn abort(code: i32) {
    // SAFETY: no pointers; callable from any thread under MPI_THREAD_SERIALIZED when no other
    // thread is inside MPI (mp calls MPI from one thread at a time).
    unsafe {
        mp_mpi_abort(code);
    }
}

/// `MPI_Finalize`, unless it already ran.
pub(crate) fn finalize() -> io::Result<()> {
    let mut done: c_int = 0;
    // SAFETY: a valid out-pointer; `MPI_Finalized` may be called at any time.
    check(unsafe { mp_mpi_finalized(&mut done) }, "MPI_Finalized")?;
    if done != 0 {
        return Ok(());
    }
    // SAFETY: no arguments; called once, by the thread that initialised MPI.
    check(unsafe { mp_mpi_finalize() }, "MPI_Finalize")
}

/// `MPI_Get_library_version`: the library's own description of itself.
pub(crate) fn library_version() -> String {
    let mut buf = vec![0u8; 512];
    // SAFETY: `buf` holds 512 bytes; the shim writes at most that many, NUL included.
    let rc = unsafe { mp_mpi_library_version(buf.as_mut_ptr().cast(), buf.len() as c_int) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    buf.truncate(end);
    String::from_utf8_lossy(&buf).trim().to_owned()
}

/// Turns on the kernel's heartbeat for a TCP connection to another rank: probes after `idle`
/// without traffic, every `interval`, `count` of them; `TCP_USER_TIMEOUT` = `bound` ends the
/// connection with an error once nothing came back for `bound` (probes sent, or data
/// unacknowledged), so a host that vanished without closing its sockets is noticed within it.
pub(crate) fn keepalive(
    fd: std::os::fd::BorrowedFd<'_>,
    idle: std::time::Duration,
    interval: std::time::Duration,
    count: u32,
    bound: std::time::Duration,
) -> io::Result<()> {
    use rustix::net::sockopt;
    sockopt::set_socket_keepalive(fd, true)?;
    sockopt::set_tcp_keepidle(fd, idle)?;
    sockopt::set_tcp_keepintvl(fd, interval)?;
    sockopt::set_tcp_keepcnt(fd, count)?;
    sockopt::set_tcp_user_timeout(fd, bound.as_millis().min(u32::MAX as u128) as u32)?;
    Ok(())
}

/// Asks for a receive buffer of `bytes` on a socket (beyond `net.core.rmem_max` when the
/// process may, else up to it); returns what the kernel granted (its bookkeeping doubles it).
pub(crate) fn grow_receive_buffer(
    fd: std::os::fd::BorrowedFd<'_>,
    bytes: usize,
) -> io::Result<usize> {
    use rustix::net::sockopt;
    if sockopt::set_socket_recv_buffer_size_force(fd, bytes).is_err() {
        sockopt::set_socket_recv_buffer_size(fd, bytes)?;
    }
    Ok(sockopt::socket_recv_buffer_size(fd)?)
}

/// Registers `f` to run when the process exits through `exit` (a return from `main`, a
/// panic that ends it, `std::process::exit`), before the C library's own exit handlers that
/// were registered earlier (MPI's, registered at `MPI_Init`).
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: `f` is a plain `extern "C" fn()` with no captured state, valid for the whole
    // process; `atexit` only stores it.
    unsafe {
        libc::atexit(f);
    }
}
