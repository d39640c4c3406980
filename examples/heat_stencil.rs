//! A real use of shared arrays and a barrier: 1-D heat diffusion computed by several
//! processes in place.
//!
//! The rod's temperatures live in two shared `Array<f64>` buffers (read one, write the other,
//! swap each step). Each worker owns a contiguous block of cells; per step it takes a shared
//! read lock on its block plus one neighbour on each side of the current buffer (readers of
//! overlapping ranges do not wait for each other) and an exclusive lock on its block of the
//! next one (blocks are disjoint, so no worker waits), computes in place, then meets the
//! others at a `Barrier` before the next step. The parent checks the result against the
//! same computation done sequentially: they must be bit-for-bit equal.
//!
//! `cargo run --release --example heat_stencil`

const CELLS: usize = 200_000;
const STEPS: usize = 1_000;
const ALPHA: f64 = 0.25;

/// Computes cells `start..start + next.len()` of the next step from `prev`, which holds the
/// current cells from `offset` on (the block plus its halo).
fn step(prev: &[f64], offset: usize, next: &mut [f64], start: usize) {
    let at = |i: usize| prev[i - offset];
    for (k, out) in next.iter_mut().enumerate() {
        let i = start + k;
        *out = if i == 0 || i == CELLS - 1 {
            at(i) // fixed boundary temperatures
        } else {
            at(i) + ALPHA * (at(i - 1) - 2.0 * at(i) + at(i + 1))
        };
    }
}

fn initial() -> Vec<f64> {
    let mut rod = vec![0.0; CELLS];
    rod[0] = 100.0;
    rod[CELLS / 2] = 500.0;
    rod
}

#[mp::worker]
fn simulate(
    bufs: (mp::Array<f64>, mp::Array<f64>),
    barrier: mp::Barrier,
    block: (usize, usize),
) -> mp::Result<()> {
    let (start, end) = block;
    let lo = start.saturating_sub(1);
    let hi = (end + 1).min(CELLS);
    for s in 0..STEPS {
        let (cur, nxt) = if s % 2 == 0 {
            (&bufs.0, &bufs.1)
        } else {
            (&bufs.1, &bufs.0)
        };
        {
            let prev = cur.read_range(lo..hi)?;
            let mut next = nxt.lock_range(start..end)?;
            step(&prev, lo, &mut next, start);
        }
        barrier.wait()?;
    }
    Ok(())
}

mp::main! {
    fn main() -> mp::Result<()> {
        let workers = 2;
        let a = mp::Array::from_slice(&initial())?;
        let b = mp::Array::<f64>::new(CELLS)?;
        let barrier = mp::Barrier::new(workers as u32)?;
        let chunk = CELLS.div_ceil(workers);
        let t = std::time::Instant::now();
        let mut ps = Vec::new();
        for w in 0..workers {
            let block = (w * chunk, ((w + 1) * chunk).min(CELLS));
            ps.push(mp::spawn(simulate, ((a.clone(), b.clone()), barrier.clone(), block))?);
        }
        for p in &mut ps {
            p.join()??;
        }
        let parallel = t.elapsed();
        let result = if STEPS % 2 == 0 { a.to_vec()? } else { b.to_vec()? };

        let t = std::time::Instant::now();
        let (mut cur, mut nxt) = (initial(), vec![0.0; CELLS]);
        for _ in 0..STEPS {
            step(&cur, 0, &mut nxt, 0);
            std::mem::swap(&mut cur, &mut nxt);
        }
        let sequential = t.elapsed();
        assert_eq!(result, cur, "parallel and sequential results differ");
        let heat: f64 = result.iter().sum();
        println!(
            "{CELLS} cells × {STEPS} steps in {workers} processes: {parallel:.2?} \
             (sequential {sequential:.2?}, speed-up {:.2}×); total heat {heat:.3}, results identical",
            sequential.as_secs_f64() / parallel.as_secs_f64()
        );
        Ok(())
    }
}
