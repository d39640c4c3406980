//! The pool's frames: a chunk's header followed by its items, built so that numeric items are
//! copied once (or not at all: an inline chunk of a `map` over numbers ends with a view of the
//! caller's vector), and [`Encoded`], a frame encoded once and sendable to any worker. Only the
//! pool uses these; framing itself is `wire/`, the format `codec.rs`.

use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::codec;
use crate::error::{Error, Result};
use crate::sys;
use crate::wire::{Channel, encode_frame_as, inline_frame};

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

/// Sends the tuple `(header, items)` as one frame on `channel`, numeric items copied in one
/// piece (a pool worker's results).
pub(crate) fn send_header_and_seq<H: serde::Serialize, T: serde::Serialize + 'static>(
    channel: &Channel,
    header: &H,
    items: &[T],
) -> Result<()> {
    channel.send_body(header_and_seq(header, items))
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
        #[allow(unsafe_code)]
        let fds = raw
            .iter()
            // SAFETY: recorded by `codec::Fd` while `body` encoded a value borrowed for this
            // call; duplicated before it returns.
            .map(|&fd| sys::dup_fd(unsafe { sys::borrow_raw_fd(fd) }))
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
        Ok(Encoded {
            bytes: inline_frame(sealed.as_slice()),
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
        let tail = self
            .tail
            .as_ref()
            .map_or(&[][..], |t| &t.source.bytes()[t.range.clone()]);
        channel.send_parts([&self.bytes, tail], &self.fds())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Channel, Channel) {
        let (a, b) = sys::socketpair_stream().unwrap();
        (Channel::new(a), Channel::new(b))
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
    }
}
