//! Seed 1.4 and 3.1 "Fehler 1": the `if __name__ == "__main__"` guard.
//!
//! In Python, forgetting the guard makes every child re-run the module (an error on Windows,
//! a fork bomb risk elsewhere). Here `mp::main!` is the guard; and because children are routed
//! to their worker before `main` runs, a missing guard cannot recurse: the first spawn returns
//! `Error::MissingGuard` instead.

#[mp::worker]
fn worker() {
    println!("Hello from process");
}

mp::main! {
    fn main() -> mp::Result<()> {
        let mut p = mp::Process::new(worker, ());
        p.start()?;
        p.join()?;
        Ok(())
    }
}
