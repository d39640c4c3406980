//! The queue's shared memory: the header's layout (each contended word on its own cache
//! line), the byte ring and its records, the two robust locks, and waiting on the header's
//! sequence words.
//!
//! This file knows where things are, not what the protocol does with them: it must not take
//! locks on its own, publish or commit (that is `raw.rs`), touch the side channel (`side.rs`),
//! or hold `unsafe` (every copy goes through `sys::SharedMapping`'s checked copies).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::side::SideChannel;
use crate::error::{Error, Result};
use crate::sync::raw::{self, Acquired, RawMutex};
use crate::sys::{self, SharedMapping};

/// Default ring size: what an unbounded queue holds in flight before `put` waits for readers.
pub const DEFAULT_QUEUE_CAPACITY: usize = 64 * 1024 * 1024;
pub(super) const MIN_CAPACITY: usize = 1024 * 1024;
const MAGIC: u64 = u64::from_le_bytes(*b"mpqueue1");

// Header layout: each contended word on its own cache line.
const OFF_MAGIC: usize = 0;
const OFF_CAPACITY: usize = 8;
const OFF_MAXSIZE: usize = 16;
pub(super) const OFF_PLOCK: usize = 64;
pub(super) const OFF_CLOCK: usize = 128;
pub(super) const OFF_TAIL: usize = 192;
pub(super) const OFF_HEAD: usize = 256;
pub(super) const OFF_LEN: usize = 320;
/// Puts so far (high 32 bits, wrapping) and unfinished tasks (low 32 bits) in one word, so a
/// producer counts both with one atomic add and a recovering producer can tell whether a dead
/// one did.
pub(super) const OFF_PUTS: usize = 328;
pub(super) const OFF_DATA_SEQ: usize = 384;
pub(super) const OFF_SPACE_SEQ: usize = 448;
pub(super) const OFF_DONE_SEQ: usize = 512;
pub(super) const OFF_FD_SEQ: usize = 576;
// A producer's publish intent (written under the producer lock once its record is complete):
// the tail it is about to publish and the put count it is about to reach.
pub(super) const OFF_INTENT_TAIL: usize = 640;
pub(super) const OFF_INTENT_PUTS: usize = 648;
/// Set when `len` must be recounted by the next producer (a consumer died holding its lock).
pub(super) const OFF_RECOUNT: usize = 656;
const DATA: usize = 4096;

// Record: len u32 | flags u32 | nfds u32 | number u32 | fd_seq u64 | payload, padded to 8.
// `number` is the message's put number (counting from 0, wrapping), used to name it in errors.
pub(super) const RECORD_HEADER: usize = 24;
pub(super) const WRAP: u32 = u32::MAX;
pub(super) const FLAG_FDS: u32 = 1;
pub(super) const FLAG_OUT_OF_LINE: u32 = 2;
/// One put in [`OFF_PUTS`]'s high half.
pub(super) const ONE_PUT: u64 = 1 << 32;
/// The unfinished-task count in [`OFF_PUTS`]'s low half.
pub(super) const UNFINISHED: u64 = u32::MAX as u64;

/// How long a consumer or producer polls before sleeping on the futex.
const SPIN: Duration = Duration::from_micros(30);

/// The shared part of a queue: the mapping and the side channel.
pub(super) struct Shared {
    pub(super) map: SharedMapping,
    pub(super) capacity: u64,
    pub(super) side: SideChannel,
}

impl Shared {
    pub(super) fn create(capacity: usize, maxsize: usize) -> Result<Shared> {
        let capacity = capacity.max(MIN_CAPACITY).next_multiple_of(8);
        let map = SharedMapping::create("mp-queue", DATA + capacity)
            .map_err(Error::io("cannot create the queue's shared memory"))?;
        map.atomic_u64(OFF_CAPACITY)
            .store(capacity as u64, Ordering::Relaxed);
        map.atomic_u64(OFF_MAXSIZE)
            .store(maxsize as u64, Ordering::Relaxed);
        map.atomic_u64(OFF_MAGIC).store(MAGIC, Ordering::Release);
        Ok(Shared {
            map,
            capacity: capacity as u64,
            side: SideChannel::new()?,
        })
    }

