//! `bytes` benchmark: a `Vec<u8>` and a `String` of 1 MB and 100 MB as the argument and the
//! result of a spawned worker (against Python's `Pool.apply` of `bytes`/`str`, and a memfd
//! floor: the bytes written into a memfd and read back out into fresh memory, once each way),
//! and queue items of 64 KiB, 1 MiB and 64 MiB as `Vec<u8>` (against Python's `Queue` of
//! `bytes` and a raw Unix socket streaming the same bytes). Python's side is
//! `python/bytes.py`, run in the same process tree right before.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use crate::Row;

#[mp::worker]
fn echo_bytes(v: Vec<u8>) -> Vec<u8> {
    v
}

#[mp::worker]
fn echo_string(s: String) -> String {
    s
}

#[mp::worker]
fn produce(q: mp::Queue<Vec<u8>>, n: u64, size: usize) {
    let payload = vec![b'x'; size];
    for _ in 0..n {
        q.put(payload.clone()).unwrap();
    }
}

/// Median of `f`'s timings over `runs` runs after one warm-up.
fn median(runs: u32, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The floor of handing `data` over one way through a memfd: written into a fresh one and
/// read back out into fresh memory (what any copy-based hand-over between processes pays).
fn memfd_once(data: &[u8]) -> Vec<u8> {
    let fd = rustix::fs::memfd_create("floor", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let file = File::from(fd);
    file.write_all_at(data, 0).unwrap();
    let mut out = vec![0u8; data.len()];
    file.read_exact_at(&mut out, 0).unwrap();
    out
}

/// Bytes per second of `n` items of `size` bytes through an `mp::Queue`, producer in a child.
fn queue_rate(n: u64, size: usize) -> mp::Result<f64> {
    let q = mp::Queue::new()?;
    let start = Instant::now();
    let mut child = mp::spawn(produce, (q.clone(), n, size))?;
    for _ in 0..n {
        let item = q.get()?;
        assert_eq!(item.len(), size);
    }
    let rate = (n * size as u64) as f64 / start.elapsed().as_secs_f64();
    child.join()?;
    Ok(rate)
}

/// The same bytes streamed through a raw Unix socket, read in items of `size`.
fn socket_rate(n: u64, size: usize) -> mp::Result<f64> {
    let (here, there) = mp::pipe::<u64>()?;
    let start = Instant::now();
    let mut child = mp::spawn(crate::raw_bulk, (there, n, size))?;
    let mut raw = UnixStream::from(OwnedFd::from(here));
    for _ in 0..n {
        let mut item = vec![0u8; size];
        raw.read_exact(&mut item).unwrap();
    }
    let rate = (n * size as u64) as f64 / start.elapsed().as_secs_f64();
    child.join()?;
    Ok(rate)
}

/// Runs the measurements; `quick` shrinks them for CI smoke runs; `only` keeps the rows whose
/// name contains it (`--only=queue`), measuring nothing else.
pub(crate) fn run(quick: bool, with_python: bool, only: Option<&str>) -> mp::Result<Vec<Row>> {
    let wanted = |name: &str| only.is_none_or(|o| name.contains(o));
    let (small, large, runs) = if quick {
        (1_000_000usize, 20_000_000usize, 3u32)
    } else {
        (1_000_000, 100_000_000, 5)
    };
    let queue_bytes: u64 = if quick { 64 << 20 } else { 512 << 20 };
    let items = [64usize << 10, 1 << 20, 64 << 20];
    let py = if with_python {
        crate::run_python(
            "bytes.py",
            &[
                small.to_string(),
                large.to_string(),
                runs.to_string(),
                queue_bytes.to_string(),
            ],
        )
    } else {
        None
    };
    let pyf = |k: &str| py.as_ref().and_then(|v| v[k].as_f64());
    let mut rows = Vec::new();

    for (len, name_b, name_s, key) in [
        (small, "Vec<u8> 1 MB arg+res", "String 1 MB arg+res", "1mb"),
        (
            large,
            "Vec<u8> 100MB arg+res",
            "String 100MB arg+res",
            "100mb",
        ),
    ] {
        if !wanted(name_b) && !wanted(name_s) {
            continue;
        }
        let data = vec![7u8; len];
        let floor = median(runs, || {
            let there = memfd_once(&data);
            assert_eq!(memfd_once(&there).len(), len);
        });
        // The value goes out and comes back each round (no clone is timed, as Python's
        // `apply` keeps its own reference without a copy).
        let mut held = Some(data);
        let bytes = median(runs, || {
            let back = mp::spawn(echo_bytes, held.take().unwrap())
                .unwrap()
                .join()
                .unwrap();
            assert_eq!(back.len(), len);
            held = Some(back);
        });
        let mut held = Some("x".repeat(len));
        let string = median(runs, || {
            let back = mp::spawn(echo_string, held.take().unwrap())
                .unwrap()
                .join()
                .unwrap();
            assert_eq!(back.len(), len);
            held = Some(back);
        });
        for (what, mp_s, py_key) in [
            (name_b, bytes, format!("bytes_{key}_s")),
            (name_s, string, format!("str_{key}_s")),
        ] {
            rows.push(Row {
                what,
                unit: "ms",
                mp: mp_s * 1e3,
                python: pyf(&py_key).map(|s| s * 1e3),
                floor: Some(("memfd in+out x2", floor * 1e3)),
                lower_is_better: true,
            });
        }
    }

    for (size, what, key) in [
        (items[0], "queue 64 KiB Vec<u8>", "queue_64k_bytes_per_s"),
        (items[1], "queue 1 MiB Vec<u8>", "queue_1m_bytes_per_s"),
        (items[2], "queue 64 MiB Vec<u8>", "queue_64m_bytes_per_s"),
    ] {
        if !wanted(what) {
            continue;
        }
        let n = (queue_bytes / size as u64).max(4);
        let mp_rate = queue_rate(n, size)?;
        let raw = socket_rate(n, size)?;
        rows.push(Row {
            what,
            unit: "GB/s",
            mp: mp_rate / 1e9,
            python: pyf(key).map(|b| b / 1e9),
            floor: Some(("raw unix socket", raw / 1e9)),
            lower_is_better: false,
        });
    }
    Ok(rows)
}
