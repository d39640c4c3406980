//! A binary whose `main` is not wrapped in `mp::main!`: its first spawn must fail clearly.

#[mp::worker]
fn hello() -> u8 {
    7
}

#[mp::allow(missing-main-guard)] // unguarded on purpose: the test checks the error
fn main() {
    match mp::spawn(hello, ()) {
        Ok(_) => {
            println!("spawned");
            std::process::exit(3);
        }
        Err(e) => {
            println!("error: {e}");
            std::process::exit(if matches!(e, mp::Error::MissingGuard) {
                0
            } else {
                4
            });
        }
    }
}
