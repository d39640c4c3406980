//! Chunks of a pool call: a worker runs a chunk's tasks under one panic guard at a time, so
//! tasks that panic anywhere in a chunk (the first, the last, several in a row) fail alone, in
//! their place; and a `map`'s numeric results land in order in its output, from inline and
//! from out-of-line (large) replies alike.
mp::guard!();

use std::time::Duration;

use mp_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);

#[mp::worker]
fn panic_on_multiples(n: u32, of: u32) -> u32 {
    if n % of == 0 {
        panic!("task {n} is bad");
    }
    n
}

#[mp::worker]
fn square(n: u64) -> u64 {
    n * n
}

#[mp::worker]
fn halve(n: i32) -> f64 {
    f64::from(n) / 2.0
}

#[test]
fn every_panic_in_a_chunk_fails_only_its_own_task() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    // One chunk of 40 tasks: the first, the last and a run of neighbours panic (0, 7, 14, 21,
    // 28, 35, and 36..=39 with `of` = 7 for n < 36, then every task).
    let input = (0..40u32).map(|n| (n, if n >= 36 { 1 } else { 7 }));
    let results: Vec<mp::Result<u32>> =
        pool.chunksize(40).imap(panic_on_multiples, input).collect();
    assert_eq!(results.len(), 40);
    for (n, r) in results.iter().enumerate() {
        let bad = n % 7 == 0 || n >= 36;
        match r {
            Ok(v) => assert!(!bad && *v as usize == n, "task {n} gave {v}"),
            Err(mp::Error::WorkerPanicked { message, .. }) => {
                assert!(bad, "task {n} panicked: {message}");
                assert_eq!(message, &format!("task {n} is bad"));
            }
            Err(e) => panic!("task {n}: unexpected error {e}"),
        }
    }
    // `map` reports the first panic in input order, and the pool goes on.
    let err = pool
        .chunksize(8)
        .map(panic_on_multiples, (1..100).map(|n| (n, 30)))
        .unwrap_err();
    assert!(err.to_string().contains("task 30 is bad"), "{err}");
    let halves = pool.map(halve, -5_000..5_000).unwrap();
    assert_eq!(
        halves,
        (-5_000..5_000)
            .map(|n| f64::from(n) / 2.0)
            .collect::<Vec<_>>()
    );
}

#[test]
fn results_too_large_for_an_inline_frame_land_in_place() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    // 50 000 results of 8 bytes a chunk: each reply travels in a sealed buffer of its own.
    let squares: Vec<u64> = (0..200_000u64).map(|n| n * n).collect();
    for _ in 0..3 {
        assert_eq!(
            pool.chunksize(50_000).map(square, 0..200_000u64).unwrap(),
            squares
        );
    }
    assert_eq!(pool.map(square, 0..1000u64).unwrap(), squares[..1000]);
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
}
