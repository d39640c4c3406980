//! Shared memory: `Value`/`RawValue`, `Array`/`RawArray` for `Plain` data, and raw
//! `SharedMemory` blocks (anonymous or named, with a resource tracker for named ones),
//! `ShareableList` and `SharedMemoryManager`.

mod array;
mod array_wire;
mod memory;
mod raw_array;
mod region;
mod shareable_list;
mod shared_lock;
mod shm_manager;
mod tracker;
mod value;

pub use array::{Array, ArrayGuard, ArrayReadGuard};
pub use memory::{SharedMemory, SharedView};
pub use raw_array::RawArray;
pub use shareable_list::{ShareableItem, ShareableList};
pub use shm_manager::SharedMemoryManager;
pub(crate) use tracker::{
    TRACKER_ENV, adopt_tree_name as adopt_tracker_tree_name, run as run_tracker, tracker_pid,
    tree_name as tracker_tree_name,
};
pub use value::{RawValue, Value, ValueGuard};
