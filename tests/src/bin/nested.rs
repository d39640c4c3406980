//! A program under `mp::main!` (no `mp::guard!`) whose workers start processes of their own:
//! the first argument picks the scenario, the exit code says whether it held (0) or not.

use std::time::Duration;

#[mp::worker]
fn leaf(x: u64) -> u64 {
    x + 1
}

#[mp::worker]
fn outer(x: u64) -> mp::Result<u64> {
    mp::spawn(leaf, x)?.join()
}

#[mp::worker]
fn pool_inside(n: u64) -> mp::Result<Vec<u64>> {
    let pool = mp::Pool::new(2)?;
    pool.map(leaf, 0..n)
}

#[mp::worker]
fn executor_inside(x: u64) -> mp::Result<u64> {
    let executor = mp::Executor::new(1)?;
    executor.submit(leaf, x)?.get()
}

#[mp::worker]
fn manager_inside(x: i64) -> mp::Result<i64> {
    let manager = mp::Manager::new()?;
    let value = manager.value(x)?;
    value.set(x * 2)?;
    value.get()
}

/// Starts a child and drops its handle while it runs: the worker's process must still wait
/// for it (and reap it) before it exits.
#[mp::worker]
fn detach_grandchild(ms: u64) -> mp::Result<u32> {
    let p = mp::spawn(nap, ms)?;
    let pid = p.pid().expect("started");
    drop(p);
    Ok(pid)
}

#[mp::worker]
fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Spawns from a (daemon) child; returns the error's name.
#[mp::worker]
fn try_spawn() -> String {
    match mp::spawn(leaf, 1) {
        Ok(mut p) => {
            let _ = p.join();
            "spawned".to_owned()
        }
        Err(mp::Error::DaemonWithChildren) => "DaemonWithChildren".to_owned(),
        Err(e) => format!("{e:?}"),
    }
}

fn run() -> mp::Result<()> {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    match scenario.as_str() {
        "spawn" => {
            let value = mp::spawn(outer, 1)?.join()??;
            assert_eq!(value, 2);
        }
        "pool" => {
            let squares = mp::spawn(pool_inside, 10)?.join()??;
            assert_eq!(squares, (1..=10).collect::<Vec<_>>());
        }
        "executor" => assert_eq!(mp::spawn(executor_inside, 41)?.join()??, 42),
        "manager" => assert_eq!(mp::spawn(manager_inside, 21)?.join()??, 42),
        "daemon" => {
            let mut p = mp::Process::new(try_spawn, ()).with_daemon(true);
            p.start()?;
            assert_eq!(p.join()?, "DaemonWithChildren");
        }
        "detach" => {
            let grandchild = mp::spawn(detach_grandchild, 300)?.join()??;
            println!("grandchild {grandchild}");
        }
        other => panic!("unknown scenario {other:?}"),
    }
    println!("ok");
    Ok(())
}

mp::main!(run);
