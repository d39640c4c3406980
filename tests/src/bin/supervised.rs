//! A program for the `cargo mp run` support tests: a child that prints, one that exits 3.

#[mp::worker]
fn greet(n: u32) {
    println!("hello from child {n}");
    eprintln!("warning from child {n}");
}

#[mp::allow(exit-in-worker)] // the test counts a failed process
#[mp::worker]
fn fail() {
    std::process::exit(3);
}

#[mp::worker]
fn shout(n: u32) -> u32 {
    println!("pool task {n}");
    n
}

mp::main! {
    fn main() -> mp::Result<()> {
        println!("main ran");
        mp::spawn(greet, 1)?.join()?;
        let _ = mp::spawn(fail, ())?.join();
        if std::env::args().any(|a| a == "--pool") {
            let pool = mp::Pool::builder().processes(1).name("Crunch").build()?;
            pool.map(shout, [7])?;
        }
        Ok(())
    }
}
