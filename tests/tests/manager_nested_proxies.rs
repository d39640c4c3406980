//! Manager proxies stored inside manager containers (issue 14, defect 3): a container holds a
//! reference to every object its values refer to for as long as it holds the value, so a
//! nested object outlives the handle it was stored from and can be read any number of times,
//! by any process; a value leaving a container gives its reference up (or to its reader).
mp::guard!();

use std::time::{Duration, Instant};

use mp_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);
const KEY: &[u8] = b"nested proxies test key";

/// The exact report: a dict of dicts whose inner proxy was dropped after the insert.
#[test]
fn a_dict_in_a_dict_outlives_its_handle() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let outer = manager
        .dict::<String, mp::DictProxy<String, i64>>()
        .unwrap();
    let inner = manager.dict::<String, i64>().unwrap();
    inner.insert("x".into(), 1).unwrap();
    outer.insert("k".into(), inner).unwrap();
    // `inner` was moved into the insert and is gone: only the dict refers to the object now.
    for round in 0..3 {
        let got = outer.get("k").unwrap().expect("the entry is there");
        assert_eq!(got.get("x").unwrap(), Some(1), "read {round}");
        got.insert("x".into(), 1).unwrap();
        drop(got);
        // Let the server notice that handle's connection closing (before the fix, the
        // object went with it, and the next read failed).
        std::thread::sleep(Duration::from_millis(50));
    }
    // Reading it without using it, then reading again, works too.
    drop(outer.get("k").unwrap());
    std::thread::sleep(Duration::from_millis(50));
    let again = outer.get("k").unwrap().unwrap();
    assert_eq!(again.len().unwrap(), 1);
}

/// Waits until the server holds `n` objects (a dropped handle's connection closes, and the
/// server notices, a moment after the `drop`).
fn wait_for_count(manager: &mp::Manager, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let count = manager.object_count().unwrap();
        if count == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the server holds {count} objects, expected {n}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_list_of_lists_keeps_every_inner_list() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let outer = manager.list::<mp::ListProxy<u32>>().unwrap();
    for i in 0..3 {
        outer
            .append(manager.list_from([i, i + 10]).unwrap())
            .unwrap();
    }
    let ten = manager.list_from([10u32]).unwrap();
    outer.extend([ten.clone(), ten]).unwrap(); // the same list twice, two references
    wait_for_count(&manager, 5, "outer and four inner lists");
    for _ in 0..3 {
        let inner = outer.to_vec().unwrap();
        assert_eq!(inner.len(), 5);
        for (i, list) in inner.iter().take(3).enumerate() {
            let i = i as u32;
            assert_eq!(list.to_vec().unwrap(), [i, i + 10]);
        }
        assert_eq!(outer.get(4).unwrap().unwrap().to_vec().unwrap(), [10]);
    }
    // Appending through one read shows through the next.
    outer.get(0).unwrap().unwrap().append(99).unwrap();
    assert_eq!(
        outer.get(0).unwrap().unwrap().to_vec().unwrap(),
        [0, 10, 99]
    );
    // A proxy compares equal to its own stored encoding.
    let first = outer.get(0).unwrap().unwrap();
    assert!(outer.remove_item(&first).unwrap());
    drop(first);
    wait_for_count(
        &manager,
        4,
        "a removed inner list is freed with its last handle",
    );
    assert_eq!(outer.len().unwrap(), 4);
}

#[test]
fn a_value_holding_a_proxy() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let list = manager.list_from(["a".to_string()]).unwrap();
    let value = manager.value((7u32, Some(list))).unwrap();
    for _ in 0..3 {
        let (n, list) = value.get().unwrap();
        assert_eq!(n, 7);
        assert_eq!(list.unwrap().to_vec().unwrap(), ["a"]);
    }
    // An atomic update that keeps the proxy, then one that drops it.
    value.update(|(n, _)| *n += 1).unwrap();
    let (n, list) = value.get().unwrap();
    assert_eq!(n, 8);
    list.unwrap().append("b".into()).unwrap();
    assert_eq!(value.get().unwrap().1.unwrap().len().unwrap(), 2);
    wait_for_count(&manager, 2, "value and list");
    value.update(|(_, list)| *list = None).unwrap();
    wait_for_count(&manager, 1, "the list, dropped by the update");
}

