//! The platform contract: every OS call `mp` makes goes through this module.
//!
//! The rest of the crate is written against these functions and types and contains no `unsafe`.
//! What a platform must provide:
//!
//! * stream socketpairs that carry file descriptors next to bytes (`SCM_RIGHTS`), with
//!   non-blocking variants and `poll` for readiness with a timeout;
//! * anonymous shared memory that can be passed as a descriptor ([`SharedMapping`]) and
//!   sealed, read-only message buffers ([`SealedBuffer`]);
//! * typed access to shared memory for [`Plain`] data (copies, atomics, and a mutable slice
//!   for a caller that holds a lock), and named POSIX segments;
//! * a 32-bit wait/wake primitive on a word in shared memory ([`futex_wait`], [`futex_wake`]):
//!   futexes on Linux; `park.rs` is the portable version on a robust POSIX mutex and
//!   per-waiter POSIX semaphores (built on Linux with the `portable-sync` feature, which the
//!   tests run too);
//! * waking a thread that waits on several descriptors ([`Wakeup`], [`poll_many`]), and
//!   routing `SIGINT` to a listener while a pool call blocks ([`arm_interrupts`]);
//! * the number of usable CPUs (affinity mask and cgroup quota);
//! * TCP and local stream listeners and connections, a non-blocking "peer gone" check and
//!   cryptographic random bytes ([`net`]), for managers and `Listener`/`Connection`;
//! * starting the current executable again with chosen descriptors inherited ([`spawn_self`]),
//!   and a pre-`main` hook that routes such a child to its worker ([`CHILD_HOOK`]);
//! * children without `exec` (`fork`, and a zygote's `clone(CLONE_PARENT)`), and one handle
//!   for a child however it was started ([`Child`]).
//!
//! One file per mechanism (`socket`, `poll`, `fork`, `futex` with `park` as its portable twin
//! (the `wait` module is one of them, chosen by file), `shm`, `spawn`, `signal`, `proc`, `cpu`, `net`, `interrupt`, `plain`), each re-exported by name
//! below. Linux is implemented; macOS needs `shm_open` in place of `memfd` and `__mod_init_func` in
//! place of `.init_array`, and can wait with `park.rs` (or natively with `__ulock_wait`).

#[cfg(target_os = "linux")]
mod cpu;
#[cfg(target_os = "linux")]
mod fork;
mod interrupt;
#[cfg(all(target_os = "linux", feature = "mpi"))]
pub(crate) mod mpi;
#[cfg(target_os = "linux")]
pub(crate) mod net;
mod plain;
#[cfg(target_os = "linux")]
mod poll;
#[cfg(target_os = "linux")]
mod proc;
pub(crate) mod same_type;
#[cfg(target_os = "linux")]
mod shm;
#[cfg(target_os = "linux")]
mod signal;
#[cfg(target_os = "linux")]
mod socket;
#[cfg(target_os = "linux")]
mod spawn;
/// Waiting on a word in shared memory, chosen by file as mio chooses its selector: the futex
/// (`futex.rs`), or its portable twin on POSIX semaphores (`park.rs`) with `portable-sync`.
#[cfg(target_os = "linux")]
#[cfg_attr(not(feature = "portable-sync"), path = "futex.rs")]
#[cfg_attr(feature = "portable-sync", path = "park.rs")]
mod wait;

#[cfg(target_os = "linux")]
pub use cpu::{cpu_count, host_cpu_count};
#[cfg(target_os = "linux")]
pub(crate) use fork::{
    Child, Forked, clone_sibling, fork_process, own_fd, redirect_stdio, thread_count,
    wait_child_timeout,
};
pub(crate) use interrupt::{arm as arm_interrupts, wait_for_interrupt};
pub use plain::{AtomicCell, HasAtomic, Numeric, Plain};
pub(crate) use plain::{
    NumericFill, PREFAULT_FROM, is_wire_numeric, numeric_bytes, numeric_values, numeric_vec,
    prefault,
};
#[cfg(target_os = "linux")]
pub(crate) use poll::{Wakeup, poll_many, poll_readable, poll_writable};
#[cfg(target_os = "linux")]
pub(crate) use proc::{
    current_cpu, exit_now, getpid, gettid, parent_pid, peak_rss_kib, peek_exit, pidfd_open,
    program_name, raise_fd_limit, set_thread_name, thread_alive, unset_env,
};
#[cfg(target_os = "linux")]
pub(crate) use shm::{SealedBuffer, SharedMapping, shm_unlink};
#[cfg(target_os = "linux")]
pub(crate) use signal::{
    Signal, default_sigint, ignore_interrupts, ignore_sigint, ignore_sigpipe, kill,
    kill_self_at_eof, signal_name,
};
#[cfg(target_os = "linux")]
pub(crate) use socket::{
    MAX_FDS_PER_MSG, adopt_inherited_fd, borrow_raw_fd, dup_fd, grow_send_buffer, peek_bytes,
    peek_with_fds, peer_pid, pipe, recv_with_fds, send_with_fds, socketpair_packet,
    socketpair_stream, wait_for_eof,
};
#[cfg(target_os = "linux")]
pub(crate) use spawn::{CHILD_HOOK, Interrupts, SpawnOutput, spawn_self};
#[cfg(target_os = "linux")]
pub(crate) use wait::{wait as futex_wait, wake as futex_wake};

#[cfg(not(target_os = "linux"))]
compile_error!("mp supports Linux for now; macOS and Windows are planned behind `sys/`");
