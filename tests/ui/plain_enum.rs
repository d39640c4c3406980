#[derive(Clone, Copy, mp::Plain)]
#[repr(u8)]
enum State {
    Idle,
    Busy,
}

fn main() {}
