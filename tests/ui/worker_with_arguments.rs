#[mp::worker(name = "x")]
fn job() {}

fn main() {
    let _ = mp::spawn(job, ());
}
