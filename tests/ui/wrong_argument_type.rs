#[mp::worker]
fn square(x: u64) -> u64 {
    x * x
}

fn main() -> mp::Result<()> {
    let _ = mp::spawn(square, "12")?;
    let pool = mp::Pool::new(2)?;
    let _: Vec<String> = pool.map(square, 0..10)?;
    Ok(())
}
