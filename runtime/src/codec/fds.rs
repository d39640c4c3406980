//! The side table through which OS handles inside values travel next to the bytes
//! (`SCM_RIGHTS`): the public `Fd` and its `#[serde(with)]` twin `fd`, the thread-local table
//! in which an encoding records descriptors and from which a decoding takes them, and popping
//! a frame's received descriptors. It must not know the wire format (a handle is a `u32` index
//! encoded like any other value), frames or sockets.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

pub(super) struct FdTable {
    pub(super) fds: Vec<Option<OwnedFd>>,
}

thread_local! {
    static FD_SINK: RefCell<Option<Vec<RawFd>>> = const { RefCell::new(None) };
    pub(super) static FD_SOURCE: RefCell<Option<FdTable>> = const { RefCell::new(None) };
}

/// Whether a value is being encoded by `mp` (for a handle that needs no descriptor but must
/// not leak into other serializers, such as a manager proxy carrying its auth key).
pub(crate) fn in_send() -> bool {
    FD_SINK.with(|s| s.borrow().is_some())
}

/// Runs `f` (which encodes one or more values with
/// [`encode_collected`](super::encode_collected)) with `fds` receiving the descriptors of the
/// handles inside them: a batch pays for this once.
pub(crate) fn collecting_fds<R>(fds: &mut Vec<RawFd>, f: impl FnOnce() -> R) -> R {
    let previous = FD_SINK.with(|s| s.replace(Some(std::mem::take(fds))));
    let result = f();
    *fds = FD_SINK.with(|s| s.replace(previous)).unwrap_or_default();
    result
}

/// A descriptor inside a value (Python's `reduction.send_handle`, as a field): it travels
/// next to the message's bytes (`SCM_RIGHTS`), and the receiver gets its own descriptor for
/// the same open file, under whatever number is free there.
///
/// `Fd<F>` serializes any `F: AsFd` (an [`OwnedFd`], a [`File`](std::fs::File), a
/// [`BorrowedFd`](std::os::fd::BorrowedFd), a socket) and deserializes into any
/// `F: From<OwnedFd>`. It can only be encoded by `mp` (a worker's argument, a message on a
/// pipe, queue or process), and a network [`Connection`](crate::Connection) refuses it with
/// [`Error::Encode`]. The [`fd`](crate::connection::fd) module is the same as a
/// `#[serde(with = ...)]` adapter, for a field of a foreign type such as `File`.
///
/// ```
/// # mp::guard!();
/// use std::io::{Read, Seek, Write};
/// use mp::connection::Fd;
///
/// #[mp::worker]
/// fn read_all(file: Fd<std::fs::File>) -> mp::Result<String> {
///     let mut file = file.0;
///     file.rewind()?;
///     let mut text = String::new();
///     file.read_to_string(&mut text)?;
///     Ok(text)
/// }
///
/// let path = std::env::temp_dir().join(format!("mp-doc-fd-{}", std::process::id()));
/// let mut file = std::fs::File::options()
///     .read(true).write(true).create(true).truncate(true).open(&path)?;
/// std::fs::remove_file(&path)?; // the open file lives on, without a name
/// file.write_all(b"opened by the parent")?;
/// let mut p = mp::spawn(read_all, Fd(file))?;
/// assert_eq!(p.join()??, "opened by the parent");
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Fd<F = OwnedFd>(pub F);

impl<F> Fd<F> {
    /// The wrapped descriptor (or file, or socket).
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    /// let stream = mp::connection::Fd(a).into_inner();
    /// # drop(stream);
    /// ```
    pub fn into_inner(self) -> F {
        self.0
    }
}

impl<F: AsFd> Serialize for Fd<F> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let index = push_fd(self.0.as_fd().as_raw_fd()).map_err(serde::ser::Error::custom)?;
        serializer.serialize_newtype_struct("mp::Fd", &index)
    }
}

impl<'de, F: From<OwnedFd>> Deserialize<'de> for Fd<F> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename = "mp::Fd")]
        struct Index(u32);
        let Index(index) = Index::deserialize(deserializer)?;
        let fd = take_fd(index).map_err(serde::de::Error::custom)?;
        Ok(Fd(F::from(fd)))
    }
}

