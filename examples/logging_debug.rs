//! Seed 4.5: debugging with `log_to_stderr`; records from the child carry its name and pid.

#[mp::worker]
fn worker(n: u32) {
    let logger = mp::get_logger();
    logger.info(format!("Prozess {n} wird ausgeführt"));
}

mp::main! {
    fn main() -> mp::Result<()> {
        mp::log_to_stderr(mp::Level::INFO); // Logging aktivieren
        let mut p = mp::Process::new(worker, 1);
        p.start()?;
        p.join()?;
        Ok(())
    }
}
