//! `mp::connection::wait` across processes over pipe ends, queues, listeners and process
//! sentinels: each becomes ready for what a child does, a timeout gives an empty list.
mp::guard!();

use std::time::{Duration, Instant};

use mp::connection::{Waitable, wait};
use mp::{Connection, Error, PipeWriter, Queue};

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(60))
}

#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug)]
enum Act {
    Pipe,
    Queue,
    Connect,
    Exit,
}

#[mp::worker]
fn act(
    orders: Connection<(), Act>,
    pipe: PipeWriter<u32>,
    queue: Queue<u32>,
    address: mp::Address,
) -> mp::Result<()> {
    let mut keep = Vec::new();
    loop {
        match orders.recv()? {
            Act::Pipe => pipe.send(1)?,
            Act::Queue => queue.put(2)?,
            Act::Connect => {
                // The key is the parent's, inherited: no key passes through this test.
                keep.push(mp::connection::client_with_process_key::<u8, u8>(&address)?)
            }
            Act::Exit => return Ok(()),
        }
    }
}

#[test]
fn each_kind_becomes_ready_for_what_a_child_does() {
    let _w = limit();
    let (orders, orders_there) = Connection::<Act, ()>::pair().unwrap();
    let (rx, tx) = mp::pipe_one_way::<u32>().unwrap();
    let queue = Queue::<u32>::new().unwrap();
    let listener = mp::Listener::bind_with_process_key("127.0.0.1:0").unwrap();
    let address = listener.address().clone();
    let mut p = mp::spawn(act, (orders_there, tx, queue.clone(), address)).unwrap();

    let ready = |timeout| {
        let objects: [&dyn Waitable; 4] = [&rx, &queue, &listener, &p];
        wait(&objects, timeout).unwrap()
    };
    let started = Instant::now();
    assert!(ready(Some(Duration::from_millis(100))).is_empty());
    assert!(started.elapsed() >= Duration::from_millis(100));

    orders.send(Act::Pipe).unwrap();
    assert_eq!(ready(Some(Duration::from_secs(20))), [0]);
    assert_eq!(rx.recv().unwrap(), 1);

    orders.send(Act::Queue).unwrap();
    assert_eq!(ready(Some(Duration::from_secs(20))), [1]);
    assert_eq!(queue.get().unwrap(), 2);

    orders.send(Act::Connect).unwrap();
    assert_eq!(ready(Some(Duration::from_secs(20))), [2]);
    let _conn: Connection<u8> = listener.accept().unwrap();

    orders.send(Act::Exit).unwrap();
    // The child's end of the pipe closes when it exits: both are ready then.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = ready(Some(Duration::from_secs(20)));
    while !seen.contains(&3) && Instant::now() < deadline {
        seen = ready(Some(Duration::from_secs(20)));
    }
    assert!(seen.contains(&3), "{seen:?}");
    p.join().unwrap().unwrap();
    // Still readable after join.
    assert!(wait(&[&p], Some(Duration::ZERO)).unwrap().contains(&0));
}

#[mp::worker]
fn sleep_long() {
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_killed_process_s_sentinel_is_ready() {
    let _w = limit();
    let mut p = mp::spawn(sleep_long, ()).unwrap();
    let sentinel = p.sentinel().unwrap();
    assert!(
        wait(&[&sentinel], Some(Duration::from_millis(50)))
            .unwrap()
            .is_empty()
    );
    p.kill().unwrap();
    assert_eq!(wait(&[&p], Some(Duration::from_secs(20))).unwrap(), [0]);
    assert!(matches!(p.join(), Err(Error::ProcessDied { .. })));
}

#[test]
fn not_started_and_nothing_to_wait_on_are_errors() {
    let _w = limit();
    let p = mp::Process::new(sleep_long, ());
    assert!(matches!(p.sentinel(), Err(Error::NotStarted)));
    assert!(matches!(
        wait(&[&p], Some(Duration::ZERO)),
        Err(Error::NotStarted)
    ));
    assert!(matches!(wait(&[], None), Err(Error::InvalidArgument(_))));
    assert!(
        wait(&[], Some(Duration::from_millis(1)))
            .unwrap()
            .is_empty()
    );
}

#[mp::worker]
fn shut_down_later(queue: Queue<u32>) {
    std::thread::sleep(Duration::from_millis(50));
    queue.shutdown();
}

#[test]
fn a_queue_shut_down_in_another_process_is_ready() {
    let _w = limit();
    let queue = Queue::<u32>::new().unwrap();
    let mut p = mp::spawn(shut_down_later, queue.clone()).unwrap();
    let objects: [&dyn Waitable; 1] = [&queue];
    // An empty queue that was shut down: `get` returns at once (with ShutDown), so it is ready.
    assert_eq!(wait(&objects, Some(Duration::from_secs(30))).unwrap(), [0]);
    assert!(matches!(queue.get(), Err(Error::ShutDown)));
    p.join().unwrap();
}