/// [`Fd`] as a `#[serde(with = "mp::connection::fd")]` adapter, for a descriptor-holding field
/// of a type that is not `Fd` (a [`File`](std::fs::File), an [`OwnedFd`], a `UnixStream`).
///
/// ```
/// # mp::guard!();
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Job {
///     name: String,
///     #[serde(with = "mp::connection::fd")]
///     out: std::os::unix::net::UnixStream,
/// }
///
/// let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
/// let (tx, rx) = mp::pipe::<Job>()?;
/// tx.send(Job { name: "copy".into(), out: theirs })?;
/// let job = rx.recv()?;
/// use std::io::{Read, Write};
/// (&job.out).write_all(b"hi").unwrap();
/// let mut got = [0; 2];
/// (&ours).read_exact(&mut got).unwrap();
/// assert_eq!(&got, b"hi");
/// # Ok::<(), mp::Error>(())
/// ```
pub mod fd {
    use std::os::fd::{AsFd, OwnedFd};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Fd;

    /// Serializes `value`'s descriptor (see [`Fd`]).
    ///
    /// ```
    /// #[derive(serde::Serialize)]
    /// struct Out(#[serde(with = "mp::connection::fd")] std::fs::File);
    /// ```
    pub fn serialize<F: AsFd, S: Serializer>(
        value: &F,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        Fd(value.as_fd()).serialize(serializer)
    }

    /// Deserializes a descriptor into `F` (see [`Fd`]).
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct In(#[serde(with = "mp::connection::fd")] std::fs::File);
    /// ```
    pub fn deserialize<'de, F: From<OwnedFd>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<F, D::Error> {
        Fd::<F>::deserialize(deserializer).map(Fd::into_inner)
    }
}

/// Records `fd` to travel with the message being encoded and returns its index. Fails outside
/// an `mp` send, where the descriptor could not follow. Only [`Fd`]'s `Serialize` calls it.
fn push_fd(fd: RawFd) -> std::result::Result<u32, String> {
    FD_SINK.with(|s| match s.borrow_mut().as_mut() {
        Some(fds) => {
            fds.push(fd);
            Ok((fds.len() - 1) as u32)
        }
        None => Err(
            "an mp handle (queue, pipe end, ...) can only be serialized by mp itself, \
                     as an argument of a worker or inside a message on an mp queue or pipe"
                .to_owned(),
        ),
    })
}

/// Takes the descriptor at `index` of the message being decoded. Each index can be taken
/// once. Only [`Fd`]'s `Deserialize` calls it.
fn take_fd(index: u32) -> std::result::Result<OwnedFd, String> {
    FD_SOURCE.with(|s| match s.borrow_mut().as_mut() {
        None => Err("an mp handle can only be deserialized by mp itself".to_owned()),
        Some(table) => table
            .fds
            .get_mut(index as usize)
            .and_then(Option::take)
            .ok_or_else(|| {
                format!("handle refers to descriptor #{index}, which the message did not carry")
            }),
    })
}

/// Pops `n` descriptors from the front of a received-descriptor queue, or fails if fewer came.
pub(crate) fn take_fds(queue: &mut VecDeque<OwnedFd>, n: usize) -> Result<Vec<OwnedFd>> {
    if queue.len() < n {
        return Err(Error::Malformed(format!(
            "frame announces {n} descriptors but {} arrived",
            queue.len()
        )));
    }
    Ok(queue.drain(..n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};
    use crate::sys;

    #[test]
    fn handles_need_an_mp_send() {
        assert!(push_fd(0).is_err());
        assert!(take_fd(0).is_err());
        let (a, _b) = sys::socketpair_stream().unwrap();
        let e = bincode::serde::encode_to_vec(
            Fd(&a),
            bincode::config::standard().with_fixed_int_encoding(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("only be serialized by mp"), "{e}");
    }

    #[test]
    fn descriptors_inside_values_go_to_the_side_table() {
        let (a, b) = sys::socketpair_stream().unwrap();
        let mut buf = Vec::new();
        let mut fds = Vec::new();
        encode(&(Fd(&a), 9u8, Fd(b.as_fd())), &mut buf, &mut fds).unwrap();
        assert_eq!(fds, [a.as_raw_fd(), b.as_raw_fd()]);
        let copies: Vec<OwnedFd> = fds
            .iter()
            .map(|&fd| {
                #[allow(unsafe_code)]
                // SAFETY: `a` and `b` are open for this whole test.
                let fd = unsafe { sys::borrow_raw_fd(fd) };
                sys::dup_fd(fd).unwrap()
            })
            .collect();
        let (x, n, y): (Fd<OwnedFd>, u8, Fd<std::fs::File>) = decode(&buf, copies).unwrap();
        assert_eq!(n, 9);
        assert!(x.0.as_raw_fd() != a.as_raw_fd() && y.0.as_raw_fd() != b.as_raw_fd());
        // A message whose value names a descriptor it did not carry.
        assert!(matches!(
            decode::<(Fd<OwnedFd>, u8, Fd<OwnedFd>)>(&buf, Vec::new()),
            Err(Error::Decode(m)) if m.contains("did not carry")
        ));
    }
}
