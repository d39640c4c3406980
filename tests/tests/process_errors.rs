//! What a user sees when something goes wrong in a child: the error as it happened (not
//! wrapped in another's text), `Debug` that says how to fix it, the child's panic printed on its
//! own stderr, and a daemon flag that cannot be changed once the child runs.
mp::guard!();

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use mp::Error;

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(60))
}

use mp_tests::Unencodable;

#[mp::worker]
fn unencodable_result() -> Unencodable {
    Unencodable
}

#[mp::worker]
fn unencodable_item(_x: u32) -> Unencodable {
    Unencodable
}

#[test]
fn an_unencodable_result_is_an_encode_error() {
    let _w = limit();
    let err = mp::spawn(unencodable_result, ())
        .unwrap()
        .join()
        .unwrap_err();
    match err {
        Error::Encode(message) => {
            assert_eq!(message, "this value refuses to be encoded")
        }
        other => panic!("expected Error::Encode, got {other:?}"),
    }
}

#[test]
fn an_unencodable_pool_result_is_an_encode_error_for_each_task() {
    let _w = limit();
    let pool = mp::Pool::new(1).unwrap();
    let results: Vec<_> = pool.chunksize(2).imap(unencodable_item, 0..4).collect();
    assert_eq!(results.len(), 4);
    for r in results {
        assert!(
            matches!(&r, Err(Error::Encode(m)) if m == "this value refuses to be encoded"),
            "{r:?}"
        );
    }
}

#[test]
fn debug_of_an_error_carries_its_message() {
    let debug = format!("{:?}", Error::MissingGuard);
    assert!(debug.starts_with("MissingGuard("), "{debug}");
    assert!(debug.contains("mp::main!"), "{debug}");
    let debug = format!("{:?}", Error::TooLarge { len: 5, limit: 4 });
    assert!(
        debug.starts_with("TooLarge(") && debug.contains("exceeds the limit of 4 bytes"),
        "{debug}"
    );
    let io = std::io::Error::from_raw_os_error(libc::EMFILE);
    let debug = format!(
        "{:?}",
        Error::Io {
            context: "cannot open".into(),
            source: std::sync::Arc::new(io)
        }
    );
    assert!(debug.contains("cannot open: "), "{debug}");
}

#[test]
fn a_poisoned_connection_repeats_its_error_without_nesting_it() {
    let _w = limit();
    let (mut raw, theirs) = UnixStream::pair().unwrap();
    let conn: mp::Connection<String> = mp::Connection::from(OwnedFd::from(theirs));
    raw.write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        .unwrap();
    let first = conn.recv().unwrap_err().to_string();
    let second = conn.recv().unwrap_err().to_string();
    assert_eq!(first, second);
    assert!(
        !second.contains("malformed frame: malformed frame"),
        "{second}"
    );
}

#[mp::worker]
fn nothing() {}

#[mp::worker]
fn new_process_is_daemon() -> bool {
    mp::Process::new(nothing, ()).is_daemon()
}

#[test]
fn the_daemon_flag_is_refused_once_started() {
    let _w = limit();
    let mut p = mp::Process::new(nothing, ());
    p.start().unwrap();
    assert!(matches!(p.set_daemon(true), Err(Error::AlreadyStarted)));
    assert!(!p.is_daemon());
    let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let p = p.with_daemon(true);
        p.is_daemon()
    }));
    assert!(started.is_err(), "daemon(true) after start was accepted");
}

#[test]
fn a_process_created_in_a_daemon_child_inherits_the_flag() {
    let _w = limit();
    let mut p = mp::Process::new(new_process_is_daemon, ()).with_daemon(true);
    p.start().unwrap();
    assert!(p.join().unwrap());
    let mut p = mp::spawn(new_process_is_daemon, ()).unwrap();
    assert!(!p.join().unwrap());
}

#[test]
fn a_child_prints_its_panic_once_on_its_stderr() {
    let _w = limit();
    for backtrace in ["0", "1"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_child_panic"))
            .env("RUST_BACKTRACE", backtrace)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let reports: Vec<_> = stderr
            .lines()
            .filter(|l| l.contains("worker `child_panic::boom` panicked at"))
            .collect();
        assert_eq!(reports.len(), 1, "{stderr}");
        assert!(reports[0].contains("src/bin/child_panic.rs:"), "{stderr}");
        assert_eq!(stderr.matches("boom with 7").count(), 1, "{stderr}");
        assert!(
            stderr.contains("panic payload of type `i32`: 42"),
            "{stderr}"
        );
        assert_eq!(
            stderr.contains("stack backtrace:"),
            backtrace == "1",
            "{stderr}"
        );
    }
}
