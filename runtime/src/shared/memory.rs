//! `SharedMemory`: a block of raw shared bytes, anonymous (a memfd: nothing named, nothing to
//! leak) or named (`/dev/shm/<name>`, attachable by name from unrelated processes). The
//! creator of a named segment owns it and removes the name on drop; a resource tracker
//! removes it if the creator dies first. Attachers never remove it.

use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::region::Region;
use super::tracker;
use crate::codec::Fd;
use crate::error::{Error, Result};
use crate::sys::{self, HasAtomic, Numeric, SharedMapping};

/// A block of shared bytes (Python's `multiprocessing.shared_memory.SharedMemory`).
///
/// [`new`](SharedMemory::new) makes an anonymous block that travels to workers as an
/// argument; [`create`](SharedMemory::create) / [`open`](SharedMemory::open) make and attach
/// named blocks, for processes that `mp` did not start. The bytes are unsynchronised: read
/// and write them with copies, or through a typed [`view`](SharedMemory::view), and
/// coordinate with a [`Lock`](crate::Lock) or [`Event`](crate::Event) where needed.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn greet(shm: mp::SharedMemory) -> mp::Result<()> {
///     shm.write_at(0, b"hello")
/// }
///
/// let shm = mp::SharedMemory::new(4096)?;
/// mp::spawn(greet, shm.clone())?.join()??;
/// let mut buf = [0; 5];
/// shm.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Clone)]
pub struct SharedMemory {
    inner: Arc<Inner>,
}

struct Inner {
    map: SharedMapping,
    name: Option<String>,
    /// Whether dropping the last handle removes the name (the creator, until `keep`).
    owner: std::sync::atomic::AtomicBool,
}

fn check_name(name: &str) -> Result<()> {
    let body = name.strip_prefix('/').unwrap_or(name);
    if body.is_empty() || body.len() > 200 || body.contains(['/', '\0', '\n']) {
        return Err(Error::InvalidArgument(format!(
            "shared memory name {name:?} must be 1 to 200 bytes without '/', NUL or newline"
        )));
    }
    Ok(())
}

fn canonical(name: &str) -> String {
    format!("/{}", name.strip_prefix('/').unwrap_or(name))
}

impl SharedMemory {
    /// An anonymous block of `size` zeroed bytes.
    ///
    /// ```
    /// let shm = mp::SharedMemory::new(1 << 20)?;
    /// assert_eq!(shm.size(), 1 << 20);
    /// assert_eq!(shm.name(), None);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn new(size: usize) -> Result<SharedMemory> {
        if size == 0 {
            return Err(Error::InvalidArgument(
                "shared memory size must be positive".into(),
            ));
        }
        let map = SharedMapping::create("mp-shared-memory", size)
            .map_err(Error::io("cannot create shared memory"))?;
        Ok(Self::wrap(map, None, false))
    }

    fn wrap(map: SharedMapping, name: Option<String>, owner: bool) -> SharedMemory {
        SharedMemory {
            inner: Arc::new(Inner {
                map,
                name,
                owner: owner.into(),
            }),
        }
    }

    /// Creates a named block of `size` zeroed bytes; fails if the name exists. This process
    /// owns it: the name is removed when its last handle here drops, or by the resource
    /// tracker if this process dies first. [`keep`](SharedMemory::keep) gives that up.
    ///
    /// ```
    /// let name = format!("mp-doc-{}", std::process::id());
    /// let shm = mp::SharedMemory::create(&name, 64)?;
    /// let same = mp::SharedMemory::open(&name)?; // e.g. in an unrelated process
    /// same.write_at(0, &[42])?;
    /// let mut b = [0];
    /// shm.read_at(0, &mut b)?;
    /// assert_eq!(b, [42]);
    /// drop((shm, same));
    /// assert!(mp::SharedMemory::open(&name).is_err()); // the creator removed it
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn create(name: &str, size: usize) -> Result<SharedMemory> {
        check_name(name)?;
        if size == 0 {
            return Err(Error::InvalidArgument(
                "shared memory size must be positive".into(),
            ));
        }
        let name = canonical(name);
        // Register before creating: a death in between leaves only a harmless extra unlink.
        tracker::register(&name)?;
        match SharedMapping::create_named(&name, size) {
            Ok(map) => Ok(Self::wrap(map, Some(name), true)),
            Err(e) => {
                tracker::unregister(&name);
                Err(Error::io("cannot create the named shared memory")(e))
            }
        }
    }

    /// Attaches to the named block `name`, created by another process (or this one).
    ///
    /// ```
    /// let err = mp::SharedMemory::open("mp-no-such-segment").unwrap_err();
    /// assert!(err.to_string().contains("cannot open"));
    /// ```
    pub fn open(name: &str) -> Result<SharedMemory> {
        check_name(name)?;
        let name = canonical(name);
        let map = SharedMapping::open_named(&name)
            .map_err(Error::io("cannot open the named shared memory"))?;
        Ok(Self::wrap(map, Some(name), false))
    }

    /// The size in bytes.
    pub fn size(&self) -> usize {
        self.inner.map.len()
    }

    /// The name (with its leading `/`), or `None` for an anonymous block.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// Removes the name now (Python's `unlink()`); attached processes keep their mapping.
    /// No-op for anonymous blocks.
    ///
    /// ```
    /// let name = format!("mp-doc-unlink-{}", std::process::id());
    /// let shm = mp::SharedMemory::create(&name, 8)?;
    /// shm.unlink()?;
    /// assert!(mp::SharedMemory::open(&name).is_err());
    /// shm.write_at(0, &[1])?; // the memory itself lives on while mapped
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn unlink(&self) -> Result<()> {
        let Some(name) = &self.inner.name else {
            return Ok(());
        };
        let was_owner = self
            .inner
            .owner
            .swap(false, std::sync::atomic::Ordering::AcqRel);
        let result = sys::shm_unlink(name).map_err(Error::io("cannot unlink shared memory"));
        if was_owner {
            tracker::unregister(name);
        }
        result
    }

    /// Keeps the named block after this process ends: its name is no longer removed on drop
    /// or by the tracker. Someone must [`unlink`](SharedMemory::unlink) it later.
    pub fn keep(&self) {
        if let Some(name) = &self.inner.name
            && self
                .inner
                .owner
                .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            tracker::unregister(name);
        }
    }

    /// Copies `src` into the block at byte `offset`.
    pub fn write_at(&self, offset: usize, src: &[u8]) -> Result<()> {
        self.view::<u8>().write(offset, src)
    }

    /// Copies bytes from `offset` into `dst`.
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.view::<u8>().read(offset, dst)
    }

    /// The block as a run of numbers (`size / size_of::<T>()` of them; a remainder is
    /// ignored): element and bulk copies, and atomics for integers.
    ///
    /// ```
    /// let shm = mp::SharedMemory::new(80)?;
    /// let xs = shm.view::<f64>();
    /// assert_eq!(xs.len(), 10);
    /// xs.write(0, &[1.0, 2.0])?;
    /// assert_eq!(xs.get(1)?, 2.0);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn view<T: Numeric>(&self) -> SharedView<'_, T> {
        SharedView {
            region: Region::new(&self.inner.map, 0, self.size() / size_of::<T>().max(1)),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(name) = &self.name
            && *self.owner.get_mut()
        {
            let _ = sys::shm_unlink(name);
            tracker::unregister(name);
        }
    }
}

