//! Seed 1.3: three processes started in a loop, then joined.
//!
//! Python: `multiprocessing.Process(target=worker, args=(i,))` for i in range(3).
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
        let mut process_list = Vec::new();
        // 3 Prozesse erstellen
        for i in 0..3 {
            let mut p = mp::Process::new(worker, i);
            p.start()?;
            process_list.push(p);
        }
        // Auf Beendigung aller Prozesse warten
        for p in &mut process_list {
            p.join()?;
        }
        println!("Alle Prozesse beendet");
        Ok(())
    }
}
