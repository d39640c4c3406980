//! The signature a worker registers (what `cargo mp workers` prints, and what a child checks
//! against its own registry) reads as written: `mp::Queue<Job>`, not `mp :: Queue < Job >`.

use std::collections::HashMap;

mp::guard!();

#[derive(serde::Serialize, serde::Deserialize)]
struct Job {
    id: u32,
}

#[mp::worker]
fn consume(jobs: mp::Queue<Job>, done: mp::Queue<(u32, Vec<u8>)>) -> mp::Result<usize> {
    let _ = (jobs, done);
    Ok(0)
}

#[mp::worker]
fn tally(words: Vec<String>, seed: [u8; 4]) -> HashMap<String, Option<u64>> {
    let _ = (words, seed);
    HashMap::new()
}

#[mp::worker]
fn nothing() {}

#[mp::worker]
fn pair((a, b): (u32, std::string::String)) -> Result<Box<u32>, String> {
    Ok(Box::new(a + b.len() as u32))
}

fn signature_of(suffix: &str) -> &'static str {
    mp::registered_workers()
        .into_iter()
        .find(|(name, _)| name.ends_with(suffix))
        .map(|(_, signature)| signature)
        .unwrap_or_else(|| panic!("no worker named *{suffix}"))
}

#[test]
fn signatures_read_as_written() {
    let cases = [
        (
            "::consume",
            "fn(mp::Queue<Job>, mp::Queue<(u32, Vec<u8>)>) -> mp::Result<usize>",
        ),
        (
            "::tally",
            "fn(Vec<String>, [u8; 4]) -> HashMap<String, Option<u64>>",
        ),
        ("::nothing", "fn()"),
        (
            "::pair",
            "fn((u32, std::string::String)) -> Result<Box<u32>, String>",
        ),
    ];
    for (name, expected) in cases {
        assert_eq!(signature_of(name), expected);
    }
    assert_eq!(
        <consume as mp::Worker>::SIGNATURE,
        signature_of("::consume")
    );
}

#[test]
fn a_public_worker_of_a_library_compiles_and_runs() {
    use mp_tests::public_worker::{PublicJob, public_worker};
    assert_eq!(
        <public_worker as mp::Worker>::SIGNATURE,
        "fn(PublicJob, u32) -> Result<u64, String>"
    );
    assert_eq!(public_worker(PublicJob { size: 6 }, 7), Ok(42));
}
