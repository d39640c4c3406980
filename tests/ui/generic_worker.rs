#[mp::worker]
fn identity<T: Clone>(x: T) -> T {
    x
}

fn main() -> mp::Result<()> {
    // The one error is at `<T>`: the call sites add none.
    let n: u32 = mp::spawn(identity, 7)?.join()?;
    let pool = mp::Pool::new(2)?;
    let _: Vec<u32> = pool.map(identity, vec![1, 2, 3])?;
    assert_eq!(identity(n), 7);
    Ok(())
}
