//! The README's first command: workers in child processes, a queue back to the parent.
//!
//! Run with `cargo run --release --example quickstart`.

use std::time::Instant;

/// Counts the primes below `limit` — honest CPU work for a child process.
#[mp::worker]
fn count_primes(lo: u64, hi: u64, results: mp::Queue<(u64, u64, usize)>) -> mp::Result<()> {
    let is_prime = |n: u64| n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0);
    let count = (lo..hi).filter(|&n| is_prime(n)).count();
    results.put((lo, hi, count))?;
    Ok(())
}

mp::main! {
    fn main() -> mp::Result<()> {
        let start = Instant::now();
        let results = mp::Queue::new()?;
        let chunk = 500_000;
        let mut workers = Vec::new();
        for i in 0..4 {
            let args = (i * chunk, (i + 1) * chunk, results.clone());
            workers.push(mp::spawn(count_primes, args)?);
        }
        for w in &mut workers {
            w.join()??;
        }
        let mut total = 0;
        for _ in 0..workers.len() {
            let (lo, hi, count) = results.get()?;
            println!("{lo:>9}..{hi:<9} {count:>6} primes");
            total += count;
        }
        println!("{total} primes below {} in {:.2?} using {} processes", 4 * chunk, start.elapsed(), workers.len());
        assert_eq!(total, 148_933);
        Ok(())
    }
}
