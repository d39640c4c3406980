//! Measures spawn + join of a trivial worker per start method against `exec /bin/true` in the
//! same run (the figures `mp-bench`'s foundation suite prints), for profiling start-up without
//! the whole bench: `cargo run --release -p mp --example spawn_profile [runs]`. Each figure is
//! the best of ten interleaved batches, which keeps a busy machine's noise out of the ratios.

use std::process::Command;
use std::time::Instant;

#[mp::worker]
fn trivial() {}

/// A measured case: its label and one run.
type Case = (&'static str, Box<dyn FnMut()>);

fn batch(n: u32, f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() * 1e3 / f64::from(n)
}

fn run(method: mp::StartMethod) {
    let mut p = mp::Process::new(trivial, ()).with_start_method(method);
    p.start().unwrap();
    p.join().unwrap();
}

/// A pool's life: start two workers, one small map, close and join.
fn pool(method: mp::StartMethod) {
    let mut pool = mp::Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap();
    pool.map(double, 0..16).unwrap();
    pool.close();
    pool.join().unwrap();
}

#[mp::worker]
fn double(x: u64) -> u64 {
    x * 2
}

mp::main! {
    fn main() {
        let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
        let mut cases: Vec<Case> = vec![
            ("exec /bin/true", Box::new(|| {
                Command::new("/bin/true").status().unwrap();
            })),
            ("spawn+join (spawn)", Box::new(|| run(mp::StartMethod::Spawn))),
            ("spawn+join (forkserver)", Box::new(|| run(mp::StartMethod::ForkServer))),
            ("spawn+join (fork)", Box::new(|| run(mp::StartMethod::Fork))),
        ];
        report(n, &mut cases);
        // A pool leaves a thread behind (its interrupt listener): `fork` is measured before.
        let mut pools: Vec<Case> = vec![
            ("exec /bin/true", Box::new(|| {
                Command::new("/bin/true").status().unwrap();
            })),
            ("pool of 2 (spawn)", Box::new(|| pool(mp::StartMethod::Spawn))),
            ("pool of 2 (forkserver)", Box::new(|| pool(mp::StartMethod::ForkServer))),
        ];
        report(n / 4, &mut pools);
    }
}

fn report(n: u32, cases: &mut [Case]) {
    {
        let mut best = vec![f64::INFINITY; cases.len()];
        for (_, f) in cases.iter_mut() {
            f();
        }
        for _ in 0..10 {
            for (i, (_, f)) in cases.iter_mut().enumerate() {
                best[i] = best[i].min(batch(n / 10, f));
            }
        }
        for (i, (what, _)) in cases.iter().enumerate() {
            println!(
                "{what:<28} {:.3} ms  ({:.2}x exec)",
                best[i],
                best[i] / best[0]
            );
        }
    }
}
