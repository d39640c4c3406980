//! Processes that start processes: each of two "department" processes runs its own pool, as a
//! Python worker may use a `Pool` of its own.
//!
//! The departments count the primes in their half of a range; each fans its half out to a pool
//! of workers. Children die with their parent at every depth, and `cargo mp run` counts every
//! process of the tree.
//!
//! Run with `cargo run --release --example nested_pool`.

/// Whether `n` is prime (trial division: a CPU-bound task).
#[mp::worker]
fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

/// One department: counts the primes in `from..to` with a pool of its own.
#[mp::worker]
fn count_primes(from: u64, to: u64, workers: usize) -> mp::Result<usize> {
    let pool = mp::Pool::new(workers)?;
    let flags = pool.map(is_prime, from..to)?;
    let me = mp::current_process();
    println!(
        "{} (pid {}) counted {from}..{to} with {workers} workers",
        me.name(),
        me.pid()
    );
    Ok(flags.into_iter().filter(|&p| p).count())
}

mp::main! {
    fn main() -> mp::Result<()> {
        let limit = 200_000;
        let workers = mp::cpu_count().div_ceil(2).max(1);
        let mut departments = vec![
            mp::spawn(count_primes, (0, limit / 2, workers))?,
            mp::spawn(count_primes, (limit / 2, limit, workers))?,
        ];
        let mut total = 0;
        for department in &mut departments {
            total += department.join()??;
        }
        println!("{total} primes below {limit}");
        assert_eq!(total, 17_984);
        Ok(())
    }
}
