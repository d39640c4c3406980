//! `mp::main!(path)`: the guard wrapping a named function that returns a `Result`.

#[mp::worker]
fn triple(x: i32) -> i32 {
    3 * x
}

fn run() -> mp::Result<()> {
    let value = mp::spawn(triple, 14)?.join()?;
    println!("triple: {value}");
    Ok(())
}

mp::main!(run);
