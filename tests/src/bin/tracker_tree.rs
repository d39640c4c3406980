//! The resource tracker of a fresh process tree: the first argument picks the scenario.
//!
//! * `shared <prefix>`: a child creates a named segment first, then the parent does: both are
//!   served by the same tracker (one per tree, whoever starts it).
//! * `restart <prefix>`: the tracker is killed; the next create starts a new one, which learns
//!   every name this process holds, and removes them all (with a report naming each) when
//!   this process ends without removing them.

use std::time::{Duration, Instant};

#[mp::worker]
fn create_and_wait(name: String, pids: mp::Queue<u32>, done: mp::Event) -> mp::Result<()> {
    let _shm = mp::SharedMemory::create(&name, 64)?;
    let tracker = mp::__private::resource_tracker_pid().expect("connected to a tracker");
    pids.put(tracker)?;
    done.wait();
    Ok(())
}

fn run() -> mp::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let prefix = &args[2];
    match args[1].as_str() {
        "shared" => {
            let pids = mp::Queue::new()?;
            let done = mp::Event::new()?;
            let mut child = mp::spawn(
                create_and_wait,
                (format!("{prefix}-child"), pids.clone(), done.clone()),
            )?;
            let childs_tracker = pids.get_timeout(Duration::from_secs(20))?;
            let _shm = mp::SharedMemory::create(&format!("{prefix}-parent"), 64)?;
            let mine = mp::__private::resource_tracker_pid().expect("connected");
            done.set();
            child.join()??;
            assert_eq!(mine, childs_tracker, "two trackers in one process tree");
            println!("tracker {mine}");
        }
        "restart" => {
            let first = mp::SharedMemory::create(&format!("{prefix}-a"), 64)?;
            let tracker = mp::__private::resource_tracker_pid().expect("connected");
            rustix::process::kill_process(
                rustix::process::Pid::from_raw(tracker as i32).unwrap(),
                rustix::process::Signal::KILL,
            )
            .unwrap();
            let start = Instant::now();
            while !mp_tests::gone(tracker) {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "tracker not killed"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            let second = mp::SharedMemory::create(&format!("{prefix}-b"), 64)?;
            let replaced = mp::__private::resource_tracker_pid().expect("connected");
            assert_ne!(replaced, tracker);
            println!("tracker {replaced}");
            // Leave both behind, as a process that dies would.
            std::mem::forget((first, second));
            std::process::exit(0);
        }
        other => panic!("unknown scenario {other:?}"),
    }
    Ok(())
}

mp::main!(run);
