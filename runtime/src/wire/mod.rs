//! Framing: the 16-byte frame header, encoding a value as one frame, the received [`Frame`],
//! and sending a frame's bytes with its descriptors. The stream transport over an `AF_UNIX`
//! or TCP socket ([`Channel`], in `stream.rs`) and the queue's ring both carry these frames.
//! It must not know any protocol above it (pool chunks, manager requests: those build their
//! frames in their own modules) and holds no wire format of its own (that is `codec.rs`).
//!
//! A frame is a 16-byte header (`magic`, `flags`, `len`, `nfds`) followed by `len` payload
//! bytes. Payloads above [`INLINE_MAX`] travel out of line in a sealed memfd (the frame's last
//! descriptor) instead of being copied through the socket. Descriptors ride on the frame's
//! bytes in batches of at most 253 (`SCM_MAX_FD`). The receiver checks every header before it
//! allocates anything: a wrong magic, an inline payload above [`INLINE_MAX`], or a size above
//! the limit poisons the connection with a clear error instead of a misread.

mod stream;

use std::io::IoSlice;
use std::ops::Range;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::codec::{self, MAX_MESSAGE};
use crate::error::{Error, Result};
use crate::sys;

pub(crate) use stream::{Channel, SOCKET_SPIN};

/// Payloads larger than this travel in a sealed memfd rather than through the socket.
pub(crate) const INLINE_MAX: usize = 64 * 1024;
/// The largest inline maximum of a queue's ring (a ring's own is a quarter of its capacity, at
/// most this: 4 MiB for the default ring of 64 MiB, 256 KiB for the smallest of 1 MiB). Up to
/// it, a payload is copied into the ring's shared memory and decoded straight from there,
/// which costs less than a sealed memfd of its own (whose creation, page allocation and
/// mapping on both sides cost about 100 µs; a 64 KiB item went at a third of Python's rate
/// through one). Bulk values up to it are even encoded in place (see [`RingFrame`]).
pub(crate) const RING_INLINE_MAX: usize = 4 << 20;
/// Frame header size.
pub(crate) const HEADER: usize = 16;
const MAGIC: u32 = u32::from_le_bytes(*b"mp\x01\x00");
const FLAG_OUT_OF_LINE: u32 = 1;

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

    /// The values' bytes of a payload that is a sequence of numbers `T`, read where they
    /// arrived (see [`codec::numeric_seq`]); `None` when `T` is not a primitive number.
    pub(crate) fn numeric_seq<T: 'static>(&self) -> Option<Result<&[u8]>> {
        codec::numeric_seq::<T>(&self.bytes()[self.start..])
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

    /// The undecoded payload and the descriptors, for a caller that decodes them itself and
    /// chooses when an out-of-line buffer is unmapped (the queue: after releasing its lock).
    pub(crate) fn payload_and_fds(&mut self) -> (&[u8], Vec<OwnedFd>) {
        let fds = std::mem::take(&mut self.fds);
        (&self.bytes()[self.start..], fds)
    }

    fn bytes(&self) -> &[u8] {
        self.payload.bytes()
    }
}

