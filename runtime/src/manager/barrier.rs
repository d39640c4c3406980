//! `BarrierProxy`: a barrier held by a manager (Python's `manager.Barrier(parties)`), and the
//! barrier on the server's side, [`StoredBarrier`]: its operations ([`BarrierOp`]), when a
//! wait must wait and how each applies.
//!
//! A wait is two requests: `Arrive` counts the party in (the last one opens the pass), then
//! `AwaitPass` waits until the pass happens or the barrier breaks. A timeout breaks the
//! barrier, as in Python. A party whose connection ends while it waits (its process died)
//! breaks it too: the others get [`Error::BrokenBarrier`] instead of waiting forever for it.
//! Must not know other kinds, sessions or the store.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::object::{ObjectKind, Out, Pending};
use super::protocol::{Blob, Reply, Wait, unexpected};
use super::proxy::{Creator, Named, proxy};
use crate::error::{Error, Result};

proxy! {
    /// A barrier for `parties` parties that lives in a [`Manager`](crate::Manager)'s server
    /// process (Python's `manager.Barrier(parties)`).
    ///
    /// [`wait`](BarrierProxy::wait) returns once `parties` callers have called it, each with
    /// its arrival index. A timeout, [`abort`](BarrierProxy::abort), or a waiting party's
    /// process dying breaks the barrier: every current and later waiter gets
    /// [`Error::BrokenBarrier`] until [`reset`](BarrierProxy::reset).
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn party(barrier: mp::BarrierProxy) -> mp::Result<u32> {
    ///     barrier.wait()
    /// }
    ///
    /// let manager = mp::Manager::new()?;
    /// let barrier = manager.barrier(2)?;
    /// let mut child = mp::spawn(party, barrier.clone())?;
    /// let mine = barrier.wait()?;
    /// let theirs = child.join()??;
    /// assert_eq!(mine + theirs, 1); // arrival indices 0 and 1
    /// assert!(matches!(
    ///     barrier.wait_timeout(std::time::Duration::from_millis(10)),
    ///     Err(mp::Error::BrokenBarrier)
    /// ));
    /// assert!(barrier.broken()?);
    /// barrier.reset()?;
    /// assert!(!barrier.broken()?);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub struct BarrierProxy of StoredBarrier, over ();
}

impl Named for BarrierProxy {
    /// Finds the barrier of this name; one that does not exist yet is an error, since its
    /// number of parties is not known here (create it with
    /// [`Manager::named_barrier`](crate::Manager::named_barrier)).
    fn named(creator: &Creator, name: &str) -> Result<Self> {
        creator
            .create::<StoredBarrier, ()>(Some(name), 0)
            .map(BarrierProxy::from_handle)
    }
}

impl BarrierProxy {
    /// A new barrier (named: found if it exists) for `parties` parties (at least one).
    pub(super) fn create(creator: &Creator, name: Option<&str>, parties: u32) -> Result<Self> {
        if parties == 0 {
            return Err(Error::InvalidArgument(
                "a barrier needs at least one party".to_owned(),
            ));
        }
        creator
            .create::<StoredBarrier, ()>(name, parties)
            .map(BarrierProxy::from_handle)
    }

    /// Waits for every party; returns this caller's arrival index, `0..parties`;
    /// [`Error::BrokenBarrier`] if the barrier is or becomes broken.
    pub fn wait(&self) -> Result<u32> {
        self.wait_with(Wait::Forever)
    }

    /// As [`wait`](BarrierProxy::wait); after `timeout` the barrier breaks and this call
    /// returns [`Error::BrokenBarrier`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_with(Wait::For(timeout))
    }

    /// Breaks the barrier: current and later waiters get [`Error::BrokenBarrier`].
    pub fn abort(&self) -> Result<()> {
        self.handle
            .bool::<StoredBarrier>(BarrierOp::Abort { during: None })
            .map(|_| ())
    }

    /// Returns the barrier to its initial state; current waiters get
    /// [`Error::BrokenBarrier`] (as in Python).
    pub fn reset(&self) -> Result<()> {
        self.handle.done::<StoredBarrier>(BarrierOp::Reset)
    }

    /// The number of parties needed to pass.
    pub fn parties(&self) -> Result<usize> {
        self.handle.len::<StoredBarrier>(BarrierOp::Parties)
    }

    /// How many parties are waiting now.
    pub fn n_waiting(&self) -> Result<usize> {
        self.handle.len::<StoredBarrier>(BarrierOp::Waiting)
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> Result<bool> {
        self.handle.bool::<StoredBarrier>(BarrierOp::Broken)
    }

    fn wait_with(&self, wait: Wait) -> Result<u32> {
        let (index, generation) = match self.handle.op::<StoredBarrier>(BarrierOp::Arrive)? {
            Reply::Arrival { index, last, .. } if last => return Ok(index as u32),
            Reply::Arrival {
                index, generation, ..
            } => (index as u32, generation),
            other => return Err(unexpected(other)),
        };
        match self
            .handle
            .done::<StoredBarrier>(BarrierOp::AwaitPass { generation, wait })
        {
            Ok(()) => Ok(index),
            // Time is up: break the pass, unless the last party opened it meanwhile.
            Err(Error::Timeout) => match self.handle.bool::<StoredBarrier>(BarrierOp::Abort {
                during: Some(generation),
            })? {
                true => Err(Error::BrokenBarrier),
                false => Ok(index),
            },
            Err(e) => Err(e),
        }
    }
}

/// An operation on a barrier.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum BarrierOp {
    /// Counts a party in; the last one opens the pass.
    Arrive,
    /// Waits until pass `generation` happens (or the barrier breaks).
    AwaitPass {
        generation: u64,
        wait: Wait,
    },
    /// Breaks the barrier; with a pass number (a waiter whose time is up), only if that pass
    /// has not happened. Answers whether the barrier is broken.
    Abort {
        during: Option<u64>,
    },
    Reset,
    Parties,
    Waiting,
    Broken,
}

