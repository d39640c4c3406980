//! Shared memory: memfd-backed mappings (with a parking table behind them under
//! `portable-sync`), sealed read-only message buffers, and named POSIX segments.
#![allow(unsafe_code)]

use std::io::{self};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

/// Whether waits on shared words use the portable parking tables (`park.rs`, the `wait`
/// module with `portable-sync`) instead of futexes: their mappings carry a table.
const PARKING: bool = cfg!(feature = "portable-sync");

/// The bytes a mapping whose usable part is `len` bytes takes: with [`PARKING`], a parking
/// table follows the usable part.
#[cfg(feature = "portable-sync")]
fn parked_len(len: usize) -> usize {
    super::wait::table_offset(len) + super::wait::TABLE_BYTES
}
#[cfg(not(feature = "portable-sync"))]
fn parked_len(len: usize) -> usize {
    len
}

/// What a new mapping does with its parking table.
#[derive(Clone, Copy, PartialEq)]
enum Park {
    /// None: a named segment, which other programs may share and no `mp` wait uses.
    None,
    /// Initialise it: the mapping is fresh memory of our own.
    Create,
    /// Use the one its creator initialised.
    Attach,
}

/// A shared, read-write mapping of a descriptor's memory (a memfd), unmapped on drop.
///
/// The memory may be written by other processes at any time, so it is never exposed as a
/// Rust reference to bytes: only atomics (through [`SharedMapping::atomic_u32`] and friends)
/// and explicit copies.
pub(crate) struct SharedMapping {
    ptr: NonNull<u8>,
    /// The usable bytes.
    len: usize,
    /// The bytes mapped: `len`, or more with a parking table behind them.
    mapped: usize,
    /// Whether a parking table behind the usable part is registered (unregistered on drop).
    #[cfg(feature = "portable-sync")]
    parked: bool,
    fd: OwnedFd,
}

// SAFETY: the mapping is plain shared memory; all access goes through atomics or copies whose
// races the owning protocol excludes. Nothing is tied to the creating thread.
unsafe impl Send for SharedMapping {}
// SAFETY: see `Send`; `&SharedMapping` only offers atomic access and copies.
unsafe impl Sync for SharedMapping {}

