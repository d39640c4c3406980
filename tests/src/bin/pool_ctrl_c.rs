//! A long `Pool::map` to be interrupted with `SIGINT` sent to the whole process group (as a
//! terminal's Ctrl-C is): prints `ready <worker pids>` once tasks run, then how the map ended
//! and how long the return took after the interrupt.

use std::io::Write;
use std::time::{Duration, Instant};

#[mp::worker]
fn slow(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

mp::main! {
    fn main() -> mp::Result<()> {
        let pool = mp::Pool::new(2)?;
        let pids: Vec<u32> = pool.chunksize(1).map(slow, [0, 0, 0, 0])?;
        let mut pids = pids;
        pids.sort_unstable();
        pids.dedup();
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
        println!("ready {}", list.join(" "));
        std::io::stdout().flush().ok();
        let started = Instant::now();
        // About 60 s of work: the test interrupts it long before.
        let outcome = pool.chunksize(1).map(slow, vec![200; 600]);
        let took = started.elapsed();
        match outcome {
            Err(mp::Error::Interrupted) => {
                let t = Instant::now();
                drop(pool);
                println!("interrupted after {} ms; drop took {} ms", took.as_millis(), t.elapsed().as_millis());
                std::process::exit(130);
            }
            other => {
                println!("unexpected: {other:?}");
                std::process::exit(1);
            }
        }
    }
}
