//! Measures spawn + join of a trivial worker per start method against `exec /bin/true` in the
//! same run (the figures `mp-bench`'s foundation suite prints), for profiling start-up without
//! the whole bench: `cargo run --release -p mp --example spawn_profile [runs]`. Each figure is
//! the best of ten interleaved batches, which keeps a busy machine's noise out of the ratios.

use std::process::Command;
use std::time::Instant;

#[mp::worker]
fn trivial() {}

fn batch(n: u32, f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() * 1e3 / f64::from(n)
}

mp::main! {
    fn main() {
        let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
        let mut cases: Vec<(&str, Box<dyn FnMut()>)> = vec![
            ("exec /bin/true", Box::new(|| {
                Command::new("/bin/true").status().unwrap();
            })),
            ("spawn+join", Box::new(|| mp::spawn(trivial, ()).unwrap().join().unwrap())),
        ];
        let mut best = vec![f64::INFINITY; cases.len()];
        for (_, f) in &mut cases {
            f();
        }
        for _ in 0..10 {
            for (i, (_, f)) in cases.iter_mut().enumerate() {
                best[i] = best[i].min(batch(n / 10, f));
            }
        }
        for (i, (what, _)) in cases.iter().enumerate() {
            println!("{what:<28} {:.3} ms  ({:.2}x exec)", best[i], best[i] / best[0]);
        }
    }
}
