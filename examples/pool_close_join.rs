//! Seed 4.4: `EOFError: Ran out of input` when pool processes did not end normally, fixed in
//! Python with `pool.close()` and `pool.join()`.
//!
//! Here `close` + `join` finish the queued work and let the workers exit; dropping a pool
//! terminates its workers, so none is left behind either way. A worker that dies abnormally
//! (here: it aborts) fails only its task with an error naming it, is replaced, and the pool
//! goes on — Python's `Pool` would hang.
//!
//! Run with `cargo run --release --example pool_close_join`.

#[mp::allow(exit-in-worker)] // the crash is the point of the example
#[mp::worker]
fn checked_sqrt(n: u64) -> u64 {
    if n == 13 {
        std::process::abort(); // a crash in native code, say
    }
    (n as f64).sqrt() as u64
}

mp::main! {
    fn main() -> mp::Result<()> {
        let mut pool = mp::Pool::new(mp::cpu_count())?;

        let results: Vec<mp::Result<u64>> = pool.imap(checked_sqrt, 10..16).collect();
        for (n, r) in (10..).zip(&results) {
            match r {
                Ok(v) => println!("sqrt({n}) = {v}"),
                Err(e) => println!("sqrt({n}) failed: {e}"),
            }
        }
        assert!(matches!(results[3], Err(mp::Error::WorkerDied { task_index: 3, .. })));

        let pending = pool.map_async(checked_sqrt, [16, 25, 36])?;
        pool.close(); // no new work
        pool.join()?; // the queued work finishes, the workers exit
        println!("after close + join: {:?}", pending.get()?);
        Ok(())
    }
}
