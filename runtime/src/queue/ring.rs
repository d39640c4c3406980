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
use crate::codec::MAX_MESSAGE;
use crate::error::{Error, Result};
use crate::sync::raw::{self, Acquired, RawMutex};
use crate::sys::{self, SharedMapping};
use crate::wire::{HEADER, Header, RING_INLINE_MAX};

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
/// The shutdown state ([`OPEN`], [`SHUT_DOWN`], [`SHUT_DOWN_NOW`]); only ever grows.
pub(super) const OFF_SHUTDOWN: usize = 704;
/// Not shut down.
pub(super) const OPEN: u32 = 0;
/// Shut down: no more puts; gets drain what is left.
pub(super) const SHUT_DOWN: u32 = 1;
/// Shut down immediately: the pending messages were dropped; gets fail at once.
pub(super) const SHUT_DOWN_NOW: u32 = 2;
const DATA: usize = 4096;

// Record: kind u32 | number u32 | fd_seq u64 | frame, padded to 8. The frame is the stream
// transport's (`channel`: a 16-byte header, then the inline payload; an out-of-line payload's
// sealed buffer is the frame's last descriptor), so a record is read back as a `Frame` and
// decoded by the same path as a message on a pipe. `number` is the message's put number
// (counting from 0, wrapping), used to name it in errors; `fd_seq` tags its descriptors on
// the side channel. A `WRAP` kind sends the reader to the start of the ring.
const PREFIX: usize = 16;
/// A record's fixed part: the prefix and the frame header.
pub(super) const RECORD_HEADER: usize = PREFIX + HEADER;
const KIND_RECORD: u32 = 0;
const WRAP: u32 = u32::MAX;
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
    /// The largest payload a record carries inline ([`inline_max`]); larger ones go out of
    /// line in a sealed memfd.
    pub(super) inline_max: usize,
    pub(super) side: SideChannel,
}

