//! A child whose parent dies, even by SIGKILL, exits within a second (grandchild test).
mp::guard!();

use std::time::{Duration, Instant};

#[mp::worker]
fn sleeper() {
    std::thread::sleep(Duration::from_secs(120));
}

#[mp::worker]
fn middle(q: mp::Queue<u32>) {
    let child = mp::spawn(sleeper, ()).expect("spawn grandchild");
    q.put(child.pid().unwrap()).unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn grandchild_exits_when_its_parent_is_killed() {
    let _w = mp_tests::watchdog(Duration::from_secs(30));
    let q = mp::Queue::new().unwrap();
    let mut parent = mp::spawn(middle, q.clone()).unwrap();
    let grandchild = q.get_timeout(Duration::from_secs(10)).unwrap();
    assert!(!mp_tests::gone(grandchild));
    parent.kill().unwrap();
    let _ = parent.join();
    let killed = Instant::now();
    while !mp_tests::gone(grandchild) {
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "grandchild {grandchild} outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[mp::worker]
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// The watch on the parent costs the child no thread (the kernel kills it when the liveness
/// pipe's last write end closes): a worker runs alone, by whichever start method the
/// environment picks (`MP_START_METHOD`; CI runs this suite under `spawn` and `forkserver`).
#[test]
fn a_child_watches_its_parent_without_a_thread() {
    let _w = mp_tests::watchdog(Duration::from_secs(30));
    assert_eq!(mp::spawn(thread_count, ()).unwrap().join().unwrap(), 1);
    let pool = mp::Pool::new(1).unwrap();
    assert_eq!(pool.apply(thread_count, ()).unwrap(), 1);
}