/// A barrier as the server keeps it.
#[derive(Debug)]
pub(crate) struct StoredBarrier {
    parties: u64,
    /// The connections of the parties waiting in this pass.
    arrived: Vec<u64>,
    /// The number of the current pass.
    generation: u64,
    /// Broken (by a timeout, `abort` or a dead party) until `reset`.
    broken: bool,
    /// The last pass that was broken: its waiters fail.
    broken_pass: Option<u64>,
}

impl StoredBarrier {
    fn break_pass(&mut self) {
        self.broken = true;
        self.broken_pass = Some(self.generation);
        self.arrived.clear();
    }
}

impl ObjectKind for StoredBarrier {
    const NAME: &'static str = "barrier";
    type Op = BarrierOp;
    /// The number of parties.
    type Init = u32;

    fn new(parties: u32) -> Result<StoredBarrier> {
        if parties == 0 {
            return Err(Error::InvalidArgument(
                "no barrier of that name: create it first with `Manager::named_barrier(name, \
                 parties)`"
                    .to_owned(),
            ));
        }
        Ok(StoredBarrier {
            parties: parties.into(),
            arrived: Vec::new(),
            generation: 0,
            broken: false,
            broken_pass: None,
        })
    }

    fn for_each_value(&mut self, _f: &mut dyn FnMut(&mut Blob)) {}

    fn incoming(_op: &BarrierOp) -> Vec<u64> {
        Vec::new()
    }

    fn must_wait(&self, op: &BarrierOp, _conn: u64) -> Option<Pending> {
        match op {
            BarrierOp::AwaitPass { generation, wait }
                if self.generation == *generation && self.broken_pass != Some(*generation) =>
            {
                Some(Pending {
                    wait: *wait,
                    busy: Err(Error::Timeout),
                    expired: Err(Error::Timeout),
                    poll: None,
                })
            }
            _ => None,
        }
    }

