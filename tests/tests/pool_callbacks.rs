//! `apply_async_with` / `map_async_with` (Python's `callback` and `error_callback`): they run
//! on the pool's callback thread before the result is ready, `get` still returns it, a
//! panicking callback is logged and the pool goes on, and terminate/drop run the pending
//! ones with the termination error.
mp::guard!();

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mp_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);

#[mp::worker]
fn square(n: u64) -> u64 {
    n * n
}

#[mp::worker]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[mp::worker]
fn panic_on(n: u64, bad: u64) -> u64 {
    assert!(n != bad, "task {n} is bad");
    n
}

type Log = Arc<Mutex<Vec<String>>>;

fn record(
    log: &Log,
) -> (
    impl FnOnce(&u64) + Send + 'static,
    impl FnOnce(&mp::Error) + Send + 'static,
) {
    let (ok, err) = (Arc::clone(log), Arc::clone(log));
    (
        move |v: &u64| {
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            ok.lock().unwrap().push(format!("ok {v} on {thread}"));
        },
        move |e: &mp::Error| err.lock().unwrap().push(format!("err {e}")),
    )
}

#[test]
fn callbacks_run_on_a_pool_thread_before_the_result_is_ready() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    let log = Log::default();
    let (ok, err) = record(&log);
    let r = pool.apply_async_with(square, 7, ok, err).unwrap();
    r.wait();
    // Ready means the callback has run.
    assert_eq!(
        log.lock().unwrap().as_slice(),
        ["ok 49 on mp-pool-callbacks"]
    );
    assert_eq!(r.get().unwrap(), 49);

    let (ok, err) = record(&log);
    let r = pool.apply_async_with(panic_on, (3, 3), ok, err).unwrap();
    assert!(matches!(r.get(), Err(mp::Error::WorkerPanicked { .. })));
    assert!(
        log.lock().unwrap()[1].starts_with("err "),
        "{:?}",
        log.lock().unwrap()
    );

    let (tx, rx) = mpsc::channel();
    let errors = tx.clone();
    let all = pool
        .chunksize(3)
        .map_async_with(
            square,
            0..10,
            move |v: &Vec<u64>| tx.send(Ok(v.clone())).unwrap(),
            move |e: &mp::Error| errors.send(Err(e.to_string())).unwrap(),
        )
        .unwrap();
    assert_eq!(all.get().unwrap()[9], 81);
    assert_eq!(rx.recv_timeout(LIMIT).unwrap().unwrap().len(), 10);

    // As a future too: `wait`, `as_completed` and `.await` see it once the callback ran.
    let (ok, err) = record(&log);
    let r = pool.apply_async_with(nap, 50, ok, err).unwrap();
    let r = mp::as_completed([r]).next().unwrap();
    assert!(log.lock().unwrap().last().unwrap().starts_with("ok 50"));
    assert_eq!(r.get().unwrap(), 50);
}

#[test]
fn a_panicking_callback_is_logged_and_the_pool_goes_on() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    let r = pool
        .apply_async_with(square, 3, |_: &u64| panic!("callback fails"), |_| {})
        .unwrap();
    // The result still arrives.
    assert_eq!(r.get().unwrap(), 9);
    let (tx, rx) = mpsc::channel();
    let errors = tx.clone();
    let r = pool
        .apply_async_with(
            square,
            4,
            move |v: &u64| tx.send(*v).unwrap(),
            move |_| drop(errors),
        )
        .unwrap();
    assert_eq!(r.get().unwrap(), 16);
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), 16);
    assert_eq!(pool.map(square, 0..5).unwrap(), [0, 1, 4, 9, 16]);
}

#[test]
fn terminate_runs_the_pending_error_callbacks() {
    let _w = watchdog(LIMIT);
    let mut pool = mp::Pool::new(1).unwrap();
    let log = Log::default();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (ok, err) = record(&log);
            pool.apply_async_with(nap, 10_000, ok, err).unwrap()
        })
        .collect();
    pool.terminate();
    // Every callback has run once `terminate` returns.
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log.iter()
            .all(|l| l.starts_with("err the pool was terminated")),
        "{log:?}"
    );
    for h in handles {
        assert!(matches!(h.get(), Err(mp::Error::PoolTerminated)));
    }
}

#[test]
fn close_and_join_wait_for_the_callbacks() {
    let _w = watchdog(LIMIT);
    let mut pool = mp::Pool::new(2).unwrap();
    let log = Log::default();
    for n in 0..6 {
        let (ok, err) = record(&log);
        drop(pool.apply_async_with(nap, 20 * n, ok, err).unwrap());
    }
    pool.close();
    pool.join().unwrap();
    assert_eq!(log.lock().unwrap().len(), 6);
}

#[test]
fn handles_stay_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<mp::Pool>();
    send_sync::<mp::Executor>();
    send_sync::<mp::AsyncResult<Vec<u64>>>();
    // A worker is its own (unit struct) type.
    send_sync::<mp::Imap<'static, square, std::ops::Range<u64>>>();
}
