//! Cross-process tests of the synchronisation primitives, each with real contention between
//! processes, and of owner-death recovery (a lock holder killed with `SIGKILL`).
mp::guard!();

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mp_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);

#[mp::worker]
fn locked_increments(counter: mp::Value<u64>, n: u32) -> mp::Result<()> {
    for _ in 0..n {
        *counter.lock()? += 1;
    }
    Ok(())
}

#[test]
fn value_lock_four_processes_count_exactly() {
    let _w = watchdog(LIMIT);
    let counter = mp::Value::new(0u64).unwrap();
    let mut ps: Vec<_> = (0..4)
        .map(|_| mp::spawn(locked_increments, (counter.clone(), 100_000)).unwrap())
        .collect();
    for p in &mut ps {
        p.join().unwrap().unwrap();
    }
    assert_eq!(counter.get().unwrap(), 400_000);
}

#[mp::worker]
fn plain_lock_increments(lock: mp::Lock, counter: mp::RawValue<u64>, n: u32) -> mp::Result<()> {
    for _ in 0..n {
        let _held = lock.acquire()?;
        // A non-atomic read-modify-write: only the lock makes it exact.
        counter.set(counter.get() + 1);
    }
    Ok(())
}

#[test]
fn lock_protects_a_raw_value() {
    let _w = watchdog(LIMIT);
    let lock = mp::Lock::new().unwrap();
    let counter = mp::RawValue::new(0u64).unwrap();
    let mut ps: Vec<_> = (0..3)
        .map(|_| {
            mp::spawn(
                plain_lock_increments,
                (lock.clone(), counter.clone(), 50_000),
            )
            .unwrap()
        })
        .collect();
    // The parent contends too.
    for _ in 0..50_000 {
        let _held = lock.acquire().unwrap();
        counter.set(counter.get() + 1);
    }
    for p in &mut ps {
        p.join().unwrap().unwrap();
    }
    assert_eq!(counter.get(), 200_000);
}

#[mp::worker]
fn rlock_nested(lock: mp::RLock, counter: mp::RawValue<u64>, n: u32) -> mp::Result<()> {
    for _ in 0..n {
        let _outer = lock.acquire()?;
        let _inner = lock.acquire()?;
        counter.set(counter.get() + 1);
    }
    Ok(())
}

#[test]
fn rlock_is_reentrant_and_exclusive_across_processes() {
    let _w = watchdog(LIMIT);
    let lock = mp::RLock::new().unwrap();
    let counter = mp::RawValue::new(0u64).unwrap();
    let mut ps: Vec<_> = (0..3)
        .map(|_| mp::spawn(rlock_nested, (lock.clone(), counter.clone(), 20_000)).unwrap())
        .collect();
    for p in &mut ps {
        p.join().unwrap().unwrap();
    }
    assert_eq!(counter.get(), 60_000);
    assert_eq!(lock.depth(), 0);
}

#[mp::worker]
fn hold_and_report(lock: mp::Lock, held: mp::Event) -> mp::Result<()> {
    let _held = lock.acquire()?;
    held.set();
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}

#[test]
fn try_acquire_and_timeout_see_a_holder_in_another_process() {
    let _w = watchdog(LIMIT);
    let lock = mp::Lock::new().unwrap();
    let held = mp::Event::new().unwrap();
    let mut p = mp::spawn(hold_and_report, (lock.clone(), held.clone())).unwrap();
    held.wait();
    assert!(matches!(lock.try_acquire(), Err(mp::Error::WouldBlock)));
    assert!(matches!(
        lock.acquire_timeout(Duration::from_millis(20)),
        Err(mp::Error::Timeout)
    ));
    // Blocks until the child releases, then succeeds.
    drop(lock.acquire().unwrap());
    p.join().unwrap().unwrap();
}

