//! `Queue::shutdown` across processes (Python 3.13's `Queue.shutdown`): blocked getters and
//! putters in other processes wake with `Error::ShutDown`, a graceful shutdown lets `get`
//! drain what is left, an immediate one drops it (and releases `JoinableQueue::join`), and
//! iteration (`for m in &queue`) ends at a shutdown, so no sentinel is needed.
mp::guard!();

use std::time::{Duration, Instant};

use mp::{Error, JoinableQueue, Queue, SimpleQueue};

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(60))
}

/// Gives a child time to block in its call (the tests pass either way; this makes them test
/// the waking).
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

#[mp::worker]
fn blocked_get(q: Queue<u32>) -> String {
    match q.get() {
        Ok(v) => format!("got {v}"),
        Err(e) => format!("{e:?}"),
    }
}

#[test]
fn a_getter_blocked_in_another_process_wakes_with_shut_down() {
    let _w = limit();
    let q = Queue::<u32>::new().unwrap();
    let mut p = mp::spawn(blocked_get, q.clone()).unwrap();
    settle();
    let start = Instant::now();
    q.shutdown();
    let seen = p.join_timeout(Duration::from_secs(10)).unwrap();
    assert!(seen.starts_with("ShutDown"), "{seen}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[mp::worker]
fn blocked_put(q: Queue<u32>) -> String {
    q.put(1).unwrap(); // fills the queue (maxsize 1)
    match q.put(2) {
        Ok(()) => "put".to_string(),
        Err(e) => format!("{:?}", e.error),
    }
}

#[test]
fn a_putter_blocked_on_a_full_queue_wakes_with_shut_down() {
    let _w = limit();
    let q = Queue::<u32>::with_maxsize(1).unwrap();
    let mut p = mp::spawn(blocked_put, q.clone()).unwrap();
    settle();
    q.shutdown();
    let seen = p.join_timeout(Duration::from_secs(10)).unwrap();
    assert!(seen.starts_with("ShutDown"), "{seen}");
    // Graceful: what was put is still there, then the error.
    assert_eq!(q.get().unwrap(), 1);
    assert!(matches!(q.get(), Err(Error::ShutDown)));
    assert!(matches!(q.try_get(), Err(Error::ShutDown)));
}

#[mp::worker]
fn drain(q: Queue<u32>) -> mp::Result<Vec<u32>> {
    q.iter().collect()
}

#[test]
fn a_graceful_shutdown_lets_other_processes_drain_then_ends_their_iteration() {
    let _w = limit();
    let q = Queue::new().unwrap();
    for i in 0..5 {
        q.put(i).unwrap();
    }
    q.shutdown();
    assert!(q.is_shutdown());
    assert!(matches!(q.put(9), Err(e) if matches!(e.error, Error::ShutDown)));
    let mut p = mp::spawn(drain, q.clone()).unwrap();
    let got = p.join_timeout(Duration::from_secs(10)).unwrap().unwrap();
    assert_eq!(got, [0, 1, 2, 3, 4]);
}

#[mp::worker]
fn produce_then_shutdown(q: Queue<String>, n: u32) -> mp::Result<()> {
    for i in 0..n {
        q.put(format!("job {i}"))?;
    }
    q.shutdown();
    Ok(())
}

#[test]
fn a_producer_shutdown_ends_the_consumers_for_loop() {
    let _w = limit();
    let q = Queue::new().unwrap();
    let mut p = mp::spawn(produce_then_shutdown, (q.clone(), 100)).unwrap();
    let mut n = 0;
    for message in &q {
        assert_eq!(message.unwrap(), format!("job {n}"));
        n += 1;
    }
    assert_eq!(n, 100);
    p.join_timeout(Duration::from_secs(10)).unwrap().unwrap();
}

#[test]
fn an_immediate_shutdown_drops_pending_messages_for_every_process() {
    let _w = limit();
    let q = Queue::new().unwrap();
    for i in 0..3 {
        q.put(i).unwrap();
    }
    // A message with a handle inside takes the side channel; it is dropped too.
    let big = Queue::<Vec<u8>>::new().unwrap();
    big.put(vec![7; 1 << 20]).unwrap();
    big.shutdown_immediate();
    assert!(big.is_empty());
    q.shutdown_immediate();
    assert_eq!((q.len(), q.is_empty()), (0, true));
    let mut p = mp::spawn(blocked_get, q.clone()).unwrap();
    let seen = p.join_timeout(Duration::from_secs(10)).unwrap();
    assert!(seen.starts_with("ShutDown"), "{seen}");
    assert!(matches!(big.get(), Err(Error::ShutDown)));
}

#[mp::worker]
fn join_queue(q: JoinableQueue<u32>) -> mp::Result<()> {
    q.join()
}

#[test]
fn an_immediate_shutdown_releases_join_in_another_process() {
    let _w = limit();
    let q = JoinableQueue::new().unwrap();
    for i in 0..3 {
        q.put(i).unwrap();
    }
    // One message taken and not yet done: join waits for it, as in Python.
    let taken = q.get().unwrap();
    let mut p = mp::spawn(join_queue, q.clone()).unwrap();
    settle();
    q.shutdown_immediate();
    assert!(
        p.join_timeout(Duration::from_millis(300)).is_err(),
        "join must still wait for the message taken"
    );
    assert_eq!(taken, 0);
    q.task_done().unwrap();
    p.join_timeout(Duration::from_secs(10)).unwrap().unwrap();
    q.join().unwrap();
    assert!(matches!(q.task_done(), Err(Error::TaskDoneTooOften)));
}

#[test]
fn len_and_is_empty_mirror_qsize_and_empty() {
    let _w = limit();
    let q = Queue::new().unwrap();
    let s = SimpleQueue::new().unwrap();
    let j = JoinableQueue::new().unwrap();
    assert!(q.is_empty() && s.is_empty() && j.is_empty());
    q.put(1u8).unwrap();
    s.put(1u8).unwrap();
    j.put(1u8).unwrap();
    j.put(2u8).unwrap();
    assert_eq!((q.len(), s.len(), j.len()), (1, 1, 2));
    assert_eq!((q.len(), j.len()), (q.qsize(), j.qsize()));
    assert!(!q.is_empty() && !s.is_empty() && !j.is_empty());
}

#[test]
fn iteration_ends_on_a_closed_handle() {
    let _w = limit();
    let q = Queue::<u32>::new().unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let mut it = q.iter();
    assert_eq!(it.next().unwrap().unwrap(), 1);
    q.close();
    assert!(it.next().is_none());
    assert!(it.next().is_none());
}

#[mp::worker]
fn put_until_shut_down(q: Queue<u64>) -> u64 {
    let mut ok = 0;
    loop {
        match q.put(ok) {
            Ok(()) => ok += 1,
            Err(e) if matches!(e.error, Error::ShutDown) => return ok,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
}

#[mp::worker]
fn count_until_shut_down(q: Queue<u64>) -> mp::Result<u64> {
    let mut n = 0;
    for message in &q {
        message?;
        n += 1;
    }
    Ok(n)
}

#[test]
fn every_put_that_succeeded_before_a_racing_shutdown_is_received() {
    let _w = limit();
    for _ in 0..3 {
        let q = Queue::with_maxsize(64).unwrap();
        let mut producers: Vec<_> = (0..2)
            .map(|_| mp::spawn(put_until_shut_down, q.clone()).unwrap())
            .collect();
        let mut consumer = mp::spawn(count_until_shut_down, q.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        q.shutdown();
        let put: u64 = producers
            .iter_mut()
            .map(|p| p.join_timeout(Duration::from_secs(10)).unwrap())
            .sum();
        let received = consumer
            .join_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap();
        assert!(put > 0);
        assert_eq!(received, put, "a put that returned Ok was lost");
    }
}
