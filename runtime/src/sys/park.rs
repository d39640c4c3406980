//! The portable wait/wake primitive on words in shared memory, for platforms without a
//! futex: a *parking table* at the end of every shared mapping that may hold wait words, made
//! of one robust, process-shared POSIX mutex and [`SLOTS`] waiter slots, each with its own
//! process-shared POSIX semaphore. On Linux it is built in place of futexes with the
//! `portable-sync` feature, so the cross-process tests run on it too.
//!
//! The contract is the futex's (see [`super::futex_wait`]): `wait(word, expected)` returns
//! once the word no longer holds `expected`, a wake arrives or the timeout passes, and may
//! return spuriously; callers re-check. A word belongs to the mapping whose address range
//! holds it, found in a per-process registry, and is named in the table by its offset in that
//! mapping, so every process (whatever address it mapped the memory at) agrees on it.
//!
//! * **No lost wake-up.** A waiter takes the mutex, claims a free slot (its pid and the
//!   word's offset), checks the word, releases the mutex and sleeps on its slot's semaphore.
//!   A waker changes the word first, then (if any slot is claimed) takes the mutex and posts
//!   the semaphore of every slot parked on that word. Either the waker's scan follows the
//!   claim, and the post ends the sleep (even a post that comes before the sleep starts: a
//!   semaphore keeps the count), or it precedes it, and the waiter's check sees the new value.
//! * **A death wedges nothing.** No step of a wake waits for a waiter: `sem_post` never
//!   blocks, and the mutex is held for a scan of the slots, never across a sleep. A process
//!   killed holding the mutex: the next locker gets `EOWNERDEAD`, makes it consistent and
//!   recounts the claimed slots (each store leaves a slot valid). A process killed while
//!   parked leaves its slot claimed: wakes post it in vain (a count nobody takes), and a
//!   waiter that finds no free slot reclaims the slots of dead owners (`kill(pid, 0)` fails
//!   with `ESRCH`). (Condition variables served before; glibc's `pthread_cond_broadcast`
//!   waits, holding the mutex, for the waiters of the previous broadcast to leave, which a
//!   killed one never does: every later wait and wake hung.)
//! * **Degraded, never stuck.** With no slot to claim, a broken mutex, or a platform without
//!   process-shared unnamed semaphores (macOS has no `sem_init`: the table then records that
//!   its waiters poll), a wait polls the word with exponential back-off up to [`POLL_MAX`].
//!   Every wait ends after at most [`MAX_NAP`] anyway (callers re-check and wait again), so even
//!   an unforeseen lost post costs latency, not a hang.
//! * **Lifetime.** A registry entry is removed before its mapping is unmapped; a waiter
//!   borrows a word of the mapping, so the mapping, table included, outlives the wait. The
//!   semaphores are never destroyed (glibc's `sem_destroy` does nothing; the memory goes with
//!   the last mapping).
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::io;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

/// Waiter slots per table: threads of any process parked at once on the mapping's words
/// before further waiters poll.
const SLOTS: usize = 64;
/// The longest single wait: a safety net (callers re-check); a wake-up is a semaphore post.
pub(crate) const MAX_NAP: Duration = Duration::from_millis(50);
/// The first and the longest pause of a polling wait.
const POLL_MIN: Duration = Duration::from_micros(20);
const POLL_MAX: Duration = Duration::from_millis(1);

/// A slot's owner when no one holds it.
const FREE: u32 = 0;
/// How a table's waiters sleep, fixed when it is initialised: on their slot's semaphore, or
/// (no process-shared `sem_init` on this platform) by polling.
const SEMAPHORES: u32 = 1;
const POLLING: u32 = 2;

#[repr(C, align(64))]
struct Header {
    /// Robust and process-shared: guards the slots' owners and words.
    mutex: libc::pthread_mutex_t,
    /// Slots claimed (a dead waiter's included, until reclaimed); a wake skips the table at 0.
    claimed: AtomicU32,
    /// [`SEMAPHORES`] or [`POLLING`].
    mode: AtomicU32,
}

