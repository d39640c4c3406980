//! `cargo mp`: will run and lint programs that use `mp` (`cargo mp run`, `cargo mp check`).
//!
//! Not built yet (issue 6): this binary only says so, with a usage-error exit code.

/// Exit code for a usage error (documented constant; issue 6 adds the rest).
const EXIT_USAGE: i32 = 2;

fn main() {
    eprintln!("cargo mp: `run` and `check` are not implemented yet");
    std::process::exit(EXIT_USAGE);
}
