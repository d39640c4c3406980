//! Network hardening of managers and `Listener`: unauthenticated peers are bounded in number
//! and time and cost no thread; a frame header commits no memory before its bytes arrive (on
//! the server and on the client); a value above the peer's limit is refused while it is being
//! encoded, not after.
mp::guard!();

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use mp_tests::watchdog;
use serde::ser::{SerializeSeq, Serializer};
use sha2::Sha256;

const LIMIT: Duration = Duration::from_secs(60);
const KEY: &[u8] = b"network hardening test key";
/// What a test lets the memory of a process grow by (the point is that it does not grow by
/// the tens or hundreds of MiB a frame announces).
const SLACK_KIB: u64 = 8 * 1024;

fn tcp_manager() -> mp::Manager {
    mp::Manager::builder()
        .address("127.0.0.1:0")
        .authkey(KEY)
        .start()
        .unwrap()
}

fn socket_addr(address: &mp::Address) -> std::net::SocketAddr {
    match address {
        mp::Address::Tcp(a) => *a,
        other => panic!("not TCP: {other}"),
    }
}

/// A field of `/proc/<pid>/status`, as a number (`VmRSS` in KiB, `Threads`).
fn status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// One frame of the wire format: 16-byte header (magic, flags, length, descriptors), payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = b"mp\x01\x00".to_vec();
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// A header announcing `len` payload bytes, none of which follow.
fn header_announcing(len: u32) -> Vec<u8> {
    let mut h = frame(&[]);
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h
}

fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 16];
    s.read_exact(&mut header).unwrap();
    assert_eq!(&header[..4], b"mp\x01\x00");
    let len = u32::from_le_bytes(header[8..12].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    payload
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The client side of the handshake, by hand.
fn client_handshake(s: &mut TcpStream) {
    let challenge = read_frame(s);
    let nonce_s = &challenge[20..52];
    let nonce_c = [7u8; 32];
    let mut answer = b"mp-auth\x01".to_vec();
    answer.extend_from_slice(&hmac(KEY, &[b"mp client", nonce_s]));
    answer.extend_from_slice(&nonce_c);
    answer.extend_from_slice(&1234u32.to_le_bytes());
    s.write_all(&frame(&answer)).unwrap();
    assert_eq!(read_frame(s)[0], 1, "the server accepts the key");
}

/// The handshake's protocol version: 2 since the manager's requests changed (issue 17).
const VERSION: u32 = 2;

/// The server side of the handshake, by hand (a fake server).
fn server_handshake(s: &mut TcpStream) {
    let nonce_s = [9u8; 32];
    let mut challenge = b"mp-auth\x01".to_vec();
    challenge.extend_from_slice(&VERSION.to_le_bytes()); // version
    challenge.extend_from_slice(&(64u64 << 20).to_le_bytes()); // max_message
    challenge.extend_from_slice(&nonce_s);
    s.write_all(&frame(&challenge)).unwrap();
    let answer = read_frame(s);
    assert_eq!(answer[8..40], hmac(KEY, &[b"mp client", &nonce_s]));
    let nonce_c = &answer[40..72];
    let mut verdict = vec![1u8];
    verdict.extend_from_slice(&hmac(KEY, &[b"mp server", nonce_c, &nonce_s]));
    s.write_all(&frame(&verdict)).unwrap();
}

/// Reads until the peer closes the connection; fails the test after `limit`.
fn assert_closed_within(s: &mut TcpStream, limit: Duration) {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut sink = [0u8; 4096];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the connection was not closed within {limit:?}: {e}"),
        }
    }
}

#[test]
fn silent_connections_cost_no_thread_and_a_client_still_gets_in() {
    let _w = watchdog(LIMIT);
    let manager = tcp_manager();
    let server = manager.pid().unwrap();
    let list = manager.list::<u32>().unwrap();
    list.append(1).unwrap();
    let (threads, rss) = (status(server, "Threads"), status(server, "VmRSS"));

    let silent: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(socket_addr(manager.address())).unwrap())
        .collect();
    // The server has seen them all once a client that connects after them is served.
    let t = Instant::now();
    let client = mp::Manager::connect(manager.address(), KEY).unwrap();
    client.list::<u8>().unwrap().append(1).unwrap();
    list.append(2).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    let (threads_now, rss_now) = (status(server, "Threads"), status(server, "VmRSS"));
    assert!(
        threads_now <= threads + 2,
        "300 silent connections cost {} threads",
        threads_now - threads
    );
    assert!(
        rss_now < rss + SLACK_KIB,
        "300 silent connections cost {} KiB",
        rss_now - rss
    );
    assert_eq!(list.to_vec().unwrap(), vec![1, 2]);
    drop(silent);
}

