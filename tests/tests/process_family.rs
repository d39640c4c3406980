//! A process's relatives, as Python's `active_children()` and `parent_process()` show them, and
//! a child's state read through `&self` without reaping it.
mp::guard!();

use std::time::{Duration, Instant};

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(60))
}

#[mp::worker]
fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// A parent as its child sees it: `(name, pid, alive)`.
type Seen = (String, u32, bool);

/// This child's parent, and the grandchild's parent's name and pid.
#[mp::worker]
fn parents() -> mp::Result<(Seen, (String, u32))> {
    let mine = mp::parent_process().expect("a child has a parent");
    let grandchilds = mp::spawn(parent_of_me, ())?.join()?;
    Ok((
        (mine.name().to_owned(), mine.pid(), mine.is_alive()),
        grandchilds,
    ))
}

#[mp::worker]
fn parent_of_me() -> (String, u32) {
    let parent = mp::parent_process().expect("a child has a parent");
    (parent.name().to_owned(), parent.pid())
}

#[test]
fn active_children_lists_running_children_only() {
    let _w = limit();
    let mut a = mp::spawn(nap, 5_000).unwrap().with_name("sleeper");
    let mut b = mp::spawn(nap, 0).unwrap();
    let (a_pid, b_pid) = (a.pid().unwrap(), b.pid().unwrap());
    // `b` ends at once; until it is joined it is a zombie, not an active child.
    let start = Instant::now();
    while b.is_alive() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    let active = mp::active_children();
    assert!(active.iter().any(|c| c.pid() == a_pid), "{active:?}");
    assert!(!active.iter().any(|c| c.pid() == b_pid), "{active:?}");
    assert_eq!(b.exitcode(), Some(0));
    b.join().unwrap();
    a.kill().unwrap();
    let _ = a.join();
    assert!(!mp::active_children().iter().any(|c| c.pid() == a_pid));
}

#[test]
fn parent_process_names_the_parent_at_every_depth() {
    let _w = limit();
    assert!(mp::parent_process().is_none());
    let mut p = mp::spawn(parents, ()).unwrap();
    let child_pid = p.pid().unwrap();
    let child_name = p.name().to_owned();
    let ((name, pid, alive), (grand_parent_name, grand_parent_pid)) = p.join().unwrap().unwrap();
    assert_eq!(name, "MainProcess");
    assert_eq!(pid, std::process::id());
    assert!(alive);
    assert_eq!(grand_parent_name, child_name);
    assert_eq!(grand_parent_pid, child_pid);
}

#[test]
fn is_alive_and_exitcode_read_without_reaping() {
    let _w = limit();
    let p = mp::spawn(nap, 50).unwrap();
    let handle = &p; // shared access suffices
    assert!(handle.is_alive());
    assert_eq!(handle.exitcode(), None);
    let start = Instant::now();
    while handle.exitcode().is_none() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!handle.is_alive());
    let mut p = p;
    p.join().unwrap(); // the result is still there to collect
    assert_eq!(p.exitcode(), Some(0));
}
