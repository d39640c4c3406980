//! `SIGINT` sent to one pool worker (not its process group) fails the task it runs with
//! `Error::Interrupted`, as Python's `KeyboardInterrupt` in the worker; the pool replaces the
//! worker and keeps serving. (Ctrl-C to the whole group is `pool.rs`'s
//! `ctrl_c_to_the_process_group_stops_a_long_map`.)
mp::guard!();

use std::time::{Duration, Instant};

use mp_tests::{gone, watchdog};

const LIMIT: Duration = Duration::from_secs(60);

/// Records its pid in `slot`, then sleeps `ms`.
#[mp::worker]
fn report_and_sleep(slot: mp::RawValue<u32>, ms: u64) -> u32 {
    slot.set(std::process::id());
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

#[mp::worker]
fn square(n: u64) -> u64 {
    n * n
}

#[test]
fn sigint_to_one_worker_fails_its_task_as_interrupted_and_the_pool_goes_on() {
    let _w = watchdog(LIMIT);
    // Even with retries: an interruption is not a loss to retry.
    let pool = mp::Pool::builder()
        .processes(2)
        .retry_lost_tasks(true)
        .build()
        .unwrap();
    let slot = mp::RawValue::new(0u32).unwrap();
    let task = pool
        .apply_async(report_and_sleep, (slot.clone(), 5_000))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while slot.get() == 0 {
        assert!(Instant::now() < deadline, "the task never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let victim = slot.get();
    // SAFETY: sending a signal has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGINT) }, 0);
    let sent = Instant::now();
    let outcome = task.get();
    assert!(
        matches!(outcome, Err(mp::Error::Interrupted)),
        "{outcome:?} after {:?}",
        sent.elapsed()
    );
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
    assert!(gone(victim));
    // The pool is open and replaced the worker.
    assert_eq!(pool.map(square, 0..100).unwrap()[99], 9_801);
    let again = pool.apply(report_and_sleep, (slot.clone(), 1)).unwrap();
    assert_ne!(again, victim);
}
