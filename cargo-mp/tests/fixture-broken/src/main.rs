mod bad;

#[mp::worker]
fn work() {}

fn main() {
    mp::spawn(work, ()).unwrap();
}
