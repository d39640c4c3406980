//! A real use of shared memory: estimating π by Monte Carlo in several processes.
//!
//! Each worker draws its own random points and writes its hit count into its own slot of one
//! shared `Array<u64>` (locking only that slot), while a lock-free `RawValue<u64>` counts
//! progress across all of them. The parent sums the slots, checks the total against the
//! progress counter, and checks the estimate.
//!
//! `cargo run --release --example monte_carlo_pi -- [samples-per-worker]`

use std::sync::atomic::Ordering;
use std::time::Instant;

/// xorshift64*: small, fast and good enough for a Monte Carlo estimate.
fn next(state: &mut u64) -> f64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
}

#[mp::worker]
fn sample(
    hits: mp::Array<u64>,
    done: mp::RawValue<u64>,
    slot: usize,
    samples: u64,
) -> mp::Result<()> {
    let mut state = 0x9e37_79b9_7f4a_7c15 ^ (slot as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let mut inside = 0;
    for i in 1..=samples {
        let (x, y) = (next(&mut state), next(&mut state));
        if x * x + y * y <= 1.0 {
            inside += 1;
        }
        if i % 100_000 == 0 {
            done.atomic().fetch_add(100_000, Ordering::Relaxed);
        }
    }
    done.atomic()
        .fetch_add(samples % 100_000, Ordering::Relaxed);
    hits.lock_range(slot..=slot)?[0] = inside;
    Ok(())
}

mp::main! {
    fn main() -> mp::Result<()> {
        let samples: u64 = std::env::args()
            .nth(1)
            .map(|s| s.parse().expect("samples per worker must be a number"))
            .unwrap_or(2_000_000);
        let workers = 4;
        let hits = mp::Array::<u64>::new(workers)?;
        let done = mp::RawValue::new(0u64)?;
        let start = Instant::now();
        let mut ps = Vec::new();
        for slot in 0..workers {
            ps.push(mp::spawn(sample, (hits.clone(), done.clone(), slot, samples))?);
        }
        for p in &mut ps {
            p.join()??;
        }
        let total = samples * workers as u64;
        assert_eq!(done.get(), total, "every sample was counted");
        let inside: u64 = hits.to_vec()?.iter().sum();
        let pi = 4.0 * inside as f64 / total as f64;
        println!(
            "π ≈ {pi:.5} from {total} samples in {workers} processes ({:.2?})",
            start.elapsed()
        );
        // 8 M samples: the standard error is about 0.0006.
        assert!((pi - std::f64::consts::PI).abs() < 0.01, "estimate {pi} is off");
        Ok(())
    }
}