impl Payload {
    fn bytes(&self) -> &[u8] {
        match self {
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
    encode_value_frame(value, out, fds, true, MAX_MESSAGE)
}

/// How a value goes into a queue's ring.
pub(crate) enum RingFrame {
    /// Encoded into the caller's buffer as a whole frame (the payload in the sealed buffer
    /// when out of line), to be copied into the ring.
    Encoded(Option<sys::SealedBuffer>),
    /// A bulk value whose frame (header and payload) is this many bytes, within the ring's
    /// inline maximum: the ring reserves its place and [`encode_frame_in_place`] writes it
    /// there, with no copy of its own.
    InPlace(usize),
}

/// A write this large marks a bulk value that a ring encodes in place (see [`RingFrame`]):
/// below it, encoding into the (warm, reused) buffer and copying costs about the same.
const RING_IN_PLACE_FROM: usize = 64 << 10;

/// [`encode_frame`] for a queue's ring: inline up to `inline_max` (the ring's own, at most
/// [`RING_INLINE_MAX`]), bulk values to be encoded in place.
pub(crate) fn encode_frame_for_ring<T: serde::Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    fds: &mut Vec<RawFd>,
    inline_max: usize,
) -> Result<RingFrame> {
    out.clear();
    fds.clear();
    out.extend_from_slice(&[0; HEADER]);
    let limit = RING_IN_PLACE_FROM.min(inline_max) as u64;
    match codec::encode_or_refuse(value, out, fds, limit) {
        Ok(()) => {
            let len = out.len() - HEADER;
            write_header(out, 0, len, fds.len());
            Ok(RingFrame::Encoded(None))
        }
        Err((Error::TooLarge { .. }, refused)) if refused >= RING_IN_PLACE_FROM => {
            match codec::measure(value, inline_max as u64) {
                Ok(len) => Ok(RingFrame::InPlace(HEADER + len)),
                Err(Error::TooLarge { .. }) => {
                    encode_value_frame_inline(value, out, fds, true, MAX_MESSAGE, inline_max)
                        .map(RingFrame::Encoded)
                }
                Err(e) => Err(e),
            }
        }
        Err((Error::TooLarge { .. }, _)) => {
            encode_value_frame_inline(value, out, fds, true, MAX_MESSAGE, inline_max)
                .map(RingFrame::Encoded)
        }
        Err((e, _)) => Err(e),
    }
}

/// Encodes `value` as a whole inline frame into exactly `frame` (its header, then the payload
/// that [`encode_frame_for_ring`] measured), collecting its descriptors: a ring's in-place
/// path.
pub(crate) fn encode_frame_in_place<T: serde::Serialize + ?Sized>(
    value: &T,
    frame: &mut [u8],
    fds: &mut Vec<RawFd>,
) -> Result<()> {
    fds.clear();
    let (header, payload) = frame.split_at_mut(HEADER);
    codec::encode_to_slice(value, payload, fds)?;
    write_header(header, 0, payload.len(), fds.len());
    Ok(())
}

/// A refused write at least this large marks a bulk value (a vector of numbers, a string):
/// one that is measured and encoded straight into its sealed buffer. Below it, encoding into
/// the (warm, reused) frame buffer and copying that into the memfd with `pwrite` costs less
/// than mapping the memfd writable and unmapping it again (1 MiB queue items: 2.0–2.9 GB/s
/// copied, 1.4–1.7 GB/s written in place, same run).
const BULK_WRITE: usize = 4 << 20;

/// Encodes `value` as one frame of at most `limit` payload bytes (see [`encode_frame`]). A
/// payload above [`INLINE_MAX`] whose bulk is one large piece (`Vec<u8>`, `String`, a vector
/// of numbers: see the codec's performance notes) is written straight into its sealed buffer,
/// with no copy of its own; other large payloads are encoded into `out` and copied there.
pub(crate) fn encode_value_frame<T: serde::Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    fds: &mut Vec<RawFd>,
    pass_fds: bool,
    limit: u64,
) -> Result<Option<sys::SealedBuffer>> {
    encode_value_frame_inline(value, out, fds, pass_fds, limit, INLINE_MAX)
}