#[mp::worker]
fn take_and_use(q: mp::QueueProxy<mp::ListProxy<u32>>) -> mp::Result<Vec<u32>> {
    let list = q.get()?;
    list.append(2)?;
    list.to_vec()
}

#[test]
fn a_queue_carries_a_proxy_to_another_process() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let q = manager.queue::<mp::ListProxy<u32>>().unwrap();
    let list = manager.list_from([1u32]).unwrap();
    q.put(list).unwrap(); // the sender's only handle goes into the queue
    wait_for_count(&manager, 2, "the queued item keeps the list");
    let got = mp::spawn(take_and_use, q.clone())
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(got, [1, 2]);
    // The getter's reference went with it.
    wait_for_count(&manager, 1, "the list is freed when its getter exits");
    // Many items, taken in one batch.
    q.put_many((0..5).map(|i| manager.list_from([i]).unwrap()))
        .unwrap();
    let taken = q.get_many(5).unwrap();
    for (i, list) in taken.iter().enumerate() {
        assert_eq!(list.to_vec().unwrap(), [i as u32]);
    }
    drop(taken);
    wait_for_count(&manager, 1, "taken lists freed with their handles");
}

#[test]
fn overwrite_remove_pop_and_clear_release_their_objects() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let dict = manager.dict::<u32, mp::ListProxy<u32>>().unwrap();
    let list = manager.list::<mp::ListProxy<u32>>().unwrap();
    let fresh = || manager.list::<u32>().unwrap();
    dict.update((0..4).map(|k| (k, fresh()))).unwrap();
    list.extend((0..4).map(|_| fresh())).unwrap();
    wait_for_count(&manager, 10, "two containers, eight lists");

    // Overwritten: the old value's object goes.
    assert!(dict.insert(0, fresh()).unwrap().is_some()); // the old one, returned and dropped
    list.set(0, fresh()).unwrap();
    wait_for_count(&manager, 10, "overwritten by new ones");
    // Removed, popped.
    drop(dict.remove(&1).unwrap().unwrap());
    drop(list.pop().unwrap().unwrap());
    drop(list.remove(0).unwrap());
    wait_for_count(&manager, 7, "removed and popped");
    // Taken out, the value lives on with its reader.
    let kept = dict.remove(&2).unwrap().unwrap();
    kept.append(5).unwrap();
    wait_for_count(&manager, 7, "a removed value still in use");
    drop(kept);
    wait_for_count(&manager, 6, "its last handle gone");
    // Cleared.
    dict.clear().unwrap();
    list.clear().unwrap();
    wait_for_count(&manager, 2, "cleared");
    // A compare-and-swap that removes an entry.
    dict.insert(9, fresh()).unwrap();
    dict.update_with(&9, |_| None).unwrap();
    wait_for_count(&manager, 2, "removed by update_with");
    // A container freed with its last handle frees what it holds, recursively.
    let deep = manager
        .list::<mp::DictProxy<u32, mp::ListProxy<u32>>>()
        .unwrap();
    let mid = manager.dict::<u32, mp::ListProxy<u32>>().unwrap();
    mid.insert(1, fresh()).unwrap();
    deep.append(mid).unwrap();
    wait_for_count(&manager, 5, "a three-level nest");
    drop(deep);
    wait_for_count(&manager, 2, "a freed container frees its contents");
}

