use std::rc::Rc;

#[mp::worker]
fn count(shared: Rc<u32>) -> u32 {
    *shared
}

fn main() {}
