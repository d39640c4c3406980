//! The robust mutex every `mp` lock is built on: one 32-bit futex word in shared memory that
//! holds the owner's thread id and a waiters bit, so a dead owner can be recognised from the
//! word alone (see `sync/README.md`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sys;

/// Set in the word while some thread may be sleeping on it.
const WAITERS: u32 = 1 << 31;
/// The owner's thread id (Linux ids are below 2^22).
const OWNER: u32 = (1 << 30) - 1;
/// Uncontended acquisitions first spin this many times before sleeping.
const SPINS: u32 = 100;
/// How often a sleeping waiter checks that the owner is still alive.
pub(crate) const OWNER_CHECK: Duration = Duration::from_millis(100);

/// How a lock was obtained.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// From a live owner's release (or free).
    Clean,
    /// Taken over from the dead thread `tid`, which held it.
    OwnerDied(u32),
}

/// A view of a mutex word. `0` is free; otherwise the low 30 bits are the owner's thread id.
#[derive(Clone, Copy)]
pub(crate) struct RawMutex<'a> {
    word: &'a AtomicU32,
}

impl<'a> RawMutex<'a> {
    pub(crate) fn new(word: &'a AtomicU32) -> Self {
        RawMutex { word }
    }

    /// The owner's thread id, or 0 when free.
    pub(crate) fn owner(&self) -> u32 {
        self.word.load(Ordering::Relaxed) & OWNER
    }

    /// Whether the calling thread holds the lock.
    pub(crate) fn held_by_me(&self) -> bool {
        self.owner() == sys::gettid()
    }

    /// Takes the lock at once if its holder died (without waiting for the periodic owner
    /// check of [`lock`](RawMutex::lock)); the dead holder's thread id, or `None` when the
    /// lock is free or held by a live thread.
    pub(crate) fn take_over_dead(&self) -> Option<u32> {
        let cur = self.word.load(Ordering::Relaxed);
        let owner = cur & OWNER;
        let me = sys::gettid();
        if owner == 0 || owner == me || sys::thread_alive(owner) {
            return None;
        }
        self.word
            .compare_exchange(
                cur,
                me | (cur & WAITERS),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()
            .map(|_| owner)
    }

    /// Takes the lock, waiting until `deadline` (`None`: forever). `Err(Timeout)` when the
    /// deadline passes first.
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Result<Acquired> {
        let me = sys::gettid();
        for _ in 0..SPINS {
            // Test before test-and-set: spinning on a load keeps the cache line shared
            // instead of bouncing it between the contenders' cores.
            if self.word.load(Ordering::Relaxed) == 0
                && self
                    .word
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Ok(Acquired::Clean);
            }
            std::hint::spin_loop();
        }
        let mut next_check = Instant::now() + OWNER_CHECK;
        loop {
            let cur = self.word.load(Ordering::Relaxed);
            if cur == 0 {
                // Keep the waiters bit: others may still sleep, and our unlock must wake them.
                if self
                    .word
                    .compare_exchange(0, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(Acquired::Clean);
                }
                continue;
            }
            if cur & WAITERS == 0
                && self
                    .word
                    .compare_exchange(cur, cur | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let now = Instant::now();
            if now >= next_check {
                next_check = now + OWNER_CHECK;
                let owner = cur & OWNER;
                if owner != me && !sys::thread_alive(owner) {
                    if self
                        .word
                        .compare_exchange(
                            cur | WAITERS,
                            me | WAITERS,
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        return Ok(Acquired::OwnerDied(owner));
                    }
                    continue;
                }
            }
            let mut nap = next_check.saturating_duration_since(now);
            if let Some(d) = deadline {
                match d.checked_duration_since(now) {
                    Some(r) if !r.is_zero() => nap = nap.min(r),
                    _ => return Err(Error::Timeout),
                }
            }
            sys::futex_wait(self.word, cur | WAITERS, Some(nap));
        }
    }

    /// Releases the lock (whoever holds it) and wakes one waiter if any may sleep.
    pub(crate) fn unlock(&self) {
        if self.word.swap(0, Ordering::Release) & WAITERS != 0 {
            sys::futex_wake(self.word, 1);
        }
    }
}

/// Turns a wait of a duration into the form [`RawMutex::lock`] takes (the crate's one deadline
/// helper, shared with the stream transport).
pub(crate) use crate::wire::deadline_after;

/// The acquisition used by user-facing locks: a dead owner's lock is released again and
/// reported as [`Error::OwnerDied`]; taking a lock this thread holds is [`Error::Deadlock`].
pub(crate) fn acquire_reporting(m: RawMutex<'_>, deadline: Option<Instant>) -> Result<()> {
    if m.held_by_me() {
        return Err(Error::Deadlock);
    }
    match m.lock(deadline)? {
        Acquired::Clean => Ok(()),
        Acquired::OwnerDied(tid) => {
            m.unlock();
            tracing::warn!(target: "mp", "lock holder (thread {tid}) died; lock recovered");
            Err(Error::OwnerDied { tid })
        }
    }
}

/// Waits on `word` while it holds `expected`, at most until `deadline`. Returns `false` when the
/// deadline has passed (without waiting).
pub(crate) fn wait_word(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
    let remaining = match deadline {
        None => None,
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(r) if !r.is_zero() => Some(r),
            _ => return false,
        },
    };
    sys::futex_wait(word, expected, remaining);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_unlock_and_timeout() {
        let word = AtomicU32::new(0);
        let m = RawMutex::new(&word);
        assert_eq!(m.lock(None).unwrap(), Acquired::Clean);
        assert_eq!(m.owner(), sys::gettid());
        assert!(matches!(m.lock(Some(Instant::now())), Err(Error::Timeout)));
        let start = Instant::now();
        let err = std::thread::scope(|s| {
            s.spawn(|| m.lock(Some(Instant::now() + Duration::from_millis(50))))
                .join()
                .unwrap()
        });
        assert!(matches!(err, Err(Error::Timeout)));
        assert!(start.elapsed() >= Duration::from_millis(50));
        m.unlock();
        assert_eq!(word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn dead_owner_is_taken_over() {
        // A thread id that has certainly exited: a finished thread's.
        let dead = std::thread::spawn(sys::gettid).join().unwrap();
        let word = AtomicU32::new(dead);
        let m = RawMutex::new(&word);
        assert_eq!(m.lock(None).unwrap(), Acquired::OwnerDied(dead));
        assert_eq!(m.owner(), sys::gettid());
        m.unlock();
        assert!(matches!(acquire_reporting(m, None), Ok(())));
        assert!(matches!(acquire_reporting(m, None), Err(Error::Deadlock)));
    }
}
