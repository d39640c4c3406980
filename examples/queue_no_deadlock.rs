//! Seed 3.1 "Fehler 3": the deadlock of joining a process before draining its queue.
//!
//! The seed's fix is to `get` before `join`. That order is fine here too — and the other order,
//! which hangs Python once the data outgrows the pipe buffer, works as well: 8 MB are written
//! and the writer exits before anyone reads.

#[mp::worker]
fn worker(q: mp::Queue<String>) -> mp::Result<()> {
    q.put("data".to_string())?;
    Ok(())
}

#[mp::worker]
fn big_writer(q: mp::Queue<Vec<u64>>) -> mp::Result<()> {
    for i in 0..1000u64 {
        q.put(vec![i; 1000])?; // 1000 messages of 8 KB
    }
    Ok(())
}

mp::main! {
    fn main() -> mp::Result<()> {
        // The seed's order: receive, then join.
        let q = mp::Queue::new()?;
        let mut p = mp::spawn(worker, q.clone())?;
        println!("{}", q.get()?); // Daten empfangen
        p.join()??; // Hier normal beenden

        join_then_drain()
    }
}

/// Python's deadlock order: join first, then drain. No hang here while the data fits the
/// queue's capacity (64 MiB by default); `cargo mp check` warns about the order all the same.
#[mp::allow(join-before-drain)]
fn join_then_drain() -> mp::Result<()> {
    let q = mp::Queue::new()?;
    let mut p = mp::spawn(big_writer, q.clone())?;
    p.join()??;
    let mut total = 0;
    while let Ok(batch) = q.try_get() {
        total += batch.len();
    }
    println!("joined first, then drained {total} values");
    Ok(())
}
