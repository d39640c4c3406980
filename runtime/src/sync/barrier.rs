//! `Barrier`: arrival count, generation and broken flag under one robust lock word; waiters
//! sleep on a sequence word that changes when a generation completes or the barrier breaks.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::raw::{self, RawMutex};
use super::segment::{Kind, Segment};
use crate::error::{Error, Result};
use crate::sys;

const LOCK: usize = 0;
const COUNT: usize = 1;
const GENERATION: usize = 2;
const BROKEN: usize = 3;
const SEQ: usize = 4;
const PARTIES: usize = 5;
/// Bumped by `reset`, so that waiters of the reset generation fail.
const RESETS: usize = 6;

/// A barrier for a fixed number of processes (Python's `multiprocessing.Barrier`): each
/// `wait` blocks until `parties` callers have arrived, then all are released together.
///
/// A timeout in any waiter breaks the barrier: that waiter and every other current or future
/// waiter get [`Error::BrokenBarrier`] until [`reset`](Barrier::reset). A party that dies
/// before arriving is not detected; give waits a timeout when that can happen.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn party(barrier: mp::Barrier) -> mp::Result<u32> {
///     barrier.wait()
/// }
///
/// let barrier = mp::Barrier::new(3)?;
/// let mut ps: Vec<_> = (0..2)
///     .map(|_| mp::spawn(party, barrier.clone()))
///     .collect::<mp::Result<_>>()?;
/// let mine = barrier.wait()?;
/// let mut indices = vec![mine];
/// for p in &mut ps {
///     indices.push(p.join()??);
/// }
/// indices.sort();
/// assert_eq!(indices, [0, 1, 2]);
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    seg: Arc<Segment>,
}

/// Releases the barrier's internal lock on drop.
struct Held<'a>(RawMutex<'a>);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

impl Barrier {
    /// A barrier for `parties` processes (at least 1).
    ///
    /// ```
    /// let b = mp::Barrier::new(1)?;
    /// assert_eq!(b.wait()?, 0); // one party: passes at once
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn new(parties: u32) -> Result<Barrier> {
        if parties == 0 {
            return Err(Error::InvalidArgument(
                "a barrier needs at least one party".into(),
            ));
        }
        let seg = Segment::create(Kind::Barrier, 0, 0, 0)?;
        seg.word(PARTIES).store(parties, Ordering::Release);
        Ok(Barrier { seg })
    }

    fn word(&self, i: usize) -> &AtomicU32 {
        self.seg.word(i)
    }

    /// Takes the internal lock. A dead holder cannot have left the state half-updated (every
    /// update is a single store made before release), so its death is only logged.
    fn lock(&self) -> Result<Held<'_>> {
        let m = RawMutex::new(self.word(LOCK));
        if let raw::Acquired::OwnerDied(tid) = m.lock(None)? {
            tracing::warn!(target: "mp", "barrier lock holder (thread {tid}) died");
        }
        Ok(Held(m))
    }

    fn wake_all(&self) {
        let seq = self.word(SEQ);
        seq.fetch_add(1, Ordering::SeqCst);
        sys::futex_wake(seq, u32::MAX);
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<u32> {
        let held = self.lock()?;
        if self.word(BROKEN).load(Ordering::Relaxed) != 0 {
            return Err(Error::BrokenBarrier);
        }
        let parties = self.parties();
        let index = self.word(COUNT).load(Ordering::Relaxed);
        if index + 1 == parties {
            self.word(COUNT).store(0, Ordering::Relaxed);
            self.word(GENERATION).fetch_add(1, Ordering::Relaxed);
            drop(held);
            self.wake_all();
            return Ok(index);
        }
        self.word(COUNT).store(index + 1, Ordering::Relaxed);
        let generation = self.word(GENERATION).load(Ordering::Relaxed);
        let resets = self.word(RESETS).load(Ordering::Relaxed);
        drop(held);
        // Under the lock: `Some` once this generation is decided for the caller.
        let decided = || -> Option<Result<u32>> {
            if self.word(GENERATION).load(Ordering::Relaxed) != generation {
                Some(Ok(index))
            } else if self.word(RESETS).load(Ordering::Relaxed) != resets
                || self.word(BROKEN).load(Ordering::Relaxed) != 0
            {
                Some(Err(Error::BrokenBarrier))
            } else {
                None
            }
        };
        loop {
            let observed = self.word(SEQ).load(Ordering::SeqCst);
            {
                let _held = self.lock()?;
                if let Some(result) = decided() {
                    return result;
                }
            }
            if !raw::wait_word(self.word(SEQ), observed, deadline) {
                let held = self.lock()?;
                if let Some(result) = decided() {
                    return result;
                }
                self.word(BROKEN).store(1, Ordering::Relaxed);
                drop(held);
                self.wake_all();
                return Err(Error::BrokenBarrier);
            }
        }
    }

    /// Waits for all parties; returns this caller's arrival index, `0..parties` (Python's
    /// `wait()`); [`Error::BrokenBarrier`] if the barrier is or becomes broken.
    pub fn wait(&self) -> Result<u32> {
        self.wait_until(None)
    }

    /// As [`wait`](Barrier::wait); after `timeout` the barrier breaks and this call returns
    /// [`Error::BrokenBarrier`].
    ///
    /// ```
    /// let b = mp::Barrier::new(2)?;
    /// let err = b.wait_timeout(std::time::Duration::from_millis(5)).unwrap_err();
    /// assert!(matches!(err, mp::Error::BrokenBarrier));
    /// assert!(b.broken());
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_until(raw::deadline_after(Some(timeout)))
    }

    /// Breaks the barrier: current and future waiters get [`Error::BrokenBarrier`].
    pub fn abort(&self) -> Result<()> {
        let held = self.lock()?;
        self.word(BROKEN).store(1, Ordering::Relaxed);
        drop(held);
        self.wake_all();
        Ok(())
    }

    /// Returns the barrier to its initial state; current waiters get
    /// [`Error::BrokenBarrier`] (as in Python).
    ///
    /// ```
    /// let b = mp::Barrier::new(1)?;
    /// b.abort()?;
    /// assert!(b.broken());
    /// b.reset()?;
    /// assert_eq!(b.wait()?, 0);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn reset(&self) -> Result<()> {
        let held = self.lock()?;
        self.word(RESETS).fetch_add(1, Ordering::Relaxed);
        self.word(COUNT).store(0, Ordering::Relaxed);
        self.word(BROKEN).store(0, Ordering::Relaxed);
        drop(held);
        self.wake_all();
        Ok(())
    }

    /// The number of parties needed to pass.
    pub fn parties(&self) -> u32 {
        self.word(PARTIES).load(Ordering::Acquire)
    }

    /// How many parties are waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.word(COUNT).load(Ordering::Relaxed)
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.word(BROKEN).load(Ordering::Relaxed) != 0
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

impl Serialize for Barrier {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.seg.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let barrier = Barrier {
            seg: Segment::deserialize(deserializer, Kind::Barrier, 0, 0)?,
        };
        if barrier.parties() == 0 {
            return Err(serde::de::Error::custom("barrier with zero parties"));
        }
        Ok(barrier)
    }
}
