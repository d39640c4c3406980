//! `shared` benchmark: locked `Value` increments, an uncontended `Array` lock, filling a shared `f64` array from two
//! processes (against `memcpy` bandwidth), and handing a 100 MB array to a worker by handle
//! (against Python pickling it). Python's side is `python/shared.py`, run in the same process
//! tree right before.

use std::time::Instant;

use crate::Row;

#[mp::worker]
fn increments(counter: mp::Value<u64>, start: mp::Barrier, n: u64) -> mp::Result<f64> {
    start.wait()?;
    let t = Instant::now();
    for _ in 0..n {
        *counter.lock()? += 1;
    }
    Ok(t.elapsed().as_secs_f64())
}

#[mp::worker]
fn fill_half(data: mp::Array<f64>, start: mp::Barrier, half: usize) -> mp::Result<f64> {
    let n = data.len() / 2;
    let range = half * n..(half + 1) * n;
    // One untimed pass: the pages of a fresh shared segment are allocated on first touch.
    data.lock_range(range.clone())?.fill(0.0);
    start.wait()?;
    let t = Instant::now();
    let mut part = data.lock_range(range.clone())?;
    for (i, x) in part.iter_mut().enumerate() {
        *x = (range.start + i) as f64;
    }
    Ok(t.elapsed().as_secs_f64())
}

#[mp::worker]
fn receive_arrays(conn: mp::Connection<u64, mp::Array<u8>>) -> mp::Result<()> {
    while let Ok(array) = conn.recv() {
        // Touch the data so the hand-off is real: read one byte from the middle.
        let mid = array.get(array.len() / 2)?;
        conn.send(array.len() as u64 + u64::from(mid))?;
    }
    Ok(())
}

/// Runs the measurements; `quick` shrinks them for CI smoke runs.
pub(crate) fn run(quick: bool, with_python: bool) -> mp::Result<Vec<Row>> {
    let (n_incr, fill, handoff, rounds) = if quick {
        (20_000u64, 1_000_000usize, 10_000_000usize, 3u32)
    } else {
        (1_000_000, 10_000_000, 100_000_000, 20)
    };
    let py = if with_python {
        crate::run_python(
            "shared.py",
            &[n_incr.to_string(), fill.to_string(), handoff.to_string()],
        )
    } else {
        None
    };
    let pyf = |k: &str| py.as_ref().and_then(|v| v[k].as_f64());

    // 1. Locked increments: one process alone, then two contending.
    let counter = mp::Value::new(0u64)?;
    let t = Instant::now();
    for _ in 0..n_incr {
        *counter.lock()? += 1;
    }
    let alone = t.elapsed().as_secs_f64() / n_incr as f64;
    let start = mp::Barrier::new(2)?;
    let mut ps = (0..2)
        .map(|_| mp::spawn(increments, (counter.clone(), start.clone(), n_incr)))
        .collect::<mp::Result<Vec<_>>>()?;
    let mut wall: f64 = 0.0;
    for p in &mut ps {
        wall = wall.max(p.join()??);
    }
    assert_eq!(counter.get()?, 3 * n_incr, "lost increments");
    let contended = wall / (2 * n_incr) as f64;

    // 1b. An uncontended array lock: lock the whole array, write one element, unlock (the
    //     range-lock path, with no other holder).
    let cells = mp::Array::<u64>::new(16)?;
    let t = Instant::now();
    for _ in 0..n_incr {
        cells.lock()?[3] += 1;
    }
    let array_alone = t.elapsed().as_secs_f64() / n_incr as f64;
    assert_eq!(cells.get(3)?, n_incr, "lost array writes");

    // 2. Fill a shared f64 array from two processes, against memcpy of the same bytes.
    let data = mp::Array::<f64>::new(fill)?;
    let start = mp::Barrier::new(2)?;
    let mut ps = (0..2)
        .map(|half| mp::spawn(fill_half, (data.clone(), start.clone(), half)))
        .collect::<mp::Result<Vec<_>>>()?;
    let mut wall: f64 = 0.0;
    for p in &mut ps {
        wall = wall.max(p.join()??);
    }
    assert_eq!(data.get(fill - 1)?, (fill - 1) as f64);
    let bytes = (fill * 8) as f64;
    let fill_rate = bytes / wall / 1e6;
    let src = vec![1.0f64; fill];
    let mut dst = vec![0.0f64; fill];
    dst.copy_from_slice(&src); // warm the destination's pages
    let t = Instant::now();
    for _ in 0..rounds {
        dst.copy_from_slice(std::hint::black_box(&src));
    }
    std::hint::black_box(&dst);
    let memcpy_rate = bytes * f64::from(rounds) / t.elapsed().as_secs_f64() / 1e6;

    // 3. Hand a 100 MB array to a running worker and get an answer back.
    let big = mp::Array::<u8>::new(handoff)?;
    big.lock()?.fill(7);
    let (here, there) = mp::Connection::<mp::Array<u8>, u64>::pair()?;
    let mut child = mp::spawn(receive_arrays, there)?;
    here.send(big.clone()).map_err(mp::Error::from)?;
    here.recv()?; // warm-up
    let t = Instant::now();
    for _ in 0..rounds {
        here.send(big.clone()).map_err(mp::Error::from)?;
        assert_eq!(here.recv()?, handoff as u64 + 7);
    }
    let handoff_s = t.elapsed().as_secs_f64() / f64::from(rounds);
    drop(here);
    child.join()??;

    Ok(vec![
        Row {
            what: "Value += 1, 1 proc",
            unit: "µs/op",
            mp: alone * 1e6,
            python: pyf("incr_alone_s").map(|s| s * 1e6),
            floor: None,
            lower_is_better: true,
        },
        Row {
            what: "Value += 1, 2 procs",
            unit: "µs/op",
            mp: contended * 1e6,
            python: pyf("incr_contended_s").map(|s| s * 1e6),
            floor: None,
            lower_is_better: true,
        },
        Row {
            what: "Array lock+write, 1 pr",
            unit: "µs/op",
            mp: array_alone * 1e6,
            python: None,
            floor: None,
            lower_is_better: true,
        },
        Row {
            what: "fill f64 array, 2 pr",
            unit: "MB/s",
            mp: fill_rate,
            python: pyf("fill_bytes_per_s").map(|b| b / 1e6),
            floor: Some(("memcpy, 1 thread", memcpy_rate)),
            lower_is_better: false,
        },
        Row {
            what: "hand off 100 MB",
            unit: "ms",
            mp: handoff_s * 1e3,
            python: pyf("handoff_s").map(|s| s * 1e3),
            floor: None,
            lower_is_better: true,
        },
    ])
}
