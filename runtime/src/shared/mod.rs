//! Shared memory: `Value`/`RawValue`, `Array`/`RawArray` for `Plain` data, and raw
//! `SharedMemory` blocks (anonymous or named, with a resource tracker for named ones).

mod array;
mod memory;
mod raw_array;
mod region;
mod shared_lock;
mod tracker;
mod value;

pub use array::{Array, ArrayGuard, ArrayReadGuard};
pub use memory::{SharedMemory, SharedView};
pub use raw_array::RawArray;
pub(crate) use tracker::{
    TRACKER_ENV, adopt_tree_name as adopt_tracker_tree_name, run as run_tracker, tracker_pid,
    tree_name as tracker_tree_name,
};
pub use value::{RawValue, Value, ValueGuard};
