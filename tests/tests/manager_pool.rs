//! A pool held by a manager's server (Python's `manager.Pool(n)`): `map` and `apply` run
//! `#[mp::worker]`s, named on the wire, in the server's worker processes; from the creating
//! process and from another process the proxy travels to; a panicking task is an error.
mp::guard!();

use std::time::Duration;

use mp_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);

#[mp::worker]
fn square(x: u64) -> u64 {
    x * x
}

#[mp::worker]
fn whose_pid(_: u32) -> u32 {
    std::process::id()
}

#[mp::worker]
fn explode(x: u32) -> u32 {
    if x == 3 {
        panic!("task {x} exploded");
    }
    x
}

#[mp::worker]
fn map_from_child(pool: mp::PoolProxy) -> mp::Result<u64> {
    Ok(pool.map(square, 0..10)?.into_iter().sum())
}

#[test]
fn a_managed_pool_runs_workers_in_the_servers_processes() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let pool = manager.pool(2).unwrap();
    assert_eq!(
        pool.map(square, 0..100u64).unwrap(),
        (0..100u64).map(|x| x * x).collect::<Vec<_>>()
    );
    assert_eq!(pool.apply(square, 12).unwrap(), 144);
    assert_eq!(pool.map(square, []).unwrap(), Vec::<u64>::new());

    // The tasks ran in processes the server started, not here and not in the server.
    let pids = pool.map(whose_pid, 0..20).unwrap();
    let me = std::process::id();
    let server = manager.pid().unwrap();
    assert!(pids.iter().all(|&p| p != me && p != server), "{pids:?}");

    // A proxy travels: another process uses the same pool.
    let sum = mp::spawn(map_from_child, pool.clone())
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(sum, 285);

    match pool.map(explode, 0..6) {
        Err(mp::Error::WorkerPanicked { message, .. }) => {
            assert!(message.contains("task 3 exploded"), "{message}")
        }
        other => panic!("expected the task's panic, got {other:?}"),
    }
    // The pool still works after a failed task.
    assert_eq!(pool.apply(explode, 1).unwrap(), 1);
    assert!(matches!(
        manager.pool(0),
        Err(mp::Error::InvalidArgument(_))
    ));
}
