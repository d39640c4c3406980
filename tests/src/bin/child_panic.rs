//! Children whose workers panic: the panic is printed once on the child's stderr (as Python
//! prints a child's traceback) and comes back to the parent as `WorkerPanicked`.

#[mp::worker]
fn boom(x: u32) -> u32 {
    if x > 0 {
        panic!("boom with {x}");
    }
    x
}

#[mp::worker]
fn boom_any() {
    std::panic::panic_any(42_i32);
}

fn run() -> mp::Result<()> {
    match mp::spawn(boom, 7)?.join() {
        Err(mp::Error::WorkerPanicked { message, .. }) => assert_eq!(message, "boom with 7"),
        other => panic!("expected a panic, got {other:?}"),
    }
    match mp::spawn(boom_any, ())?.join() {
        Err(mp::Error::WorkerPanicked { message, .. }) => {
            assert_eq!(message, "panic payload of type `i32`: 42")
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    println!("ok");
    Ok(())
}

mp::main!(run);
