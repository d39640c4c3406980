//! The stream transport: one end of a framed, descriptor-carrying connection over an `AF_UNIX`
//! stream socket (the transport under pipe ends, the bootstrap, pool workers and managers), or
//! over a socket in *socket mode*. It holds the receive buffer and the wait on the socket; it
//! must not know what the frames mean (no protocol, no pool or manager types).
//!
//! A channel in *socket mode* ([`Channel::socket`]: TCP, or a local socket to a peer that is not
//! our child) carries no descriptors: every payload travels inline, up to the channel's limit,
//! and a value holding an OS handle is refused before anything is sent.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{
    Frame, HEADER, Header, INLINE_MAX, Payload, deadline_after, encode_frame_as,
    encode_value_frame, open_out_of_line, send_frame_parts,
};
use crate::codec::{self, MAX_MESSAGE};
use crate::error::{Error, Result, SendError};
use crate::sys;

/// A receive buffer grown past this for one large frame is shrunk back afterwards.
const KEEP_BUFFER: usize = 4 * (INLINE_MAX + HEADER);
/// A read into less room than this first makes room.
const MIN_READ: usize = 4096;
/// How long a receiver polls without sleeping before it blocks: a reply that comes back
/// within this time is picked up without paying for a wake-up.
const SPIN: Duration = Duration::from_micros(50);

struct Rx {
    /// Received bytes live in `buf[start..end]`; the rest of `buf` is zeroed space to read
    /// into, kept between reads so a receive loop does not re-zero it.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    fds: VecDeque<OwnedFd>,
    broken: Option<Error>,
}

impl Rx {
    /// The buffered bytes up to `end` have been read (a frame that ends there).
    fn consume(&mut self, end: usize) {
        self.start = end;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_BUFFER {
                self.buf.truncate(KEEP_BUFFER);
                self.buf.shrink_to_fit();
            }
        }
    }
}

struct Tx {
    buf: Vec<u8>,
    fds: Vec<RawFd>,
}

/// One end of a framed connection. Thread-safe: sends and receives each take a lock.
pub(crate) struct Channel {
    sock: OwnedFd,
    rx: Mutex<Rx>,
    tx: Mutex<Tx>,
    /// The largest payload this end accepts.
    limit: AtomicU64,
    /// The largest payload the peer accepts (announced in a handshake); larger sends fail
    /// before anything is written.
    peer_limit: AtomicU64,
    /// Descriptor passing (a socket pair to our own child) or socket mode.
    pass_fds: bool,
    /// How long a receive polls before it sleeps, in microseconds.
    spin_us: AtomicU64,
}

/// The spin budget of a socket-mode channel: a reply from a peer running on another core
/// comes back well within it.
pub(crate) const SOCKET_SPIN: Duration = Duration::from_micros(30);

impl Channel {
    /// A channel to a process of ours: descriptors pass, large payloads go out of line.
    pub(crate) fn new(sock: OwnedFd) -> Channel {
        Channel::with_mode(sock, MAX_MESSAGE, true)
    }

    /// A channel in socket mode (see the module docs) accepting payloads of up to `limit`.
    pub(crate) fn socket(sock: OwnedFd, limit: u64) -> Channel {
        Channel::with_mode(sock, limit.min(MAX_MESSAGE), false)
    }

    fn with_mode(sock: OwnedFd, limit: u64, pass_fds: bool) -> Channel {
        Channel {
            sock,
            rx: Mutex::new(Rx {
                buf: Vec::new(),
                start: 0,
                end: 0,
                fds: VecDeque::new(),
                broken: None,
            }),
            tx: Mutex::new(Tx {
                buf: Vec::new(),
                fds: Vec::new(),
            }),
            limit: AtomicU64::new(limit),
            peer_limit: AtomicU64::new(MAX_MESSAGE),
            pass_fds,
            spin_us: AtomicU64::new(if pass_fds { SPIN } else { SOCKET_SPIN }.as_micros() as u64),
        }
    }

    /// Changes the largest payload this end accepts (after a handshake under a small limit).
    pub(crate) fn set_limit(&self, limit: u64) {
        self.limit.store(limit.min(MAX_MESSAGE), Ordering::Relaxed);
    }

