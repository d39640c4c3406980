//! `ShareableList` (attach by name across processes, the layout read from the block, fixed
//! slot capacities) and `SharedMemoryManager` (every name it made is removed at shutdown, on
//! drop, and when its process is killed).
mp::guard!();

use std::time::{Duration, Instant};

use mp::{Error, Queue, ShareableItem, ShareableList, SharedMemory, SharedMemoryManager};

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(60))
}

fn exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm")
        .join(name.trim_start_matches('/'))
        .exists()
}

#[mp::worker]
fn edit_by_name(name: String) -> mp::Result<Vec<ShareableItem>> {
    let list = ShareableList::open(&name)?;
    let before = list.to_vec()?;
    list.set(0, 100)?;
    list.set(1, false)?;
    list.set(3, "grün")?; // 5 bytes, in an 8-byte slot
    list.set(4, ShareableItem::None)?;
    // Too long for its slot: a clear error, the slot unchanged.
    let err = list.set(3, "much too long for this slot").unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    Ok(before)
}

#[test]
fn another_process_attaches_by_name_and_edits_in_place() {
    let _w = limit();
    let name = format!("mp-test-list-{}", std::process::id());
    let items = [
        ShareableItem::Int(-7),
        true.into(),
        2.25.into(),
        "howdy".into(),
        b"\x00\x01".as_slice().into(),
    ];
    let list = ShareableList::create(&name, items.clone()).unwrap();
    assert_eq!(list.format(), "q ? d 8s 8b");
    let before = mp::spawn(edit_by_name, name.clone())
        .unwrap()
        .join_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap();
    assert_eq!(before, items);
    assert_eq!(
        list.to_vec().unwrap(),
        [
            ShareableItem::Int(100),
            ShareableItem::Bool(false),
            ShareableItem::Float(2.25),
            ShareableItem::Str("grün".into()),
            ShareableItem::None,
        ]
    );
    assert_eq!(list.format(), "q ? d 8s x");
    assert_eq!(list.count(&ShareableItem::None).unwrap(), 1);
    assert_eq!(list.index(&2.25.into()).unwrap(), Some(2));
    assert!(matches!(
        list.get(5),
        Err(Error::OutOfRange { index: 5, len: 5 })
    ));
    drop(list);
    assert!(!exists(&name), "the creator removes the name");
}

#[test]
fn a_block_that_is_not_a_list_is_refused() {
    let _w = limit();
    let name = format!("mp-test-notalist-{}", std::process::id());
    let _shm = SharedMemory::create(&name, 4096).unwrap();
    let err = ShareableList::open(&name).unwrap_err();
    assert!(
        err.to_string().contains("does not hold a shareable list"),
        "{err}"
    );
}

#[mp::worker]
fn sum_list(list: ShareableList) -> mp::Result<i64> {
    let mut total = 0;
    for item in list.to_vec()? {
        if let ShareableItem::Int(v) = item {
            total += v;
        }
    }
    list.set(0, total)?;
    Ok(total)
}

#[test]
fn a_list_travels_as_an_argument() {
    let _w = limit();
    let list = ShareableList::new((1..=4).map(|i: i64| i.into())).unwrap();
    let total = mp::spawn(sum_list, list.clone())
        .unwrap()
        .join_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap();
    assert_eq!(total, 10);
    assert_eq!(list.get(0).unwrap(), ShareableItem::Int(10));
}

#[mp::worker]
fn attach_all(names: Vec<String>) -> mp::Result<usize> {
    for name in &names {
        SharedMemory::open(name)?.write_at(0, &[1])?;
    }
    Ok(names.len())
}

#[test]
fn the_manager_removes_every_name_at_shutdown_and_on_drop() {
    let _w = limit();
    let smm = SharedMemoryManager::new();
    let shm = smm.shared_memory(4096).unwrap();
    let list = smm.shareable_list([1.into(), "x".into()]).unwrap();
    let names = smm.names();
    assert_eq!(names.len(), 2);
    assert!(names.iter().all(|n| exists(n)));
    let attached = mp::spawn(attach_all, names.clone())
        .unwrap()
        .join_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap();
    assert_eq!(attached, 2);
    smm.shutdown().unwrap();
    assert!(names.iter().all(|n| !exists(n)), "{names:?}");
    // The mappings held here live on; new blocks are refused.
    shm.write_at(0, &[9]).unwrap();
    assert_eq!(list.get(1).unwrap(), ShareableItem::Str("x".into()));
    assert!(matches!(smm.shared_memory(8), Err(Error::Closed)));
    smm.shutdown().unwrap();

    let smm = SharedMemoryManager::new();
    let kept = smm.shared_memory(64).unwrap();
    let name = kept.name().unwrap().to_owned();
    drop(smm);
    assert!(!exists(&name), "drop unlinks even while a handle lives");
}

#[mp::worker]
fn make_then_die(names: Queue<String>) {
    let smm = SharedMemoryManager::new();
    let _shm = smm.shared_memory(1 << 16).unwrap();
    let _list = smm.shareable_list(["payload".into()]).unwrap();
    for name in smm.names() {
        names.put(name).unwrap();
    }
    names.shutdown();
    std::process::abort(); // no drop, no shutdown: the tracker must clean up
}

#[test]
fn a_killed_managers_names_are_removed_by_the_tracker() {
    let _w = limit();
    let q = Queue::new().unwrap();
    let mut p = mp::spawn(make_then_die, q.clone()).unwrap();
    let names: Vec<String> = q.iter().collect::<mp::Result<_>>().unwrap();
    assert_eq!(names.len(), 2);
    assert!(p.join_timeout(Duration::from_secs(10)).is_err());
    let start = Instant::now();
    while names.iter().any(|n| exists(n)) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "names left behind: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
