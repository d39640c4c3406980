//! `Pool` and `Executor` across real processes: every method and option, supervision (a killed
//! worker, a panic, a time-out, `max_tasks_per_child`), Ctrl-C and drop.
mp::guard!();

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mp_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);

#[mp::worker]
fn square(n: u64) -> u64 {
    n * n
}

#[mp::worker]
fn multiply(a: i64, b: i64) -> i64 {
    a * b
}

#[mp::worker]
fn pid_of(_n: u32) -> u32 {
    std::process::id()
}

#[mp::worker]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[mp::worker]
fn panic_on(n: u32, bad: u32) -> u32 {
    if n == bad {
        panic!("task {n} is bad");
    }
    n
}

/// Records its pid in `slot`, then sleeps (to be killed from outside).
#[mp::worker]
fn report_and_sleep(slot: mp::RawValue<u32>, n: u32) -> u32 {
    if n == 0 {
        slot.set(std::process::id());
        std::thread::sleep(Duration::from_secs(30));
    }
    n
}

/// Kills its own process on the first attempt (counted in shared memory) at task `bad`.
#[mp::worker]
fn die_once(attempts: mp::RawValue<u32>, n: u32, bad: u32) -> u32 {
    if n == bad && attempts.atomic().fetch_add(1, Ordering::SeqCst) == 0 {
        // SAFETY: sending a signal to ourselves has no memory-safety preconditions.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    n
}

#[mp::allow(exit-in-worker)] // the test is about a worker that aborts
#[mp::worker]
fn abort_on(n: u32, bad: u32) -> u32 {
    if n == bad {
        std::process::abort();
    }
    n
}

#[test]
fn map_keeps_order_and_checks_arguments() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    assert_eq!(pool.processes(), 2);
    assert_eq!(
        pool.map(square, 0..10).unwrap(),
        [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
    );
    assert!(pool.map(square, Vec::new()).unwrap().is_empty());
    assert_eq!(
        pool.starmap(multiply, [(1, 2), (3, 4), (5, 6)]).unwrap(),
        [2, 12, 30]
    );
    for chunksize in [1, 3, 7, 1000] {
        let got = pool.chunksize(chunksize).map(square, 0..100).unwrap();
        assert_eq!(got, (0..100).map(|n| n * n).collect::<Vec<_>>());
    }
    assert!(matches!(
        pool.chunksize(0).map(square, 0..3),
        Err(mp::Error::InvalidArgument(_))
    ));
    assert!(matches!(
        mp::Pool::new(0),
        Err(mp::Error::InvalidArgument(_))
    ));
}

/// An iterator that claims an exact length it does not have.
struct Liar {
    next: u64,
    end: u64,
    claims: usize,
}

impl Iterator for Liar {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        (self.next < self.end).then(|| {
            self.next += 1;
            self.next - 1
        })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.claims, Some(self.claims))
    }
}

#[test]
fn map_reads_its_input_whatever_length_it_claims() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    let squares = |end: u64| (0..end).map(|n| n * n).collect::<Vec<_>>();
    for (end, claims) in [(25_000, 10), (5, 100_000), (20_000, 20_000), (0, 3)] {
        let liar = Liar {
            next: 0,
            end,
            claims,
        };
        assert_eq!(
            pool.map(square, liar).unwrap(),
            squares(end),
            "{end} items, {claims} claimed"
        );
        let liar = Liar {
            next: 0,
            end,
            claims,
        };
        assert_eq!(
            pool.map_async(square, liar).unwrap().get().unwrap(),
            squares(end)
        );
    }
    // An input of unknown length, and one of values that are not plain numbers.
    let odd = pool
        .map(square, (0..20_000).filter(|n| n % 2 == 1))
        .unwrap();
    assert_eq!(
        odd,
        (0..20_000u64)
            .filter(|n| n % 2 == 1)
            .map(|n| n * n)
            .collect::<Vec<_>>()
    );
    let pairs: Vec<(i64, i64)> = (0..10_000).map(|n| (n, -n)).collect();
    let products = pool.starmap(multiply, pairs).unwrap();
    assert_eq!(products, (0..10_000i64).map(|n| -n * n).collect::<Vec<_>>());
}

#[test]
fn a_million_tiny_tasks_arrive_in_order() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    let got = pool.map(square, 0..1_000_000u64).unwrap();
    assert_eq!(got.len(), 1_000_000);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, &v)| v == (i as u64) * (i as u64))
    );
}

