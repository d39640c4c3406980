//! `Manager` across real processes: lists, dicts, values, queues, locks and events shared by
//! several children under contention; atomic updates; a lock holder that dies; a server that
//! dies mid-use or outlives nobody; limits that hand values back.
mp::guard!();

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mp_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);

#[mp::worker]
fn append_many(list: mp::ListProxy<u64>, who: u64, n: u64) -> mp::Result<()> {
    for i in 0..n {
        list.append(who * 1_000_000 + i)?;
    }
    Ok(())
}

#[test]
fn four_processes_append_10000_each() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let list = manager.list::<u64>().unwrap();
    let mut children: Vec<_> = (0..4)
        .map(|who| mp::spawn(append_many, (list.clone(), who, 10_000)).unwrap())
        .collect();
    for c in &mut children {
        c.join().unwrap().unwrap();
    }
    let items = list.to_vec().unwrap();
    assert_eq!(items.len(), 40_000);
    assert_eq!(list.len().unwrap(), 40_000);
    let distinct: HashSet<u64> = items.iter().copied().collect();
    assert_eq!(distinct.len(), 40_000, "no item lost or duplicated");
    // Each writer's items arrive in the order it appended them.
    for who in 0..4u64 {
        let mine: Vec<u64> = items
            .iter()
            .copied()
            .filter(|x| x / 1_000_000 == who)
            .collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]));
    }
}

#[mp::worker]
fn fill_dict(dict: mp::DictProxy<String, u64>, who: u64) -> mp::Result<()> {
    for i in 0..200 {
        dict.insert(format!("{who}-{i}"), i)?;
    }
    dict.update((0..100).map(|i| (format!("batch-{who}-{i}"), who)))?;
    dict.remove(&format!("{who}-0"))?;
    Ok(())
}

#[test]
fn dict_updates_from_several_processes() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let dict = manager.dict::<String, u64>().unwrap();
    let mut children: Vec<_> = (0..3)
        .map(|who| mp::spawn(fill_dict, (dict.clone(), who)).unwrap())
        .collect();
    for c in &mut children {
        c.join().unwrap().unwrap();
    }
    assert_eq!(dict.len().unwrap(), 3 * (199 + 100));
    for who in 0..3u64 {
        assert_eq!(dict.get(&format!("{who}-0")).unwrap(), None);
        assert_eq!(dict.get(&format!("{who}-199")).unwrap(), Some(199));
        assert_eq!(dict.get(&format!("batch-{who}-99")).unwrap(), Some(who));
        assert!(dict.contains_key(&format!("{who}-5")).unwrap());
    }
    let keys: HashSet<String> = dict.keys().unwrap().into_iter().collect();
    assert_eq!(keys.len(), 897);
    let items = dict.items().unwrap();
    assert_eq!(items.len(), 897);
    let many = dict
        .get_many(&["1-7".to_string(), "nope".to_string()])
        .unwrap();
    assert_eq!(many, vec![Some(7), None]);
}

#[mp::worker]
fn increment(
    counts: mp::DictProxy<String, u64>,
    total: mp::ValueProxy<u64>,
    n: u32,
) -> mp::Result<()> {
    for _ in 0..n {
        counts.update_with(&"hits".to_string(), |v| Some(v.unwrap_or(0) + 1))?;
        total.update(|t| *t += 1)?;
    }
    Ok(())
}

#[test]
fn atomic_updates_under_contention_give_the_exact_count() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let counts = manager.dict::<String, u64>().unwrap();
    let total = manager.value(0u64).unwrap();
    let mut children: Vec<_> = (0..4)
        .map(|_| mp::spawn(increment, (counts.clone(), total.clone(), 500)).unwrap())
        .collect();
    for c in &mut children {
        c.join().unwrap().unwrap();
    }
    assert_eq!(counts.get(&"hits".to_string()).unwrap(), Some(2000));
    assert_eq!(total.get().unwrap(), 2000);
}

#[test]
fn list_operations_and_the_copy_semantics() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let list = manager.list_from(vec![vec![1u8], vec![2]]).unwrap();
    // A value read is a copy: changing it does not change the list...
    let mut first = list.get(0).unwrap().unwrap();
    first.push(9);
    assert_eq!(list.get(0).unwrap(), Some(vec![1]));
    // ...until it is written back.
    list.set(0, first).unwrap();
    assert_eq!(list.get(0).unwrap(), Some(vec![1, 9]));
    list.insert(0, vec![0]).unwrap();
    assert_eq!(list.remove(1).unwrap(), vec![1, 9]);
    assert!(list.remove_item(&vec![2]).unwrap());
    assert!(!list.remove_item(&vec![2]).unwrap());
    assert_eq!(list.pop().unwrap(), Some(vec![0]));
    assert_eq!(list.pop().unwrap(), None);
    assert!(list.is_empty().unwrap());
    assert!(matches!(
        list.set(3, vec![]),
        Err(mp::SendError {
            error: mp::Error::OutOfRange { index: 3, len: 0 },
            ..
        })
    ));
    list.extend([vec![3], vec![1], vec![2]]).unwrap();
    list.sort().unwrap();
    assert_eq!(
        list.iter().collect::<mp::Result<Vec<_>>>().unwrap(),
        [[1], [2], [3]]
    );
    list.clear().unwrap();
    assert_eq!(list.len().unwrap(), 0);
}

