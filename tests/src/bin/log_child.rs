//! Seed 4.5: logging enabled in the parent shows records from the child, tagged with its name.

#[mp::worker]
fn worker(n: u32) {
    let logger = mp::get_logger();
    logger.info(format!("Prozess {n} wird ausgeführt"));
}

mp::main! {
    fn main() -> mp::Result<()> {
        mp::log_to_stderr(mp::Level::INFO);
        mp::get_logger().info("parent ready");
        let mut p = mp::spawn(worker, 1)?;
        p.join()?;
        Ok(())
    }
}
