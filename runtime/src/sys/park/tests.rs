//! Tests of the parking tables: lost wake-ups, polling, dead waiters and dead lockers.
use std::sync::Arc;
use std::time::Instant;

use super::*;

/// Words and a parking table in ordinary memory, registered like a mapping.
#[repr(C, align(64))]
struct Memory([u8; 64 + TABLE_BYTES]);

struct Mapping(Box<Memory>);

impl Mapping {
    fn new() -> Arc<Mapping> {
        let mem = Box::new(Memory([0; 64 + TABLE_BYTES]));
        let start = mem.0.as_ptr() as usize;
        // SAFETY: the table bytes are inside the box, 64-aligned, zeroed and unshared.
        unsafe { init_table((start + 64) as *mut u8).unwrap() };
        register(start, start + 64, start + 64);
        Arc::new(Mapping(mem))
    }

    /// Its waiters poll, as on a platform without `sem_init`.
    fn polling() -> Arc<Mapping> {
        let mapping = Mapping::new();
        // SAFETY: the live table of the mapping.
        unsafe { header_mode(mapping.table()).store(POLLING, Ordering::SeqCst) };
        mapping
    }

    fn word(&self, i: usize) -> &AtomicU32 {
        assert!(i < 16);
        // SAFETY: in the box's first 64 bytes, 4-aligned; only ever accessed atomically.
        unsafe { &*self.0.0.as_ptr().add(4 * i).cast::<AtomicU32>() }
    }

    fn table(&self) -> *mut Table {
        locate(self.word(0)).unwrap().0
    }

    fn claimed(&self) -> u32 {
        // SAFETY: the live table of the mapping.
        unsafe { header_claimed(self.table()).load(Ordering::SeqCst) }
    }

