//! Framed, descriptor-carrying messages over one `AF_UNIX` stream socket: the transport under
//! [`Pipe`](crate::pipe) ends and the parent↔child bootstrap.
//!
//! A frame is a 16-byte header (`magic`, `flags`, `len`, `nfds`) followed by `len` payload
//! bytes. Payloads above [`INLINE_MAX`] travel out of line in a sealed memfd (the frame's last
//! descriptor) instead of being copied through the socket. Descriptors ride on the frame's
//! bytes in batches of at most 253 (`SCM_MAX_FD`). The receiver checks every header before it
//! allocates anything: a wrong magic, an inline payload above [`INLINE_MAX`], or a size above
//! the limit poisons the connection with a clear error instead of a misread.
//!
//! A channel in *socket mode* ([`Channel::socket`]: TCP, or a local socket to a peer that is not
//! our child) carries no descriptors: every payload travels inline, up to the channel's limit,
//! and a value holding an OS handle is refused before anything is sent.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::codec::{self, MAX_MESSAGE};
use crate::error::{Error, Result, SendError};
use crate::sys;

/// Payloads larger than this travel in a sealed memfd rather than through the socket.
pub(crate) const INLINE_MAX: usize = 64 * 1024;
/// Frame header size.
pub(crate) const HEADER: usize = 16;
const MAGIC: u32 = u32::from_le_bytes(*b"mp\x01\x00");
const FLAG_OUT_OF_LINE: u32 = 1;
/// A receive buffer grown past this for one large frame is shrunk back afterwards.
const KEEP_BUFFER: usize = 4 * (INLINE_MAX + HEADER);
/// A read into less room than this first makes room.
const MIN_READ: usize = 4096;
/// How long a receiver polls without sleeping before it blocks: a reply that comes back
/// within this time is picked up without paying for a wake-up.
const SPIN: Duration = Duration::from_micros(50);

/// A received message: its payload (inline or mapped) and the descriptors it carried.
pub(crate) struct Frame {
    payload: Payload,
    /// Where the undecoded rest of the payload starts (after [`Frame::split_prefix`]).
    start: usize,
    pub(crate) fds: Vec<OwnedFd>,
}

enum Payload {
    Inline(Vec<u8>),
    Sealed(sys::SealedBuffer),
}

impl Frame {
    /// Decodes the payload as a `T`, handing the descriptors to the handles inside it.
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(self) -> Result<T> {
        let Frame {
            payload,
            start,
            fds,
        } = self;
        let bytes = match &payload {
            Payload::Inline(v) => &v[start..],
            Payload::Sealed(b) => &b.as_slice()[start..],
        };
        codec::decode(bytes, fds)
    }

    /// Decodes the payload as a `Vec<T>` (see [`codec::decode_seq`]: one copy for numbers).
    pub(crate) fn decode_seq<T: serde::de::DeserializeOwned + 'static>(mut self) -> Result<Vec<T>> {
        let fds = std::mem::take(&mut self.fds);
        codec::decode_seq(&self.bytes()[self.start..], fds)
    }

    /// Decodes the payload, a sequence of `out.len()` numbers, straight into `out`; `None`
    /// when `T` is not a primitive number (see [`codec::decode_seq_into`]).
    pub(crate) fn decode_seq_into<T: 'static>(&self, out: &mut [T]) -> Option<Result<()>> {
        codec::decode_seq_into(&self.bytes()[self.start..], out)
    }

    /// Decodes a leading header `H` (which carries no handles) and returns the frame with the
    /// rest of the payload, for a decoder that knows its type only after reading the header.
    pub(crate) fn split_prefix<H: serde::de::DeserializeOwned>(mut self) -> Result<(H, Frame)> {
        let (header, used) = codec::decode_prefix::<H>(&self.bytes()[self.start..])?;
        self.start += used;
        Ok((header, self))
    }

    /// A frame that arrived by another way than a stream socket (the queue's ring): its
    /// checked header, its inline payload (empty when out of line) and its descriptors, the
    /// out-of-line buffer last.
    pub(crate) fn from_parts(
        header: &Header,
        inline: Vec<u8>,
        mut fds: Vec<OwnedFd>,
    ) -> Result<Frame> {
        let payload = if header.out_of_line {
            open_out_of_line(header.len, &mut fds)?
        } else {
            Payload::Inline(inline)
        };
        Ok(Frame {
            payload,
            start: 0,
            fds,
        })
    }

    /// Decodes like [`Frame::decode`] but keeps the payload, so that the caller chooses when
    /// an out-of-line buffer is unmapped (the queue: after releasing its lock).
    pub(crate) fn decode_keeping_payload<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let fds = std::mem::take(&mut self.fds);
        codec::decode(&self.bytes()[self.start..], fds)
    }

    fn bytes(&self) -> &[u8] {
        match &self.payload {
            Payload::Inline(v) => v,
            Payload::Sealed(b) => b.as_slice(),
        }
    }
}

