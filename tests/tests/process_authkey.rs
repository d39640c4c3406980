//! The per-process auth key: inherited by children (also a key set with `set_authkey`, and
//! down two generations), the default of `Manager::builder()` and of the `_with_process_key`
//! listener and client, and read from `MP_AUTHKEY` in a main process.
mp::guard!();

use std::time::Duration;

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(60))
}

#[mp::worker]
fn key_of_child() -> Vec<u8> {
    mp::current_process().authkey().to_vec()
}

/// Its key, once told to end (until then it is an active child).
#[mp::worker]
fn key_when_told(told: mp::Connection<()>) -> Vec<u8> {
    let _ = told.recv();
    mp::current_process().authkey().to_vec()
}

#[mp::worker]
fn key_of_grandchild() -> mp::Result<Vec<u8>> {
    mp::spawn(key_of_child, ())?.join()
}

#[mp::worker]
fn use_the_manager(address: mp::Address) -> mp::Result<u64> {
    // The inherited key: nothing secret travels in the arguments.
    let manager = mp::Manager::connect(&address, mp::current_process().authkey())?;
    let answers = manager.named::<mp::QueueProxy<u64>>("answers")?;
    answers.get()
}

// One test: the key is process-wide, and setting it must not race other tests in this binary.
#[test]
fn children_inherit_the_key_and_servers_use_it_by_default() {
    let _w = limit();
    let first = mp::current_process().authkey().to_vec();
    assert!(first.len() >= 16, "{first:?}");
    assert_eq!(mp::current_process().authkey(), first, "drawn once");
    assert_eq!(mp::spawn(key_of_child, ()).unwrap().join().unwrap(), first);

    mp::current_process()
        .set_authkey(b"a key set by the program")
        .unwrap();
    assert_eq!(
        mp::spawn(key_of_child, ()).unwrap().join().unwrap(),
        b"a key set by the program"
    );
    assert_eq!(
        mp::spawn(key_of_grandchild, ())
            .unwrap()
            .join()
            .unwrap()
            .unwrap(),
        b"a key set by the program"
    );
    assert!(matches!(
        mp::current_process().set_authkey(b""),
        Err(mp::Error::InvalidArgument(_))
    ));

    // A manager started without a key uses this process's.
    let manager = mp::Manager::builder().start().unwrap();
    assert_eq!(manager.authkey(), b"a key set by the program");
    let answers = manager.named::<mp::QueueProxy<u64>>("answers").unwrap();
    answers.put(42).unwrap();
    let address = manager.address().clone();
    let mut p = mp::spawn(use_the_manager, address).unwrap();
    assert_eq!(p.join().unwrap().unwrap(), 42);
}

#[test]
fn only_the_current_process_key_can_be_set() {
    let _w = limit();
    let (tell, told) = mp::pipe::<()>().unwrap();
    let mut p = mp::spawn(key_when_told, told).unwrap();
    let mut children = mp::active_children();
    let child = children
        .iter_mut()
        .find(|c| Some(c.pid()) == p.pid())
        .unwrap();
    assert!(matches!(
        child.set_authkey(b"not mine to set"),
        Err(mp::Error::InvalidArgument(_))
    ));
    tell.send(()).unwrap();
    p.join().unwrap();
}

/// Run by `the_main_process_reads_mp_authkey` in a fresh process of this binary.
#[test]
fn probe_mp_authkey() {
    if let Ok(expected) = std::env::var("MP_TEST_EXPECT_AUTHKEY") {
        assert_eq!(mp::current_process().authkey(), expected.as_bytes());
    }
}

#[test]
fn the_main_process_reads_mp_authkey() {
    let _w = limit();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "probe_mp_authkey", "--test-threads=1"])
        .env("MP_AUTHKEY", "key from the environment")
        .env("MP_TEST_EXPECT_AUTHKEY", "key from the environment")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
