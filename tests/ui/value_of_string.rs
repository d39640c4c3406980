fn main() {
    let _ = mp::Value::new(String::from("not plain"));
}
