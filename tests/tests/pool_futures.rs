//! Futures across real processes: `AsyncResult::cancel` / `cancelled` / `running` / `done`,
//! a dropped handle detaches, and the `Executor` surface (shutdown without waiting, with its
//! queued futures cancelled, `map_timeout`, `mp::wait`, `as_completed(..).with_timeout`).
mp::guard!();

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mp::ReturnWhen;
use mp_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);

#[mp::worker]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Sleeps `ms`, then counts itself in `runs` and returns `n`.
#[mp::worker]
fn counted_nap(runs: mp::RawValue<u32>, ms: u64, n: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    runs.atomic().fetch_add(1, Ordering::SeqCst);
    n
}

#[mp::worker]
fn panic_after(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    panic!("failing after {ms} ms");
}

/// Polls `done` until it holds or `limit` passes; whether it held.
fn eventually(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

#[test]
fn cancel_withdraws_a_queued_task_and_leaves_a_running_one() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(1).unwrap();
    let runs = mp::RawValue::new(0u32).unwrap();
    let running = pool
        .apply_async(counted_nap, (runs.clone(), 300, 1))
        .unwrap();
    // Two more fill the worker's prefetch; the fourth certainly waits in the pool's queue.
    let behind: Vec<_> = (2..4)
        .map(|n| {
            pool.apply_async(counted_nap, (runs.clone(), 300, n))
                .unwrap()
        })
        .collect();
    let queued = pool
        .apply_async(counted_nap, (runs.clone(), 1, 99))
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || running.running()));
    assert!(!queued.running() && !queued.done() && !queued.cancelled());

    assert!(queued.cancel());
    assert!(queued.cancel(), "cancelling twice still says cancelled");
    assert!(queued.cancelled() && queued.done() && !queued.running());
    // A running task is not interrupted.
    assert!(!running.cancel());
    assert!(!running.cancelled());
    assert!(matches!(queued.get(), Err(mp::Error::Cancelled)));
    assert_eq!(running.get().unwrap(), 1);
    for b in behind {
        b.get().unwrap();
    }
    // The cancelled task never ran.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(runs.get(), 3);
    // A finished call cannot be cancelled.
    let finished = pool.apply_async(nap, 1).unwrap();
    finished.wait();
    assert!(!finished.cancel());
    assert_eq!(finished.get().unwrap(), 1);
}

#[test]
fn cancel_of_a_map_async_is_all_or_nothing() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(1).unwrap();
    let runs = mp::RawValue::new(0u32).unwrap();
    let busy = pool.apply_async(nap, 300).unwrap();
    let filler: Vec<_> = (0..2).map(|_| pool.apply_async(nap, 50).unwrap()).collect();
    let queued = pool
        .chunksize(1)
        .map_async(counted_nap, (0..5).map(|n| (runs.clone(), 1, n)))
        .unwrap();
    assert!(queued.cancel());
    assert!(matches!(queued.get(), Err(mp::Error::Cancelled)));
    // One whose first chunk runs cannot be cancelled, and runs to its end.
    let started = pool
        .chunksize(1)
        .map_async(counted_nap, (0..3).map(|n| (runs.clone(), 200, n)))
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || started.running()));
    assert!(!started.cancel());
    assert_eq!(started.get().unwrap(), [0, 1, 2]);
    busy.get().unwrap();
    for f in filler {
        f.get().unwrap();
    }
    assert_eq!(runs.get(), 3);
}

#[test]
fn a_dropped_async_result_detaches_and_its_task_still_runs() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(1).unwrap();
    let runs = mp::RawValue::new(0u32).unwrap();
    drop(
        pool.apply_async(counted_nap, (runs.clone(), 100, 0))
            .unwrap(),
    );
    let handle = pool.apply_async(counted_nap, (runs.clone(), 1, 1)).unwrap();
    drop(handle);
    assert!(eventually(Duration::from_secs(10), || runs.get() == 2));
}

#[test]
fn shutdown_without_wait_lets_queued_and_running_tasks_finish() {
    let _w = watchdog(LIMIT);
    let executor = mp::Executor::new(2).unwrap();
    let runs = mp::RawValue::new(0u32).unwrap();
    let futures: Vec<_> = (0..8)
        .map(|n| {
            executor
                .submit(counted_nap, (runs.clone(), 100, n))
                .unwrap()
        })
        .collect();
    let t = Instant::now();
    executor.shutdown(false).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    let got: Vec<u32> = futures.into_iter().map(|f| f.get().unwrap()).collect();
    assert_eq!(got, (0..8).collect::<Vec<_>>());
    assert_eq!(runs.get(), 8);
}