/// Maps the out-of-line payload of `len` bytes whose buffer is the last of `fds`.
fn open_out_of_line(len: usize, fds: &mut Vec<OwnedFd>) -> Result<Payload> {
    let memfd = fds
        .pop()
        .ok_or_else(|| Error::Malformed("out-of-line payload without its buffer".to_owned()))?;
    let buffer = sys::SealedBuffer::open(memfd, len)
        .map_err(|e| Error::Malformed(format!("out-of-line payload: {e}")))?;
    Ok(Payload::Sealed(buffer))
}

/// Encodes `value` as one frame into `out` (header first) and collects its descriptors.
/// Returns the sealed buffer when the payload goes out of line.
pub(crate) fn encode_frame<T: serde::Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    fds: &mut Vec<RawFd>,
) -> Result<Option<sys::SealedBuffer>> {
    encode_frame_as(out, fds, true, true, |out, fds| {
        codec::encode(value, out, fds).map(|()| &[][..])
    })
}

/// The body of a frame that is a header `H` followed by a sequence of `T` (a pool chunk):
/// encoded exactly as the tuple `(header, items)`, with the items' bytes copied once, straight
/// from `items` into the frame, when they are primitive numbers (see [`codec::encode_seq`]).
fn header_and_seq<'a, H: serde::Serialize, T: serde::Serialize + 'static>(
    header: &H,
    items: &'a [T],
) -> impl FnOnce(&mut Vec<u8>, &mut Vec<RawFd>) -> Result<&'a [u8]> {
    move |out, fds| {
        codec::encode(header, out, fds)?;
        codec::encode_seq(items, out, fds)
    }
}

/// Encodes one frame whose payload `body` writes: it appends to `out` and returns a tail of
/// bytes that follows them. With `pass_fds` false, a socket-mode frame: inline, no
/// descriptors. Returns the sealed buffer when the payload goes out of line (the tail is then
/// copied straight into it, never into `out`). An inline tail is appended to `out` only with
/// `append_tail`; otherwise the caller sends it right after `out`.
fn encode_frame_as<'t>(
    out: &mut Vec<u8>,
    fds: &mut Vec<RawFd>,
    pass_fds: bool,
    append_tail: bool,
    body: impl FnOnce(&mut Vec<u8>, &mut Vec<RawFd>) -> Result<&'t [u8]>,
) -> Result<Option<sys::SealedBuffer>> {
    out.clear();
    fds.clear();
    out.extend_from_slice(&[0; HEADER]);
    let tail = body(out, fds)?;
    if !pass_fds && !fds.is_empty() {
        return Err(Error::Encode(
            "a value holding an OS handle (queue, pipe end, shared memory, lock) cannot \
             travel over a network connection; share it through a manager proxy instead"
                .to_owned(),
        ));
    }
    let len = out.len() - HEADER + tail.len();
    if len as u64 > MAX_MESSAGE {
        return Err(Error::TooLarge {
            len: len as u64,
            limit: MAX_MESSAGE,
        });
    }
    let nfds = fds.len() as u32;
    let sealed = if pass_fds && len > INLINE_MAX {
        let buffer = sys::SealedBuffer::create(&[&out[HEADER..], tail])
            .map_err(Error::io("cannot create a buffer for a large message"))?;
        out.truncate(HEADER);
        Some(buffer)
    } else {
        if append_tail {
            out.extend_from_slice(tail);
        }
        None
    };
    let flags = if sealed.is_some() {
        FLAG_OUT_OF_LINE
    } else {
        0
    };
    out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    out[4..8].copy_from_slice(&flags.to_le_bytes());
    out[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    out[12..16].copy_from_slice(&nfds.to_le_bytes());
    Ok(sealed)
}

/// Bytes held elsewhere that frames may end with instead of a copy of them: the numeric
/// arguments of a `map`, whose chunks are written to the workers' sockets straight from the
/// caller's vector.
pub(crate) trait ByteSource: Send + Sync {
    fn bytes(&self) -> &[u8];
}

/// A vector of primitive numbers (see [`codec::encode_seq`]) seen as its bytes.
struct Numbers<T>(Vec<T>);

impl<T: Send + Sync + 'static> ByteSource for Numbers<T> {
    fn bytes(&self) -> &[u8] {
        sys::numeric_bytes(&self.0).expect("made by `numbers` for primitive numbers only")
    }
}

