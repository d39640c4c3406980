//! The auth-key handshake that opens every network connection (Listener/Connection and
//! managers): an HMAC-SHA256 challenge-response in both directions, exchanged as three small
//! fixed-shape frames under a 256-byte limit, so nothing a peer sends is decoded beyond them
//! before it has proved it knows the key.
//!
//! ```text
//! server → client  Challenge { magic, version, max_message, nonce_s }
//! client → server  Answer    { magic, mac_c = HMAC(key, "mp client" ‖ nonce_s), nonce_c, pid }
//! server → client  Verdict   { accepted, mac_s = HMAC(key, "mp server" ‖ nonce_c ‖ nonce_s) }
//! ```
//!
//! The labels keep one side's proof from being replayed as the other's; fresh 32-byte nonces
//! from the kernel keep a recorded exchange from being replayed at all. MACs are compared in
//! constant time.
//!
//! The handshake authenticates both ends once. The frames after it carry no MAC and are not
//! encrypted (as in Python): whoever can read or alter the traffic on the way can read or
//! alter it. Across untrusted networks, run it through an SSH tunnel or TLS.
//!
//! The server side is a [`Handshake`]: a small state machine over a socket that is read
//! only when it is readable, so one thread can drive many handshakes at once (the listener's
//! gate, `gate.rs`) and nothing but its fixed 272-byte buffer is committed to a peer that has
//! not proved itself.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::codec::{self, MAX_MESSAGE};
use crate::error::{Error, Result};
use crate::sys;
use crate::wire::{self, Channel, HEADER, Header};

/// How long either side waits for the other's handshake frame.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The limit in force until the peer is authenticated.
pub(crate) const HANDSHAKE_LIMIT: u64 = 256;
const MAGIC: [u8; 8] = *b"mp-auth\x01";
/// Raised whenever a message format behind the handshake changes (2: manager operations
/// by kind, blobs with references).
const VERSION: u32 = 2;
const CLIENT_LABEL: &[u8] = b"mp client";
const SERVER_LABEL: &[u8] = b"mp server";

#[derive(Serialize, Deserialize)]
struct Challenge {
    magic: [u8; 8],
    version: u32,
    max_message: u64,
    nonce: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct Answer {
    magic: [u8; 8],
    mac: [u8; 32],
    nonce: [u8; 32],
    pid: u32,
}

#[derive(Serialize, Deserialize)]
struct Verdict {
    accepted: bool,
    mac: [u8; 32],
}

/// Checks an auth key given by a user: it must not be empty.
pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument(
            "the auth key is empty; use a secret of at least 16 bytes".to_owned(),
        ));
    }
    Ok(())
}

fn nonce() -> Result<[u8; 32]> {
    let mut n = [0u8; 32];
    sys::net::random_bytes(&mut n).map_err(Error::io("cannot read random bytes"))?;
    Ok(n)
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        m.update(part);
    }
    m
}

fn proof(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    mac(key, parts).finalize().into_bytes().into()
}

fn verify(key: &[u8], parts: &[&[u8]], claimed: &[u8; 32]) -> bool {
    mac(key, parts).verify_slice(claimed).is_ok()
}

fn receive<T: serde::de::DeserializeOwned>(channel: &Channel, peer: &str) -> Result<T> {
    let not_mp = |e: Error| {
        Error::AuthenticationFailed(format!("{peer} does not speak the mp protocol ({e})"))
    };
    match channel.recv_frame(Some(HANDSHAKE_TIMEOUT)) {
        Ok(frame) => frame.decode().map_err(not_mp),
        Err(Error::Timeout) => Err(Error::AuthenticationFailed(format!(
            "{peer} sent no handshake within {HANDSHAKE_TIMEOUT:?}"
        ))),
        // Not a refusal (a server refuses a key with a verdict): the peer went away, e.g. a
        // manager killed while its listening socket still took connections. An I/O error, so
        // that a manager's client reports the manager gone.
        Err(Error::Disconnected) => Err(Error::Io {
            context: format!("{peer} closed the connection during the handshake").into(),
            source: std::sync::Arc::new(std::io::ErrorKind::UnexpectedEof.into()),
        }),
        Err(e @ Error::Io { .. }) => Err(e),
        Err(e) => Err(not_mp(e)),
    }
}

/// The server side of one handshake, driven by its owner whenever the socket is readable:
/// [`start`](Handshake::start) sends the challenge, [`advance`](Handshake::advance) reads the
/// answer as its bytes arrive (exactly its bytes: what the client sends after it stays in the
/// socket for the session) and, once it is whole, checks it and sends the verdict. Every send
/// is a few dozen bytes on a fresh socket and never waits; no read blocks.
pub(crate) struct Handshake {
    sock: OwnedFd,
    peer: String,
    nonce: [u8; 32],
    deadline: Instant,
    timeout: Duration,
    /// The answer frame, as much of it as has arrived.
    buf: [u8; HEADER + HANDSHAKE_LIMIT as usize],
    got: usize,
}