#[test]
fn a_silent_connection_is_closed_at_the_handshake_deadline() {
    let _w = watchdog(LIMIT);
    let listener = mp::Listener::bind("127.0.0.1:0", KEY)
        .unwrap()
        .with_handshake_timeout(Duration::from_millis(500));
    let mut silent = TcpStream::connect(socket_addr(listener.address())).unwrap();
    let t = Instant::now();
    let e = listener.accept::<u8, u8>().unwrap_err();
    assert!(
        matches!(&e, mp::Error::AuthenticationFailed(m) if m.contains("within")),
        "{e}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    read_frame(&mut silent); // the challenge it never answered
    assert_closed_within(&mut silent, Duration::from_secs(2));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // Beyond the bound of handshakes in progress, the oldest one is closed.
    let listener = listener.with_max_handshakes(2);
    let address = socket_addr(listener.address());
    let mut first = TcpStream::connect(address).unwrap();
    let _second = TcpStream::connect(address).unwrap();
    let _third = TcpStream::connect(address).unwrap();
    let e = listener.accept::<u8, u8>().unwrap_err();
    assert!(
        matches!(&e, mp::Error::AuthenticationFailed(m) if m.contains("newer connections")),
        "{e}"
    );
    read_frame(&mut first);
    assert_closed_within(&mut first, Duration::from_secs(2));
}

#[test]
fn an_announced_frame_commits_no_memory_on_the_server() {
    let _w = watchdog(LIMIT);
    let manager = tcp_manager();
    let server = manager.pid().unwrap();
    let list = manager.list::<u32>().unwrap();
    list.append(1).unwrap();
    let rss = status(server, "VmRSS");

    // Three authenticated clients each announce a frame just under the server's limit
    // (64 MiB) and send 100 bytes of it.
    let mut peers: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(socket_addr(manager.address())).unwrap();
            client_handshake(&mut s);
            s.write_all(&header_announcing((64 << 20) - 1)).unwrap();
            s.write_all(&[0u8; 100]).unwrap();
            s
        })
        .collect();
    // The server has read those headers once the connections that follow them are served.
    list.append(2).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let rss_now = status(server, "VmRSS");
    assert!(
        rss_now < rss + SLACK_KIB,
        "three announced frames cost the server {} KiB",
        rss_now - rss
    );

    // The frame, once it does arrive, is received whole (and refused as a request).
    let mut last = peers.pop().unwrap();
    let rest = vec![0u8; (64 << 20) - 1 - 100];
    last.write_all(&rest).unwrap();
    let reply = read_frame(&mut last);
    assert!(!reply.is_empty(), "an error reply");
    drop(peers);
    assert_eq!(list.to_vec().unwrap(), vec![1, 2]);
}

#[mp::worker]
fn receive_from(address: mp::Address, key: Vec<u8>) -> (String, u64) {
    let conn = mp::client::<u8, serde_bytes::ByteBuf>(&address, &key).unwrap();
    let me = std::process::id();
    let rss = status(me, "VmRSS");
    let got = conn.recv_timeout(Duration::from_millis(500));
    let outcome = match got {
        Ok(b) => format!("received {} bytes", b.len()),
        Err(e) => e.to_string(),
    };
    (outcome, status(me, "VmRSS").saturating_sub(rss))
}

#[test]
fn an_announced_frame_commits_no_memory_on_the_client() {
    let _w = watchdog(LIMIT);
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = mp::Address::Tcp(fake.local_addr().unwrap());
    let mut client = mp::spawn(receive_from, (address, KEY.to_vec())).unwrap();

    let (mut s, _) = fake.accept().unwrap();
    server_handshake(&mut s);
    // 1 GiB announced (a client accepts any size from its server), 100 bytes sent.
    s.write_all(&header_announcing(1 << 30)).unwrap();
    s.write_all(&[0u8; 100]).unwrap();

    let (outcome, grown) = client.join().unwrap();
    assert!(outcome.contains("timed out"), "{outcome}");
    assert!(
        grown < SLACK_KIB,
        "an announced frame cost the client {grown} KiB"
    );
}