/// `values` as a shared [`ByteSource`], if their type is a primitive number; handed back
/// otherwise. (The concrete vector type is recovered by downcasting, which moves no values.)
pub(crate) fn numbers<T: 'static>(
    values: Vec<T>,
) -> std::result::Result<Arc<dyn ByteSource>, Vec<T>> {
    if !sys::is_wire_numeric::<T>() {
        return Err(values);
    }
    let mut any: Box<dyn std::any::Any> = Box::new(values);
    macro_rules! share_as {
        ($($t:ty),*) => { $(
            any = match any.downcast::<Vec<$t>>() {
                Ok(v) => return Ok(Arc::new(Numbers(*v))),
                Err(other) => other,
            };
        )* };
    }
    share_as!(
        u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
    );
    Err(*any.downcast::<Vec<T>>().expect("the vector we boxed"))
}

/// The end of a frame that stays in its [`ByteSource`].
struct SharedTail {
    source: Arc<dyn ByteSource>,
    range: Range<usize>,
}

/// A frame encoded once and sendable many times (a pool task that may go to a second worker).
/// It owns duplicates of the descriptors of the handles inside the value, so the value itself
/// may be dropped.
pub(crate) struct Encoded {
    bytes: Vec<u8>,
    /// What follows `bytes` on the socket, when it is not copied into them.
    tail: Option<SharedTail>,
    fds: Vec<OwnedFd>,
    sealed: Option<sys::SealedBuffer>,
}

impl Encoded {
    pub(crate) fn new<T: serde::Serialize + ?Sized>(value: &T) -> Result<Encoded> {
        Encoded::with_body(true, |out, fds| {
            codec::encode(value, out, fds).map(|()| &[][..])
        })
    }

    /// The frame of the tuple `(header, items)`, with numeric items copied in one piece.
    pub(crate) fn header_and_seq<H: serde::Serialize, T: serde::Serialize + 'static>(
        header: &H,
        items: &[T],
    ) -> Result<Encoded> {
        Encoded::with_body(true, header_and_seq(header, items))
    }

    /// The frame of `(header, values)` where `values` are the `count` numbers whose bytes are
    /// `range` of `source`: an inline frame refers to them rather than copying them (a large
    /// one is copied into its sealed buffer, as always).
    pub(crate) fn header_and_shared<H: serde::Serialize>(
        header: &H,
        source: &Arc<dyn ByteSource>,
        range: Range<usize>,
        count: usize,
    ) -> Result<Encoded> {
        let tail = &source.bytes()[range.clone()];
        let mut encoded = Encoded::with_body(false, |out, fds| {
            codec::encode(header, out, fds)?;
            codec::encode_seq_len(count, out);
            Ok(tail)
        })?;
        if encoded.sealed.is_none() && !range.is_empty() {
            encoded.tail = Some(SharedTail {
                source: Arc::clone(source),
                range,
            });
        }
        Ok(encoded)
    }

    fn with_body<'t>(
        append_tail: bool,
        body: impl FnOnce(&mut Vec<u8>, &mut Vec<RawFd>) -> Result<&'t [u8]>,
    ) -> Result<Encoded> {
        let mut bytes = Vec::new();
        let mut raw = Vec::new();
        let sealed = encode_frame_as(&mut bytes, &mut raw, true, append_tail, body)?;
        let fds = raw
            .iter()
            .map(|&fd| sys::dup_fd(sys::borrow_raw_fd(fd)))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(Error::io("cannot duplicate a handle's descriptor"))?;
        Ok(Encoded {
            bytes,
            tail: None,
            fds,
            sealed,
        })
    }

    /// The same frame for a socket-mode channel (a network peer): a payload that went out of
    /// line is copied inline; a value holding an OS handle is refused with [`Error::Encode`].
    pub(crate) fn into_network(self) -> Result<Encoded> {
        if !self.fds.is_empty() {
            return Err(Error::Encode(
                "a value holding an OS handle (queue, pipe end, shared memory, lock) cannot \
                 travel over a network connection; share it through a manager proxy instead"
                    .to_owned(),
            ));
        }
        let Some(sealed) = &self.sealed else {
            return Ok(self);
        };
        let payload = sealed.as_slice();
        let mut bytes = Vec::with_capacity(HEADER + payload.len());
        bytes.extend_from_slice(&MAGIC.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(payload);
        Ok(Encoded {
            bytes,
            tail: None,
            fds: Vec::new(),
            sealed: None,
        })
    }

    /// The frame's bytes on the socket without a shared tail (a large payload travels out
    /// of line): the whole frame of an [`Encoded::new`].
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many bytes the frame puts on the socket, shared tail included.
    pub(crate) fn socket_len(&self) -> usize {
        self.bytes.len() + self.tail.as_ref().map_or(0, |t| t.range.len())
    }

    /// The descriptors that travel with the frame.
    pub(crate) fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds: Vec<BorrowedFd<'_>> = self.fds.iter().map(AsFd::as_fd).collect();
        if let Some(s) = &self.sealed {
            fds.push(s.fd());
        }
        fds
    }

    /// Sends the frame on `channel`'s socket.
    pub(crate) fn send(&self, channel: &Channel) -> Result<()> {
        let _tx = channel.tx.lock().unwrap_or_else(|e| e.into_inner());
        let tail = self
            .tail
            .as_ref()
            .map_or(&[][..], |t| &t.source.bytes()[t.range.clone()]);
        send_frame_parts(channel.fd(), [&self.bytes, tail], &self.fds())
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub(crate) out_of_line: bool,
    pub(crate) len: usize,
    pub(crate) nfds: usize,
}

