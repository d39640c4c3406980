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

/// What this process's descriptors are open on (`/proc/self/fd`'s links: `pipe:[inode]`, ...).
/// Compared by file, not by number: a child started by the fork server holds the server's
/// descriptors (its bootstrap socket, say) at numbers that are free in the parent.
#[mp::worker]
fn open_files() -> Vec<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            files.push(target.to_string_lossy().into_owned());
        }
    }
    files
}

fn file_of(fd: i32) -> String {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    target.to_string_lossy().into_owned()
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
    let pipe = file_of(read.as_raw_fd());
    assert!(pipe.starts_with("pipe:"), "{pipe}");
    assert!(
        open_files().contains(&pipe),
        "the parent's own pipe is closed"
    );
    let in_child = mp::spawn(open_files, ()).unwrap().join().unwrap();
    assert!(!in_child.contains(&pipe), "{pipe} leaked into the child");
    let pool = mp::Pool::new(1).unwrap();
    let in_worker = pool.apply(open_files, ()).unwrap();
    assert!(
        !in_worker.contains(&pipe),
        "{pipe} leaked into a pool worker"
    );
    drop(write);
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
