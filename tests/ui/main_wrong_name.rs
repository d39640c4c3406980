mp::main! {
    fn start() {}
}