impl Header {
    /// Parses and checks a header against the receiver's limit; nothing is allocated yet.
    /// Without `pass_fds` (socket mode) payloads are inline up to the limit and carry no
    /// descriptors.
    pub(crate) fn parse(bytes: &[u8; HEADER], limit: u64, pass_fds: bool) -> Result<Header> {
        let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        if word(0) != MAGIC {
            return Err(Error::Malformed(format!(
                "bad magic {:#010x} (not an mp peer, or the stream is out of step)",
                word(0)
            )));
        }
        let flags = word(4);
        if flags & !FLAG_OUT_OF_LINE != 0 {
            return Err(Error::Malformed(format!("unknown flags {flags:#x}")));
        }
        let out_of_line = flags & FLAG_OUT_OF_LINE != 0;
        let len = word(8) as u64;
        if len > limit {
            return Err(Error::TooLarge { len, limit });
        }
        if !pass_fds && (out_of_line || word(12) != 0) {
            return Err(Error::Malformed(
                "a frame on a network connection announces descriptors".to_owned(),
            ));
        }
        if pass_fds && !out_of_line && len > INLINE_MAX as u64 {
            return Err(Error::Malformed(format!(
                "inline payload of {len} bytes exceeds the inline maximum of {INLINE_MAX}"
            )));
        }
        Ok(Header {
            out_of_line,
            len: len as usize,
            nfds: word(12) as usize,
        })
    }
}

