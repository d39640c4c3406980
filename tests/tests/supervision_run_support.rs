//! What `cargo mp run` and `cargo mp workers` ask of a program: children's output prefixed
//! with their names, a log of processes started, ended and their peak memory, and the worker
//! registry printed before `main` runs.

use std::process::Command;

fn supervised() -> Command {
    Command::new(env!("CARGO_BIN_EXE_supervised"))
}

#[test]
fn children_output_is_prefixed_and_processes_are_logged() {
    let log = std::env::temp_dir().join(format!("mp-run-log-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let out = supervised()
        .env("MP_PREFIX_OUTPUT", "1")
        .env("MP_RUN_LOG", &log)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("main ran\n"), "{stdout}");
    assert!(
        stdout.contains("[Process-1] hello from child 1\n"),
        "{stdout}"
    );
    assert!(
        stderr.contains("[Process-1] warning from child 1\n"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("start ")).count(),
        2,
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("start ") && l.ends_with(" Process-1"))
    );
    let exits: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("exit "))
        .copied()
        .collect();
    assert_eq!(exits.len(), 2, "{text}");
    assert!(exits.iter().any(|l| l.ends_with(" 3")), "{text}");
    // The main process and the child that returned report their peak memory; the one that
    // called `process::exit` itself skipped the runtime's exit path.
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("peak ")).count(),
        2,
        "{text}"
    );
}

#[test]
fn pool_workers_output_is_prefixed_too() {
    let out = supervised()
        .arg("--pool")
        .env("MP_PREFIX_OUTPUT", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[Crunch-1] pool task 7\n"), "{stdout}");
}

#[test]
fn without_the_variables_output_is_untouched() {
    let out = supervised().output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("hello from child 1\n"));
    assert!(!stdout.contains("[Process-1]"), "{stdout}");
}

#[test]
fn the_registry_is_listed_before_main_runs() {
    let out = supervised().env("__MP_LIST_WORKERS", "1").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("main ran"),
        "user code did not run: {stdout}"
    );
    let workers: Vec<&str> = stdout.lines().collect();
    assert_eq!(workers.len(), 3, "{stdout}");
    assert!(
        workers
            .iter()
            .any(|w| w.starts_with("supervised::greet\tfn(u32)")),
        "{stdout}"
    );
    assert!(
        workers
            .iter()
            .all(|w| w.contains("tests/src/bin/supervised.rs:")),
        "{stdout}"
    );
}
