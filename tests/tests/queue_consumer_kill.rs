//! Queue consumers SIGKILLed at random moments inside `get` (issue 14, defect 2): every item,
//! inline or out of line (a sealed memfd), is received exactly once; none is silently lost and
//! none is delivered twice.
//!
//! How receipt is counted: each item carries its index. A consumer records the item it holds
//! in its `claims` slot while the item is being decoded (inside `get`), and after `get`
//! returns bumps `counts[index]` and clears the slot. The parent kills consumers, reads the
//! dead consumer's slot and restarts it. At the end every index must have been counted
//! exactly once, except an item whose consumer died holding it after `get` had committed it
//! (counted 0 times, claimed by that dead consumer, and by no one else): that item was
//! delivered, and died with its consumer between `get`'s last instruction and the test's
//! counter write, a window no queue can close. Any other count is a failure.
mp::guard!();

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mp::{Error, Queue, RawArray};
use serde::{Deserialize, Deserializer, Serialize};
use serde_bytes::ByteBuf;

/// The queue's ring: 2 MiB, so its inline limit is 512 KiB (a quarter of it).
const RING: usize = 2 << 20;
/// Items above the ring's inline limit travel out of line.
const LARGE: usize = 520 * 1024;
/// Large items that still travel inline (decoded in place in the ring), wrapping around it.
const MEDIUM: usize = 300 * 1024;
const MAX_ITEMS: usize = 60_000;
const CONSUMERS: usize = 2;
const KILLS: usize = 200;
const STOP: u32 = u32::MAX;

#[derive(Serialize)]
struct Item {
    index: u32,
    payload: ByteBuf,
}

#[derive(Deserialize)]
struct ItemWire {
    index: u32,
    payload: ByteBuf,
}

/// In a consumer: the shared claims array and this consumer's slot in it.
static CLAIM: OnceLock<(RawArray<u32>, usize)> = OnceLock::new();

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = ItemWire::deserialize(d)?;
        if let Some((claims, slot)) = CLAIM.get() {
            // The value is in hand from here on: 1 + index, 0 meaning none.
            claims.set(*slot, w.index.wrapping_add(1)).unwrap();
        }
        Ok(Item {
            index: w.index,
            payload: w.payload,
        })
    }
}

fn payload_of(index: u32) -> Vec<u8> {
    let len = match index % 6 {
        0 => LARGE + index as usize % 7,
        3 => MEDIUM + index as usize % 7,
        _ => 16 + index as usize % 50,
    };
    vec![(index % 251) as u8; len]
}

#[mp::worker]
fn consume(
    q: Queue<Item>,
    counts: RawArray<u32>,
    claims: RawArray<u32>,
    progress: RawArray<u32>,
    errors: RawArray<u32>,
    slot: u32,
) {
    let slot = slot as usize;
    let _ = CLAIM.set((claims.clone(), slot));
    loop {
        match q.get_timeout(Duration::from_secs(20)) {
            Ok(item) => {
                if item.index == STOP {
                    claims.set(slot, 0).unwrap();
                    return;
                }
                let i = item.index as usize;
                counts.atomic(i).unwrap().fetch_add(1, Ordering::SeqCst);
                claims.set(slot, 0).unwrap();
                if item.payload.as_slice() != payload_of(item.index) {
                    eprintln!("consumer: item {i} has a wrong payload");
                    errors.atomic(0).unwrap().fetch_add(1, Ordering::SeqCst);
                }
                progress
                    .atomic(slot)
                    .unwrap()
                    .fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                eprintln!("consumer: get failed: {e}");
                errors.atomic(0).unwrap().fetch_add(1, Ordering::SeqCst);
                if matches!(e, Error::Timeout) {
                    return;
                }
            }
        }
    }
}

