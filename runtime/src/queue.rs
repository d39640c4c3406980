//! `Queue`, `SimpleQueue`, `JoinableQueue`: multi-producer multi-consumer queues between
//! processes, with no feeder thread.
//!
//! Algorithm (see `QUEUE.md`): messages are written into a byte ring in shared memory (a
//! memfd every handle maps). Producers serialise on one lock and consumers on another (the
//! two-lock queue); the locks are futex words with the owner's pid, stolen from an owner that
//! died. A record is published by advancing `tail` after it is fully written, so a producer
//! killed mid-write leaves nothing half-visible (one killed after arming its publish intent
//! has its publish finished by the next producer). A consumer decodes the message, taking its
//! descriptors by peeking the side channel, before it commits by advancing `head`, so one
//! killed inside `get` leaves the message for the next. Sleepers wait on sequence words
//! (`data_seq`, `space_seq`, `done_seq`) and are woken only when a waiter count says someone
//! sleeps.
//!
//! Because a `put` has copied the message into shared memory when it returns, a process may
//! exit right after writing — nothing is left in a private buffer to flush (Python's classic
//! "join before drain" deadlock cannot happen). Descriptors (handles inside messages, and
//! large messages in sealed memfds) cannot live in shared memory: they travel on a packet
//! socket beside the ring, tagged with a sequence number the record carries.

use std::collections::VecDeque;
use std::fmt;
use std::io::IoSlice;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::channel::INLINE_MAX;
use crate::codec;
use crate::error::{Error, Result, SendError};
use crate::sync::raw::{Acquired, RawMutex};
use crate::sys::{self, SharedMapping};

/// Default ring size: what an unbounded queue holds in flight before `put` waits for readers.
pub const DEFAULT_QUEUE_CAPACITY: usize = 64 * 1024 * 1024;
const MIN_CAPACITY: usize = 1024 * 1024;
const MAGIC: u64 = u64::from_le_bytes(*b"mpqueue1");

// Header layout: each contended word on its own cache line.
const OFF_MAGIC: usize = 0;
const OFF_CAPACITY: usize = 8;
const OFF_MAXSIZE: usize = 16;
const OFF_PLOCK: usize = 64;
const OFF_CLOCK: usize = 128;
const OFF_TAIL: usize = 192;
const OFF_HEAD: usize = 256;
const OFF_LEN: usize = 320;
/// Puts so far (high 32 bits, wrapping) and unfinished tasks (low 32 bits) in one word, so a
/// producer counts both with one atomic add and a recovering producer can tell whether a dead
/// one did.
const OFF_PUTS: usize = 328;
const OFF_DATA_SEQ: usize = 384;
const OFF_SPACE_SEQ: usize = 448;
const OFF_DONE_SEQ: usize = 512;
const OFF_FD_SEQ: usize = 576;
// A producer's publish intent (written under the producer lock once its record is complete):
// the tail it is about to publish and the put count it is about to reach.
const OFF_INTENT_TAIL: usize = 640;
const OFF_INTENT_PUTS: usize = 648;
/// Set when `len` must be recounted by the next producer (a consumer died holding its lock).
const OFF_RECOUNT: usize = 656;
/// How long a consumer repairing after a dead consumer waits for the producer lock before
/// leaving the recount to the next producer.
const RECOUNT_WAIT: Duration = Duration::from_millis(20);
const DATA: usize = 4096;

// Record: len u32 | flags u32 | nfds u32 | number u32 | fd_seq u64 | payload, padded to 8.
// `number` is the message's put number (counting from 0, wrapping), used to name it in errors.
const RECORD_HEADER: usize = 24;
const WRAP: u32 = u32::MAX;
const FLAG_FDS: u32 = 1;
const FLAG_OUT_OF_LINE: u32 = 2;
/// One put in [`OFF_PUTS`]'s high half.
const ONE_PUT: u64 = 1 << 32;
/// The unfinished-task count in [`OFF_PUTS`]'s low half.
const UNFINISHED: u64 = u32::MAX as u64;

/// How long a consumer or producer polls before sleeping on the futex.
const SPIN: Duration = Duration::from_micros(30);

/// The shared part of a queue: the mapping and the side channel.
struct Shared {
    map: SharedMapping,
    capacity: u64,
    side_tx: OwnedFd,
    side_rx: OwnedFd,
}

impl Shared {
    fn create(capacity: usize, maxsize: usize) -> Result<Shared> {
        let capacity = capacity.max(MIN_CAPACITY).next_multiple_of(8);
        let map = SharedMapping::create("mp-queue", DATA + capacity)
            .map_err(Error::io("cannot create the queue's shared memory"))?;
        map.atomic_u64(OFF_CAPACITY)
            .store(capacity as u64, Ordering::Relaxed);
        map.atomic_u64(OFF_MAXSIZE)
            .store(maxsize as u64, Ordering::Relaxed);
        map.atomic_u64(OFF_MAGIC).store(MAGIC, Ordering::Release);
        let (side_tx, side_rx) = sys::socketpair_packet()
            .map_err(Error::io("cannot create the queue's side channel"))?;
        Ok(Shared {
            map,
            capacity: capacity as u64,
            side_tx,
            side_rx,
        })
    }

