//! Managers over TCP and `Listener`/`client`: the auth-key handshake seen from outside (a
//! raw client speaking the wire format byte by byte), wrong keys, garbage, oversized frames and
//! silent peers; none of them runs anything on the server or disturbs the other clients.
mp::guard!();

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use mp_tests::watchdog;
use sha2::Sha256;

const LIMIT: Duration = Duration::from_secs(60);
const KEY: &[u8] = b"remote manager test key";

fn tcp_manager() -> mp::Manager {
    mp::Manager::builder()
        .address("127.0.0.1:0")
        .authkey(KEY)
        .start()
        .unwrap()
}

fn socket_addr(manager: &mp::Manager) -> std::net::SocketAddr {
    match manager.address() {
        mp::Address::Tcp(a) => *a,
        other => panic!("not TCP: {other}"),
    }
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

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut header = [0u8; 16];
    s.read_exact(&mut header)?;
    assert_eq!(&header[..4], b"mp\x01\x00");
    let len = u32::from_le_bytes(header[8..12].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)?;
    Ok(payload)
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Runs the client side of the handshake by hand; returns whether the server accepted.
fn raw_handshake(s: &mut TcpStream, key: &[u8]) -> bool {
    let challenge = read_frame(s).unwrap();
    assert_eq!(&challenge[..8], b"mp-auth\x01");
    let nonce_s = &challenge[20..52];
    let nonce_c = [7u8; 32];
    let mut answer = b"mp-auth\x01".to_vec();
    answer.extend_from_slice(&hmac(key, &[b"mp client", nonce_s]));
    answer.extend_from_slice(&nonce_c);
    answer.extend_from_slice(&1234u32.to_le_bytes());
    s.write_all(&frame(&answer)).unwrap();
    let verdict = read_frame(s).unwrap();
    if verdict[0] == 1 {
        assert_eq!(
            verdict[1..33],
            hmac(key, &[b"mp server", &nonce_c, nonce_s]),
            "the server proves it knows the key"
        );
    }
    verdict[0] == 1
}

/// Reads until the server closes the connection; fails the test after 10 s.
fn assert_closed_by_server(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sink = [0u8; 4096];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_wrong_key_is_rejected_and_runs_nothing() {
    let _w = watchdog(LIMIT);
    let manager = tcp_manager();
    let victim = manager.named::<mp::ListProxy<u32>>("victim").unwrap();
    victim.append(1).unwrap();

    let e = mp::Manager::connect(manager.address(), b"wrong key").unwrap_err();
    assert!(
        matches!(&e, mp::Error::AuthenticationFailed(m) if m.contains("rejected")),
        "{e}"
    );
    let e = mp::client::<u32, u32>(manager.address(), b"").unwrap_err();
    assert!(matches!(e, mp::Error::InvalidArgument(_)), "{e}");

    // By hand: a wrong answer, with requests pipelined behind it. The server answers "no" and
    // closes; nothing behind the answer is read.
    let mut s = TcpStream::connect(socket_addr(&manager)).unwrap();
    let sneaky = frame(&[0u8; 64]);
    assert!(!raw_handshake_with_extra(&mut s, b"not the key", &sneaky));
    assert_closed_by_server(&mut s);

    assert_eq!(victim.to_vec().unwrap(), vec![1], "nothing changed");
    assert_eq!(
        manager
            .named::<mp::ListProxy<u32>>("victim")
            .unwrap()
            .len()
            .unwrap(),
        1
    );
}

fn raw_handshake_with_extra(s: &mut TcpStream, key: &[u8], extra: &[u8]) -> bool {
    // Send the pipelined bytes right after the answer, before reading the verdict.
    let challenge = read_frame(s).unwrap();
    let nonce_s = &challenge[20..52];
    let mut answer = b"mp-auth\x01".to_vec();
    answer.extend_from_slice(&hmac(key, &[b"mp client", nonce_s]));
    answer.extend_from_slice(&[0u8; 32]);
    answer.extend_from_slice(&1u32.to_le_bytes());
    let mut bytes = frame(&answer);
    bytes.extend_from_slice(extra);
    s.write_all(&bytes).unwrap();
    read_frame(s).unwrap()[0] == 1
}

#[test]
fn the_raw_handshake_works_with_the_right_key() {
    let _w = watchdog(LIMIT);
    let manager = tcp_manager();
    let mut s = TcpStream::connect(socket_addr(&manager)).unwrap();
    assert!(raw_handshake(&mut s, KEY));
}

#[test]
fn garbage_is_dropped_while_other_clients_keep_working() {
    let _w = watchdog(LIMIT);
    let manager = tcp_manager();
    let list = manager.list::<u64>().unwrap();
    list.append(1).unwrap();

    // Before authentication: pseudo-random bytes.
    let mut s = TcpStream::connect(socket_addr(&manager)).unwrap();
    let mut x = 0x1234_5678_9abc_def0u64;
    let garbage: Vec<u8> = (0..65536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let _ = s.write_all(&garbage);
    assert_closed_by_server(&mut s);

    // After authentication: a frame of the right shape whose payload is not a request.
    let mut s = TcpStream::connect(socket_addr(&manager)).unwrap();
    assert!(raw_handshake(&mut s, KEY));
    s.write_all(&frame(&[0xff; 100])).unwrap();
    assert_closed_by_server(&mut s);

    list.append(2).unwrap();
    assert_eq!(list.to_vec().unwrap(), vec![1, 2]);
}

#[test]
fn an_oversized_frame_is_rejected_from_its_header() {
    let _w = watchdog(LIMIT);
    let manager = tcp_manager();
    let server = manager.pid().unwrap();
    let list = manager.list::<u64>().unwrap();
    let before = rss_kib(server);

    let mut s = TcpStream::connect(socket_addr(&manager)).unwrap();
    assert!(raw_handshake(&mut s, KEY));
    // Announces 4 GiB - 1 and sends a few bytes of it.
    let mut header = frame(&[]);
    header[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    s.write_all(&header).unwrap();
    s.write_all(&[0u8; 1000]).unwrap();
    let reply = read_frame(&mut s).unwrap();
    assert!(!reply.is_empty(), "an error reply comes first");
    assert_closed_by_server(&mut s);

    assert!(
        rss_kib(server) < before + 64 * 1024,
        "nothing was allocated for the frame"
    );
    list.append(3).unwrap();
    assert_eq!(list.len().unwrap(), 1);
}

#[test]
fn a_silent_peer_does_not_hold_up_the_others() {
    let _w = watchdog(LIMIT);
    let manager = tcp_manager();
    let _silent: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(socket_addr(&manager)).unwrap())
        .collect();
    let t = Instant::now();
    let client = mp::Manager::connect(manager.address(), KEY).unwrap();
    client.list::<u8>().unwrap().append(1).unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[mp::worker]
fn remote_count(address: String, key: Vec<u8>, n: u32) -> mp::Result<()> {
    let manager = mp::Manager::connect(address.as_str(), &key)?;
    let counts = manager.named::<mp::DictProxy<String, u64>>("counts")?;
    let log = manager.named::<mp::ListProxy<u32>>("log")?;
    for _ in 0..n {
        counts.update_with(&"total".to_string(), |v| Some(v.unwrap_or(0) + 1))?;
    }
    log.append(std::process::id())?;
    Ok(())
}

#[test]
fn processes_share_a_tcp_manager_by_address_and_key() {
    let _w = watchdog(LIMIT);
    let manager = tcp_manager();
    let address = manager.address().to_string();
    let mut children: Vec<_> = (0..3)
        .map(|_| mp::spawn(remote_count, (address.clone(), KEY.to_vec(), 300)).unwrap())
        .collect();
    for c in &mut children {
        c.join().unwrap().unwrap();
    }
    let counts = manager
        .named::<mp::DictProxy<String, u64>>("counts")
        .unwrap();
    assert_eq!(counts.get(&"total".to_string()).unwrap(), Some(900));
    assert_eq!(
        manager
            .named::<mp::ListProxy<u32>>("log")
            .unwrap()
            .len()
            .unwrap(),
        3
    );
}

#[mp::worker]
fn call_listener(address: mp::Address, key: Vec<u8>, words: Vec<String>) -> mp::Result<Vec<usize>> {
    let conn = mp::client::<String, usize>(&address, &key)?;
    let mut lengths = Vec::new();
    for w in words {
        conn.send(w)?;
        lengths.push(conn.recv()?);
    }
    Ok(lengths)
}

#[test]
fn listener_and_client_across_processes() {
    let _w = watchdog(LIMIT);
    let listener = mp::Listener::bind("127.0.0.1:0", KEY).unwrap();
    let address = listener.address().clone();
    let words = vec!["a".to_string(), "bcd".to_string(), String::new()];

    let mut wrong = mp::spawn(call_listener, (address.clone(), b"bad".to_vec(), vec![])).unwrap();
    let e = listener.accept::<usize, String>().unwrap_err();
    assert!(matches!(e, mp::Error::AuthenticationFailed(_)), "{e}");
    assert!(matches!(
        wrong.join().unwrap(),
        Err(mp::Error::AuthenticationFailed(_))
    ));

    // The listener keeps accepting after a failed handshake.
    let mut good = mp::spawn(
        call_listener,
        (address.clone(), KEY.to_vec(), words.clone()),
    )
    .unwrap();
    let conn: mp::Connection<usize, String> = listener.accept().unwrap();
    for _ in 0..words.len() {
        let w = conn.recv().unwrap();
        conn.send(w.len()).unwrap();
    }
    assert_eq!(good.join().unwrap().unwrap(), vec![1, 3, 0]);
    assert!(matches!(conn.recv(), Err(mp::Error::Disconnected)));
}

#[test]
fn handles_with_descriptors_do_not_cross_a_network_connection() {
    let _w = watchdog(LIMIT);
    let listener = mp::Listener::bind("unix:@mp-test-no-fds", KEY).unwrap();
    let t = std::thread::spawn(move || {
        let conn: mp::Connection<u8, mp::Queue<u8>> = listener.accept().unwrap();
        conn.recv_timeout(Duration::from_millis(200))
    });
    let conn = mp::client::<mp::Queue<u8>, u8>("unix:@mp-test-no-fds", KEY).unwrap();
    let e = conn.send(mp::Queue::new().unwrap()).unwrap_err();
    assert!(matches!(e.error, mp::Error::Encode(_)), "{}", e.error);
    assert!(matches!(t.join().unwrap(), Err(mp::Error::Timeout)));
}