impl SharedMapping {
    /// Creates `len` bytes of zeroed anonymous shared memory (a memfd named `name`).
    pub(crate) fn create(name: &str, len: usize) -> io::Result<Self> {
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        rustix::fs::ftruncate(&fd, parked_len(len) as u64)?;
        // Size is fixed from now on: a peer cannot shrink it under our mapping.
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW)?;
        Self::map(fd, len, Park::Create)
    }

    /// Maps memory received from another process; checks that it is at least `len` bytes and
    /// cannot shrink.
    pub(crate) fn open(fd: OwnedFd, len: usize) -> io::Result<Self> {
        let seals = rustix::fs::fcntl_get_seals(&fd)?;
        let size = rustix::fs::fstat(&fd)?.st_size as u64;
        if !seals.contains(SealFlags::SHRINK) || size < parked_len(len) as u64 {
            return Err(io::Error::other(
                "shared memory descriptor is not a sealed segment of the expected size",
            ));
        }
        Self::map(fd, len, Park::Attach)
    }

    /// Creates a named POSIX shared memory segment (`/dev/shm/<name>`) of `len` zeroed bytes;
    /// fails if the name exists. The caller unlinks it.
    pub(crate) fn create_named(name: &str, len: usize) -> io::Result<Self> {
        use rustix::shm::{Mode, OFlags};
        let fd = rustix::shm::open(
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
            Mode::RUSR | Mode::WUSR,
        )?;
        if let Err(e) = rustix::fs::ftruncate(&fd, len as u64) {
            let _ = rustix::shm::unlink(name);
            return Err(e.into());
        }
        Self::map(fd, len, Park::None).inspect_err(|_| {
            let _ = rustix::shm::unlink(name);
        })
    }

    /// Opens an existing named segment; returns the mapping of its whole current size.
    pub(crate) fn open_named(name: &str) -> io::Result<Self> {
        use rustix::shm::{Mode, OFlags};
        let fd = rustix::shm::open(name, OFlags::RDWR, Mode::empty())?;
        let size = usize::try_from(rustix::fs::fstat(&fd)?.st_size).unwrap_or(0);
        if size == 0 {
            return Err(io::Error::other("the shared memory segment is empty"));
        }
        Self::map(fd, size, Park::None)
    }

    /// Maps a named segment's descriptor received from another process (named segments cannot
    /// be sealed; only the size is checked).
    pub(crate) fn open_unsealed(fd: OwnedFd, len: usize) -> io::Result<Self> {
        let size = rustix::fs::fstat(&fd)?.st_size as u64;
        if size < len as u64 || len == 0 {
            return Err(io::Error::other(
                "shared memory descriptor is smaller than announced",
            ));
        }
        Self::map(fd, len, Park::None)
    }

    fn map(fd: OwnedFd, len: usize, park: Park) -> io::Result<Self> {
        let parked = PARKING && park != Park::None;
        let mapped = if parked { parked_len(len) } else { len };
        // SAFETY: a fresh mapping (null hint) of a descriptor we own; the kernel picks the
        // address, so no existing memory is affected.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                mapped,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        let map = Self {
            ptr,
            len,
            mapped,
            #[cfg(feature = "portable-sync")]
            parked: false,
            fd,
        };
        #[cfg(feature = "portable-sync")]
        if parked {
            return map.with_table(park == Park::Create);
        }
        Ok(map)
    }

    /// Sets up (`create`) or joins the parking table behind the usable part and registers it,
    /// so waits on the mapping's words find it.
    #[cfg(feature = "portable-sync")]
    fn with_table(mut self, create: bool) -> io::Result<Self> {
        let start = self.ptr.as_ptr() as usize;
        let table = start + super::wait::table_offset(self.len);
        if create {
            // SAFETY: the table's bytes lie inside the fresh mapping (`mapped` counts them),
            // aligned (`table_offset`), zeroed (a new memfd), and no other process has them.
            unsafe { super::wait::init_table(table as *mut u8)? };
        }
        super::wait::register(start, start + self.len, table);
        self.parked = true;
        Ok(self)
    }

    /// The descriptor backing the mapping (to send it to another process).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The mapping's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The atomic word at byte `offset` (4-aligned, in bounds: checked). Inlined: an array
    /// lock reads two words of each of its 64 claims.
    #[inline]
    pub(crate) fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        assert!(
            offset % 4 == 0 && offset + 4 <= self.len,
            "atomic out of bounds"
        );
        // SAFETY: in bounds and aligned (checked; the mapping is page-aligned); the memory is
        // valid for the lifetime of `self`, and every access to it is atomic.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// The 64-bit atomic at byte `offset` (8-aligned, in bounds: checked).
    #[inline]
    pub(crate) fn atomic_u64(&self, offset: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(
            offset % 8 == 0 && offset + 8 <= self.len,
            "atomic out of bounds"
        );
        // SAFETY: as in `atomic_u32`.
        unsafe {
            &*self
                .ptr
                .as_ptr()
                .add(offset)
                .cast::<std::sync::atomic::AtomicU64>()
        }
    }

    /// The atomic `A` at byte `offset` (aligned for `A`, in bounds: checked).
    pub(crate) fn atomic<A: super::AtomicCell>(&self, offset: usize) -> &A {
        self.check::<A>(offset, 1);
        // SAFETY: in bounds and aligned (checked); `A` is a std atomic, valid when zeroed and
        // for any bits another process stored through the same atomic type; every access to
        // the word goes through atomics.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<A>() }
    }

    /// Asserts that `count` values of `T` fit at `offset`, aligned.
    fn check<T>(&self, offset: usize, count: usize) {
        let bytes = count.checked_mul(size_of::<T>());
        assert!(
            offset % align_of::<T>() == 0
                && bytes
                    .and_then(|b| b.checked_add(offset))
                    .is_some_and(|end| end <= self.len),
            "shared memory access out of bounds"
        );
    }

    /// Reads the value at byte `offset` (a copy; another process may be writing it, in which
    /// case the copy may mix old and new bytes, but every byte pattern of `T` read back was
    /// written as a `T`).
    pub(crate) fn read_plain<T: super::Plain>(&self, offset: usize) -> T {
        self.check::<T>(offset, 1);
        // SAFETY: in bounds and aligned (checked). A volatile read of plain data: the compiler
        // may not assume the memory is unchanged between reads, which it is not.
        unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(offset).cast::<T>()) }
    }

    /// Writes `value` at byte `offset`.
    pub(crate) fn write_plain<T: super::Plain>(&self, offset: usize, value: T) {
        self.check::<T>(offset, 1);
        // SAFETY: in bounds and aligned (checked); `T` is plain data, so no destructor or
        // pointer is involved.
        unsafe { std::ptr::write_volatile(self.ptr.as_ptr().add(offset).cast::<T>(), value) }
    }

    /// Copies `dst.len()` values starting at byte `offset` into `dst`.
    pub(crate) fn read_slice<T: super::Plain>(&self, offset: usize, dst: &mut [T]) {
        self.check::<T>(offset, dst.len());
        // SAFETY: the source range is in bounds and aligned (checked) and cannot overlap `dst`,
        // which is ordinary memory of this process.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset).cast::<T>(),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }

    /// Copies `src` into the mapping starting at byte `offset`.
    pub(crate) fn write_slice<T: super::Plain>(&self, offset: usize, src: &[T]) {
        self.check::<T>(offset, src.len());
        // SAFETY: as in `read_slice`, in the other direction.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.ptr.as_ptr().add(offset).cast::<T>(),
                src.len(),
            )
        }
    }

    /// A shared slice of `len` values of `T` at byte `offset` (bounds and alignment checked).
    ///
    /// # Safety
    ///
    /// For as long as the slice lives, no thread or process may write the range: the caller
    /// holds a read lock that every writer of the range honours.
    pub(crate) unsafe fn slice<T: super::Plain>(&self, offset: usize, len: usize) -> &[T] {
        self.check::<T>(offset, len);
        // SAFETY: in bounds and aligned (checked); `T` is valid for the bytes stored there
        // (`Plain`); the absence of writers is the caller's obligation.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset).cast::<T>(), len) }
    }

    /// A mutable slice of `len` values of `T` at byte `offset` (bounds and alignment checked).
    ///
    /// # Safety
    ///
    /// For as long as the slice lives, no other thread or process may access the range: the
    /// caller holds a lock that every accessor of the range honours.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut<T: super::Plain>(&self, offset: usize, len: usize) -> &mut [T] {
        self.check::<T>(offset, len);
        // SAFETY: in bounds and aligned (checked); `T` is valid for the bytes stored there
        // (`Plain`); exclusivity is the caller's obligation.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset).cast::<T>(), len) }
    }

    /// Copies `src` into the mapping at `offset` (bounds checked).
    pub(crate) fn write_at(&self, offset: usize, src: &[u8]) {
        assert!(
            offset
                .checked_add(src.len())
                .is_some_and(|end| end <= self.len),
            "write out of bounds"
        );
        // SAFETY: the range is in bounds (checked) and does not overlap `src`, which is local
        // memory; the queue protocol gives this process exclusive use of the range.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len())
        }
    }

    /// Copies from the mapping at `offset` into `dst` (bounds checked).
    pub(crate) fn read_at(&self, offset: usize, dst: &mut [u8]) {
        assert!(
            offset
                .checked_add(dst.len())
                .is_some_and(|end| end <= self.len),
            "read out of bounds"
        );
        // SAFETY: in bounds (checked), non-overlapping with `dst`; the protocol guarantees no
        // process writes this range while it is read.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        #[cfg(feature = "portable-sync")]
        if self.parked {
            super::wait::unregister(self.ptr.as_ptr() as usize);
        }
        // SAFETY: `ptr`/`mapped` describe a mapping created in `map` and not yet unmapped; no
        // reference into it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.mapped) };
    }
}

