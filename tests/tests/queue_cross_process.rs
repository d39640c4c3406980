//! Queues between processes: seed 2.3 and 3.1, join before drain with 10 MB written, queues
//! through queues, many producers and consumers, back-pressure, JoinableQueue, big messages.
mp::guard!();

use std::collections::HashSet;
use std::time::Duration;

use mp::{Error, JoinableQueue, Queue, SimpleQueue};
use mp_tests::Unencodable;
use serde_bytes::ByteBuf;

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(60))
}

#[mp::worker]
fn hello(q: Queue<String>) {
    q.put("Hallo vom Kindprozess".to_string()).unwrap();
}

#[test]
#[mp::allow(join-before-drain)] // the order Python deadlocks on, on purpose
fn child_puts_parent_gets_after_join() {
    let _w = limit();
    let q = Queue::new().unwrap();
    let mut p = mp::spawn(hello, q.clone()).unwrap();
    p.join().unwrap();
    assert_eq!(q.get().unwrap(), "Hallo vom Kindprozess");
}

#[mp::worker]
fn write_ten_megabytes(small: Queue<ByteBuf>, large: Queue<ByteBuf>) -> usize {
    for i in 0..10_000u32 {
        small
            .put(ByteBuf::from(vec![(i % 256) as u8; 1024]))
            .unwrap();
    }
    for i in 0..10u8 {
        large.put(ByteBuf::from(vec![i; 1 << 20])).unwrap();
    }
    10_000 * 1024 + 10 * (1 << 20)
}

#[test]
fn joining_a_writer_before_draining_does_not_hang() {
    let _w = limit();
    let small = Queue::new().unwrap();
    let large = Queue::new().unwrap();
    let mut p = mp::spawn(write_ten_megabytes, (small.clone(), large.clone())).unwrap();
    let written = p
        .join_timeout(Duration::from_secs(30))
        .expect("writer must finish without a reader");
    assert_eq!(written, 20_725_760);
    assert_eq!(small.qsize(), 10_000);
    for i in 0..10_000u32 {
        assert_eq!(
            small.get().unwrap().as_slice(),
            &vec![(i % 256) as u8; 1024][..]
        );
    }
    for i in 0..10u8 {
        let m = large.get().unwrap();
        assert_eq!(m.len(), 1 << 20);
        assert!(m.iter().all(|&b| b == i));
    }
    assert!(small.empty() && large.empty());
}

#[mp::worker]
fn forward(outer: Queue<Queue<u64>>) {
    let inner = outer.get().unwrap();
    inner.put(4242).unwrap();
}

#[test]
fn a_queue_sent_through_a_queue() {
    let _w = limit();
    let outer = Queue::new().unwrap();
    let inner = Queue::<u64>::new().unwrap();
    let mut p = mp::spawn(forward, outer.clone()).unwrap();
    outer.put(inner.clone()).unwrap();
    assert_eq!(inner.get_timeout(Duration::from_secs(10)).unwrap(), 4242);
    p.join().unwrap();
}

#[mp::worker]
fn produce(q: Queue<(u32, u32)>, id: u32, n: u32) {
    for i in 0..n {
        q.put((id, i)).unwrap();
    }
}

#[mp::worker]
fn consume(q: Queue<(u32, u32)>, out: Queue<Vec<(u32, u32)>>) {
    let mut got = Vec::new();
    loop {
        let item = q.get().unwrap();
        if item.0 == u32::MAX {
            break;
        }
        got.push(item);
    }
    out.put(got).unwrap();
}

#[test]
fn four_producers_two_consumers_lose_nothing() {
    let _w = limit();
    let q = Queue::with_maxsize(64).unwrap();
    let out = Queue::new().unwrap();
    let n = 20_000;
    let consumers: Vec<_> = (0..2)
        .map(|_| mp::spawn(consume, (q.clone(), out.clone())).unwrap())
        .collect();
    let mut producers: Vec<_> = (0..4)
        .map(|id| mp::spawn(produce, (q.clone(), id, n)).unwrap())
        .collect();
    for p in &mut producers {
        p.join().unwrap();
    }
    q.put((u32::MAX, 0)).unwrap();
    q.put((u32::MAX, 0)).unwrap();
    let mut seen = HashSet::new();
    for _ in 0..2 {
        for item in out.get().unwrap() {
            assert!(seen.insert(item), "duplicate {item:?}");
        }
    }
    assert_eq!(seen.len(), 4 * n as usize);
    for mut c in consumers {
        c.join().unwrap();
    }
    // Per producer, each consumer saw increasing sequence numbers (FIFO per producer).
}

