//! Unit tests of the queue: FIFO order across wrap-around, limits, large messages, and the
//! states a process killed inside `put` or `get` leaves behind. They reach into the shared
//! header only through `ring.rs`'s named offsets, not through layouts of their own.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::ring::*;
use super::*;
use crate::error::Error;
use crate::sys;
use crate::wire::INLINE_MAX;

#[test]
fn fifo_and_wraparound() {
    let q = Queue::<Vec<u8>>::with_capacity(0, MIN_CAPACITY).unwrap();
    // Push ~4x the ring through, in pieces that do not divide it evenly.
    for round in 0..40u32 {
        for i in 0..10u32 {
            q.put(vec![(round * 10 + i) as u8; 10_001]).unwrap();
        }
        for i in 0..10u32 {
            assert_eq!(q.get().unwrap(), vec![(round * 10 + i) as u8; 10_001]);
        }
    }
    assert!(q.empty());
}

#[test]
fn bounded_and_nonblocking() {
    let q = Queue::with_maxsize(1).unwrap();
    q.put(1u8).unwrap();
    assert!(matches!(q.try_put(2).unwrap_err().error, Error::Full));
    assert_eq!(q.qsize(), 1);
    assert_eq!(q.get().unwrap(), 1);
    assert!(matches!(q.try_get(), Err(Error::Empty)));
    assert!(matches!(
        q.get_timeout(Duration::from_millis(5)),
        Err(Error::Timeout)
    ));
}

#[test]
fn large_messages_go_out_of_line() {
    let q = Queue::new().unwrap();
    let big = serde_bytes::ByteBuf::from(vec![3u8; 5 * INLINE_MAX]);
    q.put(big.clone()).unwrap();
    q.put(serde_bytes::ByteBuf::from(vec![1u8])).unwrap();
    assert_eq!(q.get().unwrap(), big);
    assert_eq!(q.get().unwrap().len(), 1);
}

#[test]
fn a_rings_inline_maximum_is_a_quarter_of_it_and_at_most_4_mib() {
    assert_eq!(inline_max(MIN_CAPACITY as u64), 256 << 10);
    assert_eq!(inline_max(DEFAULT_QUEUE_CAPACITY as u64), 4 << 20);
    assert_eq!(inline_max(1 << 30), crate::wire::RING_INLINE_MAX);
    // Either side of each ring's maximum, byte-exact, the next message behind it intact.
    for (q, max) in [
        (Queue::with_capacity(0, MIN_CAPACITY).unwrap(), 256 << 10),
        (Queue::new().unwrap(), 4 << 20),
    ] {
        assert_eq!(q.raw.shared.inline_max, max);
        // A `ByteBuf` encodes as its length (a varint of 4 bytes here) and its bytes.
        for len in [max - 64, max + 1] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let value = serde_bytes::ByteBuf::from(data);
            let encoded = q.raw.encode(&value, Vec::new()).unwrap();
            let inline = len < max - 8;
            assert_eq!(
                encoded.is_out_of_line(),
                !inline,
                "{len} bytes, ring inlining {max}"
            );
            // A bulk value within the inline maximum is encoded in place in the ring.
            assert_eq!(
                encoded.is_in_place(),
                inline,
                "{len} bytes, ring inlining {max}"
            );
            q.put(value.clone()).unwrap();
            q.put(serde_bytes::ByteBuf::from(vec![9u8])).unwrap();
            assert_eq!(q.get().unwrap(), value);
            assert_eq!(q.get().unwrap().as_slice(), [9]);
        }
    }
}

