//! The portable wait/wake primitive on words in shared memory, for platforms without a
//! futex: process-shared, robust POSIX mutexes and condition variables, in a *parking table*
//! at the end of every shared mapping that may hold wait words. On Linux it is built in place
//! of futexes with the `portable-sync` feature, so the cross-process tests run on it too.
//!
//! The contract is the futex's (see [`super::futex_wait`]): `wait(word, expected)` returns
//! once the word no longer holds `expected`, a wake arrives or the timeout passes, and may
//! return spuriously; callers re-check. A word belongs to the mapping whose address range
//! holds it, found in a per-process registry, and to the bucket picked by its offset in that
//! mapping, so every process (whatever address it mapped the memory at) uses the same
//! bucket.
//!
//! * **No lost wake-up.** A waiter checks the word with the bucket's mutex held and releases
//!   it only inside `pthread_cond_timedwait`; a waker changes the word first, then takes the
//!   mutex to broadcast, so it either finds the waiter asleep or the waiter finds the new
//!   value.
//! * **Dead processes.** The mutexes are robust: one whose holder died is made consistent by
//!   the next locker (it guards no state; the words carry it). A waiter killed inside a wait
//!   may leave a condition variable's counters off, which could swallow a wake-up, so every
//!   wait ends after at most [`MAX_NAP`] and wakes are broadcasts: the worst case is latency,
//!   never a hang.
//! * **Lifetime.** A registry entry is removed before its mapping is unmapped; a waiter
//!   borrows a word of the mapping, so the mapping, table included, outlives the wait.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::io;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Buckets per table; adjacent words (a primitive's) fall into different buckets.
const BUCKETS: usize = 64;
/// The longest single wait: bounds the cost of a wake-up lost to a killed waiter.
pub(crate) const MAX_NAP: Duration = Duration::from_millis(50);

#[repr(C, align(64))]
struct Bucket {
    mutex: libc::pthread_mutex_t,
    cond: libc::pthread_cond_t,
}

/// The bytes a parking table takes at the end of a mapping.
pub(crate) const TABLE_BYTES: usize = BUCKETS * size_of::<Bucket>();

/// Where the table of a mapping whose usable part is `len` bytes starts.
pub(crate) fn table_offset(len: usize) -> usize {
    len.next_multiple_of(align_of::<Bucket>())
}

/// A registered mapping: its end and its table's address.
struct Region {
    end: usize,
    table: usize,
}

/// Mapped ranges with a parking table, by start address.
static REGISTRY: RwLock<BTreeMap<usize, Region>> = RwLock::new(BTreeMap::new());

/// Initialises the parking table of fresh, zeroed memory at `table`.
///
/// # Safety
///
/// `table` points to [`TABLE_BYTES`] writable bytes, aligned for the table, that no process
/// uses yet.
pub(crate) unsafe fn init_table(table: *mut u8) -> io::Result<()> {
    let buckets = table.cast::<Bucket>();
    // SAFETY: attribute objects are initialised before use and destroyed after; every bucket
    // is inside the table (the caller's obligation) and not yet shared.
    unsafe {
        let mut mattr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        let mut cattr = std::mem::MaybeUninit::<libc::pthread_condattr_t>::uninit();
        check(libc::pthread_mutexattr_init(mattr.as_mut_ptr()))?;
        check(libc::pthread_mutexattr_setpshared(
            mattr.as_mut_ptr(),
            libc::PTHREAD_PROCESS_SHARED,
        ))?;
        check(libc::pthread_mutexattr_setrobust(
            mattr.as_mut_ptr(),
            libc::PTHREAD_MUTEX_ROBUST,
        ))?;
        check(libc::pthread_condattr_init(cattr.as_mut_ptr()))?;
        check(libc::pthread_condattr_setpshared(
            cattr.as_mut_ptr(),
            libc::PTHREAD_PROCESS_SHARED,
        ))?;
        check(libc::pthread_condattr_setclock(
            cattr.as_mut_ptr(),
            libc::CLOCK_MONOTONIC,
        ))?;
        for i in 0..BUCKETS {
            let b = buckets.add(i);
            check(libc::pthread_mutex_init(
                &raw mut (*b).mutex,
                mattr.as_ptr(),
            ))?;
            check(libc::pthread_cond_init(&raw mut (*b).cond, cattr.as_ptr()))?;
        }
        libc::pthread_mutexattr_destroy(mattr.as_mut_ptr());
        libc::pthread_condattr_destroy(cattr.as_mut_ptr());
    }
    Ok(())
}

