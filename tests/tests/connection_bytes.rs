//! Raw bytes on a connection between processes: `send_bytes`/`recv_bytes`, and
//! `recv_bytes_into` whose `BufferTooShort` error holds the whole message (nothing is lost).
mp::guard!();

use std::time::Duration;

use mp::{Connection, Error};

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(30))
}

#[mp::worker]
fn send_messages(conn: Connection<u32>) -> mp::Result<()> {
    conn.send_bytes(b"short")?;
    conn.send_bytes(&[7u8; 100])?;
    conn.send_bytes(b"")?;
    conn.send(42)?;
    conn.send_bytes(&vec![3u8; 1 << 20])?;
    Ok(())
}

#[test]
fn recv_bytes_into_hands_back_a_message_too_long() {
    let _w = limit();
    let (here, there) = mp::pipe::<u32>().unwrap();
    let mut p = mp::spawn(send_messages, there).unwrap();
    let mut buf = [0xffu8; 16];
    assert_eq!(here.recv_bytes_into(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"short");
    match here.recv_bytes_into(&mut buf) {
        Err(Error::BufferTooShort { buffer, message }) => {
            assert_eq!(buffer, 16);
            assert_eq!(message, [7u8; 100]);
        }
        other => panic!("expected BufferTooShort, got {other:?}"),
    }
    assert_eq!(&buf[5..], [0xff; 11], "the buffer is left as it was");
    // The next message is the next one: nothing was lost or mixed up.
    assert_eq!(here.recv_bytes_into(&mut buf).unwrap(), 0);
    assert_eq!(here.recv().unwrap(), 42);
    let big = here.recv_bytes().unwrap();
    assert_eq!(big.len(), 1 << 20);
    assert!(big.iter().all(|&b| b == 3));
    assert!(matches!(here.recv_bytes(), Err(Error::Disconnected)));
    p.join().unwrap().unwrap();
}

#[test]
fn buffer_too_short_travels_as_an_error() {
    let e = Error::BufferTooShort {
        buffer: 2,
        message: b"abc".to_vec(),
    };
    assert_eq!(
        e.to_string(),
        "the buffer of 2 bytes is too short for the message of 3 bytes"
    );
    assert!(format!("{e:?}").starts_with("BufferTooShort("));
}
