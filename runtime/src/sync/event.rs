//! `Event`: a flag word in shared memory; waiters sleep on it with a futex.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::raw;
use super::segment::{Kind, Segment, segment_handle};
use crate::error::Result;
use crate::sys;

const FLAG: usize = 0;
const WAITERS: usize = 1;

/// A flag that processes can set, clear and wait for (Python's `multiprocessing.Event`).
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn starter(go: mp::Event) {
///     go.set();
/// }
///
/// let go = mp::Event::new()?;
/// let mut p = mp::spawn(starter, go.clone())?;
/// go.wait();
/// assert!(go.is_set());
/// p.join()?;
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Clone)]
pub struct Event {
    seg: Arc<Segment>,
}

impl Event {
    /// A new event, not set.
    ///
    /// ```
    /// assert!(!mp::Event::new()?.is_set());
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn new() -> Result<Event> {
        Ok(Event {
            seg: Segment::create(Kind::Event, 0, 0, 0)?,
        })
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.seg.word(FLAG).load(Ordering::Acquire) != 0
    }

    /// Sets the flag and wakes every waiter, in every process.
    ///
    /// ```
    /// let e = mp::Event::new()?;
    /// e.set();
    /// assert!(e.is_set());
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn set(&self) {
        let flag = self.seg.word(FLAG);
        flag.store(1, Ordering::SeqCst);
        if self.seg.word(WAITERS).load(Ordering::SeqCst) > 0 {
            sys::futex_wake(flag, u32::MAX);
        }
    }

    /// Clears the flag.
    ///
    /// ```
    /// let e = mp::Event::new()?;
    /// e.set();
    /// e.clear();
    /// assert!(!e.is_set());
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn clear(&self) {
        self.seg.word(FLAG).store(0, Ordering::SeqCst);
    }

    fn wait_until(&self, deadline: Option<std::time::Instant>) -> bool {
        let flag = self.seg.word(FLAG);
        let waiters = self.seg.word(WAITERS);
        loop {
            if flag.load(Ordering::Acquire) != 0 {
                return true;
            }
            waiters.fetch_add(1, Ordering::SeqCst);
            let waited = flag.load(Ordering::SeqCst) != 0 || raw::wait_word(flag, 0, deadline);
            waiters.fetch_sub(1, Ordering::SeqCst);
            if !waited {
                return flag.load(Ordering::Acquire) != 0;
            }
        }
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits until the flag is set or `timeout` passes; returns whether it is set (Python's
    /// `wait(timeout)`).
    ///
    /// ```
    /// let e = mp::Event::new()?;
    /// assert!(!e.wait_timeout(std::time::Duration::from_millis(5)));
    /// e.set();
    /// assert!(e.wait_timeout(std::time::Duration::from_millis(5)));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(raw::deadline_after(Some(timeout)))
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

segment_handle!(Event, Kind::Event);
