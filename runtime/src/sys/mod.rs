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
//!   futexes on Linux; `park.rs` is the portable version on POSIX mutexes and condition
//!   variables (built on Linux with the `portable-sync` feature, which the tests run too);
//! * waking a thread that waits on several descriptors ([`Wakeup`], [`poll_many`]), and
//!   routing `SIGINT` to a listener while a pool call blocks ([`arm_interrupts`]);
//! * the number of usable CPUs (affinity mask and cgroup quota);
//! * TCP and local stream listeners and connections, a non-blocking "peer gone" check and
//!   cryptographic random bytes ([`net`]), for managers and `Listener`/`NetConnection`;
//! * starting the current executable again with chosen descriptors inherited ([`spawn_self`]),
//!   and a pre-`main` hook that routes such a child to its worker ([`linux::CHILD_HOOK`]).
//!
//! Linux is implemented; macOS needs `shm_open` in place of `memfd` and `__mod_init_func` in
//! place of `.init_array`, and can wait with `park.rs` (or natively with `__ulock_wait`).

#[cfg(target_os = "linux")]
mod cpu;
mod interrupt;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) mod net;
#[cfg_attr(not(feature = "portable-sync"), allow(dead_code))]
mod park;
mod plain;
#[cfg(target_os = "linux")]
#[cfg(target_os = "linux")]
pub use cpu::{cpu_count, host_cpu_count};
pub(crate) use interrupt::{arm as arm_interrupts, wait_for_interrupt};
#[cfg(target_os = "linux")]
pub(crate) use linux::*;
pub use plain::{AtomicCell, HasAtomic, Numeric, Plain};
pub(crate) use plain::{
    is_wire_numeric, numeric_bytes, numeric_bytes_mut, numeric_vec, numeric_zeroed,
};

#[cfg(not(target_os = "linux"))]
compile_error!("mp supports Linux for now; macOS and Windows are planned behind `sys/`");