/// A small xorshift generator: no dependency, and the seed is printed for replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn consumers_killed_inside_get_lose_and_duplicate_nothing() {
    let _w = mp_tests::watchdog(Duration::from_secs(90));
    let seed = std::env::var("MP_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("seed {seed} (set MP_TEST_SEED to replay)");
    let mut rng = Rng(seed);

    let q = Queue::<Item>::with_capacity(256, RING).unwrap();
    let counts = RawArray::<u32>::new(MAX_ITEMS).unwrap();
    let claims = RawArray::<u32>::new(CONSUMERS).unwrap();
    let progress = RawArray::<u32>::new(CONSUMERS).unwrap();
    let errors = RawArray::<u32>::new(1).unwrap();

    // The producer is a thread of this process (never killed); it stops when the kills end.
    let done = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicU32::new(0));
    let producer = {
        let (q, done, produced) = (q.clone(), done.clone(), produced.clone());
        std::thread::spawn(move || {
            for index in 0..MAX_ITEMS as u32 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let item = Item {
                    index,
                    payload: ByteBuf::from(payload_of(index)),
                };
                if q.put(item).is_err() {
                    break;
                }
                produced.store(index + 1, Ordering::SeqCst);
            }
        })
    };

    let start = |slot: usize| {
        mp::spawn(
            consume,
            (
                q.clone(),
                counts.clone(),
                claims.clone(),
                progress.clone(),
                errors.clone(),
                slot as u32,
            ),
        )
        .unwrap()
    };
    let mut consumers: Vec<_> = (0..CONSUMERS).map(start).collect();
    // Indices held (decoded inside `get`) by consumers at the moment they were killed.
    let mut held_by_dead = Vec::new();
    let began = Instant::now();
    for _ in 0..KILLS {
        let slot = (rng.next() % CONSUMERS as u64) as usize;
        // Wait until this consumer is in its `get` loop, then kill it a moment later.
        let seen = progress.get(slot).unwrap();
        let wait = Instant::now();
        while progress.get(slot).unwrap() == seen && wait.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_micros(50));
        }
        assert!(
            wait.elapsed() < Duration::from_secs(10),
            "consumer {slot} made no progress"
        );
        let spin = Instant::now();
        let delay = Duration::from_nanos(rng.next() % 400_000);
        while spin.elapsed() < delay {
            std::hint::spin_loop();
        }
        consumers[slot].kill().unwrap();
        let _ = consumers[slot].join();
        let claim = claims.get(slot).unwrap();
        if claim != 0 {
            held_by_dead.push(claim - 1);
            claims.set(slot, 0).unwrap();
        }
        consumers[slot] = start(slot);
    }
    done.store(true, Ordering::SeqCst);
    producer.join().unwrap();
    for _ in 0..CONSUMERS {
        let stop = Item {
            index: STOP,
            payload: ByteBuf::new(),
        };
        assert!(q.put(stop).is_ok());
    }
    for c in &mut consumers {
        c.join_timeout(Duration::from_secs(30)).unwrap();
    }

    let n = produced.load(Ordering::SeqCst) as usize;
    let counts = counts.to_vec();
    let mut lost = Vec::new();
    let mut twice = Vec::new();
    let mut in_dead_hands = 0;
    let mut read_again = 0;
    for (i, &c) in counts[..n].iter().enumerate() {
        match c {
            1 if held_by_dead.contains(&(i as u32)) => read_again += 1,
            1 => {}
            0 if held_by_dead.contains(&(i as u32)) => in_dead_hands += 1,
            0 => lost.push(i),
            _ => twice.push((i, c)),
        }
    }
    eprintln!(
        "{n} items, {KILLS} kills in {:?}; {read_again} held by a consumer when it was \
         killed and counted once (read again, or counted just before the kill); \
         {in_dead_hands} delivered to a consumer killed before it could count them; \
         {} lost, {} delivered twice",
        began.elapsed(),
        lost.len(),
        twice.len()
    );
    assert_eq!(
        errors.get(0).unwrap(),
        0,
        "consumers saw errors (see stderr)"
    );
    assert!(lost.is_empty(), "silently lost items: {lost:?}");
    assert!(
        twice.is_empty(),
        "items delivered more than once: {twice:?}"
    );
    assert!(q.empty(), "items left in the queue: {}", q.qsize());
}
