//! `Barrier` across processes: an action run by exactly one party per pass, before any party
//! is released; a default timeout that travels with the barrier; an action that fails, or
//! whose process dies, breaks the barrier for the others instead of wedging them.
mp::guard!();

use std::time::{Duration, Instant};

use mp::{Barrier, Error, RawValue};

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(60))
}

const PASSES: u32 = 20;

/// Each pass: the action counts passes; after release every party must see the count of
/// this pass (the action ran before anyone was released) and no more (it ran once).
#[mp::worker]
fn passes(barrier: Barrier, count: RawValue<u32>, leaders: RawValue<u32>) -> mp::Result<()> {
    for pass in 0..PASSES {
        let index = barrier.wait_with(|| {
            count.set(count.get() + 1);
            Ok(())
        })?;
        let seen = count.get();
        if seen != pass + 1 {
            return Err(Error::InvalidArgument(format!(
                "pass {pass}: saw {seen} actions"
            )));
        }
        if index == barrier.parties() - 1 {
            leaders
                .atomic()
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        // Nobody may start the next pass before everyone checked this one.
        barrier.wait()?;
    }
    Ok(())
}

#[test]
fn the_action_runs_once_per_pass_before_release() {
    let _w = limit();
    let barrier = Barrier::new(3).unwrap();
    let count = RawValue::new(0u32).unwrap();
    let leaders = RawValue::new(0u32).unwrap();
    let mut ps: Vec<_> = (0..3)
        .map(|_| mp::spawn(passes, (barrier.clone(), count.clone(), leaders.clone())).unwrap())
        .collect();
    for p in &mut ps {
        p.join_timeout(Duration::from_secs(30)).unwrap().unwrap();
    }
    assert_eq!(count.get(), PASSES);
    assert_eq!(leaders.get(), PASSES);
}

#[mp::worker]
fn wait_alone(barrier: Barrier) -> String {
    match barrier.wait() {
        Ok(i) => format!("passed {i}"),
        Err(e) => format!("{e:?}"),
    }
}

#[test]
fn a_default_timeout_travels_with_the_barrier() {
    let _w = limit();
    let barrier = Barrier::with_timeout(2, Duration::from_millis(300)).unwrap();
    let start = Instant::now();
    let mut p = mp::spawn(wait_alone, barrier.clone()).unwrap();
    let seen = p.join_timeout(Duration::from_secs(10)).unwrap();
    assert!(seen.starts_with("BrokenBarrier"), "{seen}");
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(barrier.broken());
}

#[mp::worker]
fn failing_action(barrier: Barrier) -> String {
    match barrier.wait_with(|| Err(Error::InvalidArgument("action failed".into()))) {
        Ok(i) => format!("passed {i}"),
        Err(e) => format!("{e:?}"),
    }
}

#[test]
fn a_failing_action_breaks_the_barrier_for_the_others() {
    let _w = limit();
    let barrier = Barrier::new(3).unwrap();
    let mut ps: Vec<_> = (0..3)
        .map(|_| mp::spawn(failing_action, barrier.clone()).unwrap())
        .collect();
    let mut seen: Vec<String> = ps
        .iter_mut()
        .map(|p| p.join_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    seen.sort();
    assert!(seen[0].starts_with("BrokenBarrier"), "{seen:?}");
    assert!(seen[1].starts_with("BrokenBarrier"), "{seen:?}");
    assert!(seen[2].contains("action failed"), "{seen:?}");
    assert!(barrier.broken());
}

#[mp::worker]
fn die_in_action(barrier: Barrier) -> mp::Result<u32> {
    std::thread::sleep(Duration::from_millis(300)); // arrive last
    barrier.wait_with(|| std::process::abort())
}

#[test]
fn a_party_that_dies_running_the_action_breaks_the_barrier() {
    let _w = limit();
    let barrier = Barrier::new(2).unwrap();
    let mut p = mp::spawn(die_in_action, barrier.clone()).unwrap();
    let start = Instant::now();
    // No timeout: only the death check can end this wait.
    assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(p.join_timeout(Duration::from_secs(10)).is_err());
}

#[test]
fn waits_without_an_action_still_pass() {
    let _w = limit();
    let barrier = Barrier::new(2).unwrap();
    let mut p = mp::spawn(wait_alone, barrier.clone()).unwrap();
    let mine = barrier.wait().unwrap();
    let theirs = p.join_timeout(Duration::from_secs(10)).unwrap();
    assert!(theirs.starts_with("passed"), "{theirs}");
    assert!(mine <= 1);
    assert_eq!(barrier.n_waiting(), 0);
    assert_eq!(barrier.timeout(), None);
}