#[mp::worker]
fn hold_forever(lock: mp::Lock, held: mp::Event) -> mp::Result<()> {
    let _held = lock.acquire()?;
    held.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_killed_lock_holder_yields_owner_died_then_the_lock_is_free() {
    let _w = watchdog(LIMIT);
    let lock = mp::Lock::new().unwrap();
    let held = mp::Event::new().unwrap();
    let mut p = mp::spawn(hold_forever, (lock.clone(), held.clone())).unwrap();
    let pid = p.pid().unwrap();
    held.wait();
    p.kill().unwrap();
    let start = Instant::now();
    match lock.acquire() {
        Err(mp::Error::OwnerDied { tid }) => assert_eq!(tid, pid),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let again = lock.acquire().expect("the lock is free after the report");
    drop(again);
    assert!(!lock.is_locked());
    assert!(matches!(p.join(), Err(mp::Error::ProcessDied { .. })));
}

#[mp::worker]
fn hold_value_forever(value: mp::Value<[u64; 2]>, held: mp::Event) -> mp::Result<()> {
    let mut v = value.lock()?;
    v[0] = 1; // half of an update that will never be finished
    held.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_killed_value_holder_is_reported_and_the_value_stays_usable() {
    let _w = watchdog(LIMIT);
    let value = mp::Value::new([0u64; 2]).unwrap();
    let held = mp::Event::new().unwrap();
    let mut p = mp::spawn(hold_value_forever, (value.clone(), held.clone())).unwrap();
    held.wait();
    p.kill().unwrap();
    assert!(matches!(value.lock(), Err(mp::Error::OwnerDied { .. })));
    // The half-done update is visible to whoever recovers: that is the point of the error.
    assert_eq!(value.get().unwrap(), [1, 0]);
    value.set([2, 2]).unwrap();
    assert_eq!(value.get().unwrap(), [2, 2]);
}

#[mp::worker]
fn hold_range_forever(data: mp::Array<u32>, held: mp::Event) -> mp::Result<()> {
    let mut part = data.lock_range(0..10)?;
    part.fill(7);
    held.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_killed_range_holder_blocks_only_overlapping_ranges_until_recovered() {
    let _w = watchdog(LIMIT);
    let data = mp::Array::<u32>::new(20).unwrap();
    let held = mp::Event::new().unwrap();
    let mut p = mp::spawn(hold_range_forever, (data.clone(), held.clone())).unwrap();
    held.wait();
    // A disjoint range is free while the holder lives.
    data.lock_range(10..20).unwrap().fill(1);
    assert!(matches!(
        data.lock_range_timeout(5..15, Duration::from_millis(20)),
        Err(mp::Error::Timeout)
    ));
    p.kill().unwrap();
    assert!(matches!(
        data.lock_range(5..15),
        Err(mp::Error::OwnerDied { .. })
    ));
    let all = data.to_vec().unwrap();
    assert_eq!(&all[..10], &[7; 10]);
    assert_eq!(&all[10..], &[1; 10]);
}

#[mp::worker]
fn count_inside(
    sem: mp::Semaphore,
    inside: mp::RawValue<u32>,
    peak: mp::RawValue<u32>,
    rounds: u32,
) -> mp::Result<()> {
    for _ in 0..rounds {
        let _permit = sem.acquire()?;
        let now = inside.atomic().fetch_add(1, Ordering::SeqCst) + 1;
        peak.atomic().fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_micros(200));
        inside.atomic().fetch_sub(1, Ordering::SeqCst);
    }
    Ok(())
}

#[test]
fn semaphore_of_two_never_admits_a_third() {
    let _w = watchdog(LIMIT);
    let sem = mp::Semaphore::new(2).unwrap();
    let inside = mp::RawValue::new(0u32).unwrap();
    let peak = mp::RawValue::new(0u32).unwrap();
    let mut ps: Vec<_> = (0..5)
        .map(|_| {
            mp::spawn(
                count_inside,
                (sem.clone(), inside.clone(), peak.clone(), 200),
            )
            .unwrap()
        })
        .collect();
    for p in &mut ps {
        p.join().unwrap().unwrap();
    }
    assert!(peak.get() <= 2, "peak {} inside a Semaphore(2)", peak.get());
    assert!(peak.get() >= 1);
    assert_eq!(sem.get_value(), 2);
}

#[mp::worker]
fn over_release(sem: mp::BoundedSemaphore) -> mp::Result<()> {
    sem.release()
}

#[test]
fn bounded_semaphore_refuses_extra_releases_in_another_process() {
    let _w = watchdog(LIMIT);
    let sem = mp::BoundedSemaphore::new(1).unwrap();
    let err = mp::spawn(over_release, sem.clone())
        .unwrap()
        .join()
        .unwrap();
    assert!(matches!(err, Err(mp::Error::TooManyReleases)));
    let permit = sem.acquire().unwrap();
    permit.forget();
    mp::spawn(over_release, sem.clone())
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(sem.get_value(), 1);
}

#[mp::worker]
fn wait_for_event(go: mp::Event, done: mp::Event) -> bool {
    let early = go.wait_timeout(Duration::from_millis(10));
    go.wait();
    done.set();
    early
}

#[test]
fn event_set_wakes_a_waiter_in_another_process() {
    let _w = watchdog(LIMIT);
    let go = mp::Event::new().unwrap();
    let done = mp::Event::new().unwrap();
    let mut p = mp::spawn(wait_for_event, (go.clone(), done.clone())).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!done.is_set());
    go.set();
    assert!(done.wait_timeout(Duration::from_secs(10)));
    assert!(
        !p.join().unwrap(),
        "the timed wait before set() must report false"
    );
}

#[mp::worker]
fn wait_for_state(
    cond: mp::Condition,
    state: mp::RawValue<u32>,
    waiting: mp::Event,
) -> mp::Result<u32> {
    let mut guard = cond.acquire()?;
    waiting.set();
    guard.wait_for(|| state.get() >= 3)?;
    Ok(state.get())
}

#[test]
fn condition_notify_wakes_waiters_in_other_processes() {
    let _w = watchdog(LIMIT);
    let cond = mp::Condition::new().unwrap();
    let state = mp::RawValue::new(0u32).unwrap();
    let mut ps: Vec<_> = (0..2)
        .map(|_| {
            let waiting = mp::Event::new().unwrap();
            let p = mp::spawn(
                wait_for_state,
                (cond.clone(), state.clone(), waiting.clone()),
            )
            .unwrap();
            waiting.wait();
            p
        })
        .collect();
    for step in 1..=3 {
        let guard = cond.acquire().unwrap();
        state.set(step);
        guard.notify_all();
    }
    for p in &mut ps {
        assert_eq!(p.join().unwrap().unwrap(), 3);
    }
}

#[mp::worker]
fn notify_one_later(cond: mp::Condition) -> mp::Result<()> {
    std::thread::sleep(Duration::from_millis(50));
    cond.acquire()?.notify(1);
    Ok(())
}

#[test]
fn condition_wait_timeout_and_single_notify() {
    let _w = watchdog(LIMIT);
    let cond = mp::Condition::new().unwrap();
    let mut guard = cond.acquire().unwrap();
    assert!(!guard.wait_timeout(Duration::from_millis(10)).unwrap());
    let mut p = mp::spawn(notify_one_later, cond.clone()).unwrap();
    // The child can only notify once we release the lock inside `wait`.
    assert!(guard.wait_timeout(Duration::from_secs(10)).unwrap());
    drop(guard);
    p.join().unwrap().unwrap();
}

#[mp::worker]
fn barrier_rounds(
    barrier: mp::Barrier,
    arrivals: mp::RawArray<u32>,
    rounds: u32,
) -> mp::Result<()> {
    for round in 0..rounds {
        arrivals
            .atomic(round as usize)?
            .fetch_add(1, Ordering::SeqCst);
        barrier.wait()?;
        // Everyone arrived for this round before anyone passed.
        if arrivals.get(round as usize)? != barrier.parties() {
            return Err(mp::Error::ChildFailed(format!(
                "round {round} passed early"
            )));
        }
    }
    Ok(())
}

#[test]
fn barrier_of_three_releases_all_three_every_round() {
    let _w = watchdog(LIMIT);
    let barrier = mp::Barrier::new(3).unwrap();
    let arrivals = mp::RawArray::<u32>::new(50).unwrap();
    let mut ps: Vec<_> = (0..3)
        .map(|_| mp::spawn(barrier_rounds, (barrier.clone(), arrivals.clone(), 50)).unwrap())
        .collect();
    for p in &mut ps {
        p.join().unwrap().unwrap();
    }
    assert_eq!(arrivals.to_vec(), vec![3; 50]);
    assert!(!barrier.broken());
}

#[mp::worker]
fn barrier_wait(barrier: mp::Barrier) -> mp::Result<u32> {
    barrier.wait()
}

#[test]
fn barrier_timeout_breaks_it_for_every_waiter_until_reset() {
    let _w = watchdog(LIMIT);
    let barrier = mp::Barrier::new(3).unwrap();
    let mut p = mp::spawn(barrier_wait, barrier.clone()).unwrap();
    while barrier.n_waiting() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Two of three arrive; the parent's timeout breaks the barrier for the child too.
    assert!(matches!(
        barrier.wait_timeout(Duration::from_millis(50)),
        Err(mp::Error::BrokenBarrier)
    ));
    assert!(matches!(p.join().unwrap(), Err(mp::Error::BrokenBarrier)));
    assert!(barrier.broken());
    assert!(matches!(barrier.wait(), Err(mp::Error::BrokenBarrier)));
    barrier.reset().unwrap();
    assert!(!barrier.broken());
    let mut ps: Vec<_> = (0..2)
        .map(|_| mp::spawn(barrier_wait, barrier.clone()).unwrap())
        .collect();
    let mut indices = vec![barrier.wait().unwrap()];
    for p in &mut ps {
        indices.push(p.join().unwrap().unwrap());
    }
    indices.sort();
    assert_eq!(indices, [0, 1, 2]);
}

#[test]
fn barrier_abort_wakes_a_waiter_in_another_process() {
    let _w = watchdog(LIMIT);
    let barrier = mp::Barrier::new(2).unwrap();
    let mut p = mp::spawn(barrier_wait, barrier.clone()).unwrap();
    while barrier.n_waiting() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    barrier.abort().unwrap();
    assert!(matches!(p.join().unwrap(), Err(mp::Error::BrokenBarrier)));
}