/// A typed view of a [`SharedMemory`] block, from [`SharedMemory::view`].
pub struct SharedView<'a, T> {
    region: Region<'a, T>,
}

impl<'a, T: Numeric> SharedView<'a, T> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.region.len
    }

    /// Whether the view has no elements.
    pub fn is_empty(&self) -> bool {
        self.region.len == 0
    }

    /// A copy of the element at `index`.
    pub fn get(&self, index: usize) -> Result<T> {
        self.region.get(index)
    }

    /// Overwrites the element at `index`.
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        self.region.set(index, value)
    }

    /// Copies elements from `start` into `dst`.
    pub fn read(&self, start: usize, dst: &mut [T]) -> Result<()> {
        self.region.read(start, dst)
    }

    /// Copies `src` in from `start`.
    pub fn write(&self, start: usize, src: &[T]) -> Result<()> {
        self.region.write(start, src)
    }

    /// A copy of all elements.
    pub fn to_vec(&self) -> Vec<T> {
        self.region.to_vec()
    }

    /// The element at `index` as its standard atomic type.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    ///
    /// let shm = mp::SharedMemory::new(8)?;
    /// shm.view::<u32>().atomic(1)?.fetch_add(5, Ordering::Relaxed);
    /// assert_eq!(shm.view::<u32>().get(1)?, 5);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn atomic(&self, index: usize) -> Result<&'a T::Atomic>
    where
        T: HasAtomic,
    {
        self.region.atomic(index)
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name())
            .field("size", &self.size())
            .finish()
    }
}

impl<T> fmt::Debug for SharedView<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedView")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.region.len)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename = "mp::SharedMemory")]
#[serde(bound(
    serialize = "Fd<F>: Serialize",
    deserialize = "Fd<F>: Deserialize<'de>"
))]
struct Wire<F> {
    fd: Fd<F>,
    len: u64,
    name: Option<String>,
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Wire {
            fd: Fd(self.inner.map.fd()),
            len: self.size() as u64,
            name: self.inner.name.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let wire = Wire::<OwnedFd>::deserialize(deserializer)?;
        let Fd(fd) = wire.fd;
        let len = usize::try_from(wire.len).map_err(D::Error::custom)?;
        if let Some(name) = &wire.name {
            check_name(name).map_err(D::Error::custom)?;
        }
        // Anonymous blocks are sealed against shrinking; named ones cannot be sealed.
        let map = match wire.name {
            None => SharedMapping::open(fd, len),
            Some(_) => SharedMapping::open_unsealed(fd, len),
        }
        .map_err(D::Error::custom)?;
        // A received handle is an attacher: it never removes the name.
        Ok(Self::wrap(map, wire.name, false))
    }
}
