//! `ShareableList`: a fixed-length list of numbers, booleans, `None`s and fixed-capacity
//! strings and byte strings in one shared-memory block (Python's
//! `shared_memory.ShareableList`), with its layout written into the block, so a process that
//! attaches by name knows it.
//!
//! Layout (little-endian): `magic u64 | count u64 | bytes u64`, then one 16-byte slot entry
//! per item (`capacity u32 | kind u32 | len u32 | 0 u32`), then the items' bytes, each slot at
//! the sum of the capacities before it (8-aligned). A write stores the bytes, then the length,
//! then the kind; like Python's, the list has no lock: coordinate writers of one slot with a
//! [`Lock`](crate::Lock). A read that races with a write may see the old or the new value, or
//! (rarely) a mix; a mix that is not a valid value is an error, never undefined behaviour.

use std::fmt;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::memory::SharedMemory;
use crate::error::{Error, Result};

const MAGIC: u64 = u64::from_le_bytes(*b"mpshlst1");
const HEADER: usize = 24;
const ENTRY: usize = 16;
/// Numbers take one 8-byte slot; strings and byte strings their length rounded up to 8.
const WORD: usize = 8;

const KIND_NONE: u32 = 0;
const KIND_INT: u32 = 1;
const KIND_FLOAT: u32 = 2;
const KIND_BOOL: u32 = 3;
const KIND_STR: u32 = 4;
const KIND_BYTES: u32 = 5;

/// One item of a [`ShareableList`]: the types Python's `ShareableList` holds.
///
/// ```
/// use mp::ShareableItem;
///
/// assert_eq!(ShareableItem::from(3), ShareableItem::Int(3));
/// assert_eq!(ShareableItem::from("hi"), ShareableItem::Str("hi".into()));
/// assert_eq!(ShareableItem::from(None::<i64>), ShareableItem::None);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShareableItem {
    /// Python's `None`.
    None,
    /// An integer (`int`, 64 bits).
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A string, in a slot of fixed capacity (its UTF-8 bytes).
    Str(String),
    /// Bytes, in a slot of fixed capacity.
    Bytes(Vec<u8>),
}

impl ShareableItem {
    fn kind(&self) -> u32 {
        match self {
            ShareableItem::None => KIND_NONE,
            ShareableItem::Int(_) => KIND_INT,
            ShareableItem::Float(_) => KIND_FLOAT,
            ShareableItem::Bool(_) => KIND_BOOL,
            ShareableItem::Str(_) => KIND_STR,
            ShareableItem::Bytes(_) => KIND_BYTES,
        }
    }

    /// The bytes stored in the slot.
    fn encode(&self) -> Vec<u8> {
        match self {
            ShareableItem::None => Vec::new(),
            ShareableItem::Int(v) => v.to_le_bytes().to_vec(),
            ShareableItem::Float(v) => v.to_le_bytes().to_vec(),
            ShareableItem::Bool(v) => vec![u8::from(*v)],
            ShareableItem::Str(s) => s.as_bytes().to_vec(),
            ShareableItem::Bytes(b) => b.clone(),
        }
    }

    /// The capacity a slot first holding this item gets.
    fn capacity(&self) -> usize {
        self.encode().len().next_multiple_of(WORD).max(WORD)
    }

    fn type_name(&self) -> &'static str {
        match self {
            ShareableItem::None => "None",
            ShareableItem::Int(_) => "int",
            ShareableItem::Float(_) => "float",
            ShareableItem::Bool(_) => "bool",
            ShareableItem::Str(_) => "str",
            ShareableItem::Bytes(_) => "bytes",
        }
    }
}

macro_rules! item_from {
    ($($t:ty => $variant:ident($conv:expr)),* $(,)?) => {$(
        impl From<$t> for ShareableItem {
            fn from(v: $t) -> Self {
                ShareableItem::$variant($conv(v))
            }
        }
    )*};
}

item_from! {
    i64 => Int(|v| v),
    i32 => Int(i64::from),
    u32 => Int(i64::from),
    f64 => Float(|v| v),
    f32 => Float(f64::from),
    bool => Bool(|v| v),
    String => Str(|v| v),
    &str => Str(str::to_owned),
    Vec<u8> => Bytes(|v| v),
    &[u8] => Bytes(<[u8]>::to_vec),
}

