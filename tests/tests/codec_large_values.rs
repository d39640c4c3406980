//! Bytes, strings and vectors of numbers cross byte-exact, large and small, on every path: a
//! spawned worker's argument and result, pipes, queues, the pool and manager values; nested
//! in a struct, in an `Option` or an enum, empty, and around the inline limits (64 KiB on
//! sockets, 256 KiB in a queue's ring), where payloads switch to sealed buffers written in
//! place.
mp::guard!();

use std::time::Duration;

use mp::{Connection, Pool, Queue};
use serde::{Deserialize, Serialize};

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(120))
}

/// Bytes that differ at every position within a period of 251 (a prime), so that a shifted,
/// dropped or repeated chunk shows.
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i + seed) % 251) as u8).collect()
}

/// A string of one-, two-, three- and four-byte characters, about `len` bytes long.
fn multibyte(len: usize) -> String {
    "aé€😀".repeat(len / 10 + 1)
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Record {
    id: u64,
    name: String,
    payload: Vec<u8>,
    samples: Box<[f64]>,
    counts: Option<Vec<u32>>,
    kind: Kind,
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
enum Kind {
    Empty,
    Blob(Vec<u8>),
}

fn record(len: usize, seed: usize) -> Record {
    Record {
        id: seed as u64,
        name: multibyte(len / 4),
        payload: pattern(len, seed),
        samples: (0..len / 8).map(|i| i as f64 * 0.5).collect(),
        counts: Some((0..len as u32 / 4).collect()),
        kind: if len % 2 == 0 {
            Kind::Blob(pattern(len / 2, seed + 1))
        } else {
            Kind::Empty
        },
    }
}

#[mp::worker]
fn echo_byte_buf(b: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf {
    b
}

#[mp::worker]
fn reverse(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.reverse();
    bytes
}

#[mp::worker]
fn echo_string(s: String) -> (String, usize) {
    let chars = s.chars().count();
    (s, chars)
}

#[mp::worker]
fn echo_record(r: Record) -> Record {
    r
}

#[mp::worker]
fn boxed_sum(b: Box<[u8]>, words: Vec<u64>) -> (Box<[u8]>, u64) {
    let sum = words.iter().sum();
    (b, sum)
}

#[test]
fn spawn_arguments_and_results_are_byte_exact() {
    let _w = limit();
    for len in [0, 1, 65_535, 65_536, 65_537, 20 << 20] {
        let data = pattern(len, len);
        let mut expected = data.clone();
        expected.reverse();
        let got = mp::spawn(reverse, data).unwrap().join().unwrap();
        assert!(got == expected, "{len} bytes");
    }
    // 5 MB: decoded into memory whose pages are faulted in at once.
    let s = multibyte(5 << 20);
    let (back, chars) = mp::spawn(echo_string, s.clone()).unwrap().join().unwrap();
    assert!(back == s);
    assert_eq!(chars, s.chars().count());
    assert_eq!(
        mp::spawn(echo_string, String::new())
            .unwrap()
            .join()
            .unwrap(),
        (String::new(), 0)
    );
    for len in [0, 3, 200_000] {
        let r = record(len, 7);
        assert!(mp::spawn(echo_record, r.clone()).unwrap().join().unwrap() == r);
    }
    for len in [100, (4 << 20) - 1, (4 << 20) + 4097] {
        let b = serde_bytes::ByteBuf::from(pattern(len, 9));
        assert!(mp::spawn(echo_byte_buf, b.clone()).unwrap().join().unwrap() == b);
    }
    let boxed: Box<[u8]> = pattern(1 << 20, 3).into_boxed_slice();
    let words: Vec<u64> = (0..100_000).collect();
    let (b, sum) = mp::spawn(boxed_sum, (boxed.clone(), words.clone()))
        .unwrap()
        .join()
        .unwrap();
    assert!(b == boxed);
    assert_eq!(sum, words.iter().sum::<u64>());
}

#[mp::worker]
fn echo_pipe(conn: Connection<Record>) {
    while let Ok(r) = conn.recv() {
        conn.send(r).unwrap();
    }
}

#[test]
fn pipes_carry_large_values_byte_exact() {
    let _w = limit();
    let (here, there) = mp::pipe::<Record>().unwrap();
    let mut p = mp::spawn(echo_pipe, there).unwrap();
    for len in [0, 100, 65_000, 70_000, 5 << 20] {
        let r = record(len, len);
        here.send(r.clone()).unwrap();
        assert!(here.recv().unwrap() == r, "{len}");
    }
    drop(here);
    p.join().unwrap();
}

#[mp::worker]
fn forward(input: Queue<Vec<u8>>, output: Queue<Vec<u8>>, n: usize) {
    for _ in 0..n {
        output.put(input.get().unwrap()).unwrap();
    }
}

#[test]
fn queue_items_are_byte_exact_around_the_inline_limit() {
    let _w = limit();
    let sizes = [
        0,
        1,
        64 * 1024 - 64,
        64 * 1024 - 8,
        64 * 1024,
        64 * 1024 + 1,
        256 * 1024 - 24, // the smallest ring's inline maximum, with the length and header
        256 * 1024 - 8,
        256 * 1024,
        1 << 20,
        (4 << 20) - 24, // the default ring's inline maximum (bulk values encoded in place)
        (4 << 20) - 8,
        4 << 20,
        (4 << 20) + 1,
        9 << 20,
    ];
    let (input, output) = (Queue::new().unwrap(), Queue::new().unwrap());
    let mut p = mp::spawn(forward, (input.clone(), output.clone(), sizes.len())).unwrap();
    for (i, &len) in sizes.iter().enumerate() {
        input.put(pattern(len, i)).unwrap();
    }
    for (i, &len) in sizes.iter().enumerate() {
        assert!(output.get().unwrap() == pattern(len, i), "{len}");
    }
    p.join().unwrap();
}

#[test]
fn pool_tasks_and_results_are_byte_exact() {
    let _w = limit();
    let pool = Pool::new(2).unwrap();
    let inputs: Vec<Vec<u8>> = [0, 10, 70_000, 2 << 20]
        .iter()
        .map(|&len| pattern(len, len))
        .collect();
    let got = pool.map(reverse, inputs.clone()).unwrap();
    for (input, out) in inputs.iter().zip(&got) {
        let mut expected = input.clone();
        expected.reverse();
        assert!(*out == expected);
    }
    let r = record(300_000, 1);
    assert!(pool.apply(echo_record, r.clone()).unwrap() == r);
}

#[test]
fn manager_values_are_byte_exact() {
    let _w = limit();
    let manager = mp::Manager::new().unwrap();
    let big = pattern(3 << 20, 5);
    let value = manager.value(big.clone()).unwrap();
    assert!(value.get().unwrap() == big);
    value.set(Vec::new()).unwrap();
    assert!(value.get().unwrap().is_empty());
    let r = record(100_000, 2);
    let held = manager.value(r.clone()).unwrap();
    assert!(held.get().unwrap() == r);
}
