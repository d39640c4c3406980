//! Seed 3.2, "Optimierung 3": use shared memory. The child writes into the array the parent
//! created; nothing is copied or pickled on the way.

#[mp::worker]
fn worker(shared_array: mp::Array<i32>) -> mp::Result<()> {
    shared_array.set(0, 99) // Wert im gemeinsamen Speicher ändern
}

mp::main! {
    fn main() -> mp::Result<()> {
        let shared_array = mp::Array::from_slice(&[1, 2, 3])?; // Gemeinsamen Speicher erstellen
        let mut p = mp::Process::new(worker, shared_array.clone());
        p.start()?;
        p.join()??;
        println!("{:?}", shared_array.to_vec()?); // [99, 2, 3]
        assert_eq!(shared_array.to_vec()?, [99, 2, 3]);
        Ok(())
    }
}