#[test]
fn imap_streams_an_endless_iterator() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    let first: Vec<u64> = pool
        .imap(square, 0u64..)
        .take(1000)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(first, (0..1000u64).map(|n| n * n).collect::<Vec<_>>());
    // The pool is still usable after dropping a stream that had tasks in flight.
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    let chunked: Vec<u64> = pool
        .chunksize(16)
        .imap(square, 0..100u64)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(chunked.len(), 100);
    assert_eq!(chunked[99], 99 * 99);
}

#[test]
fn imap_unordered_yields_everything() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    let mut got: Vec<u64> = pool
        .chunksize(5)
        .imap_unordered(square, 0..200u64)
        .collect::<Result<_, _>>()
        .unwrap();
    got.sort_unstable();
    assert_eq!(got, (0..200u64).map(|n| n * n).collect::<Vec<_>>());
    // Finishing order: a long task comes after short ones.
    let order: Vec<u64> = pool
        .imap_unordered(nap, [400, 1, 1])
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(order.last(), Some(&400));
}

#[test]
fn apply_and_async_results() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    assert_eq!(pool.apply(multiply, (6, 7)).unwrap(), 42);

    let mut slow = pool.apply_async(nap, 300).unwrap();
    assert!(!slow.ready());
    assert!(matches!(
        slow.get_timeout(Duration::from_millis(10)),
        Err(mp::Error::Timeout)
    ));
    assert!(!slow.wait_timeout(Duration::from_millis(10)));
    slow.wait();
    assert!(slow.ready());
    assert_eq!(slow.get_timeout(Duration::ZERO).unwrap(), 300);
    assert!(matches!(
        slow.get_timeout(Duration::ZERO),
        Err(mp::Error::InvalidArgument(_))
    ));

    let all = pool.map_async(square, 0..50).unwrap();
    assert_eq!(all.get().unwrap()[49], 49 * 49);
    let none = pool.map_async(square, Vec::new()).unwrap();
    assert!(none.ready());
    assert!(none.get().unwrap().is_empty());
}

#[test]
fn a_panic_fails_only_its_task() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    let results: Vec<mp::Result<u32>> = pool
        .chunksize(10)
        .imap(panic_on, (0..1000).map(|n| (n, 637)))
        .collect();
    assert_eq!(results.len(), 1000);
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v as usize, i),
            Err(mp::Error::WorkerPanicked {
                message, location, ..
            }) => {
                assert_eq!(i, 637);
                assert_eq!(message, "task 637 is bad");
                assert!(
                    location.as_deref().unwrap().contains("pool.rs"),
                    "{location:?}"
                );
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    // `map` reports the panic as its error, and the pool goes on.
    let err = pool.map(panic_on, (0..100).map(|n| (n, 42))).unwrap_err();
    assert!(err.to_string().contains("task 42 is bad"), "{err}");
    assert_eq!(pool.apply(square, 5).unwrap(), 25);
}

#[test]
fn a_killed_worker_fails_its_task_fast_and_is_replaced() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    let slot = mp::RawValue::new(0u32).unwrap();
    let running = pool
        .chunksize(1)
        .map_async(report_and_sleep, (0..20).map(|n| (slot.clone(), n)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while slot.get() == 0 {
        assert!(Instant::now() < deadline, "task 0 never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let victim = slot.get();
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let killed = Instant::now();
    let err = running.get().unwrap_err();
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "{:?}",
        killed.elapsed()
    );
    match err {
        mp::Error::WorkerDied {
            pid,
            status,
            task_index,
            tasks,
            ..
        } => {
            assert_eq!(pid, victim);
            assert_eq!(status, mp::ExitStatus::Signaled(libc::SIGKILL));
            assert_eq!((task_index, tasks), (0, 1));
        }
        e => panic!("unexpected error {e}"),
    }
    // The pool replaced the worker and goes on.
    assert_eq!(pool.map(square, 0..100).unwrap()[99], 9801);
    let pids: HashSet<u32> = pool
        .chunksize(1)
        .map(pid_of, 0..50)
        .unwrap()
        .into_iter()
        .collect();
    assert!(!pids.contains(&victim));
}

#[test]
fn a_lost_task_is_retried_once_when_configured() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::builder()
        .processes(2)
        .retry_lost_tasks(true)
        .build()
        .unwrap();
    let attempts = mp::RawValue::new(0u32).unwrap();
    let got = pool
        .chunksize(4)
        .map(die_once, (0..40).map(|n| (attempts.clone(), n, 13)))
        .unwrap();
    assert_eq!(got, (0..40).collect::<Vec<_>>());
    assert_eq!(attempts.get(), 2);

    // Without retries, the same death is an error naming the chunk; aborts count too.
    let pool = mp::Pool::new(2).unwrap();
    let err = pool
        .chunksize(4)
        .map(abort_on, (0..40).map(|n| (n, 13)))
        .unwrap_err();
    match err {
        mp::Error::WorkerDied {
            status,
            task_index,
            tasks,
            ..
        } => {
            assert_eq!(status, mp::ExitStatus::Signaled(libc::SIGABRT));
            assert_eq!((task_index, tasks), (12, 4));
        }
        e => panic!("unexpected error {e}"),
    }
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
}

#[test]
fn a_task_over_its_time_limit_is_killed() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::builder()
        .processes(2)
        .task_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let results: Vec<mp::Result<u64>> = pool.imap(nap, [10, 20_000, 10]).collect();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(results[0].as_ref().unwrap(), &10);
    assert!(
        matches!(
            results[1],
            Err(mp::Error::TaskTimeout { task_index: 1, .. })
        ),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2].as_ref().unwrap(), &10);
    assert_eq!(pool.apply(square, 9).unwrap(), 81);
}

