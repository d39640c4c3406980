//! The queue's side channel: a packet socket pair beside the ring carrying the descriptors
//! that cannot live in shared memory (handles inside messages, and the sealed buffers of large
//! ones), each packet tagged with the sequence number its record carries.
//!
//! Consumers take their own copies by *peeking* (`MSG_PEEK` on a Unix socket installs
//! duplicates in the peeker and leaves the packet queued), so a consumer killed before its
//! commit leaves the descriptors for the next one. This file must not read or write the ring,
//! nor decide when a message is committed (that is `raw.rs`); all socket calls go through
//! `sys`.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sys;

/// A packet's tag: the sequence number (`u64`) and how many descriptors it carries (`u32`).
const TAG: usize = 12;

/// Both ends of the side channel (every handle holds both: any handle may put and get).
pub(super) struct SideChannel {
    pub(super) tx: OwnedFd,
    pub(super) rx: OwnedFd,
}

impl SideChannel {
    pub(super) fn new() -> Result<SideChannel> {
        let (tx, rx) = sys::socketpair_packet()
            .map_err(Error::io("cannot create the queue's side channel"))?;
        Ok(SideChannel { tx, rx })
    }

    /// Sends `fds` tagged `seq`, in packets of at most [`sys::MAX_FDS_PER_MSG`], waiting for
    /// room until `deadline` ([`Error::Full`]) or until `stop()` holds (the queue was shut
    /// down: [`Error::ShutDown`]).
    pub(super) fn send(
        &self,
        seq: u64,
        fds: &[BorrowedFd<'_>],
        deadline: Option<Instant>,
        stop: impl Fn() -> bool,
    ) -> Result<()> {
        for batch in fds.chunks(sys::MAX_FDS_PER_MSG) {
            let mut tag = [0u8; TAG];
            tag[0..8].copy_from_slice(&seq.to_le_bytes());
            tag[8..12].copy_from_slice(&(batch.len() as u32).to_le_bytes());
            loop {
                match sys::send_with_fds(self.tx.as_fd(), &[IoSlice::new(&tag)], batch, true) {
                    Ok(_) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        // Side channel full: readers are behind. Wait for them (we hold only
                        // the producer lock, so they can make progress).
                        let remaining =
                            deadline.map(|d| d.saturating_duration_since(Instant::now()));
                        if remaining.is_some_and(|r| r.is_zero()) {
                            return Err(Error::Full);
                        }
                        if stop() {
                            return Err(Error::ShutDown);
                        }
                        let nap = remaining.map_or(Duration::from_millis(50), |r| {
                            r.min(Duration::from_millis(50))
                        });
                        let _ = sys::poll_writable(self.tx.as_fd(), Some(nap));
                    }
                    Err(e) => {
                        return Err(Error::io("cannot send descriptors through the queue")(e));
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes the first packet (after its descriptors were peeked and the message
    /// committed). Failing here leaves a leftover that the next reader discards.
    pub(super) fn remove_first(&self) {
        let mut tag = [0u8; TAG];
        let mut copies = VecDeque::new();
        let _ = sys::recv_with_fds(self.rx.as_fd(), &mut tag, &mut copies, true);
    }

    /// Discards every queued packet (an immediate shutdown dropped their messages).
    pub(super) fn discard_all(&self) {
        let _ = self.discard_before(u64::MAX);
    }

    /// Peeks the tag of the first packet, if any.
    fn peek_tag(&self) -> Option<u64> {
        let mut tag = [0u8; TAG];
        match sys::peek_bytes(self.rx.as_fd(), &mut tag) {
            Ok(_) => Some(u64::from_le_bytes(tag[0..8].try_into().expect("8"))),
            Err(_) => None,
        }
    }

    /// Discards packets tagged before `seq`: descriptors of a producer that died before
    /// publishing, or of a reader that died after committing. Returns the first tag left, if
    /// any.
    fn discard_before(&self, seq: u64) -> Option<u64> {
        loop {
            let their_seq = self.peek_tag()?;
            if their_seq >= seq {
                return Some(their_seq);
            }
            let mut buf = [0u8; TAG];
            let mut batch = VecDeque::new();
            if sys::recv_with_fds(self.rx.as_fd(), &mut buf, &mut batch, true).is_err() {
                return None;
            }
        }
    }

    /// Takes copies of the `n` descriptors tagged `seq` (one packet) without removing them:
    /// `MSG_PEEK` on a Unix socket installs duplicates in the peeker.
    pub(super) fn peek(
        &self,
        seq: u64,
        number: u32,
        n: usize,
        out: &mut Vec<OwnedFd>,
    ) -> Result<()> {
        if self.discard_before(seq) != Some(seq) {
            return Err(lost(number));
        }
        let mut tag = [0u8; TAG];
        let mut got = VecDeque::new();
        if sys::peek_with_fds(self.rx.as_fd(), &mut tag, &mut got).is_err() || got.len() != n {
            return Err(lost(number));
        }
        out.extend(got);
        Ok(())
    }

    /// Receives the `n` descriptors tagged `seq` spread over several packets (more than
    /// [`sys::MAX_FDS_PER_MSG`]), discarding older leftovers. These cannot be peeked past the
    /// first packet, so they are taken off the side channel before the commit: a reader that
    /// dies in between loses them, and the next reader reports that message as lost.
    pub(super) fn recv(
        &self,
        seq: u64,
        number: u32,
        n: usize,
        out: &mut Vec<OwnedFd>,
    ) -> Result<()> {
        let mut got: VecDeque<OwnedFd> = VecDeque::new();
        while got.len() < n {
            if self.discard_before(seq) != Some(seq) {
                return Err(lost(number));
            }
            let mut buf = [0u8; TAG];
            sys::recv_with_fds(self.rx.as_fd(), &mut buf, &mut got, true)
                .map_err(|_| lost(number))?;
        }
        out.extend(got);
        Ok(())
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
