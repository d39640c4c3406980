//! Seed 2.5 ("Parallele Verarbeitung mit Pool") and 3.1 "Fehler 2": a pool maps a top-level
//! function over a range.
//!
//! Python's `pool.map(lambda x: x * x, ...)` fails at run time with `Can't pickle local
//! object`; here passing a closure to `pool.map` does not compile (see
//! `tests/ui/pool_map_closure.rs`), so only the fix below can be written.
//!
//! Run with `cargo run --release --example pool_map`.

/// A top-level function registered as a worker (Python: "Als globale Funktion definieren").
#[mp::worker]
fn square(n: u64) -> u64 {
    n * n
}

mp::main! {
    fn main() -> mp::Result<()> {
        // The seed has `Pool(4)`; `cpu_count()` (affinity and container quotas included) is
        // what its section 3.2 recommends, and what `cargo mp check` asks for.
        let pool = mp::Pool::new(mp::cpu_count())?;
        let results = pool.map(square, 0..10)?;
        println!("{results:?}");
        assert_eq!(results, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
        Ok(())
    }
}