/// A ring's inline maximum: a quarter of its capacity (so that a record always fits, with room
/// to spare for the next), at most [`RING_INLINE_MAX`].
pub(super) fn inline_max(capacity: u64) -> usize {
    (capacity / 4).min(RING_INLINE_MAX as u64) as usize
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
            inline_max: inline_max(capacity as u64),
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
            inline_max: inline_max(capacity),
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

/// The ring space of a record whose frame (header and inline payload) is `frame_len` bytes.
pub(super) fn record_len(frame_len: usize) -> u64 {
    (PREFIX + frame_len).next_multiple_of(8) as u64
}

/// The fixed part of a record in the ring.
pub(super) struct RecordHead {
    /// Where the record starts (past a wrap marker).
    pub(super) pos: u64,
    /// The message's put number.
    pub(super) number: u32,
    /// The tag of its descriptors on the side channel.
    pub(super) fd_seq: u64,
    /// Its frame header, checked as the stream transport checks it.
    pub(super) frame: Header,
}

impl RecordHead {
    /// The ring space the record takes.
    pub(super) fn len(&self) -> u64 {
        let inline = if self.frame.out_of_line {
            0
        } else {
            self.frame.len
        };
        record_len(HEADER + inline)
    }

    /// How many descriptors travel on the side channel with it (an out-of-line buffer too).
    pub(super) fn fd_count(&self) -> usize {
        self.frame.nfds + usize::from(self.frame.out_of_line)
    }
}

impl Shared {
    /// Whether a record of `len` bytes fits at `tail` with `head` where it is, and the space
    /// it then takes (with the rest of the ring skipped when it does not fit before the end).
    pub(super) fn room_for(&self, head: u64, tail: u64, len: u64) -> bool {
        let to_end = self.capacity - tail % self.capacity;
        let need = if to_end < len { to_end + len } else { len };
        self.capacity - (tail - head) >= need
    }

    /// Writes the record of `frame` at `tail` (first a wrap marker, when it does not fit
    /// before the end); returns where the record ends, the next tail.
    pub(super) fn write_record(&self, tail: u64, number: u32, fd_seq: u64, frame: &[u8]) -> u64 {
        let pos = self.place_record(tail, frame.len());
        self.write_ring(pos + PREFIX as u64, frame);
        self.write_prefix(pos, number, fd_seq, frame.len())
    }

    /// Where the record of a frame of `frame_len` bytes starts when written at `tail`: there,
    /// or at the start of the ring, past a wrap marker written at `tail`, when it does not fit
    /// before the end.
    pub(super) fn place_record(&self, tail: u64, frame_len: usize) -> u64 {
        let to_end = self.capacity - tail % self.capacity;
        if to_end < record_len(frame_len) {
            self.write_ring(tail, &WRAP.to_le_bytes());
            return tail + to_end;
        }
        tail
    }

    /// Writes the prefix of the record at `pos` (its frame written already); returns where the
    /// record ends, the next tail.
    pub(super) fn write_prefix(&self, pos: u64, number: u32, fd_seq: u64, frame_len: usize) -> u64 {
        let mut prefix = [0u8; PREFIX];
        prefix[0..4].copy_from_slice(&KIND_RECORD.to_le_bytes());
        prefix[4..8].copy_from_slice(&number.to_le_bytes());
        prefix[8..16].copy_from_slice(&fd_seq.to_le_bytes());
        self.write_ring(pos, &prefix);
        pos + record_len(frame_len)
    }

    /// The place of the frame (header and payload) of the record at `pos`, placed by
    /// [`Shared::place_record`], to encode it there.
    ///
    /// # Safety
    ///
    /// The caller holds the producer lock and checked that the record fits between the tail
    /// and the head: consumers read only before the tail, and other producers write only
    /// under the lock, so nobody else touches these bytes while the slice lives.
    #[allow(unsafe_code, clippy::mut_from_ref)]
    pub(super) unsafe fn frame_slot(&self, pos: u64, frame_len: usize) -> &mut [u8] {
        let at = DATA + ((pos + PREFIX as u64) % self.capacity) as usize;
        // SAFETY: nobody else accesses the range while the slice lives (this function's
        // contract); a placed record never straddles the ring's end, so the range is
        // contiguous (and `slice_mut` checks its bounds).
        unsafe { self.map.slice_mut::<u8>(at, frame_len) }
    }

    /// Reads and checks the fixed part of the record at `pos` (skipping a wrap marker).
    pub(super) fn read_record_head(&self, mut pos: u64) -> Result<RecordHead> {
        let mut bytes = [0u8; RECORD_HEADER];
        self.read_ring(pos, &mut bytes[..4]);
        if u32::from_le_bytes(bytes[0..4].try_into().expect("4")) == WRAP {
            pos += self.capacity - pos % self.capacity;
        }
        self.read_ring(pos, &mut bytes);
        let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4"));
        let corrupted = |what: String| Error::Malformed(format!("queue ring is corrupted: {what}"));
        if word(0) != KIND_RECORD {
            return Err(corrupted(format!("unknown record kind {:#x}", word(0))));
        }
        let header: &[u8; HEADER] = bytes[PREFIX..].try_into().expect("frame header");
        let frame = Header::parse_inline(header, MAX_MESSAGE, true, self.inline_max)
            .map_err(|e| corrupted(e.to_string()))?;
        Ok(RecordHead {
            pos,
            number: word(4),
            fd_seq: u64::from_le_bytes(bytes[8..16].try_into().expect("8")),
            frame,
        })
    }

    /// The inline payload of the record `head`, in place in the ring (empty when it travels
    /// out of line), to decode without copying it out first.
    ///
    /// # Safety
    ///
    /// The caller holds the consumer lock and `head` is the record at the ring's head, checked
    /// to end at or before its tail: producers write only past the tail, and no consumer moves
    /// the head while the lock is held, so nobody writes these bytes while the slice lives.
    #[allow(unsafe_code)]
    pub(super) unsafe fn inline_payload(&self, head: &RecordHead) -> &[u8] {
        let len = if head.frame.out_of_line {
            0
        } else {
            head.frame.len
        };
        let at = DATA + ((head.pos + RECORD_HEADER as u64) % self.capacity) as usize;
        // SAFETY: no writer of the range while the slice lives (this function's contract); a
        // record never straddles the ring's end, so the range is contiguous (and `slice`
        // checks its bounds).
        unsafe { self.map.slice::<u8>(at, len) }
    }
}
