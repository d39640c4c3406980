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
use crate::error::{Error, Result};
use crate::sync::raw::{self, RawMutex};
use crate::sys;
use crate::wire::{Frame, RingFrame, encode_frame_for_ring, encode_frame_in_place};

/// How long a consumer repairing after a dead consumer waits for the producer lock before
/// leaving the recount to the next producer.
const RECOUNT_WAIT: Duration = Duration::from_millis(20);

/// The untyped queue behind the three typed ones.
pub(super) struct Raw {
    pub(super) shared: Shared,
    pub(super) closed: AtomicBool,
    pub(super) joinable: bool,
}

/// A message ready to put: its frame (header and inline payload, in a buffer reused across
/// puts), the descriptors of the handles inside it, and its sealed buffer when out of line.
pub(super) struct Outgoing {
    pub(super) frame: Vec<u8>,
    fds: Vec<RawFd>,
    sealed: Option<sys::SealedBuffer>,
    /// A bulk value's frame length: it is encoded in place in the ring, under the producer
    /// lock (`frame` is then empty).
    in_place: Option<usize>,
}

#[cfg(test)]
impl Outgoing {
    /// Whether the payload travels out of line (in its sealed buffer).
    pub(super) fn is_out_of_line(&self) -> bool {
        self.sealed.is_some()
    }

    /// Whether the value is encoded in place in the ring.
    pub(super) fn is_in_place(&self) -> bool {
        self.in_place.is_some()
    }
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

    /// The shutdown state: [`OPEN`], [`SHUT_DOWN`] or [`SHUT_DOWN_NOW`].
    pub(super) fn shutdown_state(&self) -> u32 {
        self.shared.u32(OFF_SHUTDOWN).load(Ordering::SeqCst)
    }

    /// Shuts the queue down for every handle in every process (see `README.md`): puts fail
    /// with [`Error::ShutDown`] from now on, and every sleeper wakes to see it. `immediate`
    /// also drops the pending messages (one unfinished task each, for `JoinableQueue`).
    /// Waits for a producer inside its publish, so no put lands after this returns.
    pub(super) fn shutdown(&self, immediate: bool) {
        let s = &self.shared;
        let state = if immediate { SHUT_DOWN_NOW } else { SHUT_DOWN };
        s.u32(OFF_SHUTDOWN).fetch_max(state, Ordering::SeqCst);
        // Putters waiting for room, and a producer waiting on the side channel under the
        // producer lock, see the state and give up: the lock is ours soon.
        bump_and_wake(s.u32(OFF_SPACE_SEQ), s.u32(OFF_SPACE_SEQ + 4));
        if let Ok(recovered) = self.plock().lock(None) {
            if recovered {
                self.recover_producer();
            }
            if immediate {
                self.drain_locked_producer();
            }
            self.plock().unlock();
        }
        bump_and_wake(s.u32(OFF_DATA_SEQ), s.u32(OFF_DATA_SEQ + 4));
        bump_and_wake(s.u32(OFF_SPACE_SEQ), s.u32(OFF_SPACE_SEQ + 4));
        bump_and_wake(s.u32(OFF_DONE_SEQ), s.u32(OFF_DONE_SEQ + 4));
    }

    /// With the producer lock held: takes the consumer lock and drops every pending message
    /// (an immediate shutdown), with its descriptors; a joinable queue counts each as done.
    fn drain_locked_producer(&self) {
        let s = &self.shared;
        if self.clock().lock(None).is_err() {
            return;
        }
        let tail = s.u64(OFF_TAIL).load(Ordering::Acquire);
        let mut pos = s.u64(OFF_HEAD).load(Ordering::Acquire);
        let mut dropped = 0u64;
        while pos < tail {
            let Ok(record) = s.read_record_head(pos) else {
                break;
            };
            pos = record.pos + record.len();
            dropped += 1;
        }
        s.u64(OFF_HEAD).store(tail, Ordering::Release);
        s.u64(OFF_LEN).store(0, Ordering::SeqCst);
        s.side.discard_all();
        if self.joinable && dropped > 0 {
            let puts = s.u64(OFF_PUTS);
            let mut current = puts.load(Ordering::SeqCst);
            loop {
                let done = (current & UNFINISHED).min(dropped);
                match puts.compare_exchange(
                    current,
                    current - done,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => break,
                    Err(now) => current = now,
                }
            }
        }
        self.clock().unlock();
    }

