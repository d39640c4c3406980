use std::cell::Cell;

#[mp::worker]
fn pair(a: u32, b: std::rc::Rc<Cell<u32>>) -> u32 {
    a + b.get()
}

fn main() {}