impl<T: Into<ShareableItem>> From<Option<T>> for ShareableItem {
    fn from(v: Option<T>) -> Self {
        v.map_or(ShareableItem::None, Into::into)
    }
}

/// A fixed-length list in one shared-memory block (Python's
/// `multiprocessing.shared_memory.ShareableList`): integers, floats, booleans, `None`, and
/// strings and byte strings in slots whose capacity is fixed at creation (the first value's
/// length, rounded up to 8 bytes; a longer value is an error). The list's layout is stored in
/// the block, so [`open`](ShareableList::open) by name needs nothing else.
///
/// Any slot may later hold a value of another type that fits its capacity. Like Python's,
/// the list has no lock: a reader racing a writer of the same slot may see either value, or
/// an error for a torn one; coordinate with a [`Lock`](crate::Lock) where that matters.
///
/// ```
/// # mp::guard!();
/// use mp::{ShareableItem, ShareableList};
///
/// #[mp::worker]
/// fn bump(name: String) -> mp::Result<()> {
///     let list = ShareableList::open(&name)?; // attach by name: the layout is in the block
///     if let ShareableItem::Int(n) = list.get(0)? {
///         list.set(0, n + 1)?;
///     }
///     list.set(2, "done")?;
///     Ok(())
/// }
///
/// let name = format!("mp-doc-list-{}", std::process::id());
/// let list = ShareableList::create(&name, [ShareableItem::Int(41), 2.5.into(), "todo".into()])?;
/// mp::spawn(bump, name.clone())?.join()??;
/// assert_eq!(list.get(0)?, ShareableItem::Int(42));
/// assert_eq!(list.get(2)?, ShareableItem::Str("done".into()));
/// assert_eq!(list.format(), "q d 8s");
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Clone)]
pub struct ShareableList {
    shm: SharedMemory,
    /// Each slot's byte offset and capacity.
    slots: Vec<(usize, usize)>,
}

