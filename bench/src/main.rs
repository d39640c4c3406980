//! `cargo run --release -p mp-bench -- <foundation|bytes|shared|pool|manager|lint>`: mp against Python's
//! multiprocessing and the raw OS floor, measured side by side in one run; prints a table with
//! the ratios. `foundation`: processes, pipes, queues; `bytes`: large bytes and strings as
//! arguments and results, large queue items; `shared`: shared values and arrays; `pool`: `Pool` against
//! Python's `Pool` and rayon; `manager`: manager proxies against Python's `Manager`; `lint`: `cargo mp check` on a generated
//! 50 000-line workspace.
//!
//! Options: `--quick` (fewer iterations), `--no-python` (skip the Python side).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Instant;

use serde_bytes::ByteBuf;

#[mp::worker]
fn trivial() {}

#[mp::worker]
fn echo(conn: mp::Connection<u64>) {
    while let Ok(v) = conn.recv() {
        if conn.send(v).is_err() {
            return;
        }
    }
}

#[mp::worker]
pub(crate) fn raw_echo(conn: mp::Connection<u64>) {
    let mut s = UnixStream::from(OwnedFd::from(conn));
    let mut buf = [0u8; 8];
    while s.read_exact(&mut buf).is_ok() {
        if s.write_all(&buf).is_err() {
            return;
        }
    }
}

#[mp::worker]
fn produce_small(q: mp::Queue<u64>, n: u64) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

#[mp::worker]
fn produce_big(q: mp::Queue<ByteBuf>, n: u64, size: usize) {
    let payload = ByteBuf::from(vec![b'x'; size]);
    for _ in 0..n {
        q.put(payload.clone()).unwrap();
    }
}

#[mp::worker]
fn raw_bulk(conn: mp::Connection<u64>, n: u64, size: usize) {
    let mut s = UnixStream::from(OwnedFd::from(conn));
    let payload = vec![b'x'; size];
    for _ in 0..n {
        s.write_all(&payload).unwrap();
    }
}

struct Sizes {
    spawn: u32,
    python_spawn: u32,
    rtt: u32,
    small: u64,
    big: u64,
}

mod bytes;
mod lint;
mod lint_corpus;
mod manager;
#[cfg(feature = "mpi")]
mod mpi;
mod pool;
mod shared;

