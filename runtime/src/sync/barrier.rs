//! `Barrier`: arrival count, generation and broken flag under one robust lock word; waiters
//! sleep on a sequence word that changes when a generation completes or the barrier breaks.
//! The party that trips the barrier may run an action before the others are released (the
//! count stays full meanwhile, and its thread id is recorded, so waiters notice its death);
//! a default timeout lives in the segment, so it travels with the barrier.

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
/// The default timeout of `wait`, in microseconds plus one (0: none), low and high halves.
const TIMEOUT_LO: usize = 7;
const TIMEOUT_HI: usize = 8;
/// The thread running the action of the generation being released (0: none).
const LEADER: usize = 9;

/// A barrier for a fixed number of processes (Python's `multiprocessing.Barrier`): each
/// `wait` blocks until `parties` callers have arrived, then all are released together.
///
/// A timeout in any waiter breaks the barrier: that waiter and every other current or future
/// waiter get [`Error::BrokenBarrier`] until [`reset`](Barrier::reset). A party that dies
/// before arriving is not detected; give waits a timeout when that can happen
/// ([`with_timeout`](Barrier::with_timeout) sets one for every `wait`, in every process).
///
/// Python's `Barrier(parties, action)` pickles the action with the barrier; here code never
/// travels, so the action is given at the wait: [`wait_with`](Barrier::wait_with) runs it in
/// the party that arrives last, once per pass, before any party is released. A party that
/// dies running it breaks the barrier for the others.
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

    /// A barrier for `parties` processes whose [`wait`](Barrier::wait) and
    /// [`wait_with`](Barrier::wait_with) give up after `timeout` (Python's
    /// `Barrier(parties, timeout=t)`), breaking the barrier. The timeout travels with the
    /// barrier to every process.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let b = mp::Barrier::with_timeout(2, Duration::from_millis(5))?;
    /// assert_eq!(b.timeout(), Some(Duration::from_millis(5)));
    /// assert!(matches!(b.wait(), Err(mp::Error::BrokenBarrier))); // the other never came
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn with_timeout(parties: u32, timeout: Duration) -> Result<Barrier> {
        let barrier = Barrier::new(parties)?;
        let micros = u64::try_from(timeout.as_micros())
            .unwrap_or(u64::MAX - 1)
            .min(u64::MAX - 1)
            + 1;
        barrier
            .word(TIMEOUT_LO)
            .store(micros as u32, Ordering::Relaxed);
        barrier
            .word(TIMEOUT_HI)
            .store((micros >> 32) as u32, Ordering::Release);
        Ok(barrier)
    }

    /// The default timeout of [`wait`](Barrier::wait), if the barrier has one.
    pub fn timeout(&self) -> Option<Duration> {
        let hi = u64::from(self.word(TIMEOUT_HI).load(Ordering::Acquire));
        let lo = u64::from(self.word(TIMEOUT_LO).load(Ordering::Relaxed));
        let micros = (hi << 32) | lo;
        (micros != 0).then(|| Duration::from_micros(micros - 1))
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

    fn wait_until<F>(&self, deadline: Option<Instant>, action: Option<F>) -> Result<u32>
    where
        F: FnOnce() -> Result<()>,
    {
        let parties = self.parties();
        let held = loop {
            let held = self.lock()?;
            if self.word(BROKEN).load(Ordering::Relaxed) != 0 {
                return Err(Error::BrokenBarrier);
            }
            if self.word(COUNT).load(Ordering::Relaxed) < parties {
                break held;
            }
            // The previous pass's action is running: wait for its release (Python's
            // `_enter`), as any waiter does.
            let observed = self.word(SEQ).load(Ordering::SeqCst);
            drop(held);
            self.check_leader()?;
            if !raw::wait_word(self.word(SEQ), observed, slice(deadline)) && passed(deadline) {
                return self.break_on_timeout();
            }
        };
        let index = self.word(COUNT).load(Ordering::Relaxed);
        let generation = self.word(GENERATION).load(Ordering::Relaxed);
        let resets = self.word(RESETS).load(Ordering::Relaxed);
        if index + 1 < parties {
            self.word(COUNT).store(index + 1, Ordering::Relaxed);
        } else {
            // Last to arrive: the count stays full while the action runs.
            self.word(COUNT).store(parties, Ordering::Relaxed);
            if action.is_some() {
                self.word(LEADER).store(sys::gettid(), Ordering::Relaxed);
            }
        }
        drop(held);
        if index + 1 == parties {
            return self.release(index, resets, action);
        }
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
            self.check_leader()?;
            if !raw::wait_word(self.word(SEQ), observed, slice(deadline)) && passed(deadline) {
                let held = self.lock()?;
                if let Some(result) = decided() {
                    return result;
                }
                drop(held);
                return self.break_on_timeout();
            }
        }
    }

    /// The last arrival: runs `action` (if any) with every other party still held, then
    /// releases them; an action that fails or panics breaks the barrier instead.
    fn release<F>(&self, index: u32, resets: u32, action: Option<F>) -> Result<u32>
    where
        F: FnOnce() -> Result<()>,
    {
        let outcome = action.map(|f| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        let held = self.lock()?;
        self.word(LEADER).store(0, Ordering::Relaxed);
        let still_ours = self.word(RESETS).load(Ordering::Relaxed) == resets
            && self.word(BROKEN).load(Ordering::Relaxed) == 0;
        let result = match (&outcome, still_ours) {
            (_, false) => Err(Error::BrokenBarrier),
            (Some(Ok(Err(_))) | Some(Err(_)), true) => {
                self.word(BROKEN).store(1, Ordering::Relaxed);
                Err(Error::BrokenBarrier)
            }
            (None | Some(Ok(Ok(()))), true) => {
                self.word(GENERATION).fetch_add(1, Ordering::Relaxed);
                Ok(index)
            }
        };
        if still_ours || self.word(RESETS).load(Ordering::Relaxed) == resets {
            self.word(COUNT).store(0, Ordering::Relaxed);
        }
        drop(held);
        self.wake_all();
        match outcome {
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            Some(Ok(Err(e))) => Err(e),
            _ => result,
        }
    }

    /// Breaks the barrier if the party running the action died; then this is an error.
    fn check_leader(&self) -> Result<()> {
        let leader = self.word(LEADER).load(Ordering::Relaxed);
        if leader == 0 || sys::thread_alive(leader) {
            return Ok(());
        }
        let held = self.lock()?;
        if self.word(LEADER).load(Ordering::Relaxed) == leader {
            tracing::warn!(
                target: "mp",
                "the barrier party running the action (thread {leader}) died; barrier broken"
            );
            self.word(LEADER).store(0, Ordering::Relaxed);
            self.word(BROKEN).store(1, Ordering::Relaxed);
            self.word(COUNT).store(0, Ordering::Relaxed);
        }
        drop(held);
        self.wake_all();
        Err(Error::BrokenBarrier)
    }

    /// After a wait's deadline: breaks the barrier for everyone.
    fn break_on_timeout(&self) -> Result<u32> {
        let held = self.lock()?;
        self.word(BROKEN).store(1, Ordering::Relaxed);
        drop(held);
        self.wake_all();
        Err(Error::BrokenBarrier)
    }

    /// The deadline of a wait with the barrier's default timeout.
    fn default_deadline(&self) -> Option<Instant> {
        raw::deadline_after(self.timeout())
    }

    /// Waits for all parties; returns this caller's arrival index, `0..parties` (Python's
    /// `wait()`); [`Error::BrokenBarrier`] if the barrier is or becomes broken.
    ///
    /// With a default timeout ([`with_timeout`](Barrier::with_timeout)), as
    /// [`wait_timeout`](Barrier::wait_timeout) with it.
    pub fn wait(&self) -> Result<u32> {
        self.wait_until(self.default_deadline(), None::<fn() -> Result<()>>)
    }

    /// As [`wait`](Barrier::wait); the party that arrives last (its index is `parties - 1`)
    /// runs `action` before any party is released, so it runs exactly once per pass (Python's
    /// `Barrier(parties, action=f)`). Give every party the same action: whichever arrives
    /// last runs it, in its own process. If the action fails or panics, the barrier breaks:
    /// the others get [`Error::BrokenBarrier`], this caller the action's error (or the
    /// panic). If its process dies while running it, the others notice within 100 ms and get
    /// `BrokenBarrier`.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn step(barrier: mp::Barrier, passes: mp::RawValue<u32>) -> mp::Result<()> {
    ///     barrier.wait_with(|| {
    ///         passes.set(passes.get() + 1); // one party per pass
    ///         Ok(())
    ///     })?;
    ///     Ok(())
    /// }
    ///
    /// let barrier = mp::Barrier::new(3)?;
    /// let passes = mp::RawValue::new(0u32)?;
    /// let mut ps: Vec<_> = (0..3)
    ///     .map(|_| mp::spawn(step, (barrier.clone(), passes.clone())))
    ///     .collect::<mp::Result<_>>()?;
    /// for p in &mut ps {
    ///     p.join()??;
    /// }
    /// assert_eq!(passes.get(), 1);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn wait_with(&self, action: impl FnOnce() -> Result<()>) -> Result<u32> {
        self.wait_until(self.default_deadline(), Some(action))
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
        self.wait_until(
            raw::deadline_after(Some(timeout)),
            None::<fn() -> Result<()>>,
        )
    }

    /// As [`wait_with`](Barrier::wait_with), giving up after `timeout` as
    /// [`wait_timeout`](Barrier::wait_timeout) does.
    ///
    /// ```
    /// let b = mp::Barrier::new(1)?;
    /// let mut ran = false;
    /// b.wait_with_timeout(std::time::Duration::from_secs(1), || {
    ///     ran = true;
    ///     Ok(())
    /// })?;
    /// assert!(ran);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn wait_with_timeout(
        &self,
        timeout: Duration,
        action: impl FnOnce() -> Result<()>,
    ) -> Result<u32> {
        self.wait_until(raw::deadline_after(Some(timeout)), Some(action))
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
        // While the last arrival runs the action, the others still wait.
        let count = self.word(COUNT).load(Ordering::Relaxed);
        if count >= self.parties() {
            count - 1
        } else {
            count
        }
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.word(BROKEN).load(Ordering::Relaxed) != 0
    }
}

/// The end of one sleep: the deadline, but at most [`raw::OWNER_CHECK`] away, so a waiter
/// checks in time that the party running the action is alive.
fn slice(deadline: Option<Instant>) -> Option<Instant> {
    let check = Instant::now() + raw::OWNER_CHECK;
    Some(deadline.map_or(check, |d| d.min(check)))
}

/// Whether `deadline` has passed.
fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
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