    fn open(
        mem: OwnedFd,
        len: u64,
        side_tx: OwnedFd,
        side_rx: OwnedFd,
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
            side_tx,
            side_rx,
        })
    }

    fn u32(&self, off: usize) -> &AtomicU32 {
        self.map.atomic_u32(off)
    }
    fn u64(&self, off: usize) -> &AtomicU64 {
        self.map.atomic_u64(off)
    }
    fn maxsize(&self) -> u64 {
        self.u64(OFF_MAXSIZE).load(Ordering::Relaxed)
    }

    fn write_ring(&self, pos: u64, bytes: &[u8]) {
        self.map
            .write_at(DATA + (pos % self.capacity) as usize, bytes);
    }
    fn read_ring(&self, pos: u64, out: &mut [u8]) {
        self.map.read_at(DATA + (pos % self.capacity) as usize, out);
    }
}

/// A queue lock: the robust mutex of `sync/`. A holder that died is taken over silently: its
/// half-done work was never published (see `QUEUE.md`), so the ring is consistent.
struct ShmLock<'a>(RawMutex<'a>);

impl ShmLock<'_> {
    /// Takes the lock; `true` when it was taken over from a holder that died (the caller then
    /// repairs what the holder may have left half done).
    fn lock(&self, deadline: Option<Instant>) -> Result<bool> {
        if let Acquired::OwnerDied(tid) = self.0.lock(deadline)? {
            tracing::warn!(target: "mp", "queue lock holder (thread {tid}) died; lock recovered");
            return Ok(true);
        }
        Ok(false)
    }

    fn unlock(&self) {
        self.0.unlock();
    }
}

/// Waits on a sequence word until `ready()` holds or the deadline passes; spins first.
fn wait_until(
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
        let remaining = match deadline {
            None => None,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(r) if !r.is_zero() => Some(r),
                _ => return false,
            },
        };
        waiters.fetch_add(1, Ordering::SeqCst);
        sys::futex_wait(seq, observed, remaining);
        waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

fn bump_and_wake(seq: &AtomicU32, waiters: &AtomicU32) {
    seq.fetch_add(1, Ordering::SeqCst);
    if waiters.load(Ordering::SeqCst) > 0 {
        sys::futex_wake(seq, u32::MAX);
    }
}

