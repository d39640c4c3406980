//! Smoke test: a worker runs in a child and its result or panic comes back.
mp::guard!();

use std::time::Duration;

#[mp::worker]
fn square(x: u64) -> u64 {
    x * x
}

#[mp::worker]
fn boom(msg: String) -> u8 {
    panic!("{msg}")
}

#[test]
fn spawn_and_join_returns_value() {
    let _w = mp_tests::watchdog(Duration::from_secs(20));
    let mut p = mp::spawn(square, 12).unwrap();
    assert_eq!(p.join().unwrap(), 144);
    assert_eq!(p.exitcode(), Some(0));
}

#[test]
fn panic_comes_back() {
    let _w = mp_tests::watchdog(Duration::from_secs(20));
    let mut p = mp::spawn(boom, "kaputt".to_string()).unwrap();
    let err = p.join().unwrap_err();
    println!("{err}");
    assert!(matches!(err, mp::Error::WorkerPanicked { .. }));
    assert_eq!(p.exitcode(), Some(1));
}
