//! A waiter killed (`SIGKILL`) while blocked in `Queue::get`, `Lock::acquire`, `Event::wait`
//! or `Condition::wait` must not wedge the primitive: the waking operation (put, release, set,
//! notify) keeps returning, and later waiters keep being woken. With the `portable-sync`
//! feature this exercises `sys/park.rs` (a process-shared condition variable with a dead
//! waiter used to block the second wake for ever); without it, the futex path.
mp::guard!();

use std::time::Duration;

use mp_tests::watchdog;

/// The whole test, dead waiter and every round included; a wedged wake aborts by then.
const LIMIT: Duration = Duration::from_secs(20);
/// Rounds of "a live waiter blocks, the parent wakes it" after the death.
const ROUNDS: u32 = 4;
/// Long enough for a waiter to be asleep in the wait, past any spinning.
const SETTLE: Duration = Duration::from_millis(150);
/// How long a live waiter may take to be woken (a late wake-up is allowed, not a stall).
const WOKEN: Duration = Duration::from_secs(5);

/// Kills `p`, which is blocked in a wait, and reaps it.
fn kill_blocked<W: mp::Worker>(mut p: mp::Process<W>) {
    std::thread::sleep(SETTLE);
    assert!(p.is_alive(), "the waiter should still be blocked");
    p.kill().unwrap();
    assert!(matches!(p.join(), Err(mp::Error::ProcessDied { .. })));
}

/// Runs `wait` on a thread and returns a receiver that reports when it returned.
fn waiter_thread(wait: impl FnOnce() + Send + 'static) -> std::sync::mpsc::Receiver<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        wait();
        let _ = tx.send(());
    });
    rx
}

#[mp::worker]
fn get_forever(q: mp::Queue<u32>, blocking: mp::Event) -> mp::Result<u32> {
    blocking.set();
    q.get()
}

#[mp::worker]
fn get_one(q: mp::Queue<u32>) -> mp::Result<u32> {
    q.get()
}

#[test]
fn queue_put_wakes_getters_after_a_getter_was_killed() {
    let _w = watchdog(LIMIT);
    let q = mp::Queue::<u32>::new().unwrap();
    let blocking = mp::Event::new().unwrap();
    let dead = mp::spawn(get_forever, (q.clone(), blocking.clone())).unwrap();
    blocking.wait();
    kill_blocked(dead);
    for round in 0..ROUNDS {
        // A getter in another process, then one in this process.
        let mut p = mp::spawn(get_one, q.clone()).unwrap();
        std::thread::sleep(SETTLE);
        q.put(round).unwrap();
        assert_eq!(p.join().unwrap().unwrap(), round);
        let woken = {
            let q = q.clone();
            waiter_thread(move || assert_eq!(q.get().unwrap(), 1000 + round))
        };
        std::thread::sleep(SETTLE);
        q.put(1000 + round).unwrap();
        woken
            .recv_timeout(WOKEN)
            .expect("a getter in this process was not woken");
    }
}

#[mp::worker]
fn acquire_forever(lock: mp::Lock, blocking: mp::Event) -> mp::Result<()> {
    blocking.set();
    let _held = lock.acquire()?;
    Ok(())
}

#[test]
fn lock_release_wakes_acquirers_after_an_acquirer_was_killed() {
    let _w = watchdog(LIMIT);
    let lock = mp::Lock::new().unwrap();
    let blocking = mp::Event::new().unwrap();
    let held = lock.acquire().unwrap();
    let dead = mp::spawn(acquire_forever, (lock.clone(), blocking.clone())).unwrap();
    blocking.wait();
    kill_blocked(dead);
    drop(held);
    for _ in 0..ROUNDS {
        let held = lock.acquire().unwrap();
        let woken = {
            let lock = lock.clone();
            waiter_thread(move || drop(lock.acquire().unwrap()))
        };
        std::thread::sleep(SETTLE);
        drop(held);
        woken
            .recv_timeout(WOKEN)
            .expect("an acquirer was not woken by the release");
    }
    assert!(!lock.is_locked());
}

#[mp::worker]
fn wait_forever(event: mp::Event, blocking: mp::Event) {
    blocking.set();
    event.wait();
}

#[test]
fn event_set_wakes_waiters_after_a_waiter_was_killed() {
    let _w = watchdog(LIMIT);
    let event = mp::Event::new().unwrap();
    let blocking = mp::Event::new().unwrap();
    let dead = mp::spawn(wait_forever, (event.clone(), blocking.clone())).unwrap();
    blocking.wait();
    kill_blocked(dead);
    for _ in 0..ROUNDS {
        let woken = {
            let event = event.clone();
            waiter_thread(move || event.wait())
        };
        std::thread::sleep(SETTLE);
        event.set();
        woken
            .recv_timeout(WOKEN)
            .expect("a waiter was not woken by set");
        event.clear();
    }
}

#[mp::worker]
fn cond_wait_forever(cond: mp::Condition, blocking: mp::Event) -> mp::Result<()> {
    let mut guard = cond.acquire()?;
    blocking.set();
    loop {
        guard.wait()?;
    }
}

#[test]
fn condition_notify_wakes_waiters_after_a_waiter_was_killed() {
    let _w = watchdog(LIMIT);
    let cond = mp::Condition::new().unwrap();
    let blocking = mp::Event::new().unwrap();
    let dead = mp::spawn(cond_wait_forever, (cond.clone(), blocking.clone())).unwrap();
    blocking.wait();
    kill_blocked(dead);
    for _ in 0..ROUNDS {
        let waiting = std::sync::Arc::new(std::sync::Barrier::new(2));
        let woken = {
            let cond = cond.clone();
            let waiting = std::sync::Arc::clone(&waiting);
            waiter_thread(move || {
                let mut guard = cond.acquire().unwrap();
                waiting.wait();
                guard.wait().unwrap();
            })
        };
        waiting.wait();
        // The waiter holds the lock until it sleeps: taking it here means it is waiting.
        let guard = cond.acquire().unwrap();
        guard.notify(1);
        drop(guard);
        woken
            .recv_timeout(WOKEN)
            .expect("a waiter was not woken by notify");
    }
}