fn check(code: libc::c_int) -> io::Result<()> {
    match code {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Records that `start..end` is mapped with its parking table at `table`.
pub(crate) fn register(start: usize, end: usize, table: usize) {
    let mut registry = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    registry.insert(start, Region { end, table });
}

/// Forgets the mapping at `start` (before it is unmapped).
pub(crate) fn unregister(start: usize) {
    let mut registry = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    registry.remove(&start);
}

/// The bucket of `word`, if it lies in a registered mapping.
fn bucket_of(word: &AtomicU32) -> Option<*mut Bucket> {
    let addr = std::ptr::from_ref(word) as usize;
    let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    let (&start, region) = registry.range(..=addr).next_back()?;
    if addr >= region.end {
        return None;
    }
    let index = ((addr - start) / size_of::<AtomicU32>()) % BUCKETS;
    Some((region.table as *mut Bucket).wrapping_add(index))
}

/// Locks a bucket's robust mutex, recovering it from a holder that died; whether it is now
/// held (it is not only if the mutex is broken, e.g. `ENOTRECOVERABLE`: the caller then
/// polls instead).
///
/// # Safety
///
/// `bucket` is a bucket of a live, initialised table.
#[must_use]
unsafe fn lock(bucket: *mut Bucket) -> bool {
    // SAFETY: the caller's obligation; the mutex is process-shared and robust.
    unsafe {
        let code = libc::pthread_mutex_lock(&raw mut (*bucket).mutex);
        recover(code, bucket);
        code == 0 || code == libc::EOWNERDEAD
    }
}

/// After a lock or a wait: makes the mutex consistent again if its last holder died.
///
/// # Safety
///
/// As for [`lock`], and the caller now holds the mutex.
unsafe fn recover(code: libc::c_int, bucket: *mut Bucket) {
    if code == libc::EOWNERDEAD {
        // SAFETY: we hold the mutex (EOWNERDEAD hands it over); the bucket guards no state.
        unsafe { libc::pthread_mutex_consistent(&raw mut (*bucket).mutex) };
    }
}

/// Blocks until `word` no longer holds `expected`, a wake arrives, or `timeout` passes (at most
/// [`MAX_NAP`] at a time). A word outside any mapping with a table (never the case in `mp`) is
/// polled.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    nap(word, expected, timeout.map_or(MAX_NAP, |t| t.min(MAX_NAP)));
}

/// One wait of at most `nap`.
fn nap(word: &AtomicU32, expected: u32, nap: Duration) {
    let Some(bucket) = bucket_of(word) else {
        if word.load(Ordering::SeqCst) == expected {
            std::thread::sleep(nap.min(Duration::from_millis(1)));
        }
        return;
    };
    let deadline = deadline_after(nap);
    // SAFETY: `word` is borrowed from a live mapping (registered above), so its table is live;
    // the mutex is held from `lock` until the unlock, and the wait releases and retakes it.
    unsafe {
        if !lock(bucket) {
            std::thread::sleep(nap.min(Duration::from_millis(1)));
            return;
        }
        if word.load(Ordering::SeqCst) == expected {
            let code = libc::pthread_cond_timedwait(
                &raw mut (*bucket).cond,
                &raw mut (*bucket).mutex,
                &deadline,
            );
            recover(code, bucket);
        }
        libc::pthread_mutex_unlock(&raw mut (*bucket).mutex);
    }
}

/// Wakes the waiters on `word` (all of them, whatever `n`: waiters re-check, and a broadcast
/// cannot be swallowed by a dead waiter's slot).
pub(crate) fn wake(word: &AtomicU32, _n: u32) {
    let Some(bucket) = bucket_of(word) else {
        return;
    };
    // SAFETY: as in `wait`; a waiter on a broken mutex polls, so it needs no broadcast.
    unsafe {
        if !lock(bucket) {
            return;
        }
        libc::pthread_cond_broadcast(&raw mut (*bucket).cond);
        libc::pthread_mutex_unlock(&raw mut (*bucket).mutex);
    }
}

/// `CLOCK_MONOTONIC` now plus `d`, as condition variables here measure it.
fn deadline_after(d: Duration) -> libc::timespec {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let nanos = now.tv_nsec as u64 + u64::from(d.subsec_nanos());
    libc::timespec {
        tv_sec: (now.tv_sec as u64 + d.as_secs() + nanos / 1_000_000_000) as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    /// Words and a parking table in ordinary memory, registered like a mapping.
    #[repr(C, align(64))]
    struct Mapping([u8; 64 + TABLE_BYTES]);

    struct Table(Box<Mapping>);

    impl Table {
        fn new() -> Arc<Table> {
            let mem = Box::new(Mapping([0; 64 + TABLE_BYTES]));
            let start = mem.0.as_ptr() as usize;
            // SAFETY: the table bytes are inside the box, 64-aligned, zeroed and unshared.
            unsafe { init_table((start + 64) as *mut u8).unwrap() };
            register(start, start + 64, start + 64);
            Arc::new(Table(mem))
        }

        fn word(&self, i: usize) -> &AtomicU32 {
            assert!(i < 16);
            // SAFETY: in the box's first 64 bytes, 4-aligned; only ever accessed atomically.
            unsafe { &*self.0.0.as_ptr().add(4 * i).cast::<AtomicU32>() }
        }
    }

    impl Drop for Table {
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

    #[test]
    fn a_wake_reaches_every_waiter() {
        let table = Table::new();
        let started = Instant::now();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let table = Arc::clone(&table);
                std::thread::spawn(move || {
                    while table.word(3).load(Ordering::SeqCst) == 0 {
                        nap_checked(table.word(3), 0, started);
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        table.word(3).store(1, Ordering::SeqCst);
        wake(table.word(3), 1);
        for w in waiters {
            w.join().unwrap();
        }
    }

    #[test]
    fn no_wake_up_is_lost_in_a_ping_pong() {
        let table = Table::new();
        let started = Instant::now();
        fn turn(table: &Table, mine: u32, next: u32, started: Instant) {
            for _ in 0..10_000 {
                while table.word(0).load(Ordering::SeqCst) != mine {
                    nap_checked(table.word(0), next, started);
                }
                table.word(0).store(next, Ordering::SeqCst);
                wake(table.word(0), 1);
            }
        }
        let other = {
            let table = Arc::clone(&table);
            std::thread::spawn(move || turn(&table, 1, 0, started))
        };
        turn(&table, 0, 1, started);
        other.join().unwrap();
    }

    #[test]
    fn a_bucket_lock_whose_holder_died_is_recovered() {
        let table = Table::new();
        let bucket = bucket_of(table.word(5)).unwrap() as usize;
        // SAFETY: a bucket of the live table; the thread ends holding the robust mutex.
        let locked = std::thread::spawn(move || unsafe { lock(bucket as *mut Bucket) });
        assert!(locked.join().unwrap());
        wake(table.word(5), 1); // EOWNERDEAD: made consistent, not a deadlock
        table.word(5).store(7, Ordering::SeqCst);
        nap(table.word(5), 0, LONG); // the word differs: returns at once
        wake(table.word(5), 1);
    }

    #[test]
    fn words_outside_any_table_are_polled() {
        let word = AtomicU32::new(1);
        wait(&word, 0, None);
        wait(&word, 1, Some(Duration::from_millis(1)));
        wake(&word, 1);
        assert!(bucket_of(&word).is_none());
    }
}