/// [`encode_value_frame`] with payloads inline up to `inline_max`.
fn encode_value_frame_inline<T: serde::Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    fds: &mut Vec<RawFd>,
    pass_fds: bool,
    limit: u64,
    inline_max: usize,
) -> Result<Option<sys::SealedBuffer>> {
    let limit = limit.min(MAX_MESSAGE);
    let whole = |out: &mut Vec<u8>, fds: &mut Vec<RawFd>| {
        codec::encode_within(value, out, fds, limit).map(|()| &[][..])
    };
    if !pass_fds || limit <= inline_max as u64 {
        return encode_frame_inline(out, fds, pass_fds, true, inline_max, whole);
    }
    out.clear();
    fds.clear();
    out.extend_from_slice(&[0; HEADER]);
    match codec::encode_or_refuse(value, out, fds, inline_max as u64) {
        Ok(()) => {
            let len = out.len() - HEADER;
            write_header(out, 0, len, fds.len());
            Ok(None)
        }
        Err((Error::TooLarge { .. }, refused)) if refused >= BULK_WRITE => {
            let len = codec::measure(value, limit)?;
            fds.clear();
            let mut encoded = Ok(());
            let buffer = sys::SealedBuffer::create_with(len, |bytes| {
                encoded = codec::encode_to_slice(value, bytes, fds);
            })
            .map_err(Error::io("cannot create a buffer for a large message"))?;
            encoded?;
            out.truncate(HEADER);
            write_header(out, FLAG_OUT_OF_LINE, len, fds.len());
            Ok(Some(buffer))
        }
        Err((Error::TooLarge { .. }, _)) => {
            encode_frame_inline(out, fds, true, true, inline_max, whole)
        }
        Err((e, _)) => Err(e),
    }
}

/// An inline frame (no flags, no descriptors) carrying `payload`: what a socket-mode peer
/// reads.
pub(crate) fn inline_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0; HEADER + payload.len()];
    write_header(&mut out, 0, payload.len(), 0);
    out[HEADER..].copy_from_slice(payload);
    out
}

/// Fills in the header at the start of `out`.
fn write_header(out: &mut [u8], flags: u32, len: usize, nfds: usize) {
    out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    out[4..8].copy_from_slice(&flags.to_le_bytes());
    out[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    out[12..16].copy_from_slice(&(nfds as u32).to_le_bytes());
}

/// Encodes one frame whose payload `body` writes: it appends to `out` and returns a tail of
/// bytes that follows them. With `pass_fds` false, a socket-mode frame: inline, no
/// descriptors. Returns the sealed buffer when the payload goes out of line (the tail is then
/// copied straight into it, never into `out`). An inline tail is appended to `out` only with
/// `append_tail`; otherwise the caller sends it right after `out`.
pub(crate) fn encode_frame_as<'t>(
    out: &mut Vec<u8>,
    fds: &mut Vec<RawFd>,
    pass_fds: bool,
    append_tail: bool,
    body: impl FnOnce(&mut Vec<u8>, &mut Vec<RawFd>) -> Result<&'t [u8]>,
) -> Result<Option<sys::SealedBuffer>> {
    encode_frame_inline(out, fds, pass_fds, append_tail, INLINE_MAX, body)
}

/// [`encode_frame_as`] with payloads inline up to `inline_max`.
fn encode_frame_inline<'t>(
    out: &mut Vec<u8>,
    fds: &mut Vec<RawFd>,
    pass_fds: bool,
    append_tail: bool,
    inline_max: usize,
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
    let nfds = fds.len();
    let sealed = if pass_fds && len > inline_max {
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
    write_header(out, flags, len, nfds);
    Ok(sealed)
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
        Header::parse_inline(bytes, limit, pass_fds, INLINE_MAX)
    }

    /// [`Header::parse`] for a transport whose inline payloads go up to `inline_max` (a
    /// queue's ring: [`RING_INLINE_MAX`]).
    pub(crate) fn parse_inline(
        bytes: &[u8; HEADER],
        limit: u64,
        pass_fds: bool,
        inline_max: usize,
    ) -> Result<Header> {
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
        if pass_fds && !out_of_line && len > inline_max as u64 {
            return Err(Error::Malformed(format!(
                "inline payload of {len} bytes exceeds the inline maximum of {inline_max}"
            )));
        }
        Ok(Header {
            out_of_line,
            len: len as usize,
            nfds: word(12) as usize,
        })
    }
}

/// The deadline of a wait of `timeout` starting now (`None`: no deadline); the one helper
/// for it in the crate.
pub(crate) fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
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
pub(crate) fn send_frame_parts<const N: usize>(
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

    #[test]
    fn io_slices_cover_ranges_across_parts() {
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
}
