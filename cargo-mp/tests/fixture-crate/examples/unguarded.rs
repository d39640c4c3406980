#[mp::worker]
fn hello() {}

fn main() {
    mp::spawn(hello, ()).unwrap();
}