#[test]
fn nesting_both_ways() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    // A dict in a list.
    let list = manager.list::<mp::DictProxy<String, u32>>().unwrap();
    let dict = manager.dict_from([("a".to_string(), 1u32)]).unwrap();
    list.append(dict).unwrap();
    // A list in a dict, created with it.
    let inner = manager.list_from([1u32, 2]).unwrap();
    let dict = manager.dict_from([("l".to_string(), inner)]).unwrap();
    for _ in 0..3 {
        let d = list.get(0).unwrap().unwrap();
        assert_eq!(d.get("a").unwrap(), Some(1));
        let l = dict.get("l").unwrap().unwrap();
        assert_eq!(l.to_vec().unwrap(), [1, 2]);
        let items = dict.items().unwrap();
        assert_eq!(items[0].1.len().unwrap(), 2);
        assert_eq!(dict.values().unwrap()[0].len().unwrap(), 2);
        assert_eq!(
            dict.get_many([&"l".to_string()]).unwrap()[0]
                .as_ref()
                .unwrap()
                .len()
                .unwrap(),
            2
        );
    }
    wait_for_count(&manager, 4, "two containers and their two objects");
    drop((list, dict));
    wait_for_count(&manager, 0, "everything freed");
}

#[mp::worker]
fn mutate_nested(
    outer: mp::DictProxy<String, mp::DictProxy<String, i64>>,
    more: mp::ListProxy<mp::ListProxy<i64>>,
    address: mp::Address,
) -> mp::Result<()> {
    let inner = outer.get("k")?.expect("the entry is there");
    inner.insert("from child".into(), 42)?;
    more.get(0)?.expect("the item is there").append(42)?;
    // A list created here outlives this process, held by the parent's list.
    let manager = mp::Manager::connect(&address, KEY)?;
    more.append(manager.list_from([7])?).map_err(|e| e.error)?;
    Ok(())
}

#[test]
fn a_reader_in_another_process_mutates_the_nested_object() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::builder().authkey(KEY).start().unwrap();
    let outer = manager
        .dict::<String, mp::DictProxy<String, i64>>()
        .unwrap();
    outer.insert("k".into(), manager.dict().unwrap()).unwrap();
    let more = manager.list::<mp::ListProxy<i64>>().unwrap();
    more.append(manager.list().unwrap()).unwrap();
    let args = (outer.clone(), more.clone(), manager.address().clone());
    mp::spawn(mutate_nested, args)
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    let inner = outer.get("k").unwrap().unwrap();
    assert_eq!(inner.get("from child").unwrap(), Some(42));
    assert_eq!(more.get(0).unwrap().unwrap().to_vec().unwrap(), [42]);
    assert_eq!(more.get(1).unwrap().unwrap().to_vec().unwrap(), [7]);
    wait_for_count(&manager, 5, "nothing freed by the child's exit");
}

/// A node of a structure that can refer to itself through the manager.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Node {
    Leaf(u32),
    List(mp::ListProxy<Node>),
    Dict(mp::DictProxy<u32, Node>),
}

#[test]
fn a_cycle_stays_until_the_server_stops() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    // A list that holds itself.
    let itself = manager.list::<Node>().unwrap();
    itself.append(Node::Leaf(1)).unwrap();
    itself.append(Node::List(itself.clone())).unwrap();
    let Some(Node::List(again)) = itself.get(1).unwrap() else {
        panic!("the list holds itself")
    };
    assert_eq!(again.len().unwrap(), 2);
    // A list and a dict that hold each other.
    let list = manager.list::<Node>().unwrap();
    let dict = manager.dict::<u32, Node>().unwrap();
    list.append(Node::Dict(dict.clone())).unwrap();
    dict.insert(0, Node::List(list.clone())).unwrap();
    // And an acyclic one beside them.
    let plain = manager.list::<Node>().unwrap();
    plain.append(Node::List(manager.list().unwrap())).unwrap();
    wait_for_count(&manager, 5, "five objects");
    drop((itself, again, list, dict, plain));
    // The acyclic objects go; the cycles stay (documented) until the server stops.
    wait_for_count(&manager, 3, "only the cycles are left");
    let started = Instant::now();
    manager.shutdown().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_dict_key_cannot_hold_a_proxy() {
    let _w = watchdog(LIMIT);
    let manager = mp::Manager::new().unwrap();
    let dict = manager.dict::<mp::ListProxy<u32>, u32>().unwrap();
    let e = dict.insert(manager.list().unwrap(), 1).unwrap_err();
    assert!(e.error.to_string().contains("dict key"), "{}", e.error);
    drop(e); // it handed the key back
    wait_for_count(&manager, 1, "the refused key's list is freed");
}
