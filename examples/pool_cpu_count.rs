//! Seed 3.2 "Optimierung 1" and 4.2: size the pool with the number of CPUs, and reuse one
//! pool instead of starting a process per item.
//!
//! `mp::cpu_count()` counts the CPUs this process may use (affinity mask and container CPU
//! quota), not every CPU of the host, so a pool in a `--cpus=2` container gets 2 workers.
//!
//! Run with `cargo run --release --example pool_cpu_count`.

#[mp::worker]
fn worker(n: u64) -> u64 {
    n * n
}

mp::main! {
    fn main() -> mp::Result<()> {
        let num_workers = mp::cpu_count();
        println!("{num_workers} usable CPUs (the host has {})", mp::host_cpu_count());
        let pool = mp::Pool::new(num_workers)?;
        let results = pool.map(worker, 0..100)?;
        println!("{results:?}");
        assert_eq!(results.iter().sum::<u64>(), (0..100).map(|n| n * n).sum());
        Ok(())
    }
}
