//! Descriptors between processes: a file opened by the parent, read in the child, as a worker
//! argument (`mp::connection::Fd<File>`), inside a message (`#[serde(with =
//! "mp::connection::fd")]`) and with `send_fd`/`recv_fd`, at any descriptor number; a network
//! connection refuses them.
mp::guard!();

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use mp::connection::Fd;
use mp::{Connection, Error};
use serde::{Deserialize, Serialize};

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(30))
}

/// A file with `text` in it and no name (unlinked at once), opened read-write.
fn anonymous_file(text: &str) -> File {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("mp-test-fd-{}-{n}", std::process::id()));
    let mut file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

fn read_from_start(file: &mut File) -> String {
    file.rewind().unwrap();
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    text
}

#[mp::worker]
fn read_argument(file: Fd<File>) -> String {
    let mut file = file.into_inner();
    read_from_start(&mut file)
}

#[test]
fn a_file_opened_by_the_parent_is_read_in_the_child() {
    let _w = limit();
    let file = anonymous_file("written by the parent");
    let mut p = mp::spawn(read_argument, Fd(file)).unwrap();
    assert_eq!(p.join().unwrap(), "written by the parent");
}

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    label: String,
    #[serde(with = "mp::connection::fd")]
    input: File,
    extra: Vec<Fd<OwnedFd>>,
}

#[mp::worker]
fn read_jobs(conn: Connection<String, Job>) -> mp::Result<()> {
    while let Ok(mut job) = conn.recv() {
        let mut text = read_from_start(&mut job.input);
        for fd in job.extra {
            text.push('|');
            text.push_str(&read_from_start(&mut File::from(fd.0)));
        }
        conn.send(format!("{}: {text}", job.label))?;
    }
    Ok(())
}

#[test]
fn files_inside_messages_cross_a_pipe_at_any_descriptor_number() {
    let _w = limit();
    let (here, there) = Connection::<Job, String>::pair().unwrap();
    let mut p = mp::spawn(read_jobs, there).unwrap();
    for round in 0..3 {
        let input = anonymous_file(&format!("input {round}"));
        // A descriptor far from the usual low numbers.
        let high: OwnedFd =
            rustix::io::fcntl_dupfd_cloexec(anonymous_file("high"), 700 + round).unwrap();
        assert!(high.as_raw_fd() >= 700);
        here.send(Job {
            label: format!("job {round}"),
            input,
            extra: vec![Fd(high), Fd(anonymous_file("second").into())],
        })
        .unwrap();
        assert_eq!(
            here.recv().unwrap(),
            format!("job {round}: input {round}|high|second")
        );
    }
    drop(here);
    p.join().unwrap().unwrap();
}

#[mp::worker]
fn receive_descriptors(conn: Connection<String>) -> mp::Result<()> {
    loop {
        let fd = match conn.recv_fd() {
            Ok(fd) => fd,
            Err(Error::Disconnected) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut file = File::from(fd);
        let text = read_from_start(&mut file);
        // The child writes through its own descriptor: the parent sees it in the same file.
        file.write_all(b" + child").unwrap();
        conn.send(text)?;
    }
}

#[test]
fn send_fd_and_recv_fd_between_processes() {
    let _w = limit();
    let (here, there) = mp::pipe::<String>().unwrap();
    let mut p = mp::spawn(receive_descriptors, there).unwrap();
    let mut file = anonymous_file("via send_fd");
    here.send_fd(&file).unwrap();
    assert_eq!(here.recv().unwrap(), "via send_fd");
    assert_eq!(read_from_start(&mut file), "via send_fd + child");
    // A typed value where a descriptor is expected is an error, not a hang.
    here.send("not a descriptor".to_string()).unwrap();
    drop(here);
    assert!(matches!(p.join().unwrap(), Err(Error::Decode(_))));
}

#[test]
fn a_network_connection_refuses_descriptors() {
    let _w = limit();
    let listener = mp::Listener::bind("127.0.0.1:0", b"fd test key").unwrap();
    let address = listener.address().clone();
    let server = std::thread::spawn(move || {
        let conn: Connection<u8> = listener.accept().unwrap();
        conn.recv()
    });
    let conn = mp::client::<u8, u8>(&address, b"fd test key").unwrap();
    let file = anonymous_file("stays here");
    assert!(matches!(conn.send_fd(&file), Err(Error::Encode(_))));
    conn.send(1).unwrap();
    assert_eq!(server.join().unwrap().unwrap(), 1);
}