/// Bulk values encoded in place, in records that wrap around the ring many times, mixed with
/// small ones copied in, and with a handle inside (its descriptor travels on the side
/// channel): all arrive byte-exact, in order.
#[test]
fn bulk_values_encoded_in_place_wrap_around_the_ring() {
    type Item = (u32, serde_bytes::ByteBuf, Option<Queue<u8>>);
    let q = Queue::<Item>::with_capacity(0, 2 << 20).unwrap();
    let inner = Queue::<u8>::new().unwrap();
    inner.put(42).unwrap();
    let item = |i: u32| -> Item {
        let len = if i % 3 == 0 {
            17
        } else {
            300_000 + i as usize * 7
        };
        let bytes: Vec<u8> = (0..len).map(|k| (k as u32 * 31 + i) as u8).collect();
        let handle = (i % 5 == 0).then(|| inner.clone());
        (i, serde_bytes::ByteBuf::from(bytes), handle)
    };
    let mut next_get = 0;
    for i in 0..60u32 {
        let value = item(i);
        assert_eq!(
            q.raw.encode(&value, Vec::new()).unwrap().is_in_place(),
            i % 3 != 0
        );
        // At most four items in the 2 MiB ring (1.2 MB of large ones at most).
        if i >= 4 {
            let (n, bytes, handle) = q.get_timeout(Duration::from_secs(5)).unwrap();
            let (_, want, want_handle) = item(next_get);
            assert_eq!((n, &bytes), (next_get, &want));
            assert_eq!(handle.is_some(), want_handle.is_some());
            if let Some(h) = handle {
                assert_eq!(h.get_timeout(Duration::from_secs(1)).unwrap(), 42);
                h.put(42).unwrap();
            }
            next_get += 1;
        }
        q.put(value).unwrap();
    }
    while next_get < 60 {
        let (n, bytes, _) = q.get_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((n, &bytes), (next_get, &item(next_get).1));
        next_get += 1;
    }
    assert!(q.empty());
}

/// A `Serialize` that writes one large byte string whose length changes from the `from`th
/// call on (`grow` bytes more), or that panics from then on.
struct Fickle {
    calls: std::cell::Cell<u32>,
    from: u32,
    grow: usize,
    panic: bool,
}

impl Serialize for Fickle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let call = self.calls.get() + 1;
        self.calls.set(call);
        if call >= self.from && self.panic {
            panic!("fickle value refuses to encode");
        }
        let len = 200_000 + if call >= self.from { self.grow } else { 0 };
        s.serialize_bytes(&vec![5u8; len])
    }
}

/// An in-place encoding that fails (a value that encodes to another length than it
/// measured) or panics is the caller's error or panic, and leaves nothing behind: the lock is
/// free, nothing was published, the next put and get work.
#[test]
fn a_failed_or_panicking_in_place_encoding_publishes_nothing() {
    let q = Queue::<serde_bytes::ByteBuf>::new().unwrap();
    // Calls: 1 the first try (refused as bulk), 2 the measure, 3 the encoding in place.
    for (grow, panic) in [(1, false), (1000, false), (0, true)] {
        let fickle = Fickle {
            calls: Default::default(),
            from: 3,
            grow,
            panic,
        };
        let mut msg = q.raw.encode(&fickle, Vec::new()).unwrap();
        assert!(msg.is_in_place());
        let put = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            q.raw.put(&fickle, &mut msg, None)
        }));
        match put {
            Ok(Err(Error::Encode(_))) => assert!(!panic),
            Err(_) => assert!(panic),
            Ok(other) => panic!("grow {grow}: {other:?}"),
        }
        assert!(q.empty());
        assert!(matches!(q.try_get(), Err(Error::Empty)));
    }
    q.put(serde_bytes::ByteBuf::from(vec![1u8; 100_000]))
        .unwrap();
    assert_eq!(
        q.get_timeout(Duration::from_secs(1)).unwrap(),
        vec![1u8; 100_000]
    );
}

#[test]
fn close_stops_this_handle() {
    let q = Queue::<u8>::new().unwrap();
    q.close();
    assert!(matches!(q.put(1).unwrap_err().error, Error::Closed));
    assert!(matches!(q.get(), Err(Error::Closed)));
}

