//! Cross-process tests of `Value`, `Array`, their raw variants and `SharedMemory`: memory
//! passed by handle, filled in place by several processes, and named segments cleaned up
//! even when their creator is killed.
mp::guard!();

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mp_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);

fn shm_names(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[mp::worker]
fn seed_worker(val: mp::Value<f64>, arr: mp::Array<i32>) -> mp::Result<()> {
    val.set(2.5)?;
    arr.set(0, 42)
}

#[test]
fn value_and_array_changes_in_a_child_are_seen_by_the_parent() {
    let _w = watchdog(LIMIT);
    let val = mp::Value::new(0.0).unwrap();
    let arr = mp::Array::from_slice(&[0, 1, 2]).unwrap();
    mp::spawn(seed_worker, (val.clone(), arr.clone()))
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(val.get().unwrap(), 2.5);
    assert_eq!(arr.to_vec().unwrap(), [42, 1, 2]);
}

#[mp::worker]
fn fill_part(data: mp::Array<f64>, part: usize, parts: usize) -> mp::Result<f64> {
    let chunk = data.len().div_ceil(parts);
    let start = (part * chunk).min(data.len());
    let end = (start + chunk).min(data.len());
    let mut slice = data.lock_range(start..end)?;
    let mut sum = 0.0;
    for (i, x) in slice.iter_mut().enumerate() {
        *x = (start + i) as f64;
        sum += *x;
    }
    Ok(sum)
}

#[test]
fn workers_fill_disjoint_parts_of_one_array_in_place() {
    let _w = watchdog(LIMIT);
    let n = 4_000_000;
    let data = mp::Array::<f64>::new(n).unwrap();
    let mut ps: Vec<_> = (0..4)
        .map(|part| mp::spawn(fill_part, (data.clone(), part, 4)).unwrap())
        .collect();
    let partial: f64 = ps.iter_mut().map(|p| p.join().unwrap().unwrap()).sum();
    let expected = (n as f64 - 1.0) * n as f64 / 2.0;
    assert_eq!(partial, expected);
    let all = data.lock().unwrap();
    assert!(all.iter().enumerate().all(|(i, &x)| x == i as f64));
}

#[mp::worker]
fn histogram(bins: mp::RawArray<u64>, seed: u64, samples: u32) {
    let mut x = seed;
    for _ in 0..samples {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bin = (x % bins.len() as u64) as usize;
        bins.atomic(bin).unwrap().fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn raw_array_atomics_count_exactly_across_processes() {
    let _w = watchdog(LIMIT);
    let bins = mp::RawArray::<u64>::new(16).unwrap();
    let mut ps: Vec<_> = (1..=4)
        .map(|seed| mp::spawn(histogram, (bins.clone(), seed, 100_000)).unwrap())
        .collect();
    for p in &mut ps {
        p.join().unwrap();
    }
    assert_eq!(bins.to_vec().iter().sum::<u64>(), 400_000);
}

#[mp::worker]
fn write_named(name: String, text: String) -> mp::Result<()> {
    // Attach by name, as an unrelated process would.
    let shm = mp::SharedMemory::open(&name)?;
    shm.write_at(0, text.as_bytes())
}

#[test]
fn named_segment_is_attached_by_name_and_removed_by_its_creator() {
    let _w = watchdog(LIMIT);
    let prefix = format!("mp-test-named-{}", std::process::id());
    let name = format!("{prefix}-a");
    let shm = mp::SharedMemory::create(&name, 4096).unwrap();
    assert!(matches!(
        mp::SharedMemory::create(&name, 4096),
        Err(mp::Error::Io { .. })
    ));
    mp::spawn(write_named, (name.clone(), "hi there".into()))
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    let mut buf = [0u8; 8];
    shm.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"hi there");
    assert_eq!(shm_names(&prefix), std::slice::from_ref(&name));
    drop(shm);
    assert!(shm_names(&prefix).is_empty());
}

#[mp::worker]
fn read_handle(shm: mp::SharedMemory) -> mp::Result<Vec<u8>> {
    let mut buf = vec![0; 4];
    shm.read_at(0, &mut buf)?;
    Ok(buf)
}

#[test]
fn shared_memory_handles_travel_and_attachers_never_unlink() {
    let _w = watchdog(LIMIT);
    let anon = mp::SharedMemory::new(16).unwrap();
    anon.write_at(0, b"anon").unwrap();
    let got = mp::spawn(read_handle, anon.clone())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(got.unwrap(), b"anon");

    let prefix = format!("mp-test-travel-{}", std::process::id());
    let named = mp::SharedMemory::create(&format!("{prefix}-b"), 16).unwrap();
    named.write_at(0, b"name").unwrap();
    let got = mp::spawn(read_handle, named.clone())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(got.unwrap(), b"name");
    // The child's handle dropped: the name is still there.
    assert_eq!(shm_names(&prefix).len(), 1);
    drop(named);
    assert!(shm_names(&prefix).is_empty());
}

#[test]
fn bad_sizes_names_and_indices_are_clear_errors() {
    let _w = watchdog(LIMIT);
    assert!(matches!(
        mp::SharedMemory::new(0),
        Err(mp::Error::InvalidArgument(_))
    ));
    assert!(matches!(
        mp::SharedMemory::create("a/b", 8),
        Err(mp::Error::InvalidArgument(_))
    ));
    assert!(matches!(
        mp::SharedMemory::create("", 8),
        Err(mp::Error::InvalidArgument(_))
    ));
    let shm = mp::SharedMemory::new(8).unwrap();
    assert!(matches!(
        shm.write_at(4, &[0; 5]),
        Err(mp::Error::OutOfRange { index: 9, len: 8 })
    ));
    let arr = mp::Array::<u8>::new(4).unwrap();
    assert!(matches!(
        arr.lock_range(2..5),
        Err(mp::Error::OutOfRange { .. })
    ));
    assert!(matches!(
        arr.set(4, 1),
        Err(mp::Error::OutOfRange { index: 4, len: 4 })
    ));
    let raw = mp::RawArray::<u8>::new(4).unwrap();
    assert!(matches!(
        raw.read(3, &mut [0; 2]),
        Err(mp::Error::OutOfRange { .. })
    ));
    let guard = arr.lock_range(0..2).unwrap();
    assert!(matches!(arr.lock_range(1..3), Err(mp::Error::Deadlock)));
    drop(guard);
}

#[mp::worker]
fn create_named_and_hang(name: String, ready: mp::Event) -> mp::Result<()> {
    let shm = mp::SharedMemory::create(&name, 1 << 20)?;
    shm.write_at(0, b"doomed")?;
    ready.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_killed_creator_leaves_nothing_in_dev_shm() {
    let _w = watchdog(LIMIT);
    let prefix = format!("mp-test-killed-{}", std::process::id());
    let ready = mp::Event::new().unwrap();
    let mut p = mp::spawn(
        create_named_and_hang,
        (format!("{prefix}-c"), ready.clone()),
    )
    .unwrap();
    ready.wait();
    assert_eq!(shm_names(&prefix).len(), 1);
    p.kill().unwrap();
    let _ = p.join();
    // The child's resource tracker removes the name once the child is gone.
    let start = Instant::now();
    while !shm_names(&prefix).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5), "segment leaked");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn kept_segments_outlive_their_handle_until_unlinked() {
    let _w = watchdog(LIMIT);
    let prefix = format!("mp-test-kept-{}", std::process::id());
    let name = format!("{prefix}-d");
    let shm = mp::SharedMemory::create(&name, 64).unwrap();
    shm.keep();
    drop(shm);
    assert_eq!(shm_names(&prefix).len(), 1);
    mp::SharedMemory::open(&name).unwrap().unlink().unwrap();
    assert!(shm_names(&prefix).is_empty());
}

#[derive(Clone, Copy, Debug, PartialEq, mp::Plain)]
#[repr(C)]
struct Particle {
    pos: [f64; 3],
    id: u32,
    alive: bool,
    _pad: [u8; 3],
}

#[mp::worker]
fn move_particle(p: mp::Value<Particle>) -> mp::Result<()> {
    p.update(|p| {
        p.pos[0] += 1.0;
        p.alive = true;
    })
}

#[test]
fn derived_plain_structs_live_in_shared_values() {
    let _w = watchdog(LIMIT);
    let p = mp::Value::new(Particle {
        pos: [1.0, 2.0, 3.0],
        id: 7,
        alive: false,
        _pad: [0; 3],
    })
    .unwrap();
    mp::spawn(move_particle, p.clone())
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    let got = p.get().unwrap();
    assert_eq!((got.pos, got.id, got.alive), ([2.0, 2.0, 3.0], 7, true));
}

#[mp::worker]
fn read_and_hold(data: mp::Array<u32>, held: mp::Event, release: mp::Event) -> mp::Result<u32> {
    let view = data.read_range(..)?;
    held.set();
    release.wait();
    Ok(view.iter().sum())
}

#[test]
fn readers_share_a_range_and_writers_wait_for_them() {
    let _w = watchdog(LIMIT);
    let data = mp::Array::from_slice(&[1u32, 2, 3, 4]).unwrap();
    let (held, release) = (mp::Event::new().unwrap(), mp::Event::new().unwrap());
    let mut p = mp::spawn(read_and_hold, (data.clone(), held.clone(), release.clone())).unwrap();
    held.wait();
    // Another reader of an overlapping range proceeds; a writer waits.
    assert_eq!(data.read_range(1..3).unwrap().iter().sum::<u32>(), 5);
    assert!(matches!(
        data.lock_range_timeout(3.., Duration::from_millis(20)),
        Err(mp::Error::Timeout)
    ));
    release.set();
    data.lock_range(3..).unwrap()[0] = 40;
    assert_eq!(p.join().unwrap().unwrap(), 10);
    assert_eq!(data.to_vec().unwrap(), [1, 2, 3, 40]);
}