#[repr(C, align(64))]
struct Slot {
    /// Process-shared, posted by wakes of the word, drained when the slot is freed.
    sem: libc::sem_t,
    /// The parked process's id, or [`FREE`].
    owner: AtomicU32,
    /// The offset in the mapping of the word waited on.
    word: AtomicU64,
}

#[repr(C)]
struct Table {
    header: Header,
    slots: [Slot; SLOTS],
}

/// The bytes a parking table takes at the end of a mapping.
pub(crate) const TABLE_BYTES: usize = size_of::<Table>();

/// Where the table of a mapping whose usable part is `len` bytes starts.
pub(crate) fn table_offset(len: usize) -> usize {
    len.next_multiple_of(align_of::<Table>())
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
    let table = table.cast::<Table>();
    // SAFETY: the attribute object is initialised before use and destroyed after; the mutex
    // and semaphores are inside the table (the caller's obligation) and not yet shared; the
    // zeroed memory is a valid `claimed`, `mode` and free slots.
    unsafe {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
        let code = match libc::pthread_mutexattr_setpshared(
            attr.as_mut_ptr(),
            libc::PTHREAD_PROCESS_SHARED,
        ) {
            0 => match libc::pthread_mutexattr_setrobust(
                attr.as_mut_ptr(),
                libc::PTHREAD_MUTEX_ROBUST,
            ) {
                0 => libc::pthread_mutex_init(&raw mut (*table).header.mutex, attr.as_ptr()),
                e => e,
            },
            e => e,
        };
        libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
        check(code)?;
        let mut mode = SEMAPHORES;
        for i in 0..SLOTS {
            if libc::sem_init(&raw mut (*slot(table, i)).sem, 1, 0) != 0 {
                let e = io::Error::last_os_error();
                if i == 0 && e.raw_os_error() == Some(libc::ENOSYS) {
                    mode = POLLING;
                    break;
                }
                return Err(e);
            }
        }
        header_mode(table).store(mode, Ordering::SeqCst);
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

/// The table of `word` and the word's offset in its mapping, if it lies in a registered
/// mapping.
fn locate(word: &AtomicU32) -> Option<(*mut Table, u64)> {
    let addr = std::ptr::from_ref(word) as usize;
    let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    let (&start, region) = registry.range(..=addr).next_back()?;
    if addr >= region.end {
        return None;
    }
    Some((region.table as *mut Table, (addr - start) as u64))
}

// Field access. Only atomics are borrowed; the mutex and the semaphores, which other
// processes change behind our back, are only ever reached through raw pointers.
//
// Safety of each: `table` is a live, initialised table (a word of its mapping is borrowed).

/// Slot `i` of `table`.
unsafe fn slot(table: *mut Table, i: usize) -> *mut Slot {
    // SAFETY: the caller's obligation; `i < SLOTS` is checked by the indexing.
    unsafe { &raw mut (*table).slots[i] }
}

unsafe fn header_claimed<'a>(table: *mut Table) -> &'a AtomicU32 {
    // SAFETY: the caller's obligation; an atomic may be shared.
    unsafe { &(*table).header.claimed }
}

unsafe fn header_mode<'a>(table: *mut Table) -> &'a AtomicU32 {
    // SAFETY: as above.
    unsafe { &(*table).header.mode }
}

unsafe fn slot_owner<'a>(slot: *mut Slot) -> &'a AtomicU32 {
    // SAFETY: `slot` is a slot of a live table (the caller's obligation).
    unsafe { &(*slot).owner }
}

unsafe fn slot_word<'a>(slot: *mut Slot) -> &'a AtomicU64 {
    // SAFETY: as above.
    unsafe { &(*slot).word }
}

/// Locks the table's robust mutex, recovering it from a holder that died; whether it is now
/// held (it is not only if the mutex is broken, e.g. `ENOTRECOVERABLE`: the caller then
/// polls instead).
///
/// # Safety
///
/// `table` is a live, initialised table.
#[must_use]
unsafe fn lock(table: *mut Table) -> bool {
    // SAFETY: the caller's obligation; the mutex is process-shared and robust, and on
    // `EOWNERDEAD` we hold it, so we may make it consistent (each store to a slot leaves it
    // valid; only the count of claimed slots may need repair).
    unsafe {
        let mutex = &raw mut (*table).header.mutex;
        let code = libc::pthread_mutex_lock(mutex);
        if code == libc::EOWNERDEAD {
            libc::pthread_mutex_consistent(mutex);
            // The holder may have died between counting a slot and owning it (or freeing it
            // and uncounting it): count again.
            let claimed = (0..SLOTS)
                .filter(|&i| slot_owner(slot(table, i)).load(Ordering::Relaxed) != FREE)
                .count();
            header_claimed(table).store(claimed as u32, Ordering::SeqCst);
        }
        code == 0 || code == libc::EOWNERDEAD
    }
}

/// # Safety
///
/// As for [`lock`], and the caller holds the mutex.
unsafe fn unlock(table: *mut Table) {
    // SAFETY: the caller's obligation.
    unsafe { libc::pthread_mutex_unlock(&raw mut (*table).header.mutex) };
}

/// Claims a slot for this process parked on the word at `offset`: a free one, or else one
/// whose owner died (reclaimed); `None` if every slot has a live owner.
///
/// # Safety
///
/// As for [`unlock`].
unsafe fn claim(table: *mut Table, offset: u64) -> Option<*mut Slot> {
    let me = std::process::id();
    // SAFETY: the caller's obligation; we hold the mutex, so the owners and words are ours to
    // change, and no wake posts a semaphore while we re-initialise it.
    unsafe {
        let free = (0..SLOTS)
            .map(|i| slot(table, i))
            .find(|&s| slot_owner(s).load(Ordering::Relaxed) == FREE);
        let s = match free {
            Some(s) => s,
            None => {
                let dead = (0..SLOTS).map(|i| slot(table, i)).find(|&s| {
                    let owner = slot_owner(s).load(Ordering::Relaxed);
                    owner != me && is_dead(owner)
                })?;
                // Posts nobody took are left in it, and the dead waiter may still be counted
                // as sleeping on it: start it afresh.
                libc::sem_destroy(&raw mut (*dead).sem);
                if libc::sem_init(&raw mut (*dead).sem, 1, 0) != 0 {
                    return None;
                }
                slot_owner(dead).store(FREE, Ordering::Relaxed);
                header_claimed(table).fetch_sub(1, Ordering::SeqCst);
                dead
            }
        };
        // Counted before it is owned (and, in `free`, freed before it is uncounted): a death
        // in between leaves the count high, which costs a wake a scan, never a slot missed.
        header_claimed(table).fetch_add(1, Ordering::SeqCst);
        slot_word(s).store(offset, Ordering::Relaxed);
        slot_owner(s).store(me, Ordering::Relaxed);
        Some(s)
    }
}

/// Frees a slot this process claimed, dropping any post it did not take.
///
/// # Safety
///
/// As for [`unlock`], and `s` is a slot of `table` this process claimed.
unsafe fn free(table: *mut Table, s: *mut Slot) {
    // SAFETY: the caller's obligation; wakes post only with the mutex held, so once drained
    // under it the semaphore stays at zero until the slot is claimed again.
    unsafe {
        while libc::sem_trywait(&raw mut (*s).sem) == 0 {}
        slot_owner(s).store(FREE, Ordering::Relaxed);
        header_claimed(table).fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether no process `pid` exists (a zombie still does; a reused id looks alive).
fn is_dead(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0
        && unsafe { libc::kill(pid, 0) } != 0
        && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Blocks until `word` no longer holds `expected`, a wake arrives, or `timeout` passes (at most
/// [`MAX_NAP`] at a time). A word outside any mapping with a table (never the case in `mp`) is
/// polled.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    nap(word, expected, timeout.map_or(MAX_NAP, |t| t.min(MAX_NAP)));
}

/// One wait of at most `nap`.
fn nap(word: &AtomicU32, expected: u32, nap: Duration) {
    let Some((table, offset)) = locate(word) else {
        return poll(word, expected, nap);
    };
    // SAFETY: `word` is borrowed from a live mapping (registered above), so its table is live;
    // the slot is ours from `claim` to `free`, both with the mutex held.
    unsafe {
        if header_mode(table).load(Ordering::Relaxed) != SEMAPHORES || !lock(table) {
            return poll(word, expected, nap);
        }
        let Some(s) = claim(table, offset) else {
            unlock(table);
            return poll(word, expected, nap);
        };
        // Pairs with the fence in `wake`: it sees our claim, or we see its change.
        fence(Ordering::SeqCst);
        if word.load(Ordering::SeqCst) != expected {
            free(table, s);
            unlock(table);
            return;
        }
        unlock(table);
        sleep(s, nap);
        if lock(table) {
            free(table, s);
            unlock(table);
        }
        // A broken mutex: the slot stays claimed until this process dies and it is reclaimed.
    }
}

/// Sleeps on a claimed slot's semaphore until a post or `nap` passes.
///
/// # Safety
///
/// `s` is a slot of a live table, claimed by this process.
unsafe fn sleep(s: *mut Slot, nap: Duration) {
    // `sem_timedwait` measures `CLOCK_REALTIME` (POSIX has no monotonic variant): a clock step
    // during one nap makes that nap longer or shorter; naps are short and callers re-check.
    let deadline = deadline_after(nap);
    loop {
        // SAFETY: the caller's obligation.
        if unsafe { libc::sem_timedwait(&raw mut (*s).sem, &deadline) } == 0 {
            return;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return; // ETIMEDOUT, or a broken semaphore: the caller re-checks
        }
    }
}

/// Waits for `word` to change by polling, with exponential back-off, for at most `nap`.
fn poll(word: &AtomicU32, expected: u32, nap: Duration) {
    let end = Instant::now() + nap;
    let mut pause = POLL_MIN;
    while word.load(Ordering::SeqCst) == expected {
        let Some(left) = end.checked_duration_since(Instant::now()) else {
            return;
        };
        if left.is_zero() {
            return;
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(POLL_MAX);
    }
}

/// Wakes the waiters on `word` (all of them, whatever `n`: waiters re-check, and a dead
/// waiter's slot cannot take the wake of a live one).
pub(crate) fn wake(word: &AtomicU32, _n: u32) {
    let Some((table, offset)) = locate(word) else {
        return;
    };
    // SAFETY: as in `nap`; slots are read and posted with the mutex held. A waiter on a broken
    // mutex polls, so it needs no post.
    unsafe {
        // Pairs with the fence in `nap`: the caller changed the word before this call.
        fence(Ordering::SeqCst);
        if header_claimed(table).load(Ordering::SeqCst) == 0 || !lock(table) {
            return;
        }
        // Claimed slots are usually the first ones: stop once all of them were seen.
        let mut left = header_claimed(table).load(Ordering::Relaxed);
        for i in 0..SLOTS {
            if left == 0 {
                break;
            }
            let s = slot(table, i);
            if slot_owner(s).load(Ordering::Relaxed) == FREE {
                continue;
            }
            left -= 1;
            if slot_word(s).load(Ordering::Relaxed) == offset {
                libc::sem_post(&raw mut (*s).sem);
            }
        }
        unlock(table);
    }
}

/// `CLOCK_REALTIME` now plus `d`, as `sem_timedwait` measures it.
fn deadline_after(d: Duration) -> libc::timespec {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let nanos = now.tv_nsec as u64 + u64::from(d.subsec_nanos());
    libc::timespec {
        tv_sec: (now.tv_sec as u64 + d.as_secs() + nanos / 1_000_000_000) as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    }
}

#[cfg(test)]
#[path = "park/tests.rs"]
mod tests;
