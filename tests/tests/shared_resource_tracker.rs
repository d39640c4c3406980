//! The resource tracker: one per process tree, started by whichever process needs it first;
//! replaced when killed; deaf to Ctrl-C; and a report that names every segment it removed.
mp::guard!();

use std::process::Command;
use std::time::{Duration, Instant};

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(60))
}

fn shm_names(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
fn one_tracker_serves_the_whole_process_tree() {
    let _w = limit();
    let prefix = format!("mp-test-tree-{}", std::process::id());
    let out = Command::new(env!("CARGO_BIN_EXE_tracker_tree"))
        .args(["shared", &prefix])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(shm_names(&prefix).is_empty(), "{:?}", shm_names(&prefix));
}

#[test]
fn a_killed_tracker_is_replaced_and_learns_every_name_again() {
    let _w = limit();
    let prefix = format!("mp-test-restart-{}", std::process::id());
    let out = Command::new(env!("CARGO_BIN_EXE_tracker_tree"))
        .args(["restart", &prefix])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // `output` returns once the tracker (which shares the program's stderr) has exited, so
    // the names are gone by now.
    assert!(shm_names(&prefix).is_empty(), "{:?}", shm_names(&prefix));
    let report = stderr
        .lines()
        .find(|l| l.contains("resource tracker"))
        .unwrap_or_else(|| panic!("no leak report: {stderr}"));
    assert!(report.contains("2 shared memory segments"), "{report}");
    assert!(report.contains(&format!("{prefix}-a")), "{report}");
    assert!(report.contains(&format!("{prefix}-b")), "{report}");
}

#[test]
fn the_tracker_ignores_interrupts_from_its_start() {
    let _w = limit();
    let name = format!("mp-test-signals-{}", std::process::id());
    let shm = mp::SharedMemory::create(&name, 64).unwrap();
    let tracker = mp::__private::resource_tracker_pid().expect("connected to a tracker");
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `kill` sends a signal; no memory is involved.
        assert_eq!(unsafe { libc::kill(tracker as i32, signal) }, 0);
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        assert!(!mp_tests::gone(tracker), "the tracker died of an interrupt");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(shm);
    assert!(shm_names(&name).is_empty());
}