/// A thread id that has certainly exited: a finished thread's.
fn dead_tid() -> u32 {
    std::thread::spawn(sys::gettid).join().unwrap()
}

#[test]
fn a_producer_killed_before_storing_tail_has_its_put_finished() {
    let q = JoinableQueue::new().unwrap();
    let s = &q.inner.raw.shared;
    q.put(1u32).unwrap();
    // The state a producer killed just before its last store leaves: record written and
    // counted, `tail` not advanced, producer lock held by the dead thread.
    let tail = s.u64(OFF_TAIL).load(Ordering::SeqCst);
    q.put(2).unwrap();
    s.u64(OFF_TAIL).store(tail, Ordering::SeqCst);
    s.u32(OFF_PLOCK).store(dead_tid(), Ordering::SeqCst);
    q.put(3).unwrap();
    assert_eq!(q.qsize(), 3);
    for expected in 1..=3 {
        assert_eq!(q.get_timeout(Duration::from_secs(1)).unwrap(), expected);
        q.task_done().unwrap();
    }
    assert!(q.empty());
    q.join_timeout(Duration::from_secs(1)).unwrap();
    assert!(q.task_done().is_err());
}

/// The same dead producer, but no producer comes after it: a consumer that finds the ring
/// empty takes the dead producer's lock over and publishes its record (a drain after killing
/// the only writer sees everything it completed).
#[test]
fn a_consumer_finishes_a_dead_producers_put_when_no_producer_follows() {
    let q = Queue::new().unwrap();
    let s = &q.raw.shared;
    let tail = s.u64(OFF_TAIL).load(Ordering::SeqCst);
    q.put(1u32).unwrap();
    s.u64(OFF_TAIL).store(tail, Ordering::SeqCst);
    s.u32(OFF_PLOCK).store(dead_tid(), Ordering::SeqCst);
    assert_eq!(q.try_get().unwrap(), 1);
    assert!(matches!(q.try_get(), Err(Error::Empty)));
    q.put(2).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(1)).unwrap(), 2);
}

#[test]
fn a_consumer_killed_after_its_commit_leaves_a_true_count() {
    let q = Queue::new().unwrap();
    let s = &q.raw.shared;
    for i in 0..3u8 {
        q.put(i).unwrap();
    }
    assert_eq!(q.get().unwrap(), 0);
    // A consumer killed between storing `head` and decrementing `len`, lock held.
    s.u64(OFF_LEN).fetch_add(1, Ordering::SeqCst);
    s.u32(OFF_CLOCK).store(dead_tid(), Ordering::SeqCst);
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.qsize(), 1);
    assert_eq!(q.get().unwrap(), 2);
    assert!(q.empty());
}

#[test]
fn a_panicking_decode_consumes_the_message_and_frees_the_lock() {
    #[derive(Debug, Serialize)]
    struct Bomb;
    impl<'de> Deserialize<'de> for Bomb {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            <()>::deserialize(d)?;
            panic!("boom")
        }
    }
    let q = Queue::<Bomb>::new().unwrap();
    q.put(Bomb).unwrap();
    q.put(Bomb).unwrap();
    let caught = std::panic::catch_unwind(|| q.get().map(|_| ()));
    assert!(caught.is_err());
    assert_eq!(q.qsize(), 1);
    // The lock is free (a held one would time out here) and the next message is next.
    assert!(
        std::panic::catch_unwind(|| q.get_timeout(Duration::from_secs(1)).map(|_| ())).is_err()
    );
    assert!(q.empty());
}

#[test]
fn joinable_counts() {
    let q = JoinableQueue::new().unwrap();
    q.put(1u8).unwrap();
    assert!(matches!(
        q.join_timeout(Duration::from_millis(5)),
        Err(Error::Timeout)
    ));
    q.get().unwrap();
    q.task_done().unwrap();
    q.join().unwrap();
    assert!(q.task_done().is_err());
}
