#[mp::worker]
fn shout(text: &str) -> String {
    text.to_uppercase()
}

fn main() {
    // The one error is at `&str`: the call site adds none.
    let _ = mp::spawn(shout, "hello");
}
