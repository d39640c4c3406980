// Does not depend on mp: skipped unless `--all-packages`.
fn main() {
    mp::spawn(work, ()).unwrap();
}
