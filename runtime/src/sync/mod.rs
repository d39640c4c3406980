//! Process-shared synchronisation: `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Event`,
//! `Condition`, `Barrier`. Each lives in its own small shared-memory segment (a memfd) and
//! waits on futex words there; handles travel to children as that segment's descriptor.
//! The protocol, including owner-death recovery, is in `sync/README.md`.

mod barrier;
mod condition;
mod event;
mod lock;
pub(crate) mod raw;
mod segment;
mod semaphore;

pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard};
pub use event::Event;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub(crate) use segment::{
    DATA, Kind, NotSend, OFF_TABLE, Segment, fingerprint, typed_segment_handle,
};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};
