//! `Process`: Python's lifecycle (start, join, join with timeout, is_alive, exitcode, pid,
//! name, daemon, terminate, kill), errors for panics, signals and early exits, no zombies.
mp::guard!();

use std::time::{Duration, Instant};

use mp::{Error, ExitStatus};

#[mp::worker]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[mp::worker]
fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[mp::allow(exit-in-worker)] // the test is about early exits
#[mp::worker]
fn exit_with(code: i32) {
    std::process::exit(code);
}

#[mp::worker]
fn panics() -> String {
    let v: Vec<u8> = Vec::new();
    format!("{}", v[3])
}

#[mp::worker]
fn whoami() -> (String, u32, Option<u32>) {
    let me = mp::current_process();
    (me.name().to_owned(), me.pid(), me.parent_pid())
}

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(30))
}

#[test]
fn join_returns_the_value_and_exitcode_is_zero() {
    let _w = limit();
    let mut p = mp::Process::new(add, (40, 2));
    assert_eq!(p.pid(), None);
    assert_eq!(p.exitcode(), None);
    p.start().unwrap();
    assert!(p.pid().is_some());
    assert_eq!(p.join().unwrap(), 42);
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());
    assert!(matches!(p.join(), Err(Error::AlreadyJoined)));
    assert!(matches!(p.start(), Err(Error::AlreadyStarted)));
}

#[test]
fn names_and_identity_reach_the_child() {
    let _w = limit();
    let mut p = mp::Process::new(whoami, ());
    assert!(p.name().starts_with("Process-"), "{}", p.name());
    let mut named = mp::Process::new(whoami, ()).with_name("loader");
    p.start().unwrap();
    named.start().unwrap();
    let (name, pid, parent) = p.join().unwrap();
    assert_eq!(name, p.name());
    assert_eq!(Some(pid), p.pid());
    assert_eq!(parent, Some(std::process::id()));
    assert_eq!(named.join().unwrap().0, "loader");
}

#[test]
fn join_timeout_leaves_the_process_running() {
    let _w = limit();
    let mut p = mp::spawn(nap, 400).unwrap();
    assert!(matches!(
        p.join_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    p.join_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

#[test]
fn panic_carries_message_and_location() {
    let _w = limit();
    let mut p = mp::spawn(panics, ()).unwrap();
    match p.join() {
        Err(Error::WorkerPanicked {
            worker,
            message,
            location,
        }) => {
            assert!(worker.ends_with("::panics"), "{worker}");
            assert!(message.contains("index out of bounds"), "{message}");
            let location = location.expect("location");
            assert!(location.contains("process_lifecycle.rs"), "{location}");
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    assert_eq!(p.exitcode(), Some(1));
}

#[test]
fn kill_is_reported_with_the_signal() {
    let _w = limit();
    let mut p = mp::spawn(nap, 60_000).unwrap();
    p.kill().unwrap();
    let err = p.join().unwrap_err();
    assert!(
        matches!(
            err,
            Error::ProcessDied {
                status: ExitStatus::Signaled(9),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("SIGKILL"), "{err}");
    assert_eq!(p.exitcode(), Some(-9));
}

#[test]
fn terminate_sends_sigterm() {
    let _w = limit();
    let mut p = mp::spawn(nap, 60_000).unwrap();
    p.terminate().unwrap();
    assert!(matches!(p.join(), Err(Error::ProcessDied { .. })));
    assert_eq!(p.exitcode(), Some(-15));
}

#[test]
fn external_sigkill_is_noticed() {
    let _w = limit();
    let mut p = mp::spawn(nap, 60_000).unwrap();
    let pid = p.pid().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let err = p.join().unwrap_err();
    assert!(err.to_string().contains("was killed by SIGKILL"), "{err}");
}

#[test]
fn exit_code_without_result() {
    let _w = limit();
    let mut p = mp::spawn(exit_with, 3).unwrap();
    let err = p.join().unwrap_err();
    assert!(
        matches!(
            err,
            Error::ProcessDied {
                status: ExitStatus::Exited(3),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(p.exitcode(), Some(3));
}

#[test]
fn daemon_flag_reaches_the_child_which_cannot_spawn() {
    let _w = limit();
    #[mp::worker]
    fn try_spawn() -> String {
        match mp::spawn(add, (1, 1)) {
            Ok(_) => "spawned".into(),
            Err(e) => e.to_string(),
        }
    }
    let mut p = mp::Process::new(try_spawn, ()).with_daemon(true);
    assert!(p.is_daemon());
    p.start().unwrap();
    assert_eq!(
        p.join().unwrap(),
        "daemonic processes are not allowed to have children"
    );
}

#[test]
fn dropping_a_running_handle_leaves_no_zombie() {
    let _w = limit();
    let p = mp::spawn(nap, 100).unwrap();
    let pid = p.pid().unwrap();
    drop(p);
    let stat = format!("/proc/{pid}/stat");
    let start = Instant::now();
    while std::path::Path::new(&stat).exists() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "child {pid} was not reaped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn unguarded_binary_gets_a_clear_error() {
    let _w = limit();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_unguarded"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("mp::main!"), "{stdout}");
}

#[test]
fn main_macro_path_form_guards_and_returns() {
    let _w = limit();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_main_path"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "triple: 42");
}

#[test]
fn logging_reaches_stderr_from_the_child() {
    let _w = limit();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_log_child"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("[INFO/MainProcess "), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("Prozess 1 wird ausgeführt"))
        .expect("child record");
    assert!(line.starts_with("[INFO/Process-1 "), "{line}");
}

#[test]
fn many_children_at_once() {
    let _w = limit();
    let mut ps: Vec<_> = (0..16).map(|i| mp::spawn(add, (i, i)).unwrap()).collect();
    for (i, p) in ps.iter_mut().enumerate() {
        assert_eq!(p.join().unwrap(), 2 * i as i64);
    }
}

#[test]
fn a_child_follows_the_level_of_the_programs_own_subscriber() {
    let _w = limit();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_log_own_subscriber"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The parent's own subscriber shows the caller's location, not logging.rs.
    let parent = stderr
        .lines()
        .find(|l| l.contains("parent record"))
        .expect("parent record");
    assert!(parent.contains("log_own_subscriber.rs:"), "{parent}");
    // The child logs at the parent's level, in mp's format.
    let child = stderr
        .lines()
        .find(|l| l.contains("child debug record"))
        .unwrap_or_else(|| panic!("no child record: {stderr}"));
    assert!(child.starts_with("[DEBUG/Process-1 "), "{child}");
    assert!(!child.contains("caller="), "{child}");
    // Both processes say they are shutting down, as Python's do.
    assert_eq!(
        stderr.matches("process shutting down").count(),
        2,
        "{stderr}"
    );
}