fn deadline_of(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

fn padded(len: usize) -> u64 {
    (RECORD_HEADER + len).next_multiple_of(8) as u64
}

/// The untyped queue behind the three typed ones.
struct Raw {
    shared: Shared,
    closed: AtomicBool,
    joinable: bool,
}

struct Encoded {
    bytes: Vec<u8>,
    fds: Vec<RawFd>,
    sealed: Option<sys::SealedBuffer>,
}

impl Raw {
    fn new(capacity: usize, maxsize: usize, joinable: bool) -> Result<Raw> {
        Ok(Raw {
            shared: Shared::create(capacity, maxsize)?,
            closed: AtomicBool::new(false),
            joinable,
        })
    }

    fn plock(&self) -> ShmLock<'_> {
        ShmLock(RawMutex::new(self.shared.u32(OFF_PLOCK)))
    }
    fn clock(&self) -> ShmLock<'_> {
        ShmLock(RawMutex::new(self.shared.u32(OFF_CLOCK)))
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Encodes into `bytes` (a buffer reused across puts, so large messages do not regrow it).
    fn encode<T: Serialize>(value: &T, mut bytes: Vec<u8>) -> Result<Encoded> {
        bytes.clear();
        let mut fds = Vec::new();
        codec::encode(value, &mut bytes, &mut fds)?;
        let sealed = if bytes.len() > INLINE_MAX {
            let s = sys::SealedBuffer::create(&[&bytes])
                .map_err(Error::io("cannot create a buffer for a large message"))?;
            bytes.clear();
            Some(s)
        } else {
            None
        };
        Ok(Encoded { bytes, fds, sealed })
    }

    fn put(&self, msg: &Encoded, timeout: Option<Duration>) -> Result<()> {
        self.check_open()?;
        let s = &self.shared;
        let deadline = deadline_of(timeout);
        let record = padded(msg.bytes.len());
        let maxsize = s.maxsize();
        let tail = loop {
            let fits = || {
                // Head first: tail only grows, so a later tail is never behind this head.
                let head = s.u64(OFF_HEAD).load(Ordering::Acquire);
                let tail = s.u64(OFF_TAIL).load(Ordering::Acquire);
                let to_end = s.capacity - tail % s.capacity;
                let need = if to_end < record {
                    to_end + record
                } else {
                    record
                };
                let room = s.capacity - (tail - head) >= need;
                room && (maxsize == 0 || s.u64(OFF_LEN).load(Ordering::Acquire) < maxsize)
            };
            if !wait_until(
                s.u32(OFF_SPACE_SEQ),
                s.u32(OFF_SPACE_SEQ + 4),
                deadline,
                fits,
            ) {
                return Err(Error::Full);
            }
            if self.plock().lock(deadline).map_err(|_| Error::Full)? {
                self.recover_producer();
            } else if s.u64(OFF_RECOUNT).load(Ordering::Relaxed) != 0 {
                self.recount_locked_producer();
            }
            if fits() {
                break s.u64(OFF_TAIL).load(Ordering::Relaxed);
            }
            self.plock().unlock();
        };
        let result = self.publish(msg, tail, record, deadline);
        self.plock().unlock();
        if result.is_ok() {
            bump_and_wake(s.u32(OFF_DATA_SEQ), s.u32(OFF_DATA_SEQ + 4));
        }
        result
    }

    /// With the producer lock held and room checked: sends descriptors, writes, publishes.
    fn publish(
        &self,
        msg: &Encoded,
        mut tail: u64,
        record: u64,
        deadline: Option<Instant>,
    ) -> Result<()> {
        let s = &self.shared;
        let mut fds: Vec<BorrowedFd<'_>> =
            msg.fds.iter().map(|&fd| sys::borrow_raw_fd(fd)).collect();
        if let Some(sealed) = &msg.sealed {
            fds.push(sealed.fd());
        }
        let mut flags = 0;
        let mut fd_seq = 0;
        if !fds.is_empty() {
            flags |= FLAG_FDS;
            fd_seq = s.u64(OFF_FD_SEQ).fetch_add(1, Ordering::Relaxed);
            self.send_fds(fd_seq, &fds, deadline)?;
        }
        let len = match &msg.sealed {
            Some(sealed) => {
                flags |= FLAG_OUT_OF_LINE;
                sealed.as_slice().len()
            }
            None => msg.bytes.len(),
        };
        let to_end = s.capacity - tail % s.capacity;
        if to_end < record {
            s.write_ring(tail, &WRAP.to_le_bytes());
            tail += to_end;
        }
        // Only producers change the put count, under the producer lock: this is our number.
        let number = (s.u64(OFF_PUTS).load(Ordering::Acquire) >> 32) as u32;
        let mut header = [0u8; RECORD_HEADER];
        header[0..4].copy_from_slice(&(len as u32).to_le_bytes());
        header[4..8].copy_from_slice(&flags.to_le_bytes());
        header[8..12].copy_from_slice(&(fds.len() as u32).to_le_bytes());
        header[12..16].copy_from_slice(&number.to_le_bytes());
        header[16..24].copy_from_slice(&fd_seq.to_le_bytes());
        s.write_ring(tail, &header);
        s.write_ring(tail + RECORD_HEADER as u64, &msg.bytes);
        // The record is complete: arm the intent, so that if we die from here on, the next
        // producer finishes this publish (see `recover_producer`).
        s.u64(OFF_INTENT_PUTS)
            .store(u64::from(number.wrapping_add(1)), Ordering::SeqCst);
        s.u64(OFF_INTENT_TAIL)
            .store(tail + record, Ordering::SeqCst);
        s.u64(OFF_PUTS)
            .fetch_add(ONE_PUT + u64::from(self.joinable), Ordering::SeqCst);
        s.u64(OFF_LEN).fetch_add(1, Ordering::SeqCst);
        s.u64(OFF_TAIL).store(tail + record, Ordering::Release);
        Ok(())
    }

    /// With the producer lock just taken over from a dead producer: finishes its publish if
    /// its record was complete (the intent is armed past `tail`), then recounts `len`.
    /// Whatever the dead producer did before arming was never visible: its descriptors, if
    /// sent, are leftovers the next reader discards.
    fn recover_producer(&self) {
        let s = &self.shared;
        let tail = s.u64(OFF_TAIL).load(Ordering::Acquire);
        let intent = s.u64(OFF_INTENT_TAIL).load(Ordering::SeqCst);
        if intent > tail {
            let number = s.u64(OFF_INTENT_PUTS).load(Ordering::SeqCst) as u32;
            let puts = s.u64(OFF_PUTS);
            if (puts.load(Ordering::SeqCst) >> 32) as u32 != number {
                puts.fetch_add(ONE_PUT + u64::from(self.joinable), Ordering::SeqCst);
            }
            s.u64(OFF_TAIL).store(intent, Ordering::Release);
            let message = number.wrapping_sub(1);
            tracing::warn!(
                target: "mp",
                "a producer died publishing queue message #{message}; published it"
            );
            bump_and_wake(s.u32(OFF_DATA_SEQ), s.u32(OFF_DATA_SEQ + 4));
        }
        self.recount_locked_producer();
    }

    /// With the producer lock held: takes the consumer lock and sets `len` to the number of
    /// records between head and tail (a dead holder of either lock may have left it off by
    /// one). Lock order: producer lock, then consumer lock.
    fn recount_locked_producer(&self) {
        let s = &self.shared;
        // A consumer never waits while holding its lock, and a dead holder is taken over.
        if self.clock().lock(None).is_err() {
            return;
        }
        let tail = s.u64(OFF_TAIL).load(Ordering::Acquire);
        let mut pos = s.u64(OFF_HEAD).load(Ordering::Acquire);
        let mut n = 0u64;
        while pos < tail {
            let mut header = [0u8; RECORD_HEADER];
            s.read_ring(pos, &mut header[..4]);
            if u32::from_le_bytes(header[0..4].try_into().expect("4")) == WRAP {
                pos += s.capacity - pos % s.capacity;
                continue;
            }
            s.read_ring(pos, &mut header);
            let len = u32::from_le_bytes(header[0..4].try_into().expect("4")) as usize;
            let flags = u32::from_le_bytes(header[4..8].try_into().expect("4"));
            pos += padded(if flags & FLAG_OUT_OF_LINE == 0 {
                len
            } else {
                0
            });
            n += 1;
        }
        s.u64(OFF_LEN).store(n, Ordering::SeqCst);
        s.u64(OFF_RECOUNT).store(0, Ordering::SeqCst);
        self.clock().unlock();
    }

    /// After a consumer took its lock over from a dead consumer (and released it): recounts
    /// `len`, taking the locks in order. A producer may hold its lock a long time (waiting for
    /// room on the side channel, which readers make): then the next producer recounts.
    fn recount(&self) {
        let s = &self.shared;
        s.u64(OFF_RECOUNT).store(1, Ordering::SeqCst);
        match self.plock().lock(Some(Instant::now() + RECOUNT_WAIT)) {
            Ok(true) => self.recover_producer(),
            Ok(false) => self.recount_locked_producer(),
            Err(_) => return,
        }
        self.plock().unlock();
    }

    fn send_fds(&self, seq: u64, fds: &[BorrowedFd<'_>], deadline: Option<Instant>) -> Result<()> {
        for batch in fds.chunks(sys::MAX_FDS_PER_MSG) {
            let mut tag = [0u8; 12];
            tag[0..8].copy_from_slice(&seq.to_le_bytes());
            tag[8..12].copy_from_slice(&(batch.len() as u32).to_le_bytes());
            loop {
                match sys::send_with_fds(
                    self.shared.side_tx.as_fd(),
                    &[IoSlice::new(&tag)],
                    batch,
                    true,
                ) {
                    Ok(_) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        // Side channel full: readers are behind. Wait for them (we hold only
                        // the producer lock, so they can make progress).
                        let remaining =
                            deadline.map(|d| d.saturating_duration_since(Instant::now()));
                        if remaining.is_some_and(|r| r.is_zero()) {
                            return Err(Error::Full);
                        }
                        let nap = remaining.map_or(Duration::from_millis(50), |r| {
                            r.min(Duration::from_millis(50))
                        });
                        let _ = sys::poll_writable(self.shared.side_tx.as_fd(), Some(nap));
                    }
                    Err(e) => {
                        return Err(Error::io("cannot send descriptors through the queue")(e));
                    }
                }
            }
        }
        Ok(())
    }

    /// Takes the oldest message and decodes it with `decode`, all under the consumer lock,
    /// and only then commits (advances `head`): a consumer that dies at any point before the
    /// commit leaves the message for the next one (see `QUEUE.md`).
    fn get<T>(
        &self,
        timeout: Option<Duration>,
        mut decode: impl FnMut(&[u8], Vec<OwnedFd>) -> Result<T>,
    ) -> Result<T> {
        self.check_open()?;
        let s = &self.shared;
        let deadline = deadline_of(timeout);
        loop {
            let nonempty = || {
                s.u64(OFF_HEAD).load(Ordering::Acquire) != s.u64(OFF_TAIL).load(Ordering::Acquire)
            };
            if !wait_until(
                s.u32(OFF_DATA_SEQ),
                s.u32(OFF_DATA_SEQ + 4),
                deadline,
                nonempty,
            ) {
                return Err(if timeout == Some(Duration::ZERO) {
                    Error::Empty
                } else {
                    Error::Timeout
                });
            }
            let recovered = self.clock().lock(deadline)?;
            let popped = self.pop_locked(&mut decode);
            self.clock().unlock();
            if recovered {
                self.recount();
            }
            match popped {
                Ok(Some((message, buffer))) => {
                    drop(buffer);
                    bump_and_wake(s.u32(OFF_SPACE_SEQ), s.u32(OFF_SPACE_SEQ + 4));
                    return message.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                }
                Ok(None) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// With the consumer lock held: takes the record at `head`, if any. The inner result is
    /// the message's own outcome (a record whose descriptors were lost, or that does not
    /// decode, is consumed, with an error); the outer one a corrupted ring. The message's
    /// out-of-line buffer comes back too, to be unmapped after the lock is released.
    ///
    /// Order, for crash safety: read the record, take our own copies of its descriptors by
    /// *peeking* the side channel (the descriptors stay queued there), decode, and only then
    /// commit by storing `head`; after the commit, drop the side channel's copy. A death
    /// before the commit leaves everything as it was; a death after it leaves a leftover the
    /// next reader discards by its older tag.
    #[allow(clippy::type_complexity)]
    fn pop_locked<T>(
        &self,
        decode: &mut impl FnMut(&[u8], Vec<OwnedFd>) -> Result<T>,
    ) -> Result<Option<(std::thread::Result<Result<T>>, Option<sys::SealedBuffer>)>> {
        let s = &self.shared;
        let mut head = s.u64(OFF_HEAD).load(Ordering::Relaxed);
        let tail = s.u64(OFF_TAIL).load(Ordering::Acquire);
        if head == tail {
            return Ok(None);
        }
        let mut header = [0u8; RECORD_HEADER];
        s.read_ring(head, &mut header[..4]);
        if u32::from_le_bytes(header[0..4].try_into().expect("4")) == WRAP {
            head += s.capacity - head % s.capacity;
        }
        s.read_ring(head, &mut header);
        let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4"));
        let (len, flags, nfds, number) = (word(0) as usize, word(4), word(8) as usize, word(12));
        let fd_seq = u64::from_le_bytes(header[16..24].try_into().expect("8"));
        let inline = flags & FLAG_OUT_OF_LINE == 0;
        let record = padded(if inline { len } else { 0 });
        if (inline && len > INLINE_MAX) || head + record > tail {
            return Err(Error::Malformed("queue ring is corrupted".to_owned()));
        }
        let mut bytes = vec![0u8; if inline { len } else { 0 }];
        s.read_ring(head + RECORD_HEADER as u64, &mut bytes);
        let mut fds = Vec::new();
        // Whether the side channel's copy of our descriptors is still queued (peeked).
        let mut peeked = false;
        let received = if flags & FLAG_FDS == 0 {
            Ok(())
        } else if nfds <= sys::MAX_FDS_PER_MSG {
            self.peek_fds(fd_seq, number, nfds, &mut fds)
                .inspect(|()| peeked = true)
        } else {
            self.recv_fds(fd_seq, number, nfds, &mut fds)
        };
        let mut buffer = None;
        // A panicking `Deserialize` must not leave the lock held (by a live thread, so never
        // taken over) nor the message in place to panic every consumer: the message is
        // consumed and the panic resumed once the lock is released.
        let message = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            received.and_then(|()| {
                if inline {
                    return decode(&bytes, fds);
                }
                let Some(memfd) = fds.pop() else {
                    return Err(Error::Malformed(format!(
                        "queue message #{number}: large message without its buffer"
                    )));
                };
                let sealed = sys::SealedBuffer::open(memfd, len).map_err(|e| {
                    Error::Malformed(format!(
                        "queue message #{number}: large message buffer: {e}"
                    ))
                })?;
                let buffer = buffer.insert(sealed);
                decode(buffer.as_slice(), fds)
            })
        }));
        // The commit: from here on the message is this consumer's.
        s.u64(OFF_HEAD).store(head + record, Ordering::Release);
        s.u64(OFF_LEN).fetch_sub(1, Ordering::SeqCst);
        if peeked {
            let mut tag = [0u8; 12];
            let mut copies = VecDeque::new();
            // Failing here leaves a leftover that the next reader discards.
            let _ = sys::recv_with_fds(self.shared.side_rx.as_fd(), &mut tag, &mut copies, true);
        }
        Ok(Some((message, buffer)))
    }

    /// Peeks the tag of the first packet on the side channel, if any.
    fn peek_tag(&self) -> Option<u64> {
        let mut tag = [0u8; 12];
        match rustix::net::recv(
            self.shared.side_rx.as_fd(),
            &mut tag,
            rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
        ) {
            Ok(_) => Some(u64::from_le_bytes(tag[0..8].try_into().expect("8"))),
            Err(_) => None,
        }
    }

    /// Discards side-channel packets tagged before `seq`: descriptors of a producer that died
    /// before publishing, or of a reader that died after committing. Returns the first tag
    /// left, if any.
    fn discard_before(&self, seq: u64) -> Option<u64> {
        loop {
            let their_seq = self.peek_tag()?;
            if their_seq >= seq {
                return Some(their_seq);
            }
            let mut buf = [0u8; 12];
            let mut batch = VecDeque::new();
            if sys::recv_with_fds(self.shared.side_rx.as_fd(), &mut buf, &mut batch, true).is_err()
            {
                return None;
            }
        }
    }

    /// Takes copies of the descriptors tagged `seq` (one packet) without removing them from
    /// the side channel: `MSG_PEEK` on a Unix socket installs duplicates in the peeker.
    fn peek_fds(&self, seq: u64, number: u32, n: usize, out: &mut Vec<OwnedFd>) -> Result<()> {
        if self.discard_before(seq) != Some(seq) {
            return Err(lost(number));
        }
        let mut space = [std::mem::MaybeUninit::<u8>::uninit();
            rustix::cmsg_space!(ScmRights(sys::MAX_FDS_PER_MSG))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let mut tag = [0u8; 12];
        let flags = rustix::net::RecvFlags::PEEK
            | rustix::net::RecvFlags::DONTWAIT
            | rustix::net::RecvFlags::CMSG_CLOEXEC;
        let msg = loop {
            match rustix::net::recvmsg(
                self.shared.side_rx.as_fd(),
                &mut [std::io::IoSliceMut::new(&mut tag)],
                &mut control,
                flags,
            ) {
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return Err(lost(number)),
                Ok(msg) => break msg,
            }
        };
        for message in control.drain() {
            if let rustix::net::RecvAncillaryMessage::ScmRights(received) = message {
                out.extend(received);
            }
        }
        if msg.flags.contains(rustix::net::ReturnFlags::CTRUNC) || out.len() != n {
            out.clear();
            return Err(lost(number));
        }
        Ok(())
    }

    /// Receives the descriptors tagged `seq` spread over several packets (more than
    /// [`sys::MAX_FDS_PER_MSG`]), discarding older leftovers. These cannot be peeked past the
    /// first packet, so they are taken off the side channel before the commit: a reader that
    /// dies in between loses them, and the next reader reports that message as lost.
    fn recv_fds(&self, seq: u64, number: u32, n: usize, out: &mut Vec<OwnedFd>) -> Result<()> {
        let rx = self.shared.side_rx.as_fd();
        let mut got: VecDeque<OwnedFd> = VecDeque::new();
        while got.len() < n {
            if self.discard_before(seq) != Some(seq) {
                return Err(lost(number));
            }
            let mut buf = [0u8; 12];
            sys::recv_with_fds(rx, &mut buf, &mut got, true).map_err(|_| lost(number))?;
        }
        out.extend(got);
        Ok(())
    }

    fn len(&self) -> usize {
        self.shared.u64(OFF_LEN).load(Ordering::Relaxed) as usize
    }

    fn task_done(&self) -> Result<()> {
        let s = &self.shared;
        let puts = s.u64(OFF_PUTS);
        let mut current = puts.load(Ordering::SeqCst);
        loop {
            if current & UNFINISHED == 0 {
                return Err(Error::TaskDoneTooOften);
            }
            match puts.compare_exchange(current, current - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        if current & UNFINISHED == 1 {
            bump_and_wake(s.u32(OFF_DONE_SEQ), s.u32(OFF_DONE_SEQ + 4));
        }
        Ok(())
    }

    fn join(&self, timeout: Option<Duration>) -> Result<()> {
        let s = &self.shared;
        let done = || s.u64(OFF_PUTS).load(Ordering::SeqCst) & UNFINISHED == 0;
        if wait_until(
            s.u32(OFF_DONE_SEQ),
            s.u32(OFF_DONE_SEQ + 4),
            deadline_of(timeout),
            done,
        ) {
            Ok(())
        } else {
            Err(Error::Timeout)
        }
    }
}

/// The error for a message whose descriptors are gone; `number` is its put number (messages
/// are numbered from 0 in the order they were put, modulo 2^32).
fn lost(number: u32) -> Error {
    Error::Malformed(format!(
        "queue message #{number} was lost: its handles are gone \
         (a reader died while receiving them)"
    ))
}

/// A process-shared FIFO queue of `T` (Python's `multiprocessing.Queue`).
///
/// Any number of processes may `put` and `get`; clone the handle or pass it to workers (it
/// travels as a handle, the queue itself is shared). Optional `maxsize` gives back-pressure.
/// A `put` returns once the message is in shared memory, so a writer can exit without waiting
/// for readers. Methods come in families: `put` / `put_timeout` / `try_put` and `get` /
/// `get_timeout` / `try_get`.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn produce(q: mp::Queue<String>) -> mp::Result<()> {
///     q.put("hello from the child".to_string())?;
///     Ok(())
/// }
///
/// let q = mp::Queue::new()?;
/// let mut p = mp::spawn(produce, q.clone())?;
/// p.join()??; // joining before draining is fine
/// assert_eq!(q.get()?, "hello from the child");
/// # Ok::<(), mp::Error>(())
/// ```
pub struct Queue<T> {
    raw: Arc<Raw>,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            raw: Arc::clone(&self.raw),
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.raw.len())
            .field("maxsize", &self.raw.shared.maxsize())
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An unbounded queue. Unbounded means: up to [`DEFAULT_QUEUE_CAPACITY`] bytes of encoded
    /// messages in flight, past which `put` waits for readers.
    pub fn new() -> Result<Queue<T>> {
        Self::with_capacity(0, DEFAULT_QUEUE_CAPACITY)
    }

    /// A queue holding at most `maxsize` messages (`put` waits while it is full; 0: no limit).
    ///
    /// ```
    /// let q = mp::Queue::with_maxsize(2)?;
    /// q.put(1)?;
    /// q.put(2)?;
    /// assert!(q.full());
    /// assert!(matches!(q.put_timeout(3, std::time::Duration::from_millis(5)), Err(e) if matches!(e.error, mp::Error::Full)));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn with_maxsize(maxsize: usize) -> Result<Queue<T>> {
        Self::with_capacity(maxsize, DEFAULT_QUEUE_CAPACITY)
    }

    /// A queue with `maxsize` messages at most (0: no limit) and a ring of `bytes` bytes of
    /// shared memory (at least 1 MiB). Messages above 64 KiB use memory of their own.
    ///
    /// ```
    /// let q = mp::Queue::<u64>::with_capacity(0, 4 << 20)?;
    /// q.put(9)?;
    /// assert_eq!(q.get()?, 9);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn with_capacity(maxsize: usize, bytes: usize) -> Result<Queue<T>> {
        Ok(Queue {
            raw: Arc::new(Raw::new(bytes, maxsize, false)?),
            _type: PhantomData,
        })
    }

    fn put_inner(&self, value: T, timeout: Option<Duration>) -> Result<(), SendError<T>> {
        thread_local! {
            static BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
        }
        let encoded = match Raw::encode(&value, BUFFER.take()) {
            Ok(e) => e,
            Err(error) => return Err(SendError { error, value }),
        };
        let result = self.raw.put(&encoded, timeout);
        BUFFER.set(encoded.bytes);
        match result {
            Ok(()) => Ok(()),
            Err(error) => Err(SendError { error, value }),
        }
    }

    /// Puts `value`, waiting while the queue is full. Encoding errors are returned here.
    pub fn put(&self, value: T) -> Result<(), SendError<T>> {
        self.put_inner(value, None)
    }

    /// Puts `value`, waiting at most `timeout` for room ([`Error::Full`]).
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), SendError<T>> {
        self.put_inner(value, Some(timeout))
    }

    /// Puts `value` only if there is room now ([`Error::Full`]); Python's `put_nowait`.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, value: T) -> Result<(), SendError<T>> {
        self.put_inner(value, Some(Duration::ZERO))
    }

    fn get_inner(&self, timeout: Option<Duration>) -> Result<T> {
        self.raw
            .get(timeout, |bytes, fds| codec::decode(bytes, fds))
    }

    /// Takes the oldest message, waiting as long as it takes.
    pub fn get(&self) -> Result<T> {
        self.get_inner(None)
    }

    /// Takes the oldest message, waiting at most `timeout` ([`Error::Timeout`]).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_inner(Some(timeout))
    }

    /// Takes the oldest message if there is one ([`Error::Empty`]); Python's `get_nowait`.
    ///
    /// ```
    /// let q = mp::Queue::<u8>::new()?;
    /// assert!(matches!(q.try_get(), Err(mp::Error::Empty)));
    /// # Ok::<(), mp::Error>(())
    /// ```
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T> {
        self.get_inner(Some(Duration::ZERO))
    }

    /// The number of messages in the queue (exact at the instant of reading; others may change
    /// it right after).
    pub fn qsize(&self) -> usize {
        self.raw.len()
    }

    /// Whether the queue holds no message (approximate, as `qsize`).
    pub fn empty(&self) -> bool {
        self.raw.len() == 0
    }

    /// Whether the queue holds `maxsize` messages (never, for an unbounded queue).
    pub fn full(&self) -> bool {
        let max = self.raw.shared.maxsize();
        max > 0 && self.raw.len() as u64 >= max
    }

    /// Closes this handle (and its clones in this process): further `put`/`get` through it are
    /// [`Error::Closed`]. Messages already put stay readable by other handles.
    pub fn close(&self) {
        self.raw.closed.store(true, Ordering::Relaxed);
    }
}

