//! `cargo mp`: see the library's docs (`cargo_mp`) for the commands and exit codes.

fn main() {
    std::process::exit(cargo_mp::run(std::env::args_os()));
}
