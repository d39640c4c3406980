//! `SharedMemoryManager`: creates named shared-memory blocks and shareable lists, and removes
//! every name it made at `shutdown`, on drop, or (through the resource tracker) when its
//! process dies.
//!
//! Python's `SharedMemoryManager` is a server process that unlinks its segments when it stops;
//! here the manager lives in the creating process: its handles own the names, so `shutdown`
//! and drop unlink them, and the resource tracker does the server's other job, removing the
//! names of a process that died (even by `SIGKILL`).

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::memory::SharedMemory;
use super::shareable_list::{ShareableItem, ShareableList};
use crate::error::{Error, Result};

/// Makes named shared memory and removes all of it at once (Python's
/// `multiprocessing.managers.SharedMemoryManager`).
///
/// Every block it creates has a fresh name (`mp-smm-<pid>-<n>-<k>`) and stays until
/// [`shutdown`](SharedMemoryManager::shutdown) (or the manager's drop) unlinks it, even while
/// other handles are alive: processes already attached keep their mappings, new attaches
/// fail. If the manager's process dies first, the resource tracker removes the names.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn fill(shm: mp::SharedMemory, list: mp::ShareableList) -> mp::Result<()> {
///     shm.write_at(0, b"hi")?;
///     list.set(0, 99)
/// }
///
/// let smm = mp::SharedMemoryManager::new();
/// let shm = smm.shared_memory(64)?;
/// let list = smm.shareable_list([0.into(), "abc".into()])?;
/// mp::spawn(fill, (shm.clone(), list.clone()))?.join()??;
/// assert_eq!(list.get(0)?, mp::ShareableItem::Int(99));
/// let name = shm.name().unwrap().to_owned();
/// smm.shutdown()?; // unlinks both names
/// assert!(mp::SharedMemory::open(&name).is_err());
/// # Ok::<(), mp::Error>(())
/// ```
pub struct SharedMemoryManager {
    /// The blocks made so far; `None` after shutdown.
    blocks: Mutex<Option<Vec<SharedMemory>>>,
    next: AtomicU64,
    /// Distinguishes managers of one process.
    id: u64,
}

static MANAGERS: AtomicU64 = AtomicU64::new(0);

impl Default for SharedMemoryManager {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedMemoryManager {
    /// A manager (Python's `SharedMemoryManager()` and `start()`; nothing to start here).
    pub fn new() -> SharedMemoryManager {
        SharedMemoryManager {
            blocks: Mutex::new(Some(Vec::new())),
            next: AtomicU64::new(0),
            id: MANAGERS.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn fresh_name(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("mp-smm-{}-{}-{n}", std::process::id(), self.id)
    }

    /// Creates a named block of `size` bytes and keeps it until shutdown.
    fn create(&self, size: usize) -> Result<SharedMemory> {
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        let Some(blocks) = blocks.as_mut() else {
            return Err(Error::Closed);
        };
        let shm = loop {
            match SharedMemory::create(&self.fresh_name(), size) {
                // A name left by an earlier process with our pid: take the next one.
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists => {}
                other => break other?,
            }
        };
        blocks.push(shm.clone());
        Ok(shm)
    }

    /// A new named block of `size` zeroed bytes (Python's `smm.SharedMemory(size)`);
    /// [`Error::Closed`] after shutdown.
    ///
    /// ```
    /// let smm = mp::SharedMemoryManager::new();
    /// let shm = smm.shared_memory(128)?;
    /// assert!(shm.name().unwrap().starts_with("/mp-smm-"));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn shared_memory(&self, size: usize) -> Result<SharedMemory> {
        self.create(size)
    }

    /// A new [`ShareableList`] in a named block (Python's `smm.ShareableList(sequence)`);
    /// others attach with [`ShareableList::open`] and its [`name`](ShareableList::name).
    pub fn shareable_list(
        &self,
        items: impl IntoIterator<Item = ShareableItem>,
    ) -> Result<ShareableList> {
        let items: Vec<ShareableItem> = items.into_iter().collect();
        let shm = self.create(ShareableList::size_for(&items))?;
        ShareableList::init(shm, &items)
    }

    /// The names of the blocks this manager holds.
    pub fn names(&self) -> Vec<String> {
        let blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        blocks
            .iter()
            .flatten()
            .filter_map(|b| b.name().map(str::to_owned))
            .collect()
    }

    /// Unlinks every block made so far (Python's `shutdown()`); later creations are
    /// [`Error::Closed`]. Attached processes keep their mappings. The first unlink error is
    /// returned after trying them all. A second call does nothing.
    pub fn shutdown(&self) -> Result<()> {
        let taken = self.blocks.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut first = Ok(());
        for block in taken.into_iter().flatten() {
            if let Err(e) = block.unlink()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

impl Drop for SharedMemoryManager {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl fmt::Debug for SharedMemoryManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemoryManager")
            .field("blocks", &self.names())
            .finish()
    }
}