/// The limit holds for a task handed to a worker that was still starting: its clock starts
/// when the worker says it is ready, whichever thread reads that (the waiting caller reads
/// replies itself, and once did not tell the supervisor that a deadline had begun, so the task
/// ran to its end: seen 1 run in 12 under load).
#[test]
fn a_task_sent_before_its_worker_was_ready_still_times_out() {
    let _w = watchdog(LIMIT);
    for round in 0..12 {
        let pool = mp::Pool::builder()
            .processes(1)
            .task_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let started = Instant::now();
        let result = pool.apply(nap, 4_000);
        assert!(
            matches!(result, Err(mp::Error::TaskTimeout { .. })),
            "round {round}: {result:?} after {:?}",
            started.elapsed()
        );
        assert!(started.elapsed() < Duration::from_secs(3), "round {round}");
    }
}

#[test]
fn max_tasks_per_child_replaces_workers() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::builder()
        .processes(2)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    let pids = pool.chunksize(1).map(pid_of, 0..100).unwrap();
    let distinct: HashSet<u32> = pids.into_iter().collect();
    assert_eq!(distinct.len(), 100);
    // One `apply` at a time: the caller reads each reply itself, so the worker that must
    // retire after it is replaced only if the caller tells the supervisor.
    let pids: HashSet<u32> = (0..30).map(|n| pool.apply(pid_of, n).unwrap()).collect();
    assert_eq!(pids.len(), 30);
}

static OFFSET: AtomicU64 = AtomicU64::new(0);

#[mp::worker]
fn set_offset(n: u64) {
    OFFSET.store(n, Ordering::Relaxed);
}

#[mp::worker]
fn add_offset(x: u64) -> u64 {
    x + OFFSET.load(Ordering::Relaxed)
}

#[mp::worker]
fn failing_init() {
    panic!("no database");
}

