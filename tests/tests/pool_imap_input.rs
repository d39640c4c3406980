//! `imap` / `imap_unordered` and their input: an input that fails (an `Err` item in
//! `try_imap`, a panic in the input iterator) yields the results before it first, then its
//! error; `buffersize` bounds the read-ahead; a known-length input gets an automatic chunk
//! size, and `chunksize(1)` still holds.
mp::guard!();

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mp_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);

#[mp::worker]
fn square(n: u64) -> u64 {
    n * n
}

/// `0..` whose item `bad` fails.
fn failing_at(bad: u64) -> impl Iterator<Item = Result<u64, mp::Error>> {
    (0..).map(move |n| {
        if n == bad {
            Err(mp::Error::InvalidArgument(format!("bad input {n}")))
        } else {
            Ok(n)
        }
    })
}

#[test]
fn try_imap_yields_the_results_before_a_failing_item_then_its_error() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    for buffersize in [None, Some(1), Some(3), Some(1_000)] {
        let options = match buffersize {
            Some(b) => pool.buffersize(b),
            None => pool.chunksize(1),
        };
        let out: Vec<_> = options.try_imap(square, failing_at(7)).collect();
        assert_eq!(out.len(), 8, "{buffersize:?}: {out:?}");
        for (n, r) in out[..7].iter().enumerate() {
            assert_eq!(r.as_ref().ok(), Some(&((n * n) as u64)));
        }
        assert!(
            matches!(&out[7], Err(mp::Error::InvalidArgument(m)) if m == "bad input 7"),
            "{:?}",
            out[7]
        );

        let mut out: Vec<_> = options.try_imap_unordered(square, failing_at(7)).collect();
        assert!(out.pop().unwrap().is_err());
        let mut values: Vec<u64> = out.into_iter().map(Result::unwrap).collect();
        values.sort();
        assert_eq!(values, (0..7).map(|n| n * n).collect::<Vec<_>>());
    }
    // Failing first: only the error.
    let out: Vec<_> = pool.try_imap(square, failing_at(0)).collect();
    assert!(matches!(out[..], [Err(mp::Error::InvalidArgument(_))]));
    // An exact-length input failing half-way (automatic chunks).
    let input: Vec<Result<u64, mp::Error>> = failing_at(500).take(1_000).collect();
    let out: Vec<_> = pool.try_imap(square, input).collect();
    assert_eq!(out.len(), 501);
    assert!(out[..500].iter().all(Result::is_ok) && out[500].is_err());
}

#[test]
fn a_panicking_input_iterator_is_resumed_after_the_results_before_it() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    for ordered in [true, false] {
        let input = (0..).inspect(|&n: &u64| assert!(n != 5, "input {n} is bad"));
        let mut seen = Vec::new();
        let unwound = catch_unwind(AssertUnwindSafe(|| {
            let results: Box<dyn Iterator<Item = mp::Result<u64>>> = if ordered {
                Box::new(pool.imap(square, input))
            } else {
                Box::new(pool.imap_unordered(square, input))
            };
            for r in results {
                seen.push(r.unwrap());
            }
        }));
        let payload = unwound.expect_err("the input's panic reaches the consumer");
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(message.contains("input 5 is bad"), "{message}");
        seen.sort();
        assert_eq!(seen, [0, 1, 4, 9, 16], "ordered: {ordered}");
    }
    // The pool is fine.
    assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
}

#[test]
fn buffersize_bounds_the_read_ahead() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    let read = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&read);
    let input = (0..).inspect(move |_: &u64| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let mut it = pool.buffersize(3).imap(square, input);
    for n in 0..10u64 {
        assert_eq!(it.next().unwrap().unwrap(), n * n);
        let read = read.load(Ordering::SeqCst) as u64;
        // What was yielded, and at most 3 more.
        assert!(read <= n + 1 + 3, "{read} read after {} results", n + 1);
    }
    drop(it);
    let none: Vec<_> = pool.buffersize(0).imap(square, 0..3).collect();
    assert!(matches!(none[..], [Err(mp::Error::InvalidArgument(_))]));
}

fn chunksize_of(debug: String) -> String {
    let at = debug
        .find("chunksize: ")
        .expect("Imap's Debug shows its chunk size");
    debug[at..].split([',', ' ']).nth(1).unwrap().to_owned()
}

#[test]
fn imap_of_a_known_length_input_chooses_its_chunk_size() {
    let _w = watchdog(LIMIT);
    let pool = mp::Pool::new(2).unwrap();
    let it = pool.imap(square, 0..10_000);
    // Python's map choice: about four chunks per worker.
    assert_eq!(chunksize_of(format!("{it:?}")), "Some(1250)");
    let all: Vec<u64> = it.collect::<Result<_, _>>().unwrap();
    assert_eq!(all.len(), 10_000);
    assert_eq!(all[9_999], 9_999 * 9_999);
    let it = pool.imap_unordered(square, vec![1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(chunksize_of(format!("{it:?}")), "Some(2)");
    assert_eq!(it.count(), 9);
    // Explicit and unknown lengths keep one task a chunk.
    let it = pool.chunksize(1).imap(square, 0..10_000);
    assert_eq!(chunksize_of(format!("{it:?}")), "Some(1)");
    drop(it);
    let it = pool.imap(square, (0..10_000).filter(|n| n % 2 == 0));
    assert_eq!(chunksize_of(format!("{it:?}")), "Some(1)");
    assert_eq!(it.count(), 5_000);
}
