//! Manager proxies stored inside manager containers (issue 14, defect 3): a container holds a
//! reference to every object its values refer to for as long as it holds the value, so a
//! nested object outlives the handle it was stored from and can be read any number of times,
//! by any process; a value leaving a container gives its reference up (or to its reader).
mp::guard!();

use std::time::{Duration, Instant};

use mp_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);

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
        let got = outer.get(&"k".into()).unwrap().expect("the entry is there");
        assert_eq!(got.get(&"x".into()).unwrap(), Some(1), "read {round}");
        got.insert("x".into(), 1).unwrap();
    }
    // Reading it without using it, then reading again, works too.
    drop(outer.get(&"k".into()).unwrap());
    let again = outer.get(&"k".into()).unwrap().unwrap();
    assert_eq!(again.len().unwrap(), 1);
}
