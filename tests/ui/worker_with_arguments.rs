#[mp::worker(name = "x")]
fn job() {}

fn main() {}
