#[derive(Clone, Copy, mp::Plain)]
#[repr(C)]
struct Sample {
    flag: u8,
    value: f64,
}

fn main() {}