/// From this size on, a received buffer's pages are mapped in one go.
const POPULATE_FROM: usize = 256 * 1024;

/// A sealed, immutable buffer in its own memfd: how large messages travel between processes.
pub(crate) struct SealedBuffer {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the memory is sealed against writes, so shared read-only access is race-free.
unsafe impl Send for SealedBuffer {}
// SAFETY: as for `Send`.
unsafe impl Sync for SealedBuffer {}

impl SealedBuffer {
    /// Copies `parts` into a new memfd and seals it against every change.
    pub(crate) fn create(parts: &[&[u8]]) -> io::Result<Self> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let fd = rustix::fs::memfd_create(
            "mp-message",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        let mut off = 0u64;
        for part in parts {
            let mut done = 0;
            while done < part.len() {
                done += rustix::io::pwrite(&fd, &part[done..], off + done as u64)?;
            }
            off += part.len() as u64;
        }
        rustix::fs::fcntl_add_seals(
            &fd,
            SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
        )?;
        Self::map(fd, len, false)
    }

    /// A new memfd of `len` bytes written in place by `fill` (a message encoded straight into
    /// it, with no copy of its own), then sealed against every change. Its pages are
    /// allocated in one go before `fill` writes them.
    pub(crate) fn create_with(len: usize, fill: impl FnOnce(&mut [u8])) -> io::Result<Self> {
        let fd = rustix::fs::memfd_create(
            "mp-message",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        if len > 0 {
            // SAFETY: a fresh shared writable mapping, at an address the kernel chooses, of the
            // memfd just created and sized; no other process has the descriptor yet.
            let ptr = unsafe {
                rustix::mm::mmap(
                    std::ptr::null_mut(),
                    len,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::SHARED | MapFlags::POPULATE,
                    &fd,
                    0,
                )?
            };
            // SAFETY: the mapping holds `len` zero-filled bytes that only this slice refers to
            // until the `munmap` below, after its last use.
            let bytes = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len) };
            fill(bytes);
            // SAFETY: unmaps the mapping made above; `bytes` is not used again. (The write seal
            // below requires that no writable mapping remains.)
            unsafe { rustix::mm::munmap(ptr, len)? };
        }
        rustix::fs::fcntl_add_seals(
            &fd,
            SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
        )?;
        Self::map(fd, len, false)
    }