#[test]
fn initializer_runs_in_every_worker() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::builder()
        .processes(2)
        .initializer(set_offset, 1000)
        .max_tasks_per_child(3)
        .build()
        .unwrap();
    // Replaced workers run it too.
    let got = pool.chunksize(1).map(add_offset, 0..30).unwrap();
    assert_eq!(got, (1000..1030).collect::<Vec<_>>());
    assert_eq!(OFFSET.load(Ordering::Relaxed), 0, "the parent is untouched");

    let started = Instant::now();
    let broken = mp::Pool::builder()
        .processes(2)
        .initializer(failing_init, ())
        .build()
        .unwrap();
    let err = broken.map(square, 0..10).unwrap_err();
    assert!(matches!(err, mp::Error::InitializerFailed(_)), "{err}");
    assert!(err.to_string().contains("no database"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn close_join_terminate_and_drop() {
    let _w = watchdog(LIMIT);
    let mut pool = mp::Pool::new(2).unwrap();
    assert!(matches!(pool.join(), Err(mp::Error::InvalidArgument(_))));
    let pending = pool.map_async(nap, [50, 50, 50, 50]).unwrap();
    pool.close();
    assert!(matches!(pool.apply(square, 1), Err(mp::Error::Closed)));
    pool.join().unwrap();
    assert!(pending.ready());
    assert_eq!(pending.get().unwrap(), [50, 50, 50, 50]);

    let mut pool = mp::Pool::new(2).unwrap();
    let pids = pool.chunksize(1).map(pid_of, 0..4).unwrap();
    let long = pool.apply_async(nap, 30_000).unwrap();
    let started = Instant::now();
    pool.terminate();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(long.get(), Err(mp::Error::PoolTerminated)));
    for pid in pids {
        assert!(!alive(pid), "worker {pid} survived terminate");
    }

    let pool = mp::Pool::new(2).unwrap();
    let pids = pool.chunksize(1).map(pid_of, 0..4).unwrap();
    let long = pool.apply_async(nap, 30_000).unwrap();
    let started = Instant::now();
    drop(pool);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(long.get(), Err(mp::Error::PoolTerminated)));
    for pid in pids {
        assert!(!alive(pid), "worker {pid} survived the drop");
    }
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

#[test]
fn ctrl_c_to_the_process_group_stops_a_long_map() {
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::process::CommandExt;
    let _w = watchdog(LIMIT);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pool_ctrl_c"))
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pgid = child.id() as i32;
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let workers: Vec<i32> = line
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(!workers.is_empty());
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling a process group has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGINT) }, 0);
    let sent = Instant::now();
    let status = child.wait().unwrap();
    let exited = sent.elapsed();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(130), "stdout: {rest}\nstderr: {err}");
    assert!(exited < Duration::from_secs(1), "took {exited:?}");
    assert!(rest.starts_with("interrupted after"), "{rest}");
    assert!(
        !err.contains("panicked") && !err.contains("Traceback"),
        "{err}"
    );
    for pid in workers {
        assert!(!alive(pid as u32), "worker {pid} survived Ctrl-C");
    }
}

#[mp::worker]
fn cube(n: u64) -> u64 {
    n * n * n
}

#[test]
fn executor_submit_as_completed_and_await() {
    let _w = watchdog(LIMIT);
    let executor = mp::Executor::new(2).unwrap();
    let futures: Vec<_> = [300u64, 1, 100]
        .into_iter()
        .map(|ms| executor.submit(nap, ms).unwrap())
        .collect();
    let order: Vec<u64> = mp::as_completed(futures)
        .map(|f| {
            assert!(f.ready());
            f.get().unwrap()
        })
        .collect();
    assert_eq!(order, [1, 100, 300]);

    let ordered: Vec<u64> = executor.map(cube, 1..=5).collect::<Result<_, _>>().unwrap();
    assert_eq!(ordered, [1, 8, 27, 64, 125]);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sum = runtime.block_on(async {
        let a = executor.submit(cube, 2).unwrap();
        let b = executor.submit(cube, 3).unwrap();
        let (a, b) = tokio::join!(a, b);
        a.unwrap() + b.unwrap()
    });
    assert_eq!(sum, 35);
    executor.shutdown(true).unwrap();
}

#[test]
fn cpu_counts_are_consistent() {
    let usable = mp::cpu_count();
    assert!(usable >= 1);
    assert!(usable <= mp::host_cpu_count());
    let affinity = std::thread::available_parallelism().unwrap().get();
    assert_eq!(usable, affinity, "std and mp disagree about usable CPUs");
}

#[test]
fn handles_travel_inside_pool_tasks() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    let hits = mp::RawValue::new(0u32).unwrap();
    let got = pool
        .chunksize(3)
        .map(die_once, (0..30).map(|n| (hits.clone(), n, u32::MAX)))
        .unwrap();
    assert_eq!(got.len(), 30);
}

#[test]
fn an_mpi_pool_refuses_the_options_that_need_local_children() {
    let builders = [
        (
            mp::Pool::builder()
                .backend(mp::Backend::Mpi)
                .start_method(mp::StartMethod::Spawn),
            "start_method",
        ),
        (
            mp::Pool::builder()
                .backend(mp::Backend::Mpi)
                .max_tasks_per_child(1),
            "max_tasks_per_child",
        ),
    ];
    for (builder, option) in builders {
        let e = builder
            .build()
            .expect_err("an MPI pool with a local-only option");
        assert!(
            matches!(&e, mp::Error::InvalidArgument(m) if m.contains(option)),
            "{e}"
        );
    }
}
