//! `mpi` benchmark (feature `mpi`): the MPI backend against the local pool on one host, side
//! by side: per-task overhead of `apply` and a 1 M-item `map` over 2 worker ranks against
//! `Pool::new(2)`, and start-up of `mpirun -n 3` (a pool on the ranks, one task) against a local
//! `Pool::new(2)` (one task). Started outside MPI, it measures start-up and then runs itself
//! under `mpirun --oversubscribe -n 3` for the rest (set `OMPI_ALLOW_RUN_AS_ROOT=1` and
//! `OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1` as root).

use std::process::Command;
use std::time::Instant;

use crate::Row;

#[mp::worker]
fn square(n: u64) -> u64 {
    n * n
}

fn mpi_pool() -> mp::Result<mp::Pool> {
    mp::Pool::builder().backend(mp::Backend::Mpi).build()
}

fn local_pool() -> mp::Result<mp::Pool> {
    mp::Pool::builder()
        .backend(mp::Backend::Local)
        .processes(2)
        .build()
}

/// The rows measured on rank 0 of `mpirun -n 3`.
fn on_ranks(quick: bool) -> mp::Result<Vec<Row>> {
    let (n_map, n_apply, reps) = if quick {
        (100_000u64, 200u32, 1)
    } else {
        (1_000_000, 2_000, 3)
    };
    let mut rows = Vec::new();
    let measure = |pool: &mp::Pool| -> mp::Result<(f64, f64)> {
        let apply = crate::mean(n_apply, || {
            pool.apply(square, 3).unwrap();
        });
        pool.map(square, 0..n_map)?;
        let mut best = f64::MAX;
        for _ in 0..reps {
            let t = Instant::now();
            let out = pool.map(square, 0..n_map)?;
            best = best.min(t.elapsed().as_secs_f64());
            assert_eq!(out[n_map as usize - 1], (n_map - 1) * (n_map - 1));
        }
        Ok((apply, best * 1_000_000.0 / n_map as f64))
    };
    let (r_apply, r_map) = measure(&mpi_pool()?)?;
    let (l_apply, l_map) = measure(&local_pool()?)?;
    rows.push(Row {
        what: "apply round trip, 2 ranks",
        unit: "µs",
        mp: r_apply * 1e6,
        python: None,
        floor: Some(("local pool(2)", l_apply * 1e6)),
        lower_is_better: true,
    });
    rows.push(Row {
        what: "map 1M squares, 2 ranks",
        unit: "ms",
        mp: r_map * 1e3,
        python: None,
        floor: Some(("local pool(2)", l_map * 1e3)),
        lower_is_better: true,
    });
    Ok(rows)
}

/// Runs the benchmark: start-up here, the rest under `mpirun`.
pub(crate) fn run(quick: bool) -> mp::Result<Vec<Row>> {
    if mp::mpi::active() {
        if std::env::args().any(|a| a == "--startup-only") {
            mpi_pool()?.apply(square, 1)?;
            return Ok(Vec::new());
        }
        return on_ranks(quick);
    }
    let exe = std::env::current_exe().map_err(mp::Error::from)?;
    let reps = if quick { 2 } else { 5 };
    let mpirun = |extra: &[&str]| -> mp::Result<std::process::Output> {
        Command::new("mpirun")
            .args(["--oversubscribe", "-n", "3"])
            .arg(&exe)
            .arg("mpi")
            .args(extra)
            .output()
            .map_err(mp::Error::from)
    };
    let mut startup = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        let out = mpirun(&["--startup-only"])?;
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            return Err(mp::Error::InvalidArgument("mpirun -n 3 failed".into()));
        }
        startup = startup.min(t.elapsed().as_secs_f64());
    }
    let mut local = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        local_pool()?.apply(square, 1)?;
        local = local.min(t.elapsed().as_secs_f64());
    }
    let inner = mpirun(if quick { &["--quick"] } else { &[] })?;
    print!("{}", String::from_utf8_lossy(&inner.stdout));
    if !inner.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&inner.stderr));
    }
    Ok(vec![Row {
        what: "start-up: mpirun -n 3, pool, one task",
        unit: "ms",
        mp: startup * 1e3,
        python: None,
        floor: Some(("local pool(2)", local * 1e3)),
        lower_is_better: true,
    }])
}
