mp::guard!();

fn main() {
    let _ = mp::spawn(|x: u32| x * 2, 21);
}
