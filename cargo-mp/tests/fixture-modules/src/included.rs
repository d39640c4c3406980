pub fn run(items: Vec<u64>) {
    for x in items {
        let _ = mp::spawn(crate::work, x); // found: proves this file was read
    }
}
