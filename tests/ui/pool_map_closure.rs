// Seed 3.1 "Fehler 2": Python's `pool.map(lambda x: x * x, ...)` fails at run time with
// "Can't pickle local object"; here it does not compile.
mp::guard!();

fn main() {
    let pool = mp::Pool::new(4).unwrap();
    let _ = pool.map(|x: u64| x * x, 0..10);
}
