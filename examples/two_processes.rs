//! Seed 2.2: two processes started side by side, then both joined.
//!
//! It prints the snippet's German lines (`Prozess 0 gestartet`) on purpose, so its output reads
//! like the tutorial's (docs/tutorial/multiprocessing-tutorial.de.txt).

use std::time::Duration;

#[mp::worker]
fn worker(n: u32) {
    println!("Prozess {n} gestartet");
    std::thread::sleep(Duration::from_secs(2));
    println!("Prozess {n} beendet");
}

mp::main! {
    fn main() -> mp::Result<()> {
        let mut p1 = mp::Process::new(worker, 1);
        let mut p2 = mp::Process::new(worker, 2);
        p1.start()?;
        p2.start()?;
        p1.join()?;
        p2.join()?;
        println!("Alle Prozesse beendet");
        Ok(())
    }
}