    /// Claims every slot for `owner`, parked on word `i`, as waiters of another process
    /// would.
    fn fill_slots(&self, owner: u32, i: usize) {
        let table = self.table();
        // SAFETY: the live table; the mutex is held around the changes.
        unsafe {
            assert!(lock(table));
            for k in 0..SLOTS {
                let s = slot(table, k);
                assert_eq!(slot_owner(s).load(Ordering::Relaxed), FREE);
                slot_word(s).store(4 * i as u64, Ordering::Relaxed);
                slot_owner(s).store(owner, Ordering::Relaxed);
                header_claimed(table).fetch_add(1, Ordering::SeqCst);
            }
            unlock(table);
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        unregister(self.0.0.as_ptr() as usize);
    }
}

/// Long enough that a lost wake-up shows as a stall, not as a late return; each wait
/// checks for a stall after it, so a lost wake-up fails the test after one nap.
const LONG: Duration = Duration::from_secs(15);
const STALLED: Duration = Duration::from_secs(10);

fn nap_checked(word: &AtomicU32, expected: u32, started: Instant) {
    nap(word, expected, LONG);
    assert!(started.elapsed() < STALLED, "a wake-up was lost");
}

fn every_waiter_is_woken(mapping: &Arc<Mapping>) {
    let started = Instant::now();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let mapping = Arc::clone(mapping);
            std::thread::spawn(move || {
                while mapping.word(3).load(Ordering::SeqCst) == 0 {
                    nap_checked(mapping.word(3), 0, started);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    mapping.word(3).store(1, Ordering::SeqCst);
    wake(mapping.word(3), 1);
    for w in waiters {
        w.join().unwrap();
    }
}

#[test]
fn a_wake_reaches_every_waiter() {
    let mapping = Mapping::new();
    every_waiter_is_woken(&mapping);
    assert_eq!(mapping.claimed(), 0, "every slot is freed");
}

fn ping_pong(mapping: &Arc<Mapping>, rounds: u32) {
    let started = Instant::now();
    fn turn(mapping: &Mapping, mine: u32, next: u32, rounds: u32, started: Instant) {
        for _ in 0..rounds {
            while mapping.word(0).load(Ordering::SeqCst) != mine {
                nap_checked(mapping.word(0), next, started);
            }
            mapping.word(0).store(next, Ordering::SeqCst);
            wake(mapping.word(0), 1);
        }
    }
    let other = {
        let mapping = Arc::clone(mapping);
        std::thread::spawn(move || turn(&mapping, 1, 0, rounds, started))
    };
    turn(mapping, 0, 1, rounds, started);
    other.join().unwrap();
}

#[test]
fn no_wake_up_is_lost_in_a_ping_pong() {
    let mapping = Mapping::new();
    ping_pong(&mapping, 10_000);
    assert_eq!(mapping.claimed(), 0, "every slot is freed");
}

#[test]
fn without_semaphores_waiters_poll_and_miss_nothing() {
    let mapping = Mapping::polling();
    every_waiter_is_woken(&mapping);
    ping_pong(&mapping, 1_000);
    assert_eq!(mapping.claimed(), 0, "a polling waiter claims no slot");
}

#[test]
fn with_every_slot_taken_by_live_waiters_a_wait_polls() {
    let mapping = Mapping::new();
    mapping.fill_slots(std::process::id(), 9); // alive: never reclaimed
    ping_pong(&mapping, 1_000);
    assert_eq!(mapping.claimed(), SLOTS as u32);
}

/// The id of a process that existed and is gone (reaped).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn slots_of_dead_waiters_wedge_no_wake_and_are_reclaimed() {
    let mapping = Mapping::new();
    // Every slot held by a waiter killed while parked on word 2, each with a post it never
    // took after the first wake.
    mapping.fill_slots(dead_pid(), 2);
    for _ in 0..3 {
        mapping.word(2).fetch_add(1, Ordering::SeqCst);
        wake(mapping.word(2), 1); // returns: nothing waits for the dead
    }
    // A live waiter reclaims a slot, and is woken by a post, not by its nap's end.
    let started = Instant::now();
    let waiter = {
        let mapping = Arc::clone(&mapping);
        std::thread::spawn(move || {
            while mapping.word(2).load(Ordering::SeqCst) == 3 {
                nap_checked(mapping.word(2), 3, started);
            }
        })
    };
    // Until it parks on the first slot, reclaimed.
    // SAFETY: the live table; an owner is an atomic.
    while unsafe { slot_owner(slot(mapping.table(), 0)) }.load(Ordering::SeqCst)
        != std::process::id()
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    mapping.word(2).store(4, Ordering::SeqCst);
    wake(mapping.word(2), 1);
    waiter.join().unwrap();
    // One dead slot was reclaimed, used and freed.
    assert_eq!(mapping.claimed(), SLOTS as u32 - 1);
}

#[test]
fn a_table_lock_whose_holder_died_is_recovered() {
    let mapping = Mapping::new();
    let table = mapping.table() as usize;
    // SAFETY: the live table; the thread ends holding the robust mutex, having counted a
    // slot it never owned (as if killed in `claim`).
    let locked = std::thread::spawn(move || unsafe {
        let locked = lock(table as *mut Table);
        header_claimed(table as *mut Table).fetch_add(1, Ordering::SeqCst);
        locked
    });
    assert!(locked.join().unwrap());
    assert_eq!(mapping.claimed(), 1);
    // A waiter and a waker both lock it: EOWNERDEAD, made consistent, not a deadlock.
    mapping.word(5).store(7, Ordering::SeqCst);
    nap(mapping.word(5), 0, LONG); // the word differs: returns at once
    wake(mapping.word(5), 1);
    ping_pong(&mapping, 100);
    assert_eq!(mapping.claimed(), 0, "recounted by the next locker");
}

#[test]
fn words_outside_any_table_are_polled() {
    let word = AtomicU32::new(1);
    wait(&word, 0, None);
    wait(&word, 1, Some(Duration::from_millis(1)));
    wake(&word, 1);
    assert!(locate(&word).is_none());
}
