mp::guard!();

#[mp::allow(hardcoded-pool-sise, spawn_in_loop)]
fn demo() -> mp::Result<()> {
    let pool = mp::Pool::new(2)?;
    pool.close();
    Ok(())
}

fn main() {
    let _ = demo();
}