#[test]
fn a_server_of_the_previous_protocol_version_is_refused_clearly() {
    let _w = watchdog(LIMIT);
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = mp::Address::Tcp(fake.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = fake.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // An mp of protocol version 1: whatever follows the challenge must never be read
        // as this version's requests.
        let nonce_s = [9u8; 32];
        let mut challenge = b"mp-auth\x01".to_vec();
        challenge.extend_from_slice(&1u32.to_le_bytes());
        challenge.extend_from_slice(&(64u64 << 20).to_le_bytes());
        challenge.extend_from_slice(&nonce_s);
        s.write_all(&frame(&challenge)).unwrap();
        assert_closed_within(&mut s, Duration::from_secs(10));
    });
    match mp::Manager::connect(&address, KEY) {
        Err(mp::Error::AuthenticationFailed(why)) => {
            assert!(why.contains("protocol version 1"), "{why}");
        }
        other => panic!("expected a version mismatch, got {other:?}"),
    }
    server.join().unwrap();
}

/// How many elements [`Endless`] has handed to a serializer.
static PULLED: AtomicUsize = AtomicUsize::new(0);

/// A sequence of `0` as `u64`, `self.0` of them: a value far larger than a limit, produced
/// element by element (it never exists in memory).
#[derive(Debug)]
struct Endless(usize);

impl serde::Serialize for Endless {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0))?;
        for _ in 0..self.0 {
            PULLED.fetch_add(1, Ordering::Relaxed);
            seq.serialize_element(&0u64)?;
        }
        seq.end()
    }
}

#[test]
fn a_value_above_the_limit_is_refused_while_encoding() {
    let _w = watchdog(LIMIT);
    const MAX: u64 = 1 << 20;
    let listener = mp::Listener::bind("127.0.0.1:0", KEY)
        .unwrap()
        .with_max_message(MAX);
    let address = listener.address().clone();
    let server = std::thread::spawn(move || {
        let conn: mp::Connection<u8, Vec<u64>> = listener.accept().unwrap();
        conn.recv().unwrap()
    });
    let conn = mp::client::<Endless, u8>(&address, KEY).unwrap();

    // 64 MiB worth of elements against a 1 MiB limit: the encoder stops at the limit.
    let t = Instant::now();
    let e = conn.send(Endless(8 << 20)).unwrap_err();
    assert!(
        matches!(e.error, mp::Error::TooLarge { limit: MAX, .. }),
        "{}",
        e.error
    );
    let pulled = PULLED.swap(0, Ordering::Relaxed);
    assert!(
        pulled <= (MAX / 8) as usize + 2,
        "{pulled} elements were encoded for a limit of {} elements",
        MAX / 8
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // Nothing was sent: the connection carries the next value as usual.
    conn.send(Endless(10)).unwrap();
    assert_eq!(server.join().unwrap(), vec![0u64; 10]);
}

static STORED_PULLED: AtomicUsize = AtomicUsize::new(0);

/// Like [`Endless`], counted apart, and storable in a manager (reading one back is not tried).
#[derive(Debug)]
struct EndlessStored(usize);

impl serde::Serialize for EndlessStored {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0))?;
        for _ in 0..self.0 {
            STORED_PULLED.fetch_add(1, Ordering::Relaxed);
            seq.serialize_element(&0u64)?;
        }
        seq.end()
    }
}

impl<'de> serde::Deserialize<'de> for EndlessStored {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<u64>::deserialize(d).map(|v| EndlessStored(v.len()))
    }
}

#[test]
fn a_value_to_store_is_refused_at_the_servers_limit_while_encoding() {
    let _w = watchdog(LIMIT);
    const MAX: u64 = 1 << 20;
    let manager = mp::Manager::builder().max_message(MAX).start().unwrap();
    let list = manager.list::<EndlessStored>().unwrap();
    // 64 MiB worth of elements against the server's 1 MiB: encoding stops at the limit, in
    // this process, before anything is sent.
    let e = list.append(EndlessStored(8 << 20)).unwrap_err();
    assert!(matches!(e.error, mp::Error::TooLarge { .. }), "{}", e.error);
    let pulled = STORED_PULLED.swap(0, Ordering::Relaxed);
    assert!(
        pulled <= (MAX / 8) as usize + 2,
        "{pulled} elements were encoded for a limit of {} elements",
        MAX / 8
    );
    list.append(EndlessStored(10)).unwrap();
    assert_eq!(list.len().unwrap(), 1);
}