    /// Sets how long a receive polls before it sleeps (see [`SPIN`]); zero sleeps at once,
    /// which is right when the peer shares this thread's CPU: spinning would only keep the
    /// peer from running.
    pub(crate) fn set_spin(&self, spin: Duration) {
        self.spin_us
            .store(spin.as_micros() as u64, Ordering::Relaxed);
    }

    fn spin(&self) -> Duration {
        Duration::from_micros(self.spin_us.load(Ordering::Relaxed))
    }

    /// Records the largest payload the peer accepts.
    /// The largest frame the peer accepts (learned in the handshake; `MAX_MESSAGE` before).
    pub(crate) fn peer_limit(&self) -> u64 {
        self.peer_limit.load(Ordering::Relaxed)
    }

    pub(crate) fn set_peer_limit(&self, limit: u64) {
        self.peer_limit
            .store(limit.min(MAX_MESSAGE), Ordering::Relaxed);
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    pub(crate) fn into_fd(self) -> OwnedFd {
        self.sock
    }

    /// Encodes and sends `value` as one frame. Blocks while the socket is full.
    /// A value larger than the peer accepts is refused while it is being encoded, as soon as
    /// its bytes pass the limit, not after it was encoded whole.
    pub(crate) fn send<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let limit = self.peer_limit.load(Ordering::Relaxed);
        let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Tx { buf, fds } = &mut *tx;
        let sealed = encode_value_frame(value, buf, fds, self.pass_fds, limit)?;
        self.send_encoded(buf, &[], fds, sealed)
    }

