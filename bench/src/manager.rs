//! `manager` benchmark: a blocking proxy round trip (against a raw Unix-socket RPC to another
//! process: the cross-CPU wake-up floor), two processes appending to one shared list, and
//! batched appends against Python's per-item rate. Python's side is `python/manager.py`, run
//! right before in the same process tree.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use crate::Row;

#[mp::worker]
fn append_many(list: mp::ListProxy<u64>, start: mp::Event, n: u64) -> mp::Result<()> {
    list.len()?; // connected before the clock starts
    start.wait();
    for i in 0..n {
        list.append(i)?;
    }
    Ok(())
}

/// Runs the measurements; `quick` shrinks them for CI smoke runs.
pub(crate) fn run(quick: bool, with_python: bool) -> mp::Result<Vec<Row>> {
    let (n_rtt, n_append, batches) = if quick {
        (2_000u32, 2_000u64, 10u64)
    } else {
        (50_000, 20_000, 100)
    };
    let py = if with_python {
        crate::run_python("manager.py", &[n_rtt.to_string(), n_append.to_string()])
    } else {
        None
    };
    let pyf = |k: &str| py.as_ref().and_then(|v| v[k].as_f64());

    // 1. Round trip: `len` of a list, against a raw 8-byte echo over a socketpair to another
    //    process (blocking reads: the wake-up a request/response pays on each side).
    let manager = mp::Manager::new()?;
    let list = manager.list::<u64>()?;
    let rtt = crate::mean(n_rtt, || {
        list.len().unwrap();
    });
    let (here, there) = mp::pipe::<u64>()?;
    let mut echo = mp::spawn(crate::raw_echo, there)?;
    let mut raw = UnixStream::from(OwnedFd::from(here));
    let mut buf = [0u8; 8];
    let raw_rtt = crate::mean(n_rtt, || {
        raw.write_all(&buf).unwrap();
        raw.read_exact(&mut buf).unwrap();
    });
    drop(raw);
    echo.join()?;

    // 2. Two processes appending single items to one list.
    let shared = manager.list::<u64>()?;
    let start = mp::Event::new()?;
    let mut children: Vec<_> = (0..2)
        .map(|_| mp::spawn(append_many, (shared.clone(), start.clone(), n_append)))
        .collect::<mp::Result<_>>()?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let t = Instant::now();
    start.set();
    for c in &mut children {
        c.join()??;
    }
    let two = (2 * n_append) as f64 / t.elapsed().as_secs_f64();
    assert_eq!(shared.len()?, 2 * n_append as usize);

    // 3. Batched appends: `extend` with 10 000 items per call.
    let batched = manager.list::<u64>()?;
    let batch: Vec<u64> = (0..10_000).collect();
    let t = Instant::now();
    for _ in 0..batches {
        batched.extend(batch.iter().copied())?;
    }
    let per_item = t.elapsed().as_secs_f64() / (batches * 10_000) as f64;
    assert_eq!(batched.len()?, (batches * 10_000) as usize);

    Ok(vec![
        Row {
            what: "proxy round trip",
            unit: "µs",
            mp: rtt * 1e6,
            python: pyf("proxy_rtt_s").map(|s| s * 1e6),
            floor: Some(("raw unix RPC", raw_rtt * 1e6)),
            lower_is_better: true,
        },
        Row {
            what: "2 procs append",
            unit: "ops/s",
            mp: two,
            python: pyf("two_appenders_ops_per_s"),
            floor: None,
            lower_is_better: false,
        },
        Row {
            what: "batched append/item",
            unit: "µs",
            mp: per_item * 1e6,
            python: pyf("append_per_item_s").map(|s| s * 1e6),
            floor: None,
            lower_is_better: true,
        },
    ])
}
