//! The rest of Python's `SyncManager` across real processes: `RLock`, `Semaphore` /
//! `BoundedSemaphore`, `Condition`, `Barrier`, `JoinableQueue` (`task_done` / `join`),
//! `Array`, a set; live batched iteration of lists and dicts with Python's "changed size
//! during iteration"; dict lookups by a borrowed key. Holders that die give back what they
//! held (a permit, a lock) and a party that dies breaks a barrier: nothing waits forever.
mp::guard!();

use std::time::{Duration, Instant};

use mp_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);

fn die() {
    // SAFETY: sending a signal to ourselves has no memory-safety preconditions.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

#[mp::worker]
fn count_under_rlock(lock: mp::RLockProxy, total: mp::ValueProxy<u64>, n: u32) -> mp::Result<()> {
    for _ in 0..n {
        let _outer = lock.acquire()?;
        let _inner = lock.acquire()?; // re-entrant
        let t = total.get()?;
        total.set(t + 1)?;
    }
    Ok(())
}

#[mp::worker]
fn take_rlock_and_die(lock: mp::RLockProxy, held: mp::EventProxy) -> mp::Result<()> {
    let a = lock.acquire()?;
    let b = lock.acquire()?;
    held.set()?;
    std::mem::forget((a, b));
    die();
    Ok(())
}

#[test]
fn an_rlock_reenters_serializes_processes_and_survives_its_holders_death() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let lock = manager.rlock().unwrap();
    let total = manager.value(0u64).unwrap();
    let mut children: Vec<_> = (0..3)
        .map(|_| mp::spawn(count_under_rlock, (lock.clone(), total.clone(), 100)).unwrap())
        .collect();
    for c in &mut children {
        c.join().unwrap().unwrap();
    }
    assert_eq!(total.get().unwrap(), 300);
    assert!(!lock.is_locked().unwrap());

    let held = manager.event().unwrap();
    let mut dying = mp::spawn(take_rlock_and_die, (lock.clone(), held.clone())).unwrap();
    assert!(held.wait_timeout(Duration::from_secs(20)).unwrap());
    assert!(dying.join().is_err(), "the holder was killed");
    match lock.acquire_timeout(Duration::from_secs(10)) {
        Err(mp::Error::OwnerDied { .. }) => {}
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    let guard = lock.try_acquire().expect("the rlock is free again");
    assert_eq!(lock.count().unwrap(), 1);
    guard.release().unwrap();
}

#[mp::worker]
fn take_permit_and_die(sem: mp::SemaphoreProxy, held: mp::EventProxy) -> mp::Result<()> {
    sem.acquire()?.forget();
    held.set()?;
    die();
    Ok(())
}

#[mp::worker]
fn signal(sem: mp::SemaphoreProxy) -> mp::Result<()> {
    sem.release()
}

#[test]
fn a_semaphore_counts_and_gets_a_dead_holders_permit_back() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let sem = manager.bounded_semaphore(2).unwrap();
    let held = manager.event().unwrap();
    let mut dying = mp::spawn(take_permit_and_die, (sem.clone(), held.clone())).unwrap();
    assert!(held.wait_timeout(Duration::from_secs(20)).unwrap());
    let mine = sem.acquire().unwrap();
    assert!(dying.join().is_err(), "the holder was killed");
    // The dead holder's permit comes back when the server sees its connection end.
    let t = Instant::now();
    let theirs = sem.acquire_timeout(Duration::from_secs(10)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(matches!(sem.try_acquire(), Err(mp::Error::WouldBlock)));
    assert!(matches!(
        sem.acquire_timeout(Duration::from_millis(50)),
        Err(mp::Error::Timeout)
    ));
    drop((mine, theirs));
    assert_eq!(sem.get_value().unwrap(), 2);
    assert!(matches!(sem.release(), Err(mp::Error::TooManyReleases)));

    // Unbounded: the signalling pattern, released by another process.
    let ready = manager.semaphore(0).unwrap();
    mp::spawn(signal, ready.clone())
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    ready
        .acquire_timeout(Duration::from_secs(10))
        .unwrap()
        .forget();
    assert_eq!(ready.get_value().unwrap(), 0);
}

#[mp::worker]
fn produce_under_condition(
    cond: mp::ConditionProxy,
    items: mp::ListProxy<u32>,
    n: u32,
) -> mp::Result<()> {
    for i in 0..n {
        let guard = cond.acquire()?;
        items.append(i)?;
        guard.notify(1)?;
    }
    Ok(())
}

#[test]
fn a_condition_wakes_a_waiter_in_another_process() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let cond = manager.condition().unwrap();
    let items = manager.list::<u32>().unwrap();
    {
        let mut guard = cond.acquire().unwrap();
        // Nobody notifies: times out, with the lock held again.
        assert!(!guard.wait_timeout(Duration::from_millis(50)).unwrap());
        assert!(matches!(cond.acquire(), Err(mp::Error::Deadlock)));
    }
    let mut guard = cond.acquire().unwrap();
    let mut child = mp::spawn(produce_under_condition, (cond.clone(), items.clone(), 5)).unwrap();
    guard
        .wait_for(|| items.len().unwrap() == 5)
        .expect("the producer's notifications arrive");
    drop(guard);
    child.join().unwrap().unwrap();
    assert_eq!(items.to_vec().unwrap(), [0, 1, 2, 3, 4]);
    let guard = cond.acquire().unwrap();
    assert_eq!(guard.notify_all().unwrap(), 0);
}