impl Handshake {
    /// Challenges the peer on a freshly accepted socket; the handshake must be over within
    /// `timeout`.
    pub(crate) fn start(
        sock: OwnedFd,
        peer: String,
        max_message: u64,
        timeout: Duration,
    ) -> Result<Handshake> {
        let nonce = nonce()?;
        let handshake = Handshake {
            sock,
            peer,
            nonce,
            deadline: Instant::now() + timeout,
            timeout,
            buf: [0; HEADER + HANDSHAKE_LIMIT as usize],
            got: 0,
        };
        handshake.send(&Challenge {
            magic: MAGIC,
            version: VERSION,
            max_message,
            nonce,
        })?;
        Ok(handshake)
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// When the peer's time is up.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The error of a peer whose time ran out.
    pub(crate) fn timed_out(&self) -> Error {
        Error::AuthenticationFailed(format!(
            "{} did not complete the handshake within {:?}",
            self.peer, self.timeout
        ))
    }

    /// Sends one small frame without waiting: it fits in any fresh socket's buffer, and a
    /// peer that does not read it is not worth waiting for.
    fn send<T: Serialize>(&self, value: &T) -> Result<()> {
        let mut bytes = Vec::new();
        wire::encode_frame(value, &mut bytes, &mut Vec::new())?;
        let sent = sys::send_with_fds(self.fd(), &[IoSlice::new(&bytes)], &[], true);
        match sent {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(_) => Err(Error::AuthenticationFailed(format!(
                "{} does not read its handshake",
                self.peer
            ))),
            Err(e) => Err(Error::AuthenticationFailed(format!(
                "cannot send the handshake to {}: {e}",
                self.peer
            ))),
        }
    }

    /// Reads what has arrived of the answer. `Ok(None)` while it is incomplete; once it is
    /// whole and right, sends the verdict and returns the process id the client reports (for
    /// logs: it is the client's word). Any error ends the handshake.
    pub(crate) fn advance(&mut self, key: &[u8]) -> Result<Option<u32>> {
        let peer = self.peer.clone();
        let not_mp = |e: Error| {
            Error::AuthenticationFailed(format!("{peer} does not speak the mp protocol ({e})"))
        };
        loop {
            let want = if self.got < HEADER {
                HEADER
            } else {
                let header: &[u8; HEADER] = self.buf[..HEADER].try_into().expect("header");
                HEADER
                    + Header::parse(header, HANDSHAKE_LIMIT, false)
                        .map_err(not_mp)?
                        .len
            };
            if self.got >= HEADER && self.got == want {
                break;
            }
            let mut fds = VecDeque::new(); // none may come: dropped (closed) if any do
            let got = sys::recv_with_fds(
                self.sock.as_fd(),
                &mut self.buf[self.got..want],
                &mut fds,
                true,
            );
            match got {
                Ok(0) => {
                    return Err(Error::AuthenticationFailed(format!(
                        "{peer} closed the connection during the handshake"
                    )));
                }
                Ok(n) => self.got += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => {
                    return Err(Error::AuthenticationFailed(format!(
                        "{peer} broke the connection during the handshake: {e}"
                    )));
                }
            }
        }
        let answer: Answer =
            codec::decode(&self.buf[HEADER..self.got], Vec::new()).map_err(not_mp)?;
        if answer.magic != MAGIC {
            return Err(Error::AuthenticationFailed(format!(
                "{peer} does not speak the mp protocol (bad magic)"
            )));
        }
        if !verify(key, &[CLIENT_LABEL, &self.nonce], &answer.mac) {
            let _ = self.send(&Verdict {
                accepted: false,
                mac: [0; 32],
            });
            return Err(Error::AuthenticationFailed(format!(
                "{peer} (pid {}) presented a wrong auth key",
                answer.pid
            )));
        }
        self.send(&Verdict {
            accepted: true,
            mac: proof(key, &[SERVER_LABEL, &answer.nonce, &self.nonce]),
        })?;
        Ok(Some(answer.pid))
    }

    /// The authenticated connection, accepting messages of up to `max_message` bytes.
    pub(crate) fn into_channel(self, max_message: u64) -> Channel {
        Channel::socket(self.sock, max_message)
    }
}

/// The server side run to its end on the calling thread (tests).
#[cfg(test)]
pub(crate) fn serve(
    sock: OwnedFd,
    key: &[u8],
    max_message: u64,
    peer: &str,
) -> Result<(Channel, u32)> {
    let mut handshake = Handshake::start(sock, peer.to_owned(), max_message, HANDSHAKE_TIMEOUT)?;
    loop {
        if let Some(pid) = handshake.advance(key)? {
            return Ok((handshake.into_channel(max_message), pid));
        }
        let left = handshake
            .deadline()
            .saturating_duration_since(Instant::now());
        if !sys::poll_readable(handshake.fd(), Some(left)).map_err(Error::io("poll failed"))? {
            return Err(handshake.timed_out());
        }
    }
}

/// The client side: answers the server's challenge and checks its proof; on success the
/// channel accepts any size from the server and refuses to send more than it accepts.
pub(crate) fn answer(channel: &Channel, key: &[u8], server: &str) -> Result<()> {
    let challenge: Challenge = receive(channel, server)?;
    if challenge.magic != MAGIC {
        return Err(Error::AuthenticationFailed(format!(
            "{server} is not an mp server (bad magic)"
        )));
    }
    if challenge.version != VERSION {
        return Err(Error::AuthenticationFailed(format!(
            "{server} speaks protocol version {}, this mp speaks {VERSION}",
            challenge.version
        )));
    }
    let nonce_c = nonce()?;
    channel.send(&Answer {
        magic: MAGIC,
        mac: proof(key, &[CLIENT_LABEL, &challenge.nonce]),
        nonce: nonce_c,
        pid: sys::getpid(),
    })?;
    let verdict: Verdict = receive(channel, server)?;
    if !verdict.accepted {
        return Err(Error::AuthenticationFailed(format!(
            "{server} rejected the auth key"
        )));
    }
    if !verify(
        key,
        &[SERVER_LABEL, &nonce_c, &challenge.nonce],
        &verdict.mac,
    ) {
        return Err(Error::AuthenticationFailed(format!(
            "{server} could not prove that it knows the auth key"
        )));
    }
    channel.set_limit(MAX_MESSAGE);
    channel.set_peer_limit(challenge.max_message);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (OwnedFd, Channel) {
        let (a, b) = sys::socketpair_stream().unwrap();
        (a, Channel::socket(b, HANDSHAKE_LIMIT))
    }

    #[test]
    fn matching_keys_authenticate_both_ways() {
        let (s, c) = pair();
        let server = std::thread::spawn(move || serve(s, b"secret", 1000, "client"));
        answer(&c, b"secret", "server").unwrap();
        let (s, _) = server.join().unwrap().unwrap();
        // The limits moved: the client refuses to send what the server would not accept.
        let big = serde_bytes::ByteBuf::from(vec![0u8; 2000]);
        assert!(matches!(c.send(&big), Err(Error::TooLarge { .. })));
        let small = serde_bytes::ByteBuf::from(vec![0u8; 500]);
        c.send(&small).unwrap();
        let got: serde_bytes::ByteBuf = s.recv_frame(None).unwrap().decode().unwrap();
        assert_eq!(got.len(), 500);
    }

    #[test]
    fn wrong_key_is_rejected_on_both_sides() {
        let (s, c) = pair();
        let server = std::thread::spawn(move || serve(s, b"right", 1000, "client").err());
        let e = answer(&c, b"wrong", "server").unwrap_err();
        assert!(matches!(e, Error::AuthenticationFailed(ref m) if m.contains("rejected")));
        let e = server.join().unwrap().unwrap();
        assert!(matches!(e, Error::AuthenticationFailed(ref m) if m.contains("wrong auth key")));
    }

    #[test]
    fn garbage_is_not_decoded() {
        let (s, c) = pair();
        let server = std::thread::spawn(move || serve(s, b"key", 1000, "client").err());
        // A frame far above the handshake limit: rejected from its header alone.
        c.send(&serde_bytes::ByteBuf::from(vec![1u8; 10_000]))
            .unwrap();
        let e = server.join().unwrap().unwrap();
        assert!(matches!(e, Error::AuthenticationFailed(ref m) if m.contains("does not speak")));
    }

    /// A server that goes away before its challenge (a manager killed while its socket still
    /// took connections) is a failed connection, not a refused key: an I/O error, which a
    /// manager's client reports as the manager gone.
    #[test]
    fn a_server_gone_mid_handshake_is_an_io_error_not_a_refusal() {
        let (s, c) = pair();
        drop(s);
        let e = answer(&c, b"key", "server").unwrap_err();
        assert!(
            matches!(&e, Error::Io { context, source }
                if context.contains("closed the connection during the handshake")
                    && source.kind() == std::io::ErrorKind::UnexpectedEof),
            "{e:?}"
        );
    }

    #[test]
    fn empty_keys_are_refused() {
        assert!(matches!(check_key(b""), Err(Error::InvalidArgument(_))));
    }
}