    /// Encodes `value` as a frame of the stream transport into `frame` (a buffer reused
    /// across puts, so large messages do not regrow it); payloads above the ring's inline
    /// maximum (`ring::inline_max`) go out of line.
    pub(super) fn encode<T: Serialize>(&self, value: &T, mut frame: Vec<u8>) -> Result<Outgoing> {
        let mut fds = Vec::new();
        let (sealed, in_place) =
            match encode_frame_for_ring(value, &mut frame, &mut fds, self.shared.inline_max)? {
                RingFrame::Encoded(sealed) => (sealed, None),
                RingFrame::InPlace(len) => {
                    frame.clear();
                    (None, Some(len))
                }
            };
        Ok(Outgoing {
            frame,
            fds,
            sealed,
            in_place,
        })
    }

    /// Puts the message `value` was encoded to by [`Raw::encode`] (a bulk value is encoded
    /// again, in place in the ring: its descriptors are then collected in `msg`).
    pub(super) fn put<T: Serialize>(
        &self,
        value: &T,
        msg: &mut Outgoing,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let deadline = raw::deadline_after(timeout);
        let frame_len = msg.in_place.unwrap_or(msg.frame.len());
        let tail = self.reserve(record_len(frame_len), deadline)?;
        let result = match msg.in_place {
            None => Ok(self.publish(msg, tail, deadline)),
            // A panicking `Serialize` must not leave the producer lock held by a live thread
            // (never taken over): it resumes once the lock is released.
            Some(len) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.publish_in_place(value, len, &mut msg.fds, tail, deadline)
            })),
        };
        self.plock().unlock();
        let result = result.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        if result.is_ok() {
            let s = &self.shared;
            bump_and_wake(s.u32(OFF_DATA_SEQ), s.u32(OFF_DATA_SEQ + 4));
        }
        result
    }

    /// Waits until a record of `record` bytes fits (and `maxsize` allows one more message),
    /// then takes the producer lock; returns the tail to write at, the lock held.
    fn reserve(&self, record: u64, deadline: Option<Instant>) -> Result<u64> {
        self.check_open()?;
        if self.shutdown_state() != OPEN {
            return Err(Error::ShutDown);
        }
        let s = &self.shared;
        let maxsize = s.maxsize();
        loop {
            let fits = || {
                // Head first: tail only grows, so a later tail is never behind this head.
                let head = s.u64(OFF_HEAD).load(Ordering::Acquire);
                let tail = s.u64(OFF_TAIL).load(Ordering::Acquire);
                let room = s.room_for(head, tail, record);
                room && (maxsize == 0 || s.u64(OFF_LEN).load(Ordering::Acquire) < maxsize)
            };
            let ready = || fits() || self.shutdown_state() != OPEN;
            if !wait_until(
                s.u32(OFF_SPACE_SEQ),
                s.u32(OFF_SPACE_SEQ + 4),
                deadline,
                ready,
            ) {
                return Err(Error::Full);
            }
            if self.shutdown_state() != OPEN {
                return Err(Error::ShutDown);
            }
            if self.plock().lock(deadline).map_err(|_| Error::Full)? {
                self.recover_producer();
            } else if s.u64(OFF_RECOUNT).load(Ordering::Relaxed) != 0 {
                self.recount_locked_producer();
            }
            // Checked under the lock that `shutdown` takes after setting the state: a put
            // either lands before `shutdown` returns or fails.
            if self.shutdown_state() != OPEN {
                self.plock().unlock();
                return Err(Error::ShutDown);
            }
            if fits() {
                return Ok(s.u64(OFF_TAIL).load(Ordering::Relaxed));
            }
            self.plock().unlock();
        }
    }

    /// With the producer lock held and room checked: sends descriptors, writes, publishes.
    fn publish(&self, msg: &Outgoing, tail: u64, deadline: Option<Instant>) -> Result<()> {
        let fd_seq = self.send_fds(&msg.fds, msg.sealed.as_ref(), deadline)?;
        let number = self.next_number();
        let end = self.shared.write_record(tail, number, fd_seq, &msg.frame);
        self.commit(number, end);
        Ok(())
    }

    /// [`Raw::publish`] for a bulk value: encodes it straight into its record's place in the
    /// ring (the payload's only copy on this side), then sends the descriptors it holds and
    /// publishes. Nothing is visible to consumers before the commit, so an encoding error (or
    /// a death) leaves the ring as it was.
    fn publish_in_place<T: Serialize>(
        &self,
        value: &T,
        frame_len: usize,
        fds: &mut Vec<RawFd>,
        tail: u64,
        deadline: Option<Instant>,
    ) -> Result<()> {
        let s = &self.shared;
        let pos = s.place_record(tail, frame_len);
        #[allow(unsafe_code)]
        // SAFETY: the producer lock is held and `reserve` checked that the record fits before
        // the head (`frame_slot`'s contract); the slice is dropped before the commit.
        let slot = unsafe { s.frame_slot(pos, frame_len) };
        encode_frame_in_place(value, slot, fds)?;
        let fd_seq = self.send_fds(fds, None, deadline)?;
        let number = self.next_number();
        let end = s.write_prefix(pos, number, fd_seq, frame_len);
        self.commit(number, end);
        Ok(())
    }

    /// With the producer lock held: sends the descriptors of the message being put (and its
    /// sealed buffer, last) on the side channel, tagged; returns the tag (0: none sent).
    fn send_fds(
        &self,
        raw_fds: &[RawFd],
        sealed: Option<&sys::SealedBuffer>,
        deadline: Option<Instant>,
    ) -> Result<u64> {
        let s = &self.shared;
        #[allow(unsafe_code)]
        let mut fds: Vec<BorrowedFd<'_>> = raw_fds
            .iter()
            // SAFETY: the descriptors were recorded by `codec::Fd` while encoding the value
            // being put, from handles inside it; the caller holds that value until `put`
            // returns, after this send.
            .map(|&fd| unsafe { sys::borrow_raw_fd(fd) })
            .collect();
        if let Some(sealed) = sealed {
            fds.push(sealed.fd());
        }
        let mut fd_seq = 0;
        if !fds.is_empty() {
            fd_seq = s.u64(OFF_FD_SEQ).fetch_add(1, Ordering::Relaxed);
            s.side
                .send(fd_seq, &fds, deadline, || self.shutdown_state() != OPEN)?;
        }
        Ok(fd_seq)
    }

    /// With the producer lock held: the put number of the message being put (only producers
    /// change the put count, under the lock).
    fn next_number(&self) -> u32 {
        (self.shared.u64(OFF_PUTS).load(Ordering::Acquire) >> 32) as u32
    }

    /// With the producer lock held and the record complete up to `end`: publishes it.
    fn commit(&self, number: u32, end: u64) {
        let s = &self.shared;
        // The record is complete: arm the intent, so that if we die from here on, the next
        // producer finishes this publish (see `recover_producer`).
        s.u64(OFF_INTENT_PUTS)
            .store(u64::from(number.wrapping_add(1)), Ordering::SeqCst);
        s.u64(OFF_INTENT_TAIL).store(end, Ordering::SeqCst);
        s.u64(OFF_PUTS)
            .fetch_add(ONE_PUT + u64::from(self.joinable), Ordering::SeqCst);
        s.u64(OFF_LEN).fetch_add(1, Ordering::SeqCst);
        s.u64(OFF_TAIL).store(end, Ordering::Release);
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
            // A corrupted record ends the count; the consumer reading it reports it.
            let Ok(record) = s.read_record_head(pos) else {
                break;
            };
            pos = record.pos + record.len();
            n += 1;
        }
        s.u64(OFF_LEN).store(n, Ordering::SeqCst);
        s.u64(OFF_RECOUNT).store(0, Ordering::SeqCst);
        self.clock().unlock();
    }

    /// With the ring found empty: if the producer lock is held by a thread that died, takes it
    /// over, which publishes the dead producer's record if it was complete. `true` when a
    /// record may have appeared.
    fn rescue_dead_producer(&self) -> bool {
        let Some(tid) = self.plock().0.take_over_dead() else {
            return false;
        };
        tracing::warn!(target: "mp", "queue lock holder (thread {tid}) died; lock recovered");
        self.recover_producer();
        self.plock().unlock();
        true
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
            // After a shutdown, what is left is still taken (unless it was immediate); then
            // the error. A put that passed its check before the shutdown may still be
            // publishing: wait for the producer lock (which also finishes a dead producer's
            // publish) and look again. No put lands after that, so empty stays empty.
            match self.shutdown_state() {
                OPEN => {}
                SHUT_DOWN if nonempty() => {}
                SHUT_DOWN => {
                    if let Ok(recovered) = self.plock().lock(deadline) {
                        if recovered {
                            self.recover_producer();
                        }
                        self.plock().unlock();
                    }
                    if !nonempty() {
                        return Err(Error::ShutDown);
                    }
                }
                _ => return Err(Error::ShutDown),
            }
            let ready = || nonempty() || self.shutdown_state() != OPEN;
            // Wait in slices: a producer that died after completing its record never wakes
            // us, so an empty ring is checked for one every `raw::OWNER_CHECK`.
            let slice = Instant::now() + raw::OWNER_CHECK;
            let until = deadline.map_or(slice, |d| d.min(slice));
            if !wait_until(
                s.u32(OFF_DATA_SEQ),
                s.u32(OFF_DATA_SEQ + 4),
                Some(until),
                ready,
            ) {
                if self.rescue_dead_producer() {
                    continue;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(if timeout == Some(Duration::ZERO) {
                        Error::Empty
                    } else {
                        Error::Timeout
                    });
                }
                continue;
            }
            let recovered = self.clock().lock(deadline)?;
            let popped = self.pop_locked(&mut decode);
            self.clock().unlock();
            if recovered {
                self.recount();
            }
            match popped {
                Ok(Some((message, frame))) => {
                    drop(frame);
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
    /// frame comes back too, so that an out-of-line buffer is unmapped after the lock is
    /// released.
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
    ) -> Result<Option<(std::thread::Result<Result<T>>, Option<Frame>)>> {
        let s = &self.shared;
        let head = s.u64(OFF_HEAD).load(Ordering::Relaxed);
        let tail = s.u64(OFF_TAIL).load(Ordering::Acquire);
        if head == tail {
            return Ok(None);
        }
        let record = s.read_record_head(head)?;
        let (number, nfds) = (record.number, record.fd_count());
        let end = record.pos + record.len();
        if end > tail {
            return Err(Error::Malformed(
                "queue ring is corrupted: a record runs past the tail".to_owned(),
            ));
        }
        let mut fds = Vec::new();
        // Whether the side channel's copy of our descriptors is still queued (peeked).
        let mut peeked = false;
        let received = if nfds == 0 {
            Ok(())
        } else if nfds <= sys::MAX_FDS_PER_MSG {
            s.side
                .peek(record.fd_seq, number, nfds, &mut fds)
                .inspect(|()| peeked = true)
        } else {
            s.side.recv(record.fd_seq, number, nfds, &mut fds)
        };
        let mut kept = None;
        // A panicking `Deserialize` must not leave the lock held (by a live thread, so never
        // taken over) nor the message in place to panic every consumer: the message is
        // consumed and the panic resumed once the lock is released.
        let message = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            received.and_then(|()| {
                if !record.frame.out_of_line {
                    // Decoded in place: the ring's bytes are the message's only copy between
                    // the producer's encoding and the value.
                    #[allow(unsafe_code)]
                    // SAFETY: the consumer lock is held and `record` is the head record, checked
                    // above to end before the tail (`inline_payload`'s contract); the slice is
                    // dropped before the commit below moves the head.
                    let payload = unsafe { s.inline_payload(&record) };
                    return decode(payload, std::mem::take(&mut fds));
                }
                let frame = Frame::from_parts(&record.frame, Vec::new(), std::mem::take(&mut fds))
                    .map_err(|e| match e {
                        Error::Malformed(what) => {
                            Error::Malformed(format!("queue message #{number}: {what}"))
                        }
                        other => other,
                    })?;
                let (payload, fds) = kept.insert(frame).payload_and_fds();
                decode(payload, fds)
            })
        }));
        // The commit: from here on the message is this consumer's.
        s.u64(OFF_HEAD).store(end, Ordering::Release);
        s.u64(OFF_LEN).fetch_sub(1, Ordering::SeqCst);
        if peeked {
            s.side.remove_first();
        }
        Ok(Some((message, kept)))
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