#[mp::worker]
fn slow_consumer(q: Queue<u32>, n: u32) -> Vec<u32> {
    (0..n)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(2));
            q.get().unwrap()
        })
        .collect()
}

#[test]
fn maxsize_gives_back_pressure_across_processes() {
    let _w = limit();
    let q = Queue::with_maxsize(3).unwrap();
    let mut p = mp::spawn(slow_consumer, (q.clone(), 50)).unwrap();
    for i in 0..50 {
        q.put(i).unwrap();
        assert!(q.qsize() <= 3);
    }
    assert_eq!(p.join().unwrap(), (0..50).collect::<Vec<_>>());
}

#[mp::worker]
fn do_tasks(q: JoinableQueue<u32>, done: SimpleQueue<u32>) {
    loop {
        let job = q.get().unwrap();
        if job == 0 {
            q.task_done().unwrap();
            return;
        }
        done.put(job * 2).unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn joinable_queue_join_waits_for_task_done_in_children() {
    let _w = limit();
    let q = JoinableQueue::new().unwrap();
    let done = SimpleQueue::new().unwrap();
    let mut workers: Vec<_> = (0..2)
        .map(|_| mp::spawn(do_tasks, (q.clone(), done.clone())).unwrap())
        .collect();
    for job in 1..=100 {
        q.put(job).unwrap();
    }
    q.join_timeout(Duration::from_secs(30)).unwrap();
    let mut results: Vec<u32> = (0..100).map(|_| done.get().unwrap()).collect();
    results.sort_unstable();
    assert_eq!(results, (1..=100).map(|j| j * 2).collect::<Vec<_>>());
    q.put(0).unwrap();
    q.put(0).unwrap();
    for w in &mut workers {
        w.join().unwrap();
    }
    q.join().unwrap();
}

#[mp::worker]
fn sum_big(q: Queue<ByteBuf>) -> u64 {
    q.get().unwrap().iter().map(|&b| b as u64).sum()
}

#[test]
fn fifty_megabyte_message_through_a_queue() {
    let _w = limit();
    let q = Queue::new().unwrap();
    let mut p = mp::spawn(sum_big, q.clone()).unwrap();
    q.put(ByteBuf::from(vec![1u8; 50_000_000])).unwrap();
    assert_eq!(p.join().unwrap(), 50_000_000);
}

#[test]
fn encoding_errors_are_returned_by_put_with_the_value() {
    let _w = limit();
    let q = Queue::<Unencodable>::new().unwrap();
    let err = q.put(Unencodable).unwrap_err();
    assert!(
        matches!(err.error, Error::Encode(ref m) if m.contains("refuses")),
        "{err}"
    );
    let _value: Unencodable = err.into_inner();
    assert!(q.empty());
}

#[mp::worker]
fn get_with_timeout(q: Queue<u8>) -> String {
    match q.get_timeout(Duration::from_millis(50)) {
        Ok(v) => format!("got {v}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn get_timeout_in_a_child() {
    let _w = limit();
    let q = Queue::new().unwrap();
    assert_eq!(
        mp::spawn(get_with_timeout, q.clone())
            .unwrap()
            .join()
            .unwrap(),
        "timed out"
    );
}

#[mp::worker]
fn put_forever(q: Queue<u64>) {
    for i in 0.. {
        q.put(i).unwrap();
    }
}

#[test]
fn a_writer_killed_mid_stream_leaves_a_consistent_queue() {
    let _w = limit();
    let q = Queue::with_maxsize(1000).unwrap();
    let mut p = mp::spawn(put_forever, q.clone()).unwrap();
    // Let it fill up and block, then kill it (possibly while it holds the producer lock).
    while !q.full() {
        std::thread::sleep(Duration::from_millis(1));
    }
    for expect in 0..500 {
        assert_eq!(q.get().unwrap(), expect);
    }
    p.kill().unwrap();
    let _ = p.join();
    let mut next = 500;
    while let Ok(v) = q.try_get() {
        assert_eq!(v, next);
        next += 1;
    }
    // The queue keeps working for other producers.
    q.put(7).unwrap();
    assert_eq!(q.get().unwrap(), 7);
}