    /// Maps a buffer received from another process; it must be sealed against writes and
    /// shrinking and hold exactly `len` bytes.
    pub(crate) fn open(fd: OwnedFd, len: usize) -> io::Result<Self> {
        let seals = rustix::fs::fcntl_get_seals(&fd)?;
        let size = rustix::fs::fstat(&fd)?.st_size as u64;
        if !seals.contains(SealFlags::SHRINK | SealFlags::WRITE) || size != len as u64 {
            return Err(io::Error::other(
                "message buffer is not sealed or has the wrong size",
            ));
        }
        // The receiver reads every byte: mapping the pages at once beats a fault per page.
        Self::map(fd, len, len >= POPULATE_FROM)
    }

    fn map(fd: OwnedFd, len: usize, populate: bool) -> io::Result<Self> {
        if len == 0 {
            return Ok(Self {
                ptr: NonNull::dangling(),
                len,
                fd,
            });
        }
        // SAFETY: a fresh read-only shared mapping at an address the kernel chooses.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                if populate {
                    MapFlags::SHARED | MapFlags::POPULATE
                } else {
                    MapFlags::SHARED
                },
                &fd,
                0,
            )?
        };
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, len, fd })
    }

    /// The descriptor, to send along with a message.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The buffer's bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes (or is dangling with len 0) for the lifetime
        // of `self`, and the seals guarantee no process can modify or truncate them.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SealedBuffer {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmaps the mapping made in `map`; `as_slice` borrows end with `self`.
            let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// Removes the name of a POSIX shared memory segment (`shm_unlink`).
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    Ok(rustix::shm::unlink(name)?)
}

#[cfg(all(test, feature = "portable-sync"))]
mod tests {
    use super::*;
    use crate::sys::{dup_fd, futex_wait, futex_wake, getpid};

    #[test]
    fn portable_sync_gives_created_and_opened_mappings_a_parking_table() {
        let created = SharedMapping::create("mp-test", 100).unwrap();
        let opened = SharedMapping::open(dup_fd(created.fd()).unwrap(), 100).unwrap();
        for map in [&created, &opened] {
            assert!(map.parked && map.mapped > map.len);
        }
        let word = opened.atomic_u32(8);
        word.store(1, std::sync::atomic::Ordering::SeqCst);
        futex_wake(word, 1);
        futex_wait(created.atomic_u32(8), 0, None); // differs: returns at once
        let named = format!("/mp-park-test-{}", getpid());
        let plain = SharedMapping::create_named(&named, 100).unwrap();
        shm_unlink(&named).unwrap();
        assert!(!plain.parked && plain.mapped == plain.len);
    }
}