struct Row {
    what: &'static str,
    unit: &'static str,
    mp: f64,
    python: Option<f64>,
    floor: Option<(&'static str, f64)>,
    lower_is_better: bool,
}

pub(crate) fn mean<F: FnMut()>(n: u32, mut f: F) -> f64 {
    f(); // warm-up
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() / f64::from(n)
}

/// Runs `bench/python/<script>` with `args`; its stdout is one JSON object of measurements.
/// `None` (with the reason on stderr) when Python is missing or the script fails.
pub(crate) fn run_python(script: &str, args: &[String]) -> Option<serde_json::Value> {
    let path = format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3").arg(path).args(args).output().ok()?;
    if !out.status.success() {
        eprintln!(
            "python side failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn python(sizes: &Sizes) -> Option<serde_json::Value> {
    run_python(
        "foundation.py",
        &[
            sizes.python_spawn.to_string(),
            sizes.rtt.to_string(),
            sizes.small.to_string(),
            sizes.big.to_string(),
        ],
    )
}

fn foundation(sizes: &Sizes, with_python: bool) -> mp::Result<Vec<Row>> {
    let py = if with_python { python(sizes) } else { None };
    let pyf = |k: &str| py.as_ref().and_then(|v| v[k].as_f64());

    // 1. spawn + join of a trivial worker, against fork+exec+wait of /bin/true.
    let mp_spawn = mean(sizes.spawn, || {
        mp::spawn(trivial, ()).unwrap().join().unwrap();
    });
    // The same per start method (this process is single-threaded here, as `fork` requires;
    // the fork server's own start is in the warm-up, not in the figure).
    let by_method = |method: mp::StartMethod| {
        mean(sizes.spawn, || {
            let mut p = mp::Process::new(trivial, ()).with_start_method(method);
            p.start().unwrap();
            p.join().unwrap();
        })
    };
    let mp_forkserver = by_method(mp::StartMethod::ForkServer);
    let mp_fork = by_method(mp::StartMethod::Fork);
    let raw_exec = mean(sizes.spawn, || {
        Command::new("/bin/true").status().unwrap();
    });

    // 2. pipe round trip of a small message, against a raw socketpair echo.
    let (here, there) = mp::pipe::<u64>()?;
    let mut child = mp::spawn(echo, there)?;
    let mp_rtt = mean(sizes.rtt, || {
        here.send(1).unwrap();
        here.recv().unwrap();
    });
    drop(here);
    child.join()?;
    let (here, there) = mp::pipe::<u64>()?;
    let mut child = mp::spawn(raw_echo, there)?;
    let mut raw = UnixStream::from(OwnedFd::from(here));
    let mut buf = [0u8; 8];
    let raw_rtt = mean(sizes.rtt, || {
        raw.write_all(&buf).unwrap();
        raw.read_exact(&mut buf).unwrap();
    });
    drop(raw);
    child.join()?;

    // 3. queue throughput of small messages, one process to another.
    let q = mp::Queue::new()?;
    let start = Instant::now();
    let mut child = mp::spawn(produce_small, (q.clone(), sizes.small))?;
    for _ in 0..sizes.small {
        q.get()?;
    }
    let small_rate = sizes.small as f64 / start.elapsed().as_secs_f64();
    child.join()?;

    // 4. 1 MiB messages, against a raw socket stream of the same bytes.
    let size = 1 << 20;
    let q = mp::Queue::new()?;
    let start = Instant::now();
    let mut child = mp::spawn(produce_big, (q.clone(), sizes.big, size))?;
    for _ in 0..sizes.big {
        q.get()?;
    }
    let big_rate = (sizes.big * size as u64) as f64 / start.elapsed().as_secs_f64();
    child.join()?;
    let (here, there) = mp::pipe::<u64>()?;
    let start = Instant::now();
    let mut child = mp::spawn(raw_bulk, (there, sizes.big, size))?;
    let mut raw = UnixStream::from(OwnedFd::from(here));
    let mut sink = vec![0u8; size];
    for _ in 0..sizes.big {
        raw.read_exact(&mut sink).unwrap();
    }
    let raw_rate = (sizes.big * size as u64) as f64 / start.elapsed().as_secs_f64();
    child.join()?;

    Ok(vec![
        Row {
            what: "spawn+join (spawn)",
            unit: "ms",
            mp: mp_spawn * 1e3,
            python: pyf("spawn_join_s").map(|s| s * 1e3),
            floor: Some(("exec /bin/true", raw_exec * 1e3)),
            lower_is_better: true,
        },
        Row {
            what: "spawn+join (forkserver)",
            unit: "ms",
            mp: mp_forkserver * 1e3,
            python: pyf("forkserver_join_s").map(|s| s * 1e3),
            floor: Some(("exec /bin/true", raw_exec * 1e3)),
            lower_is_better: true,
        },
        Row {
            what: "spawn+join (fork)",
            unit: "ms",
            mp: mp_fork * 1e3,
            python: pyf("fork_join_s").map(|s| s * 1e3),
            floor: Some(("exec /bin/true", raw_exec * 1e3)),
            lower_is_better: true,
        },
        Row {
            what: "pipe round trip",
            unit: "µs",
            mp: mp_rtt * 1e6,
            python: pyf("pipe_rtt_s").map(|s| s * 1e6),
            floor: Some(("raw socketpair", raw_rtt * 1e6)),
            lower_is_better: true,
        },
        Row {
            what: "queue small msgs",
            unit: "msg/s",
            mp: small_rate,
            python: pyf("queue_small_msgs_per_s"),
            floor: None,
            lower_is_better: false,
        },
        Row {
            what: "queue 1 MiB msgs",
            unit: "GB/s",
            mp: big_rate / 1e9,
            python: pyf("queue_1mib_bytes_per_s").map(|b| b / 1e9),
            floor: Some(("raw unix socket", raw_rate / 1e9)),
            lower_is_better: false,
        },
    ])
}

fn print(rows: &[Row]) {
    println!(
        "{:<22} {:>7} {:>12} {:>12} {:>10}   {:<18} {:>12} {:>12}",
        "benchmark", "unit", "mp", "python", "vs python", "floor", "floor value", "mp/floor"
    );
    for r in rows {
        let fmt = |v: f64| {
            if v >= 1000.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.3}")
            }
        };
        let speedup = |other: f64| {
            if r.lower_is_better {
                other / r.mp
            } else {
                r.mp / other
            }
        };
        let py = r.python.map(fmt).unwrap_or_else(|| "-".into());
        let vs = r
            .python
            .map(|p| format!("{:.1}x", speedup(p)))
            .unwrap_or_else(|| "-".into());
        let (fname, fval, fratio) = match r.floor {
            Some((name, v)) => (
                name,
                fmt(v),
                format!(
                    "{:.2}",
                    if r.lower_is_better {
                        r.mp / v
                    } else {
                        v / r.mp
                    }
                ),
            ),
            None => ("", "-".into(), "-".into()),
        };
        println!(
            "{:<22} {:>7} {:>12} {:>12} {:>10}   {:<18} {:>12} {:>12}",
            r.what,
            r.unit,
            fmt(r.mp),
            py,
            vs,
            fname,
            fval,
            fratio
        );
    }
    println!(
        "\n'vs python': how many times better mp is. 'mp/floor': mp's cost as a multiple of the raw OS floor (1.00 = at the floor)."
    );
}

mp::main! {
    fn main() -> mp::Result<()> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|a| a == "--quick");
        let with_python = !args.iter().any(|a| a == "--no-python");
        match args.iter().find(|a| !a.starts_with("--")).map(String::as_str) {
            Some("foundation") | None => {
                let sizes = if quick {
                    Sizes { spawn: 20, python_spawn: 5, rtt: 2_000, small: 50_000, big: 100 }
                } else {
                    Sizes { spawn: 200, python_spawn: 50, rtt: 100_000, small: 1_000_000, big: 2_000 }
                };
                let start = Instant::now();
                let rows = foundation(&sizes, with_python)?;
                print(&rows);
                println!("(python spawn+join mean over {} runs; mp over {}; total {:.1?})", sizes.python_spawn, sizes.spawn, start.elapsed());
                Ok(())
            }
            Some("pool") => {
                let start = Instant::now();
                let rows = pool::run(quick, with_python)?;
                print(&rows);
                println!("({} workers; map: best of runs, scaled to 1M tasks in --quick; total {:.1?})", mp::cpu_count(), start.elapsed());
                Ok(())
            }
            Some("manager") => {
                let start = Instant::now();
                let rows = manager::run(quick, with_python)?;
                print(&rows);
                println!("(batched: `extend` of 10 000 items per call, against Python's single appends; total {:.1?})", start.elapsed());
                Ok(())
            }
            Some("lint") => {
                let start = Instant::now();
                let rows = lint::run(quick)?;
                print(&rows);
                println!("(a generated workspace; metadata, parsing and every lint; total {:.1?})", start.elapsed());
                Ok(())
            }
            Some("lint-corpus") => lint_corpus::run(),
            Some("bytes") => {
                let start = Instant::now();
                let only = args.iter().find_map(|a| a.strip_prefix("--only="));
                let rows = bytes::run(quick, with_python, only)?;
                print(&rows);
                println!("(medians; arg+res: spawn, argument and result, join; total {:.1?})", start.elapsed());
                Ok(())
            }
            Some("shared") => {
                let start = Instant::now();
                let rows = shared::run(quick, with_python)?;
                print(&rows);
                println!("(total {:.1?})", start.elapsed());
                Ok(())
            }
            #[cfg(feature = "mpi")]
            Some("mpi") => {
                let start = Instant::now();
                let rows = mpi::run(quick)?;
                if !rows.is_empty() {
                    print(&rows);
                    println!("(one host; best of runs; total {:.1?})", start.elapsed());
                }
                Ok(())
            }
            #[cfg(not(feature = "mpi"))]
            Some("mpi") => {
                eprintln!("the `mpi` benchmark needs `--features mpi` (and Open MPI)");
                std::process::exit(2);
            }
            Some(other) => {
                eprintln!("unknown benchmark `{other}`; available: foundation, bytes, shared, pool, manager, lint, lint-corpus, mpi");
                std::process::exit(2);
            }
        }
    }
}
