// mp under another name: `multi::spawn` is mp's spawn.
fn main() {
    multi::spawn(work, ()).unwrap();
}
