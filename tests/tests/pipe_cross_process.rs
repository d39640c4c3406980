//! `Pipe` between processes: round trips, one-way pipes, timeouts, poll, a dropped peer,
//! 50 MB messages, and malformed or oversized frames from a raw socket.
mp::guard!();

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use mp::{Connection, Error};
use serde_bytes::ByteBuf;

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(30))
}

#[mp::worker]
fn echo_upper(conn: Connection<String>) -> mp::Result<u32> {
    let mut n = 0;
    loop {
        match conn.recv() {
            Ok(msg) => {
                conn.send(msg.to_uppercase())?;
                n += 1;
            }
            Err(Error::Disconnected) => return Ok(n),
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn duplex_round_trips_and_disconnect_ends_the_child() {
    let _w = limit();
    let (here, there) = mp::pipe::<String>().unwrap();
    let mut p = mp::spawn(echo_upper, there).unwrap();
    for word in ["eins", "zwei", "drei"] {
        here.send(word.to_string()).unwrap();
        assert_eq!(here.recv().unwrap(), word.to_uppercase());
    }
    drop(here);
    assert_eq!(p.join().unwrap().unwrap(), 3);
}

#[mp::worker]
fn write_then_exit(tx: mp::PipeWriter<u64>) {
    for i in 0..1000 {
        tx.send(i).unwrap();
    }
}

#[test]
fn one_way_pipe_and_disconnected_after_the_writer_exits() {
    let _w = limit();
    let (rx, tx) = mp::pipe_one_way::<u64>().unwrap();
    let mut p = mp::spawn(write_then_exit, tx).unwrap();
    // A pipe holds only what the socket buffer holds: read before joining (a Queue does not
    // need this order).
    for i in 0..1000 {
        assert_eq!(rx.recv().unwrap(), i);
    }
    p.join().unwrap();
    // The parent's copy of the writer went to the child with the arguments; the child exited.
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
}

#[test]
fn recv_timeout_and_poll() {
    let _w = limit();
    let (a, b) = mp::pipe::<u8>().unwrap();
    assert!(matches!(
        b.recv_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    assert!(matches!(b.try_recv(), Err(Error::Timeout)));
    assert!(!b.poll(Some(Duration::from_millis(1))).unwrap());
    a.send(9).unwrap();
    assert!(b.poll(Some(Duration::from_secs(5))).unwrap());
    assert_eq!(b.recv().unwrap(), 9);
}

#[mp::worker]
fn big_echo(conn: Connection<ByteBuf>) {
    let msg = conn.recv().unwrap();
    conn.send(msg).unwrap();
}

#[test]
fn fifty_megabyte_message_both_ways() {
    let _w = limit();
    let (here, there) = mp::pipe::<ByteBuf>().unwrap();
    let mut p = mp::spawn(big_echo, there).unwrap();
    let data: Vec<u8> = (0..50_000_000u32).map(|i| (i % 251) as u8).collect();
    here.send(ByteBuf::from(data.clone())).unwrap();
    let back = here.recv().unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back.as_slice() == data.as_slice());
    p.join().unwrap();
}

#[test]
fn malformed_frame_on_a_raw_socket_is_an_error_not_a_panic() {
    let _w = limit();
    let (mut raw, theirs) = UnixStream::pair().unwrap();
    let conn: Connection<String> = Connection::from(OwnedFd::from(theirs));
    raw.write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        .unwrap();
    assert!(matches!(conn.recv(), Err(Error::Malformed(_))));
    // The connection stays poisoned instead of misreading what follows.
    assert!(matches!(conn.recv(), Err(Error::Malformed(_))));
}

#[test]
fn oversized_announcement_is_refused_before_allocating() {
    let _w = limit();
    let (mut raw, theirs) = UnixStream::pair().unwrap();
    let conn: Connection<String> = Connection::from(OwnedFd::from(theirs));
    // A valid header that claims a 4 GiB out-of-line payload but carries no buffer.
    let mut header = Vec::new();
    header.extend_from_slice(b"mp\x01\x00");
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(&u32::MAX.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    raw.write_all(&header).unwrap();
    let err = conn.recv().unwrap_err();
    assert!(
        matches!(err, Error::Malformed(_) | Error::TooLarge { .. }),
        "{err:?}"
    );
}

#[test]
fn wrong_type_on_the_wire_is_a_decode_error() {
    let _w = limit();
    let (x, y) = UnixStream::pair().unwrap();
    let sender: Connection<String> = Connection::from(OwnedFd::from(x));
    let receiver: Connection<u8> = Connection::from(OwnedFd::from(y));
    sender.send("a long string, not a byte".into()).unwrap();
    assert!(matches!(receiver.recv(), Err(Error::Decode(_))));
}

#[test]
fn pipe_end_travels_through_a_pipe() {
    let _w = limit();
    let (outer_a, outer_b) = mp::pipe::<Connection<String>>().unwrap();
    let (inner_a, inner_b) = mp::pipe::<String>().unwrap();
    outer_a.send(inner_b).unwrap();
    let received = outer_b.recv().unwrap();
    inner_a.send("through".into()).unwrap();
    assert_eq!(received.recv().unwrap(), "through");
}

/// Pipe ends and network connections are one type; only a pipe end can travel to another
/// process (a network connection stays with its handshake and is refused with a clear error).
#[test]
fn a_network_connection_is_a_connection_that_stays_in_its_process() {
    let _w = limit();
    let listener = mp::Listener::bind("127.0.0.1:0", b"key").unwrap();
    let address = listener.address().clone();
    let accepting = std::thread::spawn(move || listener.accept::<u8, u8>().unwrap());
    let net: Connection<u8> = mp::client(&address, b"key").unwrap();
    let served = accepting.join().unwrap();
    assert!(net.peer().is_some());
    let (a, b) = mp::pipe::<Connection<u8>>().unwrap();
    assert!(a.peer().is_none());
    let refused = a.send(net).unwrap_err();
    assert!(
        matches!(&refused.error, Error::Encode(m) if m.contains("cannot be sent")),
        "{}",
        refused.error
    );
    // Still usable after the refusal.
    let net = refused.into_inner();
    net.send(7).unwrap();
    assert_eq!(served.recv().unwrap(), 7);
    drop(b);
}
