fn main() {
    mp::spawn(work, ()).unwrap(); // missing-main-guard
}
