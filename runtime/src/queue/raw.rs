//! The untyped queue behind the three typed ones: the put and get protocols on the ring
//! (wait for room or data, lock, write or read, publish or commit) and the repairs after a
//! process died holding a lock (see `README.md`).
//!
//! This file must not know the header's layout beyond the named offsets of `ring.rs`, nor
//! call the OS: the side channel is `side.rs`, every other call goes through `sys`.

use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::ring::*;
use crate::channel::INLINE_MAX;
use crate::codec;
use crate::error::{Error, Result};
use crate::sync::raw::{self, RawMutex};
use crate::sys;

/// How long a consumer repairing after a dead consumer waits for the producer lock before
/// leaving the recount to the next producer.
const RECOUNT_WAIT: Duration = Duration::from_millis(20);

/// The untyped queue behind the three typed ones.
pub(super) struct Raw {
    pub(super) shared: Shared,
    pub(super) closed: AtomicBool,
    pub(super) joinable: bool,
}

pub(super) struct Encoded {
    pub(super) bytes: Vec<u8>,
    fds: Vec<RawFd>,
    sealed: Option<sys::SealedBuffer>,
}

impl Raw {
    pub(super) fn new(capacity: usize, maxsize: usize, joinable: bool) -> Result<Raw> {
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
    pub(super) fn encode<T: Serialize>(value: &T, mut bytes: Vec<u8>) -> Result<Encoded> {
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

    pub(super) fn put(&self, msg: &Encoded, timeout: Option<Duration>) -> Result<()> {
        self.check_open()?;
        let s = &self.shared;
        let deadline = raw::deadline_after(timeout);
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
            s.side.send(fd_seq, &fds, deadline)?;
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

    /// Takes the oldest message and decodes it with `decode`, all under the consumer lock,
    /// and only then commits (advances `head`): a consumer that dies at any point before the
    /// commit leaves the message for the next one (see `README.md`).
    pub(super) fn get<T>(
        &self,
        timeout: Option<Duration>,
        mut decode: impl FnMut(&[u8], Vec<OwnedFd>) -> Result<T>,
    ) -> Result<T> {
        self.check_open()?;
        let s = &self.shared;
        let deadline = raw::deadline_after(timeout);
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
            s.side
                .peek(fd_seq, number, nfds, &mut fds)
                .inspect(|()| peeked = true)
        } else {
            s.side.recv(fd_seq, number, nfds, &mut fds)
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
            s.side.remove_first();
        }
        Ok(Some((message, buffer)))
    }

    pub(super) fn len(&self) -> usize {
        self.shared.u64(OFF_LEN).load(Ordering::Relaxed) as usize
    }

    pub(super) fn task_done(&self) -> Result<()> {
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

    pub(super) fn join(&self, timeout: Option<Duration>) -> Result<()> {
        let s = &self.shared;
        let done = || s.u64(OFF_PUTS).load(Ordering::SeqCst) & UNFINISHED == 0;
        if wait_until(
            s.u32(OFF_DONE_SEQ),
            s.u32(OFF_DONE_SEQ + 4),
            raw::deadline_after(timeout),
            done,
        ) {
            Ok(())
        } else {
            Err(Error::Timeout)
        }
    }
}
