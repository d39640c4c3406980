//! A program that installs its own `tracing` subscriber (at DEBUG) instead of calling
//! `mp::log_to_stderr`: its children still log at that level, records carry the caller's
//! location, and every process says it is shutting down.

#[mp::worker]
fn worker() {
    mp::get_logger().debug("child debug record");
}

mp::main! {
    fn main() -> mp::Result<()> {
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
        mp::get_logger().info("parent record");
        mp::spawn(worker, ())?.join()?;
        Ok(())
    }
}
