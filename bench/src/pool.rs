//! `pool` benchmark: `Pool::map` of a million squares with the default chunk size, `apply`
//! round trips (against a raw socketpair echo), 64 CPU-bound tasks of ~20 ms (parallel
//! efficiency against rayon on the same kernel), and pool start-up. Python's side is
//! `python/pool.py`, run right before in the same process tree.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use rayon::prelude::*;

use crate::Row;

#[mp::worker]
fn square(n: u64) -> u64 {
    n * n
}

/// A CPU-bound kernel: `iters` rounds of xorshift, which the optimiser cannot skip.
#[mp::worker]
fn burn(iters: u64) -> u64 {
    let mut x: u64 = 88_172_645_463_325_252;
    for _ in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = std::hint::black_box(x);
    }
    x
}

/// Iterations of [`burn`] that take about `target` seconds on this machine.
fn calibrate(target: f64) -> u64 {
    let mut iters = 1_000u64;
    loop {
        let t = Instant::now();
        std::hint::black_box(burn(iters));
        let took = t.elapsed().as_secs_f64();
        if took > 0.05 {
            return (iters as f64 * target / took) as u64;
        }
        iters *= 2;
    }
}

/// Runs the measurements; `quick` shrinks them for CI smoke runs.
pub(crate) fn run(quick: bool, with_python: bool) -> mp::Result<Vec<Row>> {
    let workers = mp::cpu_count();
    let (n_map, n_apply, tasks, reps) = if quick {
        (100_000u64, 200u32, 16usize, 1u32)
    } else {
        (1_000_000, 5_000, 64, 5)
    };
    let py = if with_python {
        crate::run_python(
            "pool.py",
            &[
                n_map.to_string(),
                n_apply.to_string(),
                tasks.to_string(),
                workers.to_string(),
            ],
        )
    } else {
        None
    };
    let pyf = |k: &str| py.as_ref().and_then(|v| v[k].as_f64());

    // 1. Start-up: a pool of `workers`, one task, then drop.
    let t = Instant::now();
    for _ in 0..reps {
        let pool = mp::Pool::new(workers)?;
        pool.apply(square, 1)?;
    }
    let startup = t.elapsed().as_secs_f64() / f64::from(reps);

    let pool = mp::Pool::new(workers)?;
    // 2. map of a million squares, default chunk size, warm pool; best of `reps`. The warm-up
    // is a full-size map, as on the Python side: the first few large maps of a process fault
    // in fresh memory for the input and output vectors (until the allocator keeps such
    // blocks), which is start-up cost, not the map's.
    pool.map(square, 0..n_map)?;
    let mut map_s = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        let out = pool.map(square, 0..n_map)?;
        map_s = map_s.min(t.elapsed().as_secs_f64());
        assert_eq!(out[n_map as usize - 1], (n_map - 1) * (n_map - 1));
    }

    // 2b. imap_unordered of 10 k squares: a known-length input gets automatic chunks (Python's
    // default of one task a chunk costs several times more); best of `reps`.
    let mut imap_s = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        let n = pool.imap_unordered(square, 0..10_000u64).count();
        imap_s = imap_s.min(t.elapsed().as_secs_f64());
        assert_eq!(n, 10_000);
    }

    // 3. apply round trip, against a raw socketpair echo between two processes.
    let apply = crate::mean(n_apply, || {
        pool.apply(square, 3).unwrap();
    });
    let (here, there) = mp::pipe::<u64>()?;
    let mut echo = mp::spawn(crate::raw_echo, there)?;
    let mut raw = UnixStream::from(OwnedFd::from(here));
    let mut buf = [0u8; 8];
    let raw_rtt = crate::mean(n_apply, || {
        raw.write_all(&buf).unwrap();
        raw.read_exact(&mut buf).unwrap();
    });
    drop(raw);
    echo.join()?;

    // 4. CPU-bound tasks: sequential, the pool, and rayon on the same kernel.
    let iters = calibrate(0.02);
    let t = Instant::now();
    for _ in 0..tasks {
        std::hint::black_box(burn(iters));
    }
    let seq = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let out = pool.map(burn, vec![iters; tasks])?;
    let par = t.elapsed().as_secs_f64();
    assert_eq!(out.len(), tasks);
    let threads = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .expect("a rayon pool");
    let t = Instant::now();
    let out: Vec<u64> =
        threads.install(|| (0..tasks).into_par_iter().map(|_| burn(iters)).collect());
    let rayon_s = t.elapsed().as_secs_f64();
    assert_eq!(out.len(), tasks);
    let eff = |wall: f64| 100.0 * seq / (wall * workers as f64);

    Ok(vec![
        Row {
            what: "pool start+apply+drop",
            unit: "ms",
            mp: startup * 1e3,
            python: pyf("startup_s").map(|s| s * 1e3),
            floor: None,
            lower_is_better: true,
        },
        Row {
            what: "map 1M squares",
            unit: "ms",
            mp: map_s * 1e3 * (1_000_000.0 / n_map as f64),
            python: pyf("map_s").map(|s| s * 1e3 * (1_000_000.0 / n_map as f64)),
            floor: None,
            lower_is_better: true,
        },
        Row {
            what: "imap_unordered 10k squares",
            unit: "ms",
            mp: imap_s * 1e3,
            python: None,
            floor: None,
            lower_is_better: true,
        },
        Row {
            what: "apply round trip",
            unit: "µs",
            mp: apply * 1e6,
            python: pyf("apply_s").map(|s| s * 1e6),
            floor: Some(("raw socketpair rtt", raw_rtt * 1e6)),
            lower_is_better: true,
        },
        Row {
            what: "64 x 20 ms CPU tasks",
            unit: "% eff",
            mp: eff(par),
            python: pyf("cpu_efficiency").map(|e| e * 100.0),
            floor: Some(("rayon, same kernel", eff(rayon_s))),
            lower_is_better: false,
        },
    ])
}
