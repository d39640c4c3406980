//! `Value`/`Array` created with a given lock (Python's `Value(t, v, lock=l)`): the lock travels
//! with the values to other processes, one critical section covers every value sharing it,
//! and the guards stay exclusive (a second guard of the same value is `Deadlock`, not alias).
mp::guard!();

use std::time::Duration;

use mp::{Array, Error, Lock, RLock, Value};

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(60))
}

const TOTAL: i64 = 1_000;
const MOVES: i64 = 300;

/// Moves one unit at a time from `from` to `to`, each move one critical section over both.
#[mp::worker]
fn transfer(lock: RLock, from: Value<i64>, to: Value<i64>) -> mp::Result<()> {
    for _ in 0..MOVES {
        let _section = lock.acquire()?;
        *from.lock()? -= 1;
        std::thread::yield_now(); // widen the window between the two writes
        *to.lock()? += 1;
    }
    Ok(())
}

/// Reads both values inside one critical section; the sum never changes.
#[mp::worker]
fn audit(lock: RLock, a: Value<i64>, b: Value<i64>, rounds: u32) -> mp::Result<u32> {
    let mut bad = 0;
    for _ in 0..rounds {
        let _section = lock.acquire()?;
        if *a.lock()? + *b.lock()? != TOTAL {
            bad += 1;
        }
    }
    Ok(bad)
}

#[test]
fn values_sharing_an_rlock_update_atomically_across_processes() {
    let _w = limit();
    let lock = RLock::new().unwrap();
    let a = Value::with_rlock(TOTAL, &lock).unwrap();
    let b = Value::with_rlock(0i64, &lock).unwrap();
    let mut movers: Vec<_> = (0..2)
        .map(|_| mp::spawn(transfer, (lock.clone(), a.clone(), b.clone())).unwrap())
        .collect();
    let mut auditor = mp::spawn(audit, (lock.clone(), a.clone(), b.clone(), 2_000)).unwrap();
    for m in &mut movers {
        m.join_timeout(Duration::from_secs(30)).unwrap().unwrap();
    }
    let bad = auditor
        .join_timeout(Duration::from_secs(30))
        .unwrap()
        .unwrap();
    assert_eq!(bad, 0, "an audit saw a half-done transfer");
    assert_eq!(
        (a.get().unwrap(), b.get().unwrap()),
        (TOTAL - 2 * MOVES, 2 * MOVES)
    );
}

#[mp::worker]
fn try_set(v: Value<u32>, xs: Array<u32>) -> (String, String) {
    let value = match v.lock_timeout(Duration::from_millis(200)) {
        Ok(_) => "locked".to_string(),
        Err(e) => format!("{e:?}"),
    };
    let array = match xs.lock_range_timeout(0..1, Duration::from_millis(200)) {
        Ok(_) => "locked".to_string(),
        Err(e) => format!("{e:?}"),
    };
    (value, array)
}

#[test]
fn the_given_lock_travels_with_the_value_and_the_array() {
    let _w = limit();
    let lock = Lock::new().unwrap();
    let v = Value::with_lock(1u32, &lock).unwrap();
    let xs = Array::<u32>::with_lock(8, &lock).unwrap();
    let held = lock.acquire().unwrap();
    let (value, array) = mp::spawn(try_set, (v.clone(), xs.clone()))
        .unwrap()
        .join_timeout(Duration::from_secs(10))
        .unwrap();
    assert!(value.starts_with("Timeout"), "{value}");
    assert!(array.starts_with("Timeout"), "{array}");
    drop(held);
    let (value, array) = mp::spawn(try_set, (v.clone(), xs.clone()))
        .unwrap()
        .join_timeout(Duration::from_secs(10))
        .unwrap();
    assert_eq!((value.as_str(), array.as_str()), ("locked", "locked"));
}

#[test]
fn a_second_guard_of_the_same_value_is_refused_even_under_an_rlock() {
    let _w = limit();
    let lock = RLock::new().unwrap();
    let v = Value::with_rlock(5u8, &lock).unwrap();
    let xs = Array::<u8>::with_rlock(4, &lock).unwrap();
    let g = v.lock().unwrap();
    assert!(matches!(v.lock(), Err(Error::Deadlock)));
    let part = xs.lock_range(0..2).unwrap();
    assert!(matches!(xs.lock_range(1..3), Err(Error::Deadlock)));
    let other = xs.lock_range(2..4).unwrap(); // disjoint: fine, same critical section
    assert_eq!(lock.depth(), 3);
    drop((g, part, other));
    assert!(!lock.is_locked());
    // With a plain Lock, a thread holds one of the values at a time.
    let plain = Lock::new().unwrap();
    let p = Value::with_lock(1u8, &plain).unwrap();
    let q = Value::with_lock(2u8, &plain).unwrap();
    let g = p.lock().unwrap();
    assert!(matches!(q.lock(), Err(Error::Deadlock)));
    drop(g);
    assert_eq!(q.get().unwrap(), 2);
}

#[mp::worker]
fn die_holding(v: Value<u32>, xs: Array<u32>, rlock: RLock) {
    let _section = rlock.acquire().unwrap();
    let _v = v.lock().unwrap();
    let _xs = xs.lock().unwrap();
    std::process::abort();
}

#[test]
fn a_holder_that_dies_is_reported_once_by_the_shared_lock() {
    let _w = limit();
    let rlock = RLock::new().unwrap();
    let v = Value::with_rlock(1u32, &rlock).unwrap();
    let xs = Array::<u32>::with_rlock(4, &rlock).unwrap();
    let mut p = mp::spawn(die_holding, (v.clone(), xs.clone(), rlock.clone())).unwrap();
    assert!(p.join_timeout(Duration::from_secs(10)).is_err());
    // The death is reported once, by the shared lock; the value's own lock and the array's
    // claim of the dead holder are taken over silently.
    assert!(matches!(v.lock(), Err(Error::OwnerDied { .. })));
    assert_eq!(*v.lock().unwrap(), 1);
    assert_eq!(xs.lock().unwrap().len(), 4);
    assert_eq!(xs.get(0).unwrap(), 0);
}
