//! What a child inherits from its parent: only the descriptors `mp` hands it (Python's
//! `close_fds`), whatever the parent's standard streams are, and a name in `ps` that is the
//! program's, not `exe`.
mp::guard!();

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::time::Duration;

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(60))
}

#[mp::worker]
fn fd_is_open(fd: i32) -> bool {
    // SAFETY: `F_GETFD` only queries the descriptor's flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

#[mp::worker]
fn comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim_end()
        .to_owned()
}

#[test]
fn descriptors_without_close_on_exec_are_not_inherited() {
    let _w = limit();
    // A pipe made inheritable on purpose (no `O_CLOEXEC`), as a library might leave one.
    let (read, write) = rustix::pipe::pipe().unwrap();
    for fd in [read.as_raw_fd(), write.as_raw_fd()] {
        assert!(fd_is_open(fd), "the parent's own descriptor {fd} is closed");
        let open = mp::spawn(fd_is_open, fd).unwrap().join().unwrap();
        assert!(!open, "descriptor {fd} leaked into the child");
    }
    let pool = mp::Pool::new(1).unwrap();
    assert!(!pool.apply(fd_is_open, read.as_raw_fd()).unwrap());
}

/// A program started with its stdout and stderr closed gets those numbers back for its next
/// descriptors; its children must still start (and must not take an `mp` socket for stdout).
#[test]
fn a_program_with_its_standard_streams_closed_can_start_children() {
    let _w = limit();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nested"));
    cmd.arg("spawn");
    // SAFETY: `close` is async-signal-safe and the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(1);
            libc::close(2);
            Ok(())
        });
    }
    let status = cmd.status().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn children_are_named_after_the_program() {
    let _w = limit();
    let exe = std::env::current_exe().unwrap();
    let program = exe.file_name().unwrap().to_str().unwrap();
    let expected: String = program.chars().take(15).collect();
    let name = mp::spawn(comm, ()).unwrap().join().unwrap();
    assert_eq!(name, expected);
    let pool = mp::Pool::new(1).unwrap();
    assert_eq!(pool.apply(comm, ()).unwrap(), expected);
}