#[test]
fn shutdown_now_cancels_the_queued_futures_only() {
    let _w = watchdog(LIMIT);
    let executor = mp::Executor::new(1).unwrap();
    let runs = mp::RawValue::new(0u32).unwrap();
    let first = executor
        .submit(counted_nap, (runs.clone(), 300, 0))
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || first.running()));
    let rest: Vec<_> = (1..8)
        .map(|n| executor.submit(counted_nap, (runs.clone(), 10, n)).unwrap())
        .collect();
    executor.shutdown_now();
    assert_eq!(first.get().unwrap(), 0);
    let mut cancelled = 0;
    for f in rest {
        let was = f.cancelled();
        match f.get() {
            Ok(_) => assert!(!was),
            Err(mp::Error::Cancelled) => {
                assert!(was);
                cancelled += 1;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    // The worker held at most one more behind the running one (its prefetch).
    assert!(cancelled >= 5, "only {cancelled} cancelled");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(runs.get() as usize, 8 - cancelled);
}

#[test]
fn shutdown_with_wait_and_cancel_futures() {
    let _w = watchdog(LIMIT);
    let executor = mp::Executor::new(1).unwrap();
    let futures: Vec<_> = (0..6).map(|_| executor.submit(nap, 100).unwrap()).collect();
    executor.shutdown_with(true, true).unwrap();
    // Every future is settled once shutdown returns.
    assert!(futures.iter().all(|f| f.done()));
    assert!(futures.last().unwrap().cancelled());
}

#[test]
fn map_timeout_yields_timeout_and_ends() {
    let _w = watchdog(LIMIT);
    let executor = mp::Executor::new(1).unwrap();
    let t = Instant::now();
    let out: Vec<_> = executor
        .map_timeout(nap, [1, 10, 20_000, 1], Duration::from_millis(1_000))
        .collect();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(out[0].as_ref().ok(), Some(&1));
    assert_eq!(out[1].as_ref().ok(), Some(&10));
    assert!(matches!(out[2], Err(mp::Error::Timeout)));
    executor.terminate();
    // Within time, it is `map`.
    let executor = mp::Executor::new(1).unwrap();
    let all: Vec<u64> = executor
        .map_timeout(nap, [1, 2, 3], Duration::from_secs(30))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(all, [1, 2, 3]);
    executor.terminate();
}

#[test]
fn wait_returns_on_first_completed_first_exception_all_completed_and_timeout() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(3).unwrap();

    let futures = vec![
        pool.apply_async(nap, 3_000).unwrap(),
        pool.apply_async(nap, 10).unwrap(),
    ];
    let t = Instant::now();
    let (done, not_done) = mp::wait(futures, ReturnWhen::FirstCompleted, None);
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!((done.len(), not_done.len()), (1, 1));
    assert_eq!(done.into_iter().next().unwrap().get().unwrap(), 10);

    let futures = vec![
        pool.apply_async(nap, 3_000).unwrap(),
        pool.apply_async(panic_after, 50).unwrap(),
        pool.apply_async(nap, 1).unwrap(),
    ];
    let t = Instant::now();
    let (done, not_done) = mp::wait(futures, ReturnWhen::FirstException, None);
    assert!(t.elapsed() < Duration::from_secs(2));
    // The 3-second nap is not done; the panic is (the 1 ms nap may wait behind the first
    // case's long nap).
    assert_eq!(done.len() + not_done.len(), 3);
    assert!(!not_done.is_empty() && not_done.iter().all(|f| !f.done()));
    assert!(
        done.into_iter()
            .any(|f| matches!(f.get(), Err(mp::Error::WorkerPanicked { .. })))
    );

    let futures: Vec<_> = (1..4)
        .map(|n| pool.apply_async(nap, n * 20).unwrap())
        .collect();
    let (done, not_done) = mp::wait(futures, ReturnWhen::AllCompleted, None);
    assert_eq!((done.len(), not_done.len()), (3, 0));

    let futures = vec![pool.apply_async(nap, 3_000).unwrap()];
    let t = Instant::now();
    let (done, not_done) = mp::wait(
        futures,
        ReturnWhen::AllCompleted,
        Some(Duration::from_millis(200)),
    );
    assert!(t.elapsed() >= Duration::from_millis(200) && t.elapsed() < Duration::from_secs(2));
    assert_eq!((done.len(), not_done.len()), (0, 1));

    let (done, not_done) = mp::wait(
        Vec::<mp::AsyncResult<u64>>::new(),
        ReturnWhen::FirstCompleted,
        None,
    );
    assert!(done.is_empty() && not_done.is_empty());
}

#[test]
fn as_completed_with_timeout_yields_timeout_once() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    let futures = vec![
        pool.apply_async(nap, 5_000).unwrap(),
        pool.apply_async(nap, 1).unwrap(),
    ];
    let t = Instant::now();
    let mut it = mp::as_completed(futures).with_timeout(Duration::from_millis(500));
    assert_eq!(it.next().unwrap().unwrap().get().unwrap(), 1);
    assert!(matches!(it.next(), Some(Err(mp::Error::Timeout))));
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(it.next().is_none());
    let remaining = it.into_remaining();
    assert_eq!(remaining.len(), 1);
    assert!(!remaining[0].done());
}
