#[derive(Clone, Copy, mp::Plain)]
#[repr(C)]
struct Pair<T> {
    a: T,
    b: T,
}

fn main() {}
