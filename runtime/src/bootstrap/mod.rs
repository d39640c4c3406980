//! How a child comes to be and what it is: the parent side (`spawn.rs`: roles, the bootstrap
//! frames, the liveness pipe, the guard; the start methods in `start_method.rs`, the zygote
//! of the `forkserver` method in `forkserver.rs`, a forked child's way in `forked.rs`), children after their start (`reap.rs`), who this
//! process is (`identity.rs`), calling a worker with its panic caught (`panic.rs`), and the
//! pre-`main` router at the top of the module graph (`route.rs`). See `README.md` for the
//! protocol.
//!
//! This file only lists the parts; importers name the part they use, so the low parts (spawn,
//! reap, identity, panic, start_method, forkserver, forked) stay below the pool and the manager
//! while the router sits above them.

pub(crate) mod forked;
pub(crate) mod forkserver;
pub(crate) mod identity;
pub(crate) mod panic;
pub(crate) mod reap;
pub(crate) mod route;
pub(crate) mod spawn;
pub(crate) mod start_method;
