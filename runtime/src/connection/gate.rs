//! The gate in front of a listening socket: accepts connections and runs their handshakes
//! (`auth.rs`) on the caller's thread, all at once, with `poll` over the pending sockets.
//!
//! A peer that has not proved it knows the key costs one descriptor and one [`Handshake`]
//! (under 400 bytes): no thread, no buffer sized by what it announces. At most
//! `max_handshakes` are in progress; a connection beyond that pushes out the oldest pending
//! one (which has had the longest to answer), so a flood of silent connections cannot lock
//! out a real client, whose handshake takes one round trip. Each handshake has a deadline.
//! Only an authenticated connection leaves the gate, as a [`Channel`].

use std::collections::VecDeque;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use super::auth::Handshake;
use crate::error::{Error, Result};
use crate::sys;
use crate::wire::Channel;

/// How many connections one pass accepts before it looks at the pending handshakes again.
const ACCEPT_BATCH: usize = 64;

/// What the gate's [`next`](Gate::next) saw.
pub(crate) enum Event {
    /// A peer proved it knows the key.
    Accepted {
        channel: Channel,
        peer: String,
        /// The process id the client reports (its word, for logs).
        pid: u32,
    },
    /// A connection that ended without authenticating (wrong key, not mp, too slow, pushed
    /// out), or a failed `accept`; the gate is ready for the next.
    Failed(Error),
    /// The wake-up descriptor became readable.
    Woken,
}

/// The settings of a gate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_message: u64,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_handshakes: usize,
}

/// The handshakes in progress, oldest first.
#[derive(Default)]
pub(crate) struct Gate {
    pending: VecDeque<Handshake>,
}

impl Gate {
    /// Waits for the next event: an authenticated connection, a connection that failed, or
    /// `wake` becoming readable. Fails only if `poll` does.
    pub(crate) fn next(
        &mut self,
        listener: &sys::net::Listener,
        key: &[u8],
        limits: Limits,
        wake: Option<BorrowedFd<'_>>,
    ) -> Result<Event> {
        let first = 1 + usize::from(wake.is_some());
        let mut ready = Vec::new();
        loop {
            let now = Instant::now();
            if let Some(i) = self.pending.iter().position(|h| h.deadline() <= now) {
                let late = self.pending.remove(i).expect("found");
                return Ok(Event::Failed(late.timed_out()));
            }
            let timeout = self
                .pending
                .iter()
                .map(|h| h.deadline() - now + Duration::from_millis(1))
                .min();
            {
                let mut fds = Vec::with_capacity(first + self.pending.len());
                fds.push(listener.fd());
                fds.extend(wake);
                fds.extend(self.pending.iter().map(Handshake::fd));
                sys::poll_many(&fds, timeout, &mut ready)
                    .map_err(Error::io("cannot poll the listening socket"))?;
            }
            // Pending handshakes first: they are the ones that can finish.
            for &i in ready.iter().rev().filter(|&&i| i >= first) {
                let k = i - first;
                match self.pending[k].advance(key) {
                    Ok(None) => {}
                    Ok(Some(pid)) => {
                        let handshake = self.pending.remove(k).expect("ready index");
                        let peer = handshake.peer().to_owned();
                        return Ok(Event::Accepted {
                            channel: handshake.into_channel(limits.max_message),
                            peer,
                            pid,
                        });
                    }
                    Err(e) => {
                        self.pending.remove(k);
                        return Ok(Event::Failed(e));
                    }
                }
            }
            if wake.is_some() && ready.contains(&1) {
                return Ok(Event::Woken);
            }
            if ready.contains(&0)
                && let Some(event) = self.accept(listener, limits)
            {
                return Ok(event);
            }
        }
    }

    /// Accepts the connections waiting in the listener's backlog (up to a batch) and sends
    /// each its challenge. Returns the first failure, if any.
    fn accept(&mut self, listener: &sys::net::Listener, limits: Limits) -> Option<Event> {
        for _ in 0..ACCEPT_BATCH {
            // `accept` would block if another thread took the connection `poll` saw.
            match sys::poll_readable(listener.fd(), Some(Duration::ZERO)) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Event::Failed(Error::io("cannot poll the listener")(e))),
            }
            let (sock, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) => return Some(Event::Failed(Error::io("cannot accept a connection")(e))),
            };
            let mut pushed_out = None;
            if self.pending.len() >= limits.max_handshakes.max(1) {
                let oldest = self.pending.pop_front().expect("full");
                pushed_out = Some(Error::AuthenticationFailed(format!(
                    "{} did not complete the handshake before {} newer connections came; \
                     closed",
                    oldest.peer(),
                    limits.max_handshakes
                )));
            }
            match Handshake::start(sock, peer, limits.max_message, limits.handshake_timeout) {
                Ok(handshake) => self.pending.push_back(handshake),
                Err(e) => return Some(Event::Failed(e)),
            }
            if let Some(e) = pushed_out {
                return Some(Event::Failed(e));
            }
        }
        None
    }
}