    pub(super) fn open(
        mem: OwnedFd,
        len: u64,
        side: SideChannel,
    ) -> std::result::Result<Shared, String> {
        let len = usize::try_from(len).map_err(|_| "queue size out of range".to_owned())?;
        if len < DATA + MIN_CAPACITY {
            return Err(format!("queue of {len} bytes is too small"));
        }
        let map = SharedMapping::open(mem, len).map_err(|e| e.to_string())?;
        let capacity = map.atomic_u64(OFF_CAPACITY).load(Ordering::Relaxed);
        if map.atomic_u64(OFF_MAGIC).load(Ordering::Acquire) != MAGIC
            || capacity as usize + DATA != len
        {
            return Err("descriptor is not an mp queue".to_owned());
        }
        Ok(Shared {
            map,
            capacity,
            side,
        })
    }

    pub(super) fn u32(&self, off: usize) -> &AtomicU32 {
        self.map.atomic_u32(off)
    }
    pub(super) fn u64(&self, off: usize) -> &AtomicU64 {
        self.map.atomic_u64(off)
    }
    pub(super) fn maxsize(&self) -> u64 {
        self.u64(OFF_MAXSIZE).load(Ordering::Relaxed)
    }

    pub(super) fn write_ring(&self, pos: u64, bytes: &[u8]) {
        self.map
            .write_at(DATA + (pos % self.capacity) as usize, bytes);
    }
    pub(super) fn read_ring(&self, pos: u64, out: &mut [u8]) {
        self.map.read_at(DATA + (pos % self.capacity) as usize, out);
    }
}

/// A queue lock: the robust mutex of `sync/`. A holder that died is taken over silently: its
/// half-done work was never published (see `README.md`), so the ring is consistent.
pub(super) struct ShmLock<'a>(pub(super) RawMutex<'a>);

impl ShmLock<'_> {
    /// Takes the lock; `true` when it was taken over from a holder that died (the caller then
    /// repairs what the holder may have left half done).
    pub(super) fn lock(&self, deadline: Option<Instant>) -> Result<bool> {
        if let Acquired::OwnerDied(tid) = self.0.lock(deadline)? {
            tracing::warn!(target: "mp", "queue lock holder (thread {tid}) died; lock recovered");
            return Ok(true);
        }
        Ok(false)
    }

    pub(super) fn unlock(&self) {
        self.0.unlock();
    }
}

/// Waits on a sequence word until `ready()` holds or the deadline passes; spins first. The
/// sleep is the crate's one wait-on-word ([`raw::wait_word`]), counted in `waiters` so that a
/// waker pays for a wake-up only when someone sleeps.
pub(super) fn wait_until(
    seq: &AtomicU32,
    waiters: &AtomicU32,
    deadline: Option<Instant>,
    mut ready: impl FnMut() -> bool,
) -> bool {
    let spin_end = Instant::now() + SPIN;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() < spin_end {
            std::hint::spin_loop();
            continue;
        }
        let observed = seq.load(Ordering::SeqCst);
        if ready() {
            return true;
        }
        waiters.fetch_add(1, Ordering::SeqCst);
        let waited = raw::wait_word(seq, observed, deadline);
        waiters.fetch_sub(1, Ordering::SeqCst);
        if !waited {
            return false;
        }
    }
}

pub(super) fn bump_and_wake(seq: &AtomicU32, waiters: &AtomicU32) {
    seq.fetch_add(1, Ordering::SeqCst);
    if waiters.load(Ordering::SeqCst) > 0 {
        sys::futex_wake(seq, u32::MAX);
    }
}

pub(super) fn padded(len: usize) -> u64 {
    (RECORD_HEADER + len).next_multiple_of(8) as u64
}