    fn apply(&mut self, op: BarrierOp, conn: u64, _dropped: &mut Vec<u64>) -> Result<(Reply, Out)> {
        let reply = match op {
            BarrierOp::Arrive => {
                if self.broken {
                    return Err(Error::BrokenBarrier);
                }
                let index = self.arrived.len() as u64;
                let generation = self.generation;
                self.arrived.push(conn);
                let last = self.arrived.len() as u64 >= self.parties;
                if last {
                    self.arrived.clear();
                    self.generation += 1;
                }
                Reply::Arrival {
                    index,
                    generation,
                    last,
                }
            }
            BarrierOp::AwaitPass { generation, .. } => {
                if self.broken_pass == Some(generation) {
                    return Err(Error::BrokenBarrier);
                }
                Reply::Done
            }
            BarrierOp::Abort { during } => match during {
                // That pass happened (and was not broken): the waiter passed.
                Some(g) if g != self.generation && self.broken_pass != Some(g) => {
                    Reply::Bool(false)
                }
                // Already broken while it waited.
                Some(g) if self.broken_pass == Some(g) => Reply::Bool(true),
                _ => {
                    self.break_pass();
                    Reply::Bool(true)
                }
            },
            BarrierOp::Reset => {
                if !self.arrived.is_empty() {
                    self.broken_pass = Some(self.generation);
                }
                self.arrived.clear();
                self.generation += 1;
                self.broken = false;
                Reply::Done
            }
            BarrierOp::Parties => Reply::Len(self.parties),
            BarrierOp::Waiting => Reply::Len(self.arrived.len() as u64),
            BarrierOp::Broken => Reply::Bool(self.broken),
        };
        Ok((reply, Out::Copied))
    }

    fn release_held_by(&mut self, conn: u64) -> bool {
        if self.arrived.contains(&conn) {
            self.break_pass();
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::object::apply_keeping_refs;

    fn arrive(b: &mut StoredBarrier, conn: u64) -> Result<Reply> {
        b.apply(BarrierOp::Arrive, conn, &mut Vec::new())
            .map(|(r, _)| r)
    }

    #[test]
    fn the_last_party_opens_the_pass_and_a_dead_party_breaks_it() {
        let mut b = StoredBarrier::new(2).unwrap();
        let Reply::Arrival {
            index: 0,
            generation: 0,
            last: false,
        } = arrive(&mut b, 1).unwrap()
        else {
            panic!()
        };
        let pass = BarrierOp::AwaitPass {
            generation: 0,
            wait: Wait::No,
        };
        assert!(b.must_wait(&pass, 1).is_some());
        assert!(matches!(
            arrive(&mut b, 2).unwrap(),
            Reply::Arrival { last: true, .. }
        ));
        assert!(b.must_wait(&pass, 1).is_none());
        apply_keeping_refs(&mut b, pass).unwrap();
        // A waiter whose time ran out just as the pass opened: it passed, nothing breaks.
        let late = BarrierOp::Abort { during: Some(0) };
        assert!(matches!(
            apply_keeping_refs(&mut b, late),
            Ok(Reply::Bool(false))
        ));
        assert!(!b.broken);

        arrive(&mut b, 1).unwrap();
        assert!(b.release_held_by(1));
        let pass = BarrierOp::AwaitPass {
            generation: 1,
            wait: Wait::No,
        };
        assert!(b.must_wait(&pass, 3).is_none());
        assert!(matches!(
            apply_keeping_refs(&mut b, pass),
            Err(Error::BrokenBarrier)
        ));
        assert!(matches!(arrive(&mut b, 2), Err(Error::BrokenBarrier)));
        apply_keeping_refs(&mut b, BarrierOp::Reset).unwrap();
        arrive(&mut b, 2).unwrap();
    }
}
