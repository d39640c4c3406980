//! Creating and dropping every kind of shared object 1 000 times leaks no descriptor and
//! leaves nothing in `/dev/shm`. One test in its own binary, so no other test opens
//! descriptors while the counts are compared.
mp::guard!();

use std::time::Duration;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn shm_names(prefix: &str) -> usize {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .count()
}

#[mp::worker]
fn touch(lock: mp::Lock, value: mp::Value<u64>, shm: mp::SharedMemory) -> mp::Result<()> {
    let _held = lock.acquire()?;
    *value.lock()? += 1;
    shm.write_at(0, &[1])
}

#[test]
#[mp::allow(spawn-in-loop)] // one child every 100 rounds, on purpose: handles that travel
fn a_thousand_create_drop_cycles_leak_nothing() {
    let _w = mp_tests::watchdog(Duration::from_secs(120));
    let prefix = format!("mp-test-leak-{}", std::process::id());
    // Warm up: the first named segment starts the resource tracker (one pipe, kept).
    drop(mp::SharedMemory::create(&format!("{prefix}-warm"), 64).unwrap());
    drop(
        mp::spawn(
            touch,
            (
                mp::Lock::new().unwrap(),
                mp::Value::new(0).unwrap(),
                mp::SharedMemory::new(8).unwrap(),
            ),
        )
        .unwrap()
        .join(),
    );
    let before = open_fds();
    for i in 0..1000 {
        let lock = mp::Lock::new().unwrap();
        let rlock = mp::RLock::new().unwrap();
        let sem = mp::BoundedSemaphore::new(2).unwrap();
        let event = mp::Event::new().unwrap();
        let cond = mp::Condition::new().unwrap();
        let barrier = mp::Barrier::new(1).unwrap();
        let value = mp::Value::new(i as u64).unwrap();
        let raw = mp::RawValue::new(i as u32).unwrap();
        let array = mp::Array::<f64>::new(1000).unwrap();
        let raw_array = mp::RawArray::<u8>::new(10).unwrap();
        let anon = mp::SharedMemory::new(4096).unwrap();
        let named = mp::SharedMemory::create(&format!("{prefix}-{i}"), 4096).unwrap();
        drop(lock.acquire().unwrap());
        drop(rlock.acquire().unwrap());
        drop(sem.acquire().unwrap());
        event.set();
        drop(cond.acquire().unwrap());
        barrier.wait().unwrap();
        value.set(1).unwrap();
        raw.set(1);
        array.lock_range(..10).unwrap().fill(1.0);
        raw_array.set(0, 1).unwrap();
        anon.write_at(0, &[1]).unwrap();
        named.write_at(0, &[1]).unwrap();
        if i % 100 == 0 {
            // Handles that travelled to a child and back are dropped like any other.
            mp::spawn(touch, (lock.clone(), value.clone(), anon.clone()))
                .unwrap()
                .join()
                .unwrap()
                .unwrap();
        }
    }
    assert_eq!(open_fds(), before, "descriptors leaked over 1000 cycles");
    assert_eq!(shm_names(&prefix), 0, "named segments left in /dev/shm");
}