#[mp::worker]
fn consume(q: mp::QueueProxy<u32>, done: mp::EventProxy, n: usize) -> mp::Result<u64> {
    let mut sum = 0u64;
    for _ in 0..n {
        sum += u64::from(q.get()?);
    }
    done.set()?;
    Ok(sum)
}

#[test]
fn queue_and_event_across_processes() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let q = manager.queue_with_maxsize::<u32>(10).unwrap();
    let done = manager.event().unwrap();
    let mut consumer = mp::spawn(consume, (q.clone(), done.clone(), 1000)).unwrap();
    // A bounded queue makes the producer wait for the consumer.
    for i in 0..1000 {
        q.put(i).unwrap();
    }
    assert!(done.wait_timeout(Duration::from_secs(20)).unwrap());
    assert_eq!(consumer.join().unwrap().unwrap(), (0..1000u64).sum::<u64>());
    assert!(matches!(q.try_get(), Err(mp::Error::Empty)));
    let t = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(100)),
        Err(mp::Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(90));
    q.put_many(0..10).unwrap();
    assert!(
        q.try_put(10)
            .is_err_and(|e| matches!(e.error, mp::Error::Full) && e.value == 10)
    );
    assert_eq!(q.get_many(100).unwrap(), (0..10).collect::<Vec<_>>());
    done.clear().unwrap();
    assert!(!done.is_set().unwrap());
}

#[mp::worker]
fn take_lock_and_die(lock: mp::LockProxy, held: mp::EventProxy) -> mp::Result<()> {
    let guard = lock.acquire()?;
    held.set()?;
    std::mem::forget(guard);
    // SAFETY: sending a signal to ourselves has no memory-safety preconditions.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    Ok(())
}

#[mp::worker]
fn count_under_lock(lock: mp::LockProxy, total: mp::ValueProxy<u64>, n: u32) -> mp::Result<()> {
    for _ in 0..n {
        let _guard = lock.acquire()?;
        // A non-atomic read-modify-write: correct only because of the lock.
        let t = total.get()?;
        total.set(t + 1)?;
    }
    Ok(())
}

#[test]
fn a_lock_serializes_processes_and_survives_its_holders_death() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let lock = manager.lock().unwrap();
    let total = manager.value(0u64).unwrap();
    let mut children: Vec<_> = (0..3)
        .map(|_| mp::spawn(count_under_lock, (lock.clone(), total.clone(), 200)).unwrap())
        .collect();
    for c in &mut children {
        c.join().unwrap().unwrap();
    }
    assert_eq!(total.get().unwrap(), 600);

    let held = manager.event().unwrap();
    let mut dying = mp::spawn(take_lock_and_die, (lock.clone(), held.clone())).unwrap();
    assert!(held.wait_timeout(Duration::from_secs(20)).unwrap());
    assert!(dying.join().is_err(), "the holder was killed");
    let t = Instant::now();
    match lock.acquire_timeout(Duration::from_secs(10)) {
        Err(mp::Error::OwnerDied { .. }) => {}
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2));
    let guard = lock.try_acquire().expect("the lock is free again");
    guard.release().unwrap();
}

#[mp::worker]
fn report_and_block(pid: mp::RawValue<u32>, q: mp::QueueProxy<u32>) -> mp::Result<u32> {
    pid.set(std::process::id());
    q.get()
}

#[test]
fn a_killed_server_gives_errors_not_hangs() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let server = manager.pid().unwrap();
    let list = manager.list::<u32>().unwrap();
    list.append(1).unwrap();
    let q = manager.queue::<u32>().unwrap();
    // One child and one thread here block in `get` on the server.
    let pid = mp::RawValue::new(0u32).unwrap();
    let mut child = mp::spawn(report_and_block, (pid.clone(), q.clone())).unwrap();
    let waiter = {
        let q = q.clone();
        std::thread::spawn(move || q.get())
    };
    while pid.get() == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    // SAFETY: signalling the server process, which this test owns.
    unsafe { libc::kill(server as i32, libc::SIGKILL) };
    assert!(matches!(
        waiter.join().unwrap(),
        Err(mp::Error::ManagerGone { .. })
    ));
    assert!(matches!(
        child.join().unwrap(),
        Err(mp::Error::ManagerGone { .. })
    ));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let e = list.append(2).unwrap_err();
    assert!(matches!(e.error, mp::Error::ManagerGone { .. }), "{e}");
    assert_eq!(e.value, 2, "the value is handed back");
    let len = list.len();
    assert!(matches!(len, Err(mp::Error::ManagerGone { .. })), "{len:?}");
    let another = manager.list::<u8>();
    assert!(
        matches!(another, Err(mp::Error::ManagerGone { .. })),
        "{another:?}"
    );
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn dropping_the_manager_stops_the_server() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let pid = manager.pid().unwrap();
    let list = manager.list::<u32>().unwrap();
    list.append(7).unwrap();
    assert!(alive(pid));
    let t = Instant::now();
    drop(manager);
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(!alive(pid), "the server process is gone");
    assert!(matches!(list.len(), Err(mp::Error::ManagerGone { .. })));
}

