//! Seed 2.4: a child changes a shared `Value<f64>` and an element of a shared `Array<i32>`;
//! the parent sees both changes after `join`, without any message being sent.

// The seed writes the literal 3.14, not π; keep it.
#[allow(clippy::approx_constant)]
#[mp::worker]
fn worker(val: mp::Value<f64>, arr: mp::Array<i32>) -> mp::Result<()> {
    val.set(3.14)?; // Wert des geteilten Speichers ändern
    arr.set(0, 42)?; // Wert des Arrays ändern
    Ok(())
}

mp::main! {
    fn main() -> mp::Result<()> {
        let val = mp::Value::new(0.0f64)?; // 'd' ist double-Typ
        let arr = mp::Array::from_slice(&[0i32, 1, 2])?; // 'i' ist Integer-Typ
        let mut p = mp::Process::new(worker, (val.clone(), arr.clone()));
        p.start()?;
        p.join()??;
        println!("val: {}, arr: {:?}", val.get()?, arr.to_vec()?);
        Ok(())
    }
}