struct Rx {
    /// Received bytes live in `buf[start..end]`; the rest of `buf` is zeroed space to read
    /// into, kept between reads so a receive loop does not re-zero it.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    fds: VecDeque<OwnedFd>,
    broken: Option<Error>,
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
        self.send_body(|out, fds| codec::encode_within(value, out, fds, limit).map(|()| &[][..]))
    }

    /// Sends the tuple `(header, items)` as one frame, numeric items copied in one piece (a
    /// pool worker's results).
    pub(crate) fn send_header_and_seq<H: serde::Serialize, T: serde::Serialize + 'static>(
        &self,
        header: &H,
        items: &[T],
    ) -> Result<()> {
        self.send_body(header_and_seq(header, items))
    }

    fn send_body<'t>(
        &self,
        body: impl FnOnce(&mut Vec<u8>, &mut Vec<RawFd>) -> Result<&'t [u8]>,
    ) -> Result<()> {
        let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Tx { buf, fds } = &mut *tx;
        let sealed = encode_frame_as(buf, fds, self.pass_fds, true, body)?;
        // A small inline message after a large inline one (socket mode) gives the memory
        // back; an out-of-line payload leaves only its header here and keeps the capacity
        // for the next one.
        if sealed.is_none() && buf.capacity() > KEEP_BUFFER && buf.len() <= KEEP_BUFFER {
            buf.shrink_to(KEEP_BUFFER);
        }
        let len = sealed
            .as_ref()
            .map_or(buf.len() - HEADER, |s| s.as_slice().len()) as u64;
        let limit = self.peer_limit.load(Ordering::Relaxed);
        if len > limit {
            return Err(Error::TooLarge { len, limit });
        }
        // The raw descriptors belong to handles inside `value`, which outlives this call.
        let mut borrowed: Vec<BorrowedFd<'_>> =
            fds.iter().map(|&fd| sys::borrow_raw_fd(fd)).collect();
        if let Some(s) = &sealed {
            borrowed.push(s.fd());
        }
        send_frame_bytes(self.sock.as_fd(), buf, &borrowed)
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
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut rx = self.rx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(error) = &rx.broken {
            return Err(error.clone());
        }
        let result = self.recv_locked(&mut rx, deadline);
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

    fn recv_locked(&self, rx: &mut Rx, deadline: Option<Instant>) -> Result<Frame> {
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
            open_out_of_line(header.len, &mut fds)?
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
        rx.start = body + inline_len;
        if rx.start == rx.end {
            rx.start = 0;
            rx.end = 0;
            if rx.buf.len() > KEEP_BUFFER {
                rx.buf.truncate(KEEP_BUFFER);
                rx.buf.shrink_to_fit();
            }
        }
        Ok(Frame {
            payload,
            start,
            fds,
        })
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
            if rx.buf.len() < INLINE_MAX + HEADER {
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

/// Sends a whole frame's bytes with `fds` attached, in batches of at most 253 descriptors,
/// each batch riding on at least one byte.
pub(crate) fn send_frame_bytes(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<()> {
    send_frame_parts(sock, [bytes], fds)
}

/// [`send_frame_bytes`] for a frame held in consecutive parts, sent without joining them.
fn send_frame_parts<const N: usize>(
    sock: BorrowedFd<'_>,
    parts: [&[u8]; N],
    fds: &[BorrowedFd<'_>],
) -> Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let batches: Vec<&[BorrowedFd<'_>]> = fds.chunks(sys::MAX_FDS_PER_MSG).collect();
    if batches.len() > total {
        return Err(Error::Encode(format!(
            "{} descriptors in a message of {total} bytes",
            fds.len(),
        )));
    }
    let mut offset = 0;
    let mut batch = 0;
    while offset < total {
        let attach: &[BorrowedFd<'_>] = batches.get(batch).copied().unwrap_or(&[]);
        // With more batches to go, send a single byte so the next batch gets bytes of its own.
        let end = if batch + 1 < batches.len() {
            offset + 1
        } else {
            total
        };
        let (slices, used) = io_slices(parts, offset..end);
        let n = sys::send_with_fds(sock, &slices[..used], attach, false)
            .map_err(Error::io("send failed"))?;
        offset += n;
        if !attach.is_empty() {
            batch += 1;
        }
    }
    Ok(())
}

/// The bytes `range` of `parts` laid end to end, as slices for one vectored send: the first
/// `used` of the returned ones.
fn io_slices<'a, const N: usize>(
    parts: [&'a [u8]; N],
    range: Range<usize>,
) -> ([IoSlice<'a>; N], usize) {
    let mut slices = [IoSlice::new(&[]); N];
    let (mut used, mut start) = (0, 0);
    for part in parts {
        let end = start + part.len();
        let (from, to) = (range.start.max(start), range.end.min(end));
        if from < to {
            slices[used] = IoSlice::new(&part[from - start..to - start]);
            used += 1;
        }
        start = end;
    }
    (slices, used)
}

#[cfg(test)]
mod tests {
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
    fn frames_with_shared_tails() {
        let (a, b) = pair();
        let source =
            numbers((0..20_000u32).collect()).unwrap_or_else(|_| panic!("u32 are numbers"));
        let small = Encoded::header_and_shared(&"head", &source, 40..80, 10).unwrap();
        assert!(small.tail.is_some() && small.socket_len() > small.bytes().len());
        small.send(&a).unwrap();
        let (head, rest) = b
            .recv_frame(None)
            .unwrap()
            .split_prefix::<String>()
            .unwrap();
        assert_eq!(
            (head.as_str(), rest.decode_seq::<u32>().unwrap()),
            ("head", (10..20).collect())
        );
        // Too large for one inline frame: copied into a sealed buffer.
        let large = Encoded::header_and_shared(&"all", &source, 0..80_000, 20_000).unwrap();
        assert!(large.tail.is_none() && large.sealed.is_some());
        large.send(&a).unwrap();
        let (_, rest) = b
            .recv_frame(None)
            .unwrap()
            .split_prefix::<String>()
            .unwrap();
        assert_eq!(
            rest.decode_seq::<u32>().unwrap(),
            (0..20_000).collect::<Vec<_>>()
        );
        assert!(numbers(vec![true]).is_err());
        let parts: [&[u8]; 3] = [b"ab", b"", b"cde"];
        let joined = |r| {
            let (slices, used) = io_slices(parts, r);
            slices[..used]
                .iter()
                .flat_map(|s| s.to_vec())
                .collect::<Vec<u8>>()
        };
        assert_eq!(joined(1..4), b"bcd");
        assert_eq!(joined(0..5), b"abcde");
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
