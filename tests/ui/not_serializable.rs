struct Config {
    verbose: bool,
}

#[mp::worker]
fn run(config: Config) -> bool {
    config.verbose
}

fn main() {}
