//! Workers of an `mp::main!` program start processes of their own (a `Process`, a `Pool`, an
//! `Executor`, a `Manager`), as Python's do; a daemon's children are refused with
//! `DaemonWithChildren`; grandchildren are reaped and logged for `cargo mp run`.

use std::process::{Command, Output};
use std::time::Duration;

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(60))
}

fn nested(scenario: &str, env: &[(&str, &str)]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_nested"))
        .arg(scenario)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scenario {scenario}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn a_worker_of_a_guarded_main_can_spawn() {
    let _w = limit();
    nested("spawn", &[]);
}

#[test]
fn a_worker_can_use_a_pool() {
    let _w = limit();
    nested("pool", &[]);
}

#[test]
fn a_worker_can_use_an_executor() {
    let _w = limit();
    nested("executor", &[]);
}

#[test]
fn a_worker_can_start_a_manager() {
    let _w = limit();
    nested("manager", &[]);
}

#[test]
fn a_daemon_child_gets_daemon_with_children_not_missing_guard() {
    let _w = limit();
    nested("daemon", &[]);
}

/// A grandchild whose handle was dropped is waited for by its parent before that exits, and
/// every process of the tree shows in `cargo mp run`'s log (started, then reaped).
#[test]
fn grandchildren_are_reaped_and_logged() {
    let _w = limit();
    let log = std::env::temp_dir().join(format!("mp-nested-log-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let out = nested("detach", &[("MP_RUN_LOG", log.to_str().unwrap())]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let grandchild: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("grandchild "))
        .expect("the grandchild's pid")
        .parse()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let starts = text.lines().filter(|l| l.starts_with("start ")).count();
    assert_eq!(starts, 2, "{text}");
    assert!(
        text.lines().any(|l| l == format!("exit {grandchild} 0")),
        "the grandchild was not reaped by its parent:\n{text}"
    );
}
