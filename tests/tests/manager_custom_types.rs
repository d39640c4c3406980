//! Custom shared types (Python's `BaseManager.register`): a `Managed` type registered by name
//! on a `Manager`'s child server or an in-process `ManagerServer`, changed by typed
//! operations from several processes; unregistered names, undeclared types and panicking
//! operations are clear errors, and the server keeps serving.
mp::guard!();

use std::time::Duration;

use mp_tests::watchdog;
use serde::{Deserialize, Serialize};

const LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Serialize, Deserialize)]
struct Tally {
    total: u64,
    by: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
enum TallyOp {
    Add { who: u32, n: u64 },
    Total,
    Explode,
}

impl mp::Managed for Tally {
    type Op = TallyOp;
    type Reply = u64;

    fn apply(&mut self, op: TallyOp) -> u64 {
        match op {
            TallyOp::Add { who, n } => {
                self.total += n;
                self.by.push(who);
                self.total
            }
            TallyOp::Total => self.total,
            TallyOp::Explode => panic!("asked to explode"),
        }
    }
}
mp::managed!(Tally);

/// A type implementing `Managed` but not declared with `mp::managed!`.
#[derive(Default, Serialize, Deserialize)]
struct Undeclared;

impl mp::Managed for Undeclared {
    type Op = ();
    type Reply = ();
    fn apply(&mut self, (): ()) {}
}

#[mp::worker]
fn add_many(tally: mp::ManagedProxy<Tally>, who: u32, n: u32) -> mp::Result<()> {
    for _ in 0..n {
        tally.call(TallyOp::Add { who, n: 1 })?;
    }
    Ok(())
}

#[test]
fn a_registered_type_is_shared_by_processes() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::builder()
        .register::<Tally>("Tally")
        .start()
        .unwrap();
    let tally = manager.managed("Tally", Tally::default()).unwrap();
    let mut children: Vec<_> = (0..4)
        .map(|who| mp::spawn(add_many, (tally.clone(), who, 250)).unwrap())
        .collect();
    for c in &mut children {
        c.join().unwrap().unwrap();
    }
    assert_eq!(tally.call(TallyOp::Total).unwrap(), 1000);
    let snapshot = tally.get().unwrap();
    assert_eq!(snapshot.by.len(), 1000);
    for who in 0..4 {
        assert_eq!(snapshot.by.iter().filter(|&&w| w == who).count(), 250);
    }

    // A panicking operation fails that call; the object and the server stay usable.
    match tally.call(TallyOp::Explode) {
        Err(mp::Error::InvalidArgument(why)) => assert!(why.contains("asked to explode"), "{why}"),
        other => panic!("expected the panic as an error, got {other:?}"),
    }
    assert_eq!(tally.call(TallyOp::Total).unwrap(), 1000);

    // A name the server did not register.
    match manager.managed("Gauge", Tally::default()) {
        Err(mp::Error::InvalidArgument(why)) => assert!(why.contains("`Gauge`"), "{why}"),
        other => panic!("expected an unregistered-name error, got {other:?}"),
    }
    // A registered name asked for as another type.
    match manager.managed("Tally", Undeclared) {
        Err(mp::Error::InvalidArgument(why)) => assert!(why.contains("Undeclared"), "{why}"),
        other => panic!("expected a type mismatch, got {other:?}"),
    }
}

#[test]
fn an_undeclared_type_fails_at_start() {
    let _w = watchdog(LIMIT);
    match mp::Manager::builder().register::<Undeclared>("U").start() {
        Err(mp::Error::InvalidArgument(why)) => assert!(why.contains("mp::managed!"), "{why}"),
        other => panic!("expected a missing-declaration error, got {other:?}"),
    }
}

#[test]
fn an_in_process_server_serves_registered_types_to_remote_clients() {
    let _w = watchdog(LIMIT);
    let server = mp::ManagerServer::bind("127.0.0.1:0", b"custom key")
        .unwrap()
        .register::<Tally>("Tally");
    let address = server.address().clone();
    let serving = std::thread::spawn(move || server.serve_forever());
    let client = mp::Manager::connect(&address, b"custom key").unwrap();
    let tally = client.managed("Tally", Tally::default()).unwrap();
    mp::spawn(add_many, (tally.clone(), 7, 10))
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(tally.call(TallyOp::Total).unwrap(), 10);
    assert!(client.managed("Nope", Tally::default()).is_err());
    client.shutdown().unwrap();
    serving.join().unwrap().unwrap();
}