    /// Sends one frame whose payload `body` writes (see [`encode_frame_as`]), checked against
    /// the peer's limit. An inline frame's tail is sent from where it is, not copied.
    pub(crate) fn send_body<'t>(
        &self,
        body: impl FnOnce(&mut Vec<u8>, &mut Vec<RawFd>) -> Result<&'t [u8]>,
    ) -> Result<()> {
        let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Tx { buf, fds } = &mut *tx;
        let mut tail: &[u8] = &[];
        let sealed = encode_frame_as(buf, fds, self.pass_fds, false, |out, fds| {
            tail = body(out, fds)?;
            Ok(tail)
        })?;
        // Out of line, the tail was copied into the sealed buffer.
        let tail = if sealed.is_some() { &[][..] } else { tail };
        self.send_encoded(buf, tail, fds, sealed)
    }

    /// Sends a frame encoded into `buf` and followed by `tail` (or with its payload in
    /// `sealed`, out of line), under the send lock.
    fn send_encoded(
        &self,
        buf: &mut Vec<u8>,
        tail: &[u8],
        fds: &[RawFd],
        sealed: Option<sys::SealedBuffer>,
    ) -> Result<()> {
        // A small inline message after a large inline one (socket mode) gives the memory
        // back; an out-of-line payload leaves only its header here and keeps the capacity
        // for the next one.
        if sealed.is_none() && buf.capacity() > KEEP_BUFFER && buf.len() <= KEEP_BUFFER {
            buf.shrink_to(KEEP_BUFFER);
        }
        let len = sealed
            .as_ref()
            .map_or(buf.len() - HEADER + tail.len(), |s| s.as_slice().len())
            as u64;
        let limit = self.peer_limit.load(Ordering::Relaxed);
        if len > limit {
            return Err(Error::TooLarge { len, limit });
        }
        #[allow(unsafe_code)]
        let mut borrowed: Vec<BorrowedFd<'_>> = fds
            .iter()
            // SAFETY: recorded by `codec::Fd` while `body` encoded a value borrowed for this
            // call (handles inside it own them); sent before it returns.
            .map(|&fd| unsafe { sys::borrow_raw_fd(fd) })
            .collect();
        if let Some(s) = &sealed {
            borrowed.push(s.fd());
        }
        send_frame_parts(self.sock.as_fd(), [buf, tail], &borrowed)
    }

    /// Sends a frame already encoded in consecutive `parts` with its descriptors, under the
    /// send lock so that it does not interleave with another sender's frame.
    pub(crate) fn send_parts<const N: usize>(
        &self,
        parts: [&[u8]; N],
        fds: &[BorrowedFd<'_>],
    ) -> Result<()> {
        let _tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        send_frame_parts(self.fd(), parts, fds)
    }

    /// Sends `value`, handing it back with the error on failure (the `send` of every typed
    /// connection).
    pub(crate) fn send_value<T: serde::Serialize>(&self, value: T) -> Result<(), SendError<T>> {
        match self.send(&value) {
            Ok(()) => Ok(()),
            Err(error) => Err(SendError { error, value }),
        }
    }

    /// Receives one frame, waiting at most `timeout` (`None`: forever).
    pub(crate) fn recv_frame(&self, timeout: Option<Duration>) -> Result<Frame> {
        let frame = self.recv_frame_or(timeout, |_| false)?;
        Ok(frame.expect("a frame nobody takes is returned"))
    }

    /// [`recv_frame`](Channel::recv_frame), first offering the payload of a frame without
    /// descriptors to `take`, where it lies (the receive buffer, or an out-of-line frame's
    /// mapping): `None` when `take` took it (returned true), which spares the copy of an
    /// inline payload into a frame of its own (a pool's numeric results go straight to
    /// their place in the output).
    pub(crate) fn recv_frame_or(
        &self,
        timeout: Option<Duration>,
        take: impl FnOnce(&[u8]) -> bool,
    ) -> Result<Option<Frame>> {
        let deadline = deadline_after(timeout);
        let mut rx = self.rx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(error) = &rx.broken {
            return Err(error.clone());
        }
        let result = self.recv_locked(&mut rx, deadline, take);
        if let Err(e @ (Error::Malformed(_) | Error::TooLarge { .. })) = &result {
            rx.broken = Some(e.clone());
        }
        result
    }

    /// Whether a frame (or end-of-file) can be read without blocking, waiting up to `timeout`.
    pub(crate) fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner());
        if rx.end - rx.start >= HEADER {
            return Ok(true);
        }
        drop(rx);
        sys::poll_readable(self.sock.as_fd(), timeout).map_err(Error::io("poll failed"))
    }

    fn recv_locked(
        &self,
        rx: &mut Rx,
        deadline: Option<Instant>,
        take: impl FnOnce(&[u8]) -> bool,
    ) -> Result<Option<Frame>> {
        self.fill(rx, HEADER, deadline)?;
        let header_bytes: [u8; HEADER] = rx.buf[rx.start..rx.start + HEADER]
            .try_into()
            .expect("header");
        let header = Header::parse(
            &header_bytes,
            self.limit.load(Ordering::Relaxed),
            self.pass_fds,
        )?;
        let inline_len = if header.out_of_line { 0 } else { header.len };
        self.fill(rx, HEADER + inline_len, deadline)?;
        let body = rx.start + HEADER;
        let fd_count = header.nfds + usize::from(header.out_of_line);
        // Descriptors arrive with the frame's bytes, which are all here now.
        let mut fds = codec::take_fds(&mut rx.fds, fd_count)?;
        let mut start = 0;
        let payload = if header.out_of_line {
            let payload = open_out_of_line(header.len, &mut fds)?;
            if fds.is_empty() && take(payload.bytes()) {
                rx.consume(body);
                return Ok(None);
            }
            payload
        } else if fds.is_empty() && take(&rx.buf[body..body + inline_len]) {
            rx.consume(body + inline_len);
            return Ok(None);
        } else if inline_len > KEEP_BUFFER && rx.end == body + inline_len {
            // A large frame (socket mode) that is all the buffer holds: the buffer becomes
            // the payload instead of being copied.
            let mut buf = std::mem::take(&mut rx.buf);
            buf.truncate(body + inline_len);
            start = body;
            Payload::Inline(buf)
        } else {
            Payload::Inline(rx.buf[body..body + inline_len].to_vec())
        };
        rx.consume(body + inline_len);
        Ok(Some(Frame {
            payload,
            start,
            fds,
        }))
    }

    /// Reads until `rx` holds at least `need` unread bytes.
    fn fill(&self, rx: &mut Rx, need: usize, deadline: Option<Instant>) -> Result<()> {
        let spin = self.spin();
        let mut spin_until: Option<Instant> = None;
        while rx.end - rx.start < need {
            if rx.start + need > rx.buf.len() || rx.buf.len() - rx.end < MIN_READ {
                // No room behind the buffered bytes. A channel that would move a large part
                // of a frame (back-to-back inline frames) gets a larger buffer once, which
                // makes moves rare; otherwise the buffered bytes move to the front.
                if rx.end - rx.start >= MIN_READ && rx.buf.len() < KEEP_BUFFER {
                    rx.buf.resize(KEEP_BUFFER, 0);
                }
                if rx.start > 0
                    && (rx.start + need > rx.buf.len() || rx.buf.len() - rx.end < MIN_READ)
                {
                    let (start, end) = (rx.start, rx.end);
                    rx.buf.copy_within(start..end, 0);
                    rx.end -= start;
                    rx.start = 0;
                }
            }
            if rx.buf.is_empty() {
                // A new channel's first read takes one page: most such channels (a child's
                // bootstrap, the parent's end of it) carry a few small frames and close, and
                // zeroing the full buffer cost every child 16 page faults. The next read that
                // needs room grows it to the full size below.
                rx.buf.resize(MIN_READ, 0);
            } else if rx.buf.len() < INLINE_MAX + HEADER {
                rx.buf.resize(INLINE_MAX + HEADER, 0);
            } else if rx.start + need > rx.buf.len() && rx.buf.len() - rx.end < MIN_READ {
                // A frame larger than the buffer (socket mode) whose bytes have filled it:
                // grow as they arrive, doubling up to what the frame needs, so a header
                // announcing a large frame commits no memory before its bytes come.
                let grown = (rx.buf.len() * 2).min(rx.start + need);
                rx.buf.resize(grown, 0);
            }
            let Rx { buf, fds, end, .. } = &mut *rx;
            // Spin briefly on non-blocking reads before paying for a sleep and a wake-up;
            // once the spin is over and there is no deadline, one blocking read does both
            // the waiting and the reading.
            let spun_out = spin.is_zero() || spin_until.is_some_and(|t| Instant::now() >= t);
            let block = spun_out && deadline.is_none();
            let got = sys::recv_with_fds(self.sock.as_fd(), &mut buf[*end..], fds, !block);
            match got {
                Ok(0) => return Err(Error::Disconnected),
                Ok(n) => rx.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let until = *spin_until.get_or_insert_with(|| Instant::now() + spin);
                    if !spun_out && deadline.is_none_or(|d| until < d) {
                        std::hint::spin_loop();
                        continue;
                    }
                    let Some(deadline) = deadline else {
                        if block {
                            // A socket set non-blocking by its owner: wait for it instead.
                            sys::poll_readable(self.sock.as_fd(), None)
                                .map_err(Error::io("poll failed"))?;
                        }
                        continue; // the next read blocks
                    };
                    let remaining = match deadline.checked_duration_since(Instant::now()) {
                        Some(r) if !r.is_zero() => r,
                        _ => return Err(Error::Timeout),
                    };
                    if !sys::poll_readable(self.sock.as_fd(), Some(remaining))
                        .map_err(Error::io("poll failed"))?
                    {
                        return Err(Error::Timeout);
                    }
                }
                Err(e) => {
                    return Err(Error::io("receive failed")(e));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;

    use super::super::MAGIC;
    use super::*;

    fn pair() -> (Channel, Channel) {
        let (a, b) = sys::socketpair_stream().unwrap();
        (Channel::new(a), Channel::new(b))
    }

    #[test]
    fn small_and_large_frames() {
        let (a, b) = pair();
        a.send(&"hello".to_string()).unwrap();
        let big = vec![7u8; 3 * INLINE_MAX];
        let big = serde_bytes::ByteBuf::from(big);
        a.send(&big).unwrap();
        let s: String = b.recv_frame(None).unwrap().decode().unwrap();
        assert_eq!(s, "hello");
        let got: serde_bytes::ByteBuf = b.recv_frame(None).unwrap().decode().unwrap();
        assert_eq!(got, big);
    }

    #[test]
    fn back_to_back_frames_of_every_size_arrive_intact() {
        // Partial frames sit in the receive buffer between reads: moved, or behind a grown
        // buffer; every byte must come out where it went in.
        let (a, b) = pair();
        let sizes = [0, 1, 100, 4095, 4096, 30_000, 65_000, INLINE_MAX - 40, 7];
        let frame = |round: usize, size: usize| {
            serde_bytes::ByteBuf::from(
                (0..size)
                    .map(|i| (i * 31 + round) as u8)
                    .collect::<Vec<_>>(),
            )
        };
        let writer = std::thread::spawn(move || {
            for round in 0..20 {
                for &size in &sizes {
                    a.send(&frame(round, size)).unwrap();
                }
            }
        });
        for round in 0..20 {
            for &size in &sizes {
                let got: serde_bytes::ByteBuf = b.recv_frame(None).unwrap().decode().unwrap();
                assert!(got == frame(round, size), "round {round}, {size} bytes");
            }
        }
        writer.join().unwrap();
    }

    #[test]
    fn a_payload_taken_where_it_lies_is_consumed() {
        // Inline and out of line (a sealed buffer): the frame after a taken one arrives intact.
        let (a, b) = pair();
        for size in [100, 3 * INLINE_MAX] {
            let big = serde_bytes::ByteBuf::from(vec![5u8; size]);
            a.send(&big).unwrap();
            a.send(&"next".to_string()).unwrap();
            let mut seen = 0;
            let taken = b
                .recv_frame_or(None, |payload| {
                    seen = payload.len();
                    true
                })
                .unwrap();
            assert!(
                taken.is_none() && seen > size,
                "{size}: {seen} bytes offered"
            );
            let next: String = b.recv_frame(None).unwrap().decode().unwrap();
            assert_eq!(next, "next");
        }
    }

    #[test]
    fn timeout_and_disconnect() {
        let (a, b) = pair();
        assert!(matches!(
            b.recv_frame(Some(Duration::from_millis(20))),
            Err(Error::Timeout)
        ));
        drop(a);
        assert!(matches!(b.recv_frame(None), Err(Error::Disconnected)));
    }

    #[test]
    fn garbage_is_rejected_and_poisons() {
        let (a, b) = pair();
        sys::send_with_fds(a.fd(), &[IoSlice::new(&[0xAB; 32])], &[], false).unwrap();
        assert!(matches!(b.recv_frame(None), Err(Error::Malformed(_))));
        assert!(matches!(b.recv_frame(None), Err(Error::Malformed(_))));
    }

    #[test]
    fn a_large_frame_grows_the_buffer_as_its_bytes_arrive() {
        // Socket mode (a network peer): a header may announce up to the limit, inline.
        let (a, b) = sys::socketpair_stream().unwrap();
        let (a, b) = (
            Channel::socket(a, MAX_MESSAGE),
            Channel::socket(b, MAX_MESSAGE),
        );
        let len = 256 << 20;
        let mut h = [0u8; HEADER];
        h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        h[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        sys::send_with_fds(
            a.fd(),
            &[IoSlice::new(&h), IoSlice::new(&[0; 1000])],
            &[],
            false,
        )
        .unwrap();
        assert!(matches!(
            b.recv_frame(Some(Duration::from_millis(50))),
            Err(Error::Timeout)
        ));
        let held = b.rx.lock().unwrap().buf.len();
        assert!(
            held <= 2 * (INLINE_MAX + HEADER),
            "{held} bytes held for 1000"
        );

        // A real large frame: grown in steps while it arrives, received whole.
        let (a, b) = sys::socketpair_stream().unwrap();
        let (a, b) = (
            Channel::socket(a, MAX_MESSAGE),
            Channel::socket(b, MAX_MESSAGE),
        );
        let big = serde_bytes::ByteBuf::from((0..3_000_000).map(|i| i as u8).collect::<Vec<_>>());
        let sent = big.clone();
        let writer = std::thread::spawn(move || a.send(&sent).unwrap());
        let got: serde_bytes::ByteBuf = b.recv_frame(None).unwrap().decode().unwrap();
        writer.join().unwrap();
        assert!(got == big);
        assert!(b.rx.lock().unwrap().buf.len() <= KEEP_BUFFER);
    }

    #[test]
    fn oversized_header_rejected_before_allocation() {
        let (a, b) = pair();
        let mut h = [0u8; HEADER];
        h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        h[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        sys::send_with_fds(a.fd(), &[IoSlice::new(&h)], &[], false).unwrap();
        assert!(matches!(b.recv_frame(None), Err(Error::Malformed(_))));
    }
}
