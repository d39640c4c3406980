struct Config {
    verbose: bool,
}

#[mp::worker]
fn run(config: Config) -> bool {
    config.verbose
}

fn main() {
    // One error, at `Config` in the signature: the call sites add none.
    let _ = mp::spawn(run, Config { verbose: true });
    let _ = run(Config { verbose: false });
}