#[mp::worker]
fn start_manager_then_die(pid: mp::RawValue<u32>) {
    let manager = mp::Manager::new().unwrap();
    pid.set(manager.pid().unwrap());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn the_server_exits_when_its_parent_dies() {
    let _w = watchdog(LIMIT);
    let pid = mp::RawValue::new(0u32).unwrap();
    let mut parent = mp::spawn(start_manager_then_die, pid.clone()).unwrap();
    while pid.get() == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let server = pid.get();
    assert!(alive(server));
    parent.kill().unwrap();
    let _ = parent.join();
    let t = Instant::now();
    while alive(server) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive(server), "the orphaned server exited");
}

#[test]
fn oversized_values_are_refused_and_handed_back() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::builder().max_message(4096).start().unwrap();
    let list = manager.list::<Vec<u8>>().unwrap();
    let big = vec![7u8; 10_000];
    let e = list.append(big.clone()).unwrap_err();
    assert!(matches!(e.error, mp::Error::TooLarge { .. }), "{e}");
    assert_eq!(e.value, big);
    // The connection is still good, and nothing was added.
    list.append(vec![1]).unwrap();
    assert_eq!(list.to_vec().unwrap(), vec![vec![1]]);
    let e = list.extend(vec![vec![0u8; 1000]; 10]).unwrap_err();
    assert_eq!(e.value.len(), 10);
    assert_eq!(list.len().unwrap(), 1);
}

#[test]
fn named_objects_are_shared_and_type_checked() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let a = manager.named::<mp::ValueProxy<u32>>("n").unwrap();
    a.set(5).unwrap();
    let b = manager.named::<mp::ValueProxy<u32>>("n").unwrap();
    assert_eq!(b.get().unwrap(), 5);
    let e = manager.named::<mp::ValueProxy<u64>>("n").unwrap_err();
    assert!(e.to_string().contains("not a value<u64>"), "{e}");
    let e = manager.named::<mp::ListProxy<u32>>("n").unwrap_err();
    assert!(
        e.to_string().contains("is a value<u32>, not a list<u32>"),
        "{e}"
    );
}

#[test]
fn proxies_do_not_serialize_outside_mp() {
    let manager = mp::Manager::new().unwrap();
    let list = manager.list::<u32>().unwrap();
    let e = serde_json::to_string(&list).unwrap_err();
    assert!(e.to_string().contains("auth key"), "{e}");
    // Values holding OS handles cannot be stored in a manager.
    let store = manager.list::<mp::Queue<u32>>().unwrap();
    let e = store.append(mp::Queue::new().unwrap()).unwrap_err();
    assert!(matches!(e.error, mp::Error::Encode(_)), "{}", e.error);
}

const KEY: &[u8] = b"shared objects test key";

#[mp::worker]
fn share_back(
    list: mp::ListProxy<u32>,
    out: mp::QueueProxy<mp::ListProxy<u32>>,
    address: mp::Address,
) -> mp::Result<()> {
    // A proxy made here travels back inside a message; its object stays alive while it is
    // in flight, although this process drops its own proxy (and exits) first.
    let fresh = mp::Manager::connect(&address, KEY)?.list::<u32>()?;
    fresh.append(42)?;
    out.put(fresh)?;
    list.append(1)?;
    Ok(())
}

#[test]
fn proxies_travel_inside_messages_and_keep_their_object_alive() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::builder().authkey(KEY).start().unwrap();
    let list = manager.list::<u32>().unwrap();
    let out = manager.queue::<mp::ListProxy<u32>>().unwrap();
    let args = (list.clone(), out.clone(), manager.address().clone());
    mp::spawn(share_back, args)
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    let received = out.get().unwrap();
    assert_eq!(received.to_vec().unwrap(), vec![42]);
    assert_eq!(list.to_vec().unwrap(), vec![1]);
}

#[mp::worker]
fn wait_for_an_item(started: mp::EventProxy, q: mp::QueueProxy<u32>) -> mp::Result<u32> {
    started.set()?;
    q.get()
}

#[test]
fn a_consumer_killed_while_waiting_takes_no_item_with_it() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let q = manager.queue::<u32>().unwrap();
    let started = manager.event().unwrap();
    let mut consumer = mp::spawn(wait_for_an_item, (started.clone(), q.clone())).unwrap();
    assert!(started.wait_timeout(Duration::from_secs(20)).unwrap());
    std::thread::sleep(Duration::from_millis(100)); // blocked in `get` on the server now
    consumer.kill().unwrap();
    assert!(consumer.join().is_err());
    q.put(7).unwrap();
    // The item is not lost to the dead consumer's session.
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), 7);
    assert!(matches!(q.try_get(), Err(mp::Error::Empty)));
}