/// A queue without size limits or counts (Python's `SimpleQueue`): `put`, `get`, `empty`.
///
/// ```
/// let q = mp::SimpleQueue::new()?;
/// q.put("x".to_string())?;
/// assert!(!q.empty());
/// assert_eq!(q.get()?, "x");
/// # Ok::<(), mp::Error>(())
/// ```
pub struct SimpleQueue<T> {
    inner: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SimpleQueue").field(&self.inner).finish()
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new, empty queue.
    pub fn new() -> Result<Self> {
        Ok(SimpleQueue {
            inner: Queue::new()?,
        })
    }
    /// See [`Queue::put`].
    pub fn put(&self, value: T) -> Result<(), SendError<T>> {
        self.inner.put(value)
    }
    /// See [`Queue::get`].
    pub fn get(&self) -> Result<T> {
        self.inner.get()
    }
    /// See [`Queue::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.inner.get_timeout(timeout)
    }
    /// See [`Queue::empty`].
    pub fn empty(&self) -> bool {
        self.inner.empty()
    }
    /// See [`Queue::close`].
    pub fn close(&self) {
        self.inner.close()
    }
}

/// A queue whose consumers acknowledge each message with [`task_done`](Self::task_done), so a
/// producer can [`join`](Self::join) until all were processed (Python's `JoinableQueue`).
///
/// ```
/// let q = mp::JoinableQueue::new()?;
/// q.put(1u32)?;
/// let job = q.get()?;
/// q.task_done()?;
/// q.join()?; // returns: every put was acknowledged
/// # let _ = job;
/// # Ok::<(), mp::Error>(())
/// ```
pub struct JoinableQueue<T> {
    inner: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JoinableQueue").field(&self.inner).finish()
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// A new unbounded joinable queue.
    pub fn new() -> Result<Self> {
        Self::with_maxsize(0)
    }
    /// A joinable queue holding at most `maxsize` messages (0: no limit).
    pub fn with_maxsize(maxsize: usize) -> Result<Self> {
        let raw = Raw::new(DEFAULT_QUEUE_CAPACITY, maxsize, true)?;
        Ok(JoinableQueue {
            inner: Queue {
                raw: Arc::new(raw),
                _type: PhantomData,
            },
        })
    }
    /// Marks one message taken with `get` as processed. Calling it more often than messages
    /// were put is an error.
    pub fn task_done(&self) -> Result<()> {
        self.inner.raw.task_done()
    }
    /// Waits until every message put has been marked done.
    pub fn join(&self) -> Result<()> {
        self.inner.raw.join(None)
    }
    /// Like [`join`](Self::join), giving up after `timeout` ([`Error::Timeout`]).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.inner.raw.join(Some(timeout))
    }
}

