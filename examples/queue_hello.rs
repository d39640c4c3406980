//! Seed 2.3: a child puts a message on a queue; the parent joins, then reads it.
//!
//! In Python this order (join before get) can deadlock once the message is large; with `mp` it
//! cannot: `put` has written the message to shared memory when it returns.

#[mp::worker]
fn worker(q: mp::Queue<String>) -> mp::Result<()> {
    q.put("Hallo vom Kindprozess".to_string())?;
    Ok(())
}

/// The seed's order: join, then read. `cargo mp check` warns about it (it hangs Python, and an
/// `mp` queue once its capacity is full); for one small message it is safe.
#[mp::allow(join-before-drain)]
fn seed_order() -> mp::Result<()> {
    let q = mp::Queue::new()?;
    let mut p = mp::Process::new(worker, q.clone());
    p.start()?;
    p.join()??;
    // Daten vom Kindprozess abrufen
    println!("{}", q.get()?);
    Ok(())
}

mp::main! {
    fn main() -> mp::Result<()> {
        seed_order()
    }
}