impl ShareableList {
    /// A list in a new anonymous block (it travels to workers as an argument).
    ///
    /// ```
    /// let list = mp::ShareableList::new([1.into(), true.into(), mp::ShareableItem::None])?;
    /// assert_eq!(list.len(), 3);
    /// assert_eq!(list.name(), None);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn new(items: impl IntoIterator<Item = ShareableItem>) -> Result<ShareableList> {
        let items: Vec<ShareableItem> = items.into_iter().collect();
        let shm = SharedMemory::new(Self::size_for(&items))?;
        Self::init(shm, &items)
    }

    /// A list in a new block named `name` (see [`SharedMemory::create`]: this process owns
    /// the name and removes it when its last handle drops, or the resource tracker does if it
    /// dies first). Others attach with [`open`](ShareableList::open).
    pub fn create(
        name: &str,
        items: impl IntoIterator<Item = ShareableItem>,
    ) -> Result<ShareableList> {
        let items: Vec<ShareableItem> = items.into_iter().collect();
        let shm = SharedMemory::create(name, Self::size_for(&items))?;
        Self::init(shm, &items)
    }

    /// Attaches to the list in the block named `name`, reading its layout from the block.
    ///
    /// ```
    /// let name = format!("mp-doc-open-{}", std::process::id());
    /// let list = mp::ShareableList::create(&name, ["a".into(), 7.into()])?;
    /// let same = mp::ShareableList::open(&name)?;
    /// assert_eq!(same.to_vec()?, list.to_vec()?);
    /// assert!(mp::ShareableList::open("mp-doc-no-such-list").is_err());
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<ShareableList> {
        Self::attach(SharedMemory::open(name)?)
    }

    /// Builds a list on the block `shm` (from [`SharedMemoryManager`](crate::SharedMemoryManager)).
    pub(crate) fn init(shm: SharedMemory, items: &[ShareableItem]) -> Result<ShareableList> {
        let words = shm.view::<u64>();
        words.set(1, items.len() as u64)?;
        words.set(2, Self::size_for(items) as u64)?;
        let entries = shm.view::<u32>();
        for (i, item) in items.iter().enumerate() {
            entries.set((HEADER + i * ENTRY) / 4, item.capacity() as u32)?;
        }
        let mut list = ShareableList {
            shm,
            slots: Vec::new(),
        };
        list.slots = list.layout()?;
        for (i, item) in items.iter().enumerate() {
            list.set(i, item.clone())?;
        }
        list.shm
            .view::<u64>()
            .atomic(0)?
            .store(MAGIC, Ordering::Release);
        Ok(list)
    }

    /// The block size a list of `items` needs.
    pub(crate) fn size_for(items: &[ShareableItem]) -> usize {
        let data: usize = items.iter().map(ShareableItem::capacity).sum();
        (HEADER + items.len() * ENTRY).next_multiple_of(WORD) + data.max(WORD)
    }

    fn attach(shm: SharedMemory) -> Result<ShareableList> {
        let what = shm.name().unwrap_or("(anonymous)").to_owned();
        let not_a_list = || {
            Error::Malformed(format!(
                "shared memory {what} does not hold a shareable list"
            ))
        };
        if shm.size() < HEADER || shm.view::<u64>().atomic(0)?.load(Ordering::Acquire) != MAGIC {
            return Err(not_a_list());
        }
        let mut list = ShareableList {
            shm,
            slots: Vec::new(),
        };
        list.slots = list.layout().map_err(|_| not_a_list())?;
        Ok(list)
    }

    /// Reads the slots' offsets and capacities from the block, checking they fit.
    fn layout(&self) -> Result<Vec<(usize, usize)>> {
        let words = self.shm.view::<u64>();
        let count = usize::try_from(words.get(1)?).unwrap_or(usize::MAX);
        let size = self.shm.size();
        let table_end = count
            .checked_mul(ENTRY)
            .and_then(|t| t.checked_add(HEADER))
            .filter(|&end| end <= size)
            .ok_or_else(|| Error::Malformed("shareable list header out of range".into()))?;
        let entries = self.shm.view::<u32>();
        let mut offset = table_end.next_multiple_of(WORD);
        let mut slots = Vec::with_capacity(count);
        for i in 0..count {
            let capacity = entries.get((HEADER + i * ENTRY) / 4)? as usize;
            if capacity < WORD || offset + capacity > size {
                return Err(Error::Malformed("shareable list slot out of range".into()));
            }
            slots.push((offset, capacity));
            offset += capacity;
        }
        Ok(slots)
    }

    fn entry(&self, index: usize) -> Result<(usize, usize)> {
        self.slots.get(index).copied().ok_or(Error::OutOfRange {
            index,
            len: self.slots.len(),
        })
    }

    /// The number of items (fixed at creation).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The item at `index` (Python's `list[i]`); [`Error::OutOfRange`] past the end.
    pub fn get(&self, index: usize) -> Result<ShareableItem> {
        let (offset, capacity) = self.entry(index)?;
        let entries = self.shm.view::<u32>();
        let word = (HEADER + index * ENTRY) / 4;
        let kind = entries.atomic(word + 1)?.load(Ordering::Acquire);
        let len = entries.atomic(word + 2)?.load(Ordering::Acquire) as usize;
        let torn = || {
            Error::Malformed(format!(
                "shareable list slot {index} changed while being read (or is corrupted)"
            ))
        };
        if len > capacity {
            return Err(torn());
        }
        let mut bytes = vec![0u8; len];
        self.shm.read_at(offset, &mut bytes)?;
        let word8 = |b: &[u8]| -> Result<[u8; 8]> { b.try_into().map_err(|_| torn()) };
        Ok(match kind {
            KIND_NONE => ShareableItem::None,
            KIND_INT => ShareableItem::Int(i64::from_le_bytes(word8(&bytes)?)),
            KIND_FLOAT => ShareableItem::Float(f64::from_le_bytes(word8(&bytes)?)),
            KIND_BOOL => ShareableItem::Bool(bytes.first().is_some_and(|&b| b != 0)),
            KIND_STR => ShareableItem::Str(String::from_utf8(bytes).map_err(|_| torn())?),
            KIND_BYTES => ShareableItem::Bytes(bytes),
            _ => return Err(torn()),
        })
    }

    /// Replaces the item at `index` (Python's `list[i] = v`). A string or bytes longer than
    /// the slot's capacity is [`Error::InvalidArgument`], and the slot keeps its value.
    ///
    /// ```
    /// let list = mp::ShareableList::new(["abc".into()])?; // an 8-byte slot
    /// list.set(0, "12345678")?;
    /// let err = list.set(0, "123456789").unwrap_err();
    /// assert!(err.to_string().contains("capacity 8 bytes"), "{err}");
    /// list.set(0, 3.5)?; // another type that fits
    /// assert_eq!(list.get(0)?, mp::ShareableItem::Float(3.5));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn set(&self, index: usize, item: impl Into<ShareableItem>) -> Result<()> {
        let item = item.into();
        let (offset, capacity) = self.entry(index)?;
        let bytes = item.encode();
        if bytes.len() > capacity {
            return Err(Error::InvalidArgument(format!(
                "a {} of {} bytes does not fit slot {index} of the shareable list \
                 (capacity {capacity} bytes, fixed at creation)",
                item.type_name(),
                bytes.len()
            )));
        }
        self.shm.write_at(offset, &bytes)?;
        let entries = self.shm.view::<u32>();
        let word = (HEADER + index * ENTRY) / 4;
        entries
            .atomic(word + 2)?
            .store(bytes.len() as u32, Ordering::Release);
        entries
            .atomic(word + 1)?
            .store(item.kind(), Ordering::Release);
        Ok(())
    }

    /// How many items equal `item` (Python's `count`).
    ///
    /// ```
    /// let list = mp::ShareableList::new([1.into(), 2.into(), 1.into()])?;
    /// assert_eq!(list.count(&1.into())?, 2);
    /// assert_eq!(list.index(&2.into())?, Some(1));
    /// assert_eq!(list.index(&"x".into())?, None);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn count(&self, item: &ShareableItem) -> Result<usize> {
        let mut n = 0;
        for i in 0..self.len() {
            n += usize::from(self.get(i)? == *item);
        }
        Ok(n)
    }

    /// The index of the first item equal to `item` (Python's `index`, which raises
    /// `ValueError` where this returns `None`).
    pub fn index(&self, item: &ShareableItem) -> Result<Option<usize>> {
        for i in 0..self.len() {
            if self.get(i)? == *item {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// A copy of every item.
    pub fn to_vec(&self) -> Result<Vec<ShareableItem>> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// The slots' current types, space-separated (Python's `format`, in this list's codes):
    /// `q` int, `d` float, `?` bool, `x` None, `Ns` str and `Nb` bytes with `N` the slot's
    /// capacity in bytes.
    pub fn format(&self) -> String {
        let entries = self.shm.view::<u32>();
        (0..self.len())
            .map(|i| {
                let word = (HEADER + i * ENTRY) / 4;
                let kind = entries
                    .atomic(word + 1)
                    .map(|a| a.load(Ordering::Acquire))
                    .unwrap_or(u32::MAX);
                let capacity = self.slots[i].1;
                match kind {
                    KIND_NONE => "x".to_owned(),
                    KIND_INT => "q".to_owned(),
                    KIND_FLOAT => "d".to_owned(),
                    KIND_BOOL => "?".to_owned(),
                    KIND_STR => format!("{capacity}s"),
                    KIND_BYTES => format!("{capacity}b"),
                    _ => "!".to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The block's name (with its leading `/`), or `None` for an anonymous list.
    pub fn name(&self) -> Option<&str> {
        self.shm.name()
    }

    /// The shared-memory block holding the list (Python's `list.shm`).
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }
}

impl fmt::Debug for ShareableList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for i in 0..self.len() {
            match self.get(i) {
                Ok(item) => list.entry(&item),
                Err(_) => list.entry(&format_args!("<torn>")),
            };
        }
        list.finish()
    }
}

impl Serialize for ShareableList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shm.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ShareableList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shm = SharedMemory::deserialize(deserializer)?;
        ShareableList::attach(shm).map_err(serde::de::Error::custom)
    }
}