impl<T> std::ops::Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.inner
    }
}

// Handles: the shared memory and the two side-channel sockets travel as descriptors.

impl<T> Serialize for Queue<T> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> std::result::Result<Z::Ok, Z::Error> {
        use serde::ser::Error as _;
        let s = &self.raw.shared;
        let mem = codec::push_fd(s.map.fd().as_raw_fd()).map_err(Z::Error::custom)?;
        let tx = codec::push_fd(s.side_tx.as_raw_fd()).map_err(Z::Error::custom)?;
        let rx = codec::push_fd(s.side_rx.as_raw_fd()).map_err(Z::Error::custom)?;
        let wire = QueueWire {
            mem,
            tx,
            rx,
            len: s.map.len() as u64,
            joinable: self.raw.joinable,
        };
        wire.serialize(serializer)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename = "mp::Queue")]
struct QueueWire {
    mem: u32,
    tx: u32,
    rx: u32,
    len: u64,
    joinable: bool,
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let w = QueueWire::deserialize(deserializer)?;
        let mem = codec::take_fd(w.mem).map_err(D::Error::custom)?;
        let tx = codec::take_fd(w.tx).map_err(D::Error::custom)?;
        let rx = codec::take_fd(w.rx).map_err(D::Error::custom)?;
        let shared = Shared::open(mem, w.len, tx, rx).map_err(D::Error::custom)?;
        let raw = Raw {
            shared,
            closed: AtomicBool::new(false),
            joinable: w.joinable,
        };
        Ok(Queue {
            raw: Arc::new(raw),
            _type: PhantomData,
        })
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> std::result::Result<Z::Ok, Z::Error> {
        self.inner.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Ok(SimpleQueue {
            inner: Queue::deserialize(deserializer)?,
        })
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> std::result::Result<Z::Ok, Z::Error> {
        self.inner.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let inner = Queue::deserialize(deserializer)?;
        if !inner.raw.joinable {
            return Err(serde::de::Error::custom(
                "expected a JoinableQueue, got a plain Queue",
            ));
        }
        Ok(JoinableQueue { inner })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_wraparound() {
        let q = Queue::<Vec<u8>>::with_capacity(0, MIN_CAPACITY).unwrap();
        // Push ~4x the ring through, in pieces that do not divide it evenly.
        for round in 0..40u32 {
            for i in 0..10u32 {
                q.put(vec![(round * 10 + i) as u8; 10_001]).unwrap();
            }
            for i in 0..10u32 {
                assert_eq!(q.get().unwrap(), vec![(round * 10 + i) as u8; 10_001]);
            }
        }
        assert!(q.empty());
    }

    #[test]
    fn bounded_and_nonblocking() {
        let q = Queue::with_maxsize(1).unwrap();
        q.put(1u8).unwrap();
        assert!(matches!(q.try_put(2).unwrap_err().error, Error::Full));
        assert_eq!(q.qsize(), 1);
        assert_eq!(q.get().unwrap(), 1);
        assert!(matches!(q.try_get(), Err(Error::Empty)));
        assert!(matches!(
            q.get_timeout(Duration::from_millis(5)),
            Err(Error::Timeout)
        ));
    }

    #[test]
    fn large_messages_go_out_of_line() {
        let q = Queue::new().unwrap();
        let big = serde_bytes::ByteBuf::from(vec![3u8; 5 * INLINE_MAX]);
        q.put(big.clone()).unwrap();
        q.put(serde_bytes::ByteBuf::from(vec![1u8])).unwrap();
        assert_eq!(q.get().unwrap(), big);
        assert_eq!(q.get().unwrap().len(), 1);
    }

    #[test]
    fn close_stops_this_handle() {
        let q = Queue::<u8>::new().unwrap();
        q.close();
        assert!(matches!(q.put(1).unwrap_err().error, Error::Closed));
        assert!(matches!(q.get(), Err(Error::Closed)));
    }

    /// A thread id that has certainly exited: a finished thread's.
    fn dead_tid() -> u32 {
        std::thread::spawn(sys::gettid).join().unwrap()
    }

    #[test]
    fn a_producer_killed_before_storing_tail_has_its_put_finished() {
        let q = JoinableQueue::new().unwrap();
        let s = &q.inner.raw.shared;
        q.put(1u32).unwrap();
        // The state a producer killed just before its last store leaves: record written and
        // counted, `tail` not advanced, producer lock held by the dead thread.
        let tail = s.u64(OFF_TAIL).load(Ordering::SeqCst);
        q.put(2).unwrap();
        s.u64(OFF_TAIL).store(tail, Ordering::SeqCst);
        s.u32(OFF_PLOCK).store(dead_tid(), Ordering::SeqCst);
        q.put(3).unwrap();
        assert_eq!(q.qsize(), 3);
        for expected in 1..=3 {
            assert_eq!(q.get_timeout(Duration::from_secs(1)).unwrap(), expected);
            q.task_done().unwrap();
        }
        assert!(q.empty());
        q.join_timeout(Duration::from_secs(1)).unwrap();
        assert!(q.task_done().is_err());
    }

    #[test]
    fn a_consumer_killed_after_its_commit_leaves_a_true_count() {
        let q = Queue::new().unwrap();
        let s = &q.raw.shared;
        for i in 0..3u8 {
            q.put(i).unwrap();
        }
        assert_eq!(q.get().unwrap(), 0);
        // A consumer killed between storing `head` and decrementing `len`, lock held.
        s.u64(OFF_LEN).fetch_add(1, Ordering::SeqCst);
        s.u32(OFF_CLOCK).store(dead_tid(), Ordering::SeqCst);
        assert_eq!(q.get().unwrap(), 1);
        assert_eq!(q.qsize(), 1);
        assert_eq!(q.get().unwrap(), 2);
        assert!(q.empty());
    }

    #[test]
    fn a_panicking_decode_consumes_the_message_and_frees_the_lock() {
        #[derive(Debug, Serialize)]
        struct Bomb;
        impl<'de> Deserialize<'de> for Bomb {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                <()>::deserialize(d)?;
                panic!("boom")
            }
        }
        let q = Queue::<Bomb>::new().unwrap();
        q.put(Bomb).unwrap();
        q.put(Bomb).unwrap();
        let caught = std::panic::catch_unwind(|| q.get().map(|_| ()));
        assert!(caught.is_err());
        assert_eq!(q.qsize(), 1);
        // The lock is free (a held one would time out here) and the next message is next.
        assert!(
            std::panic::catch_unwind(|| q.get_timeout(Duration::from_secs(1)).map(|_| ())).is_err()
        );
        assert!(q.empty());
    }

    #[test]
    fn joinable_counts() {
        let q = JoinableQueue::new().unwrap();
        q.put(1u8).unwrap();
        assert!(matches!(
            q.join_timeout(Duration::from_millis(5)),
            Err(Error::Timeout)
        ));
        q.get().unwrap();
        q.task_done().unwrap();
        q.join().unwrap();
        assert!(q.task_done().is_err());
    }
}