#[mp::worker]
fn wait_at(barrier: mp::BarrierProxy) -> mp::Result<u32> {
    barrier.wait()
}

#[mp::worker]
fn arrive_and_die(barrier: mp::BarrierProxy, started: mp::EventProxy) -> mp::Result<u32> {
    started.set()?;
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(300));
        die();
    });
    barrier.wait()
}

#[test]
fn a_barrier_passes_breaks_on_timeout_and_on_a_dead_party() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let barrier = manager.barrier(3).unwrap();
    assert_eq!(barrier.parties().unwrap(), 3);
    let mut children: Vec<_> = (0..2)
        .map(|_| mp::spawn(wait_at, barrier.clone()).unwrap())
        .collect();
    let mut indices = vec![barrier.wait().unwrap()];
    for c in &mut children {
        indices.push(c.join().unwrap().unwrap());
    }
    indices.sort();
    assert_eq!(indices, [0, 1, 2]);

    // A timeout breaks it, for everyone, until reset.
    let t = Instant::now();
    assert!(matches!(
        barrier.wait_timeout(Duration::from_millis(100)),
        Err(mp::Error::BrokenBarrier)
    ));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(barrier.broken().unwrap());
    assert!(matches!(barrier.wait(), Err(mp::Error::BrokenBarrier)));
    barrier.reset().unwrap();
    assert!(!barrier.broken().unwrap());

    // A party that dies while waiting breaks it: the other waiter is not left hanging.
    let two = manager.barrier(2).unwrap();
    let started = manager.event().unwrap();
    let mut dying = mp::spawn(arrive_and_die, (two.clone(), started.clone())).unwrap();
    assert!(started.wait_timeout(Duration::from_secs(20)).unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while two.n_waiting().unwrap() == 0 && !two.broken().unwrap() {
        assert!(Instant::now() < deadline, "the party never arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(dying.join().is_err(), "the party was killed");
    let t = Instant::now();
    let deadline = t + Duration::from_secs(20);
    while !two.broken().unwrap() {
        assert!(
            Instant::now() < deadline,
            "a dead party did not break the barrier"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(matches!(two.wait(), Err(mp::Error::BrokenBarrier)));
    assert!(matches!(
        manager.barrier(0),
        Err(mp::Error::InvalidArgument(_))
    ));
}

#[mp::worker]
fn work_through(jobs: mp::QueueProxy<u32>, done: mp::ListProxy<u32>) -> mp::Result<()> {
    loop {
        let job = jobs.get()?;
        if job == u32::MAX {
            jobs.task_done()?;
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
        done.append(job)?;
        jobs.task_done()?;
    }
}

#[test]
fn a_joinable_queue_joins_once_every_item_is_done() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let jobs = manager.joinable_queue::<u32>().unwrap();
    let done = manager.list::<u32>().unwrap();
    jobs.put_many(0..20).unwrap();
    assert!(matches!(
        jobs.join_timeout(Duration::from_millis(20)),
        Err(mp::Error::Timeout)
    ));
    let mut workers: Vec<_> = (0..2)
        .map(|_| mp::spawn(work_through, (jobs.clone(), done.clone())).unwrap())
        .collect();
    jobs.join().unwrap();
    // `join` returned: every item put was processed.
    assert_eq!(done.len().unwrap(), 20);
    jobs.put_many([u32::MAX, u32::MAX]).unwrap();
    for w in &mut workers {
        w.join().unwrap().unwrap();
    }
    jobs.join_timeout(Duration::from_secs(10)).unwrap();
    assert!(matches!(jobs.task_done(), Err(mp::Error::TaskDoneTooOften)));
}

#[mp::worker]
fn fill_cells(cells: mp::ArrayProxy<String>, from: usize, to: usize) -> mp::Result<()> {
    for i in from..to {
        cells.set(i, format!("cell {i}"))?;
    }
    Ok(())
}

#[mp::worker]
fn add_words(words: mp::SetProxy<String>, who: u32) -> mp::Result<usize> {
    let mut new = 0;
    for i in 0..50 {
        new += usize::from(words.add(format!("word-{}", (who * 25 + i) % 100))?);
    }
    Ok(new)
}

#[test]
fn an_array_and_a_set_across_processes() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let cells = manager.array(vec![String::new(); 10]).unwrap();
    let mut a = mp::spawn(fill_cells, (cells.clone(), 0, 5)).unwrap();
    let mut b = mp::spawn(fill_cells, (cells.clone(), 5, 10)).unwrap();
    a.join().unwrap().unwrap();
    b.join().unwrap().unwrap();
    let all = cells.to_vec().unwrap();
    assert_eq!(all.len(), 10);
    assert_eq!(cells.get(7).unwrap(), "cell 7");
    assert!(matches!(
        cells.set(10, "x".into()),
        Err(mp::SendError {
            error: mp::Error::OutOfRange { index: 10, len: 10 },
            ..
        })
    ));
    assert_eq!(cells.len().unwrap(), 10);

    let words = manager.set::<String>().unwrap();
    let mut children: Vec<_> = (0..4)
        .map(|who| mp::spawn(add_words, (words.clone(), who)).unwrap())
        .collect();
    let new: usize = children
        .iter_mut()
        .map(|c| c.join().unwrap().unwrap())
        .sum();
    assert_eq!(new, 100, "each word was new to exactly one adder");
    assert_eq!(words.len().unwrap(), 100);
    assert!(words.contains("word-42").unwrap());
    assert!(words.discard("word-42").unwrap());
    assert!(!words.discard("word-42").unwrap());
    assert!(words.remove("word-42").is_err());
    words.remove("word-43").unwrap();
    assert_eq!(words.snapshot().unwrap().len(), 98);
    let named = manager.named::<mp::SetProxy<String>>("tags").unwrap();
    named.update(["a".to_string(), "b".to_string()]).unwrap();
    assert_eq!(named.pop().unwrap().as_deref(), Some("a"));
    named.clear().unwrap();
    assert!(named.is_empty().unwrap());
}

#[mp::worker]
fn grow_list(list: mp::ListProxy<u32>, n: u32) -> mp::Result<()> {
    for i in 0..n {
        list.append(1000 + i)?;
    }
    Ok(())
}

#[test]
fn list_and_dict_iterate_live_in_batches() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let list = manager.list_from(0..1000u32).unwrap();
    let all: Vec<u32> = list.iter_batched(64).collect::<mp::Result<_>>().unwrap();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
    // Items another process appends while we iterate are seen (the list is read live).
    let mut it = list.iter_batched(10);
    assert_eq!(it.next().unwrap().unwrap(), 0);
    mp::spawn(grow_list, (list.clone(), 5))
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(it.map(Result::unwrap).count(), 999 + 5);
    let mut n = 0;
    for item in &list {
        item.unwrap();
        n += 1;
    }
    assert_eq!(n, 1005);

    let dict = manager
        .dict_from((0..100u32).map(|i| (format!("k{i}"), i)))
        .unwrap();
    let entries: Vec<(String, u32)> = dict.iter_batched(7).collect::<mp::Result<_>>().unwrap();
    assert_eq!(entries, dict.items().unwrap());
    assert_eq!(dict.get("k5").unwrap(), Some(5)); // a `&str` for a `String` key
    assert_eq!(dict.remove("k5").unwrap(), Some(5));
    assert!(!dict.contains_key("k5").unwrap());
    assert_eq!(
        dict.update_with("k6", |v| v.map(|v| v * 10)).unwrap(),
        Some(60)
    );
    assert_eq!(
        dict.get_many(["k6", "k7", "nope"]).unwrap(),
        [Some(60), Some(7), None]
    );

    // Another process changes the size while we iterate: Python's RuntimeError, as an item.
    let mut it = dict.iter_batched(10);
    it.next().unwrap().unwrap();
    let d = dict.clone();
    mp::spawn(insert_one, d).unwrap().join().unwrap().unwrap();
    let rest: Vec<_> = it.collect();
    match rest.last() {
        Some(Err(mp::Error::ChangedDuringIteration(what))) => assert!(what.contains("dict")),
        other => panic!("expected a changed-size error, got {other:?}"),
    }
    assert!(rest[..rest.len() - 1].iter().all(Result::is_ok));
    assert_eq!(rest.len(), 10, "the first batch, then the error");
}

#[mp::worker]
fn insert_one(dict: mp::DictProxy<String, u32>) -> mp::Result<()> {
    dict.insert("new".into(), 1)?;
    Ok(())
}
