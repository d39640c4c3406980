#[derive(Clone, Copy, mp::Plain)]
struct Point {
    x: f64,
    y: f64,
}

fn main() {}
