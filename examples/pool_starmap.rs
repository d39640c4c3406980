//! Seed 3.2 "Optimierung 2": `Pool.starmap` for a function of several arguments.
//!
//! A worker with several parameters takes them as one tuple, so `starmap` is `map` over
//! tuples; both names work.
//!
//! Run with `cargo run --release --example pool_starmap`.

#[mp::worker]
fn multiply(a: i64, b: i64) -> i64 {
    a * b
}

mp::main! {
    fn main() -> mp::Result<()> {
        let pool = mp::Pool::new(mp::cpu_count())?; // the seed: `Pool(4)`
        let results = pool.starmap(multiply, [(1, 2), (3, 4), (5, 6)])?;
        println!("{results:?}");
        assert_eq!(results, [2, 12, 30]);
        Ok(())
    }
}
