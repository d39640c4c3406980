//! Shared memory: `Value`/`RawValue`, `Array`/`RawArray` for `Plain` data, and raw
//! `SharedMemory` blocks (anonymous or named, with a resource tracker for named ones).

mod array;
mod memory;
mod region;
mod tracker;
mod value;

pub use array::{Array, ArrayGuard, ArrayReadGuard, RawArray};
pub use memory::{SharedMemory, SharedView};
pub(crate) use tracker::{TRACKER_ENV, run as run_tracker};
pub use value::{RawValue, Value, ValueGuard};
