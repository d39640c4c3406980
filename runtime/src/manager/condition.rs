//! `ConditionProxy`: a condition variable with its own lock, held by a manager (Python's
//! `manager.Condition()`), and the condition on the server's side, [`StoredCondition`]: its
//! operations ([`ConditionOp`]), when they must wait and how each applies.
//!
//! A wait is three requests, as Python's `Condition.wait` is three steps: `WaitBegin`
//! releases the lock and queues a ticket; `WaitEnd` waits until a `Notify` takes the ticket
//! off the queue (or the time is up); `Acquire` takes the lock again, dropping the ticket if
//! it is still queued. A holder whose connection ends frees the lock (the next acquirer gets
//! [`Error::OwnerDied`] once, as for `LockProxy`) and its tickets. Must not know other kinds,
//! sessions or the store.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::object::{ObjectKind, Out, Pending};
use super::protocol::{Blob, Holder, Reply, Wait, unexpected};
use super::proxy::{Creator, Named, proxy};
use crate::error::{Error, Result};

proxy! {
    /// A condition variable that lives in a [`Manager`](crate::Manager)'s server process,
    /// with its own (non-re-entrant) lock (Python's `manager.Condition()`).
    ///
    /// [`acquire`](ConditionProxy::acquire) takes the lock and returns a guard; on the guard,
    /// [`wait`](ConditionProxyGuard::wait) releases the lock until notified,
    /// [`notify`](ConditionProxyGuard::notify) wakes waiters (only a holder of the lock may
    /// notify, as in Python). If the process holding the lock dies, the next acquirer gets
    /// [`Error::OwnerDied`] once.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn produce(cond: mp::ConditionProxy, items: mp::ListProxy<u32>) -> mp::Result<()> {
    ///     let guard = cond.acquire()?;
    ///     items.append(7)?;
    ///     guard.notify_all()?;
    ///     Ok(())
    /// }
    ///
    /// let manager = mp::Manager::new()?;
    /// let cond = manager.condition()?;
    /// let items = manager.list::<u32>()?;
    /// let mut guard = cond.acquire()?;
    /// let mut child = mp::spawn(produce, (cond.clone(), items.clone()))?;
    /// let ready = guard.wait_for_timeout(|| !items.is_empty().unwrap(), std::time::Duration::from_secs(30))?;
    /// assert!(ready);
    /// drop(guard);
    /// child.join()??;
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub struct ConditionProxy of StoredCondition, over ();
}

impl Named for ConditionProxy {
    fn named(creator: &Creator, name: &str) -> Result<Self> {
        ConditionProxy::create(creator, Some(name))
    }
}

/// Holds a [`ConditionProxy`]'s lock; releases it when dropped.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct ConditionProxyGuard<'a> {
    cond: &'a ConditionProxy,
    holder: Holder,
    released: bool,
}

impl ConditionProxy {
    /// A new condition (named: found if it exists).
    pub(super) fn create(creator: &Creator, name: Option<&str>) -> Result<Self> {
        creator
            .create::<StoredCondition, ()>(name, ())
            .map(ConditionProxy::from_handle)
    }

    /// Waits for the lock; acquiring it again on the same thread is [`Error::Deadlock`].
    pub fn acquire(&self) -> Result<ConditionProxyGuard<'_>> {
        self.acquire_wait(Wait::Forever)
    }

    /// Waits at most `timeout` for the lock ([`Error::Timeout`]).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<ConditionProxyGuard<'_>> {
        self.acquire_wait(Wait::from_timeout(Some(timeout)))
    }

    fn acquire_wait(&self, wait: Wait) -> Result<ConditionProxyGuard<'_>> {
        let holder = Holder::current();
        self.handle.done::<StoredCondition>(ConditionOp::Acquire {
            holder,
            wait,
            ticket: None,
        })?;
        Ok(ConditionProxyGuard {
            cond: self,
            holder,
            released: false,
        })
    }
}

impl ConditionProxyGuard<'_> {
    /// Releases the lock and waits until notified, then takes the lock again. Wake-ups are
    /// only by `notify`, but the state may have changed again before the lock is back: check
    /// it in a loop, or use [`wait_for`](Self::wait_for).
    pub fn wait(&mut self) -> Result<()> {
        self.wait_with(Wait::Forever).map(|_| ())
    }

    /// As [`wait`](Self::wait), for at most `timeout`; returns `false` if it timed out (the
    /// lock is held again either way, as in Python).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool> {
        self.wait_with(Wait::For(timeout))
    }

    /// Waits until `predicate()` holds (checked with the lock held, first before waiting).
    pub fn wait_for(&mut self, mut predicate: impl FnMut() -> bool) -> Result<()> {
        while !predicate() {
            self.wait()?;
        }
        Ok(())
    }

    /// As [`wait_for`](Self::wait_for), for at most `timeout` in all; returns the last value
    /// of `predicate()` (Python's `wait_for(predicate, timeout)`).
    pub fn wait_for_timeout(
        &mut self,
        mut predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if predicate() {
                return Ok(true);
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Ok(false);
            };
            if left.is_zero() {
                return Ok(false);
            }
            self.wait_timeout(left)?;
        }
    }

    /// Wakes up to `n` waiters (the longest waiting first); returns how many it woke.
    pub fn notify(&self, n: usize) -> Result<usize> {
        let reply = self
            .cond
            .handle
            .op::<StoredCondition>(ConditionOp::Notify {
                holder: self.holder,
                n: n as u64,
            })?;
        match reply {
            Reply::Len(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            other => Err(unexpected(other)),
        }
    }

    /// Wakes every waiter; returns how many it woke.
    pub fn notify_all(&self) -> Result<usize> {
        self.notify(usize::MAX)
    }

    /// Releases the lock now, reporting a failure (a manager that is gone) that dropping the
    /// guard would ignore.
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.cond
            .handle
            .done::<StoredCondition>(ConditionOp::Release {
                holder: self.holder,
            })
    }

    fn wait_with(&mut self, wait: Wait) -> Result<bool> {
        let handle = &self.cond.handle;
        let ticket = match handle.op::<StoredCondition>(ConditionOp::WaitBegin {
            holder: self.holder,
        })? {
            Reply::Ticket(t) => t,
            other => return Err(unexpected(other)),
        };
        let notified = handle.bool::<StoredCondition>(ConditionOp::WaitEnd { ticket, wait });
        // Answers whether the ticket had been notified by then.
        let acquire = || {
            handle.bool::<StoredCondition>(ConditionOp::Acquire {
                holder: self.holder,
                wait: Wait::Forever,
                ticket: Some(ticket),
            })
        };
        let again = match acquire() {
            // The lock was freed by a dead holder: it is free now, take it, then report.
            Err(Error::OwnerDied { tid }) => acquire().and(Err(Error::OwnerDied { tid })),
            other => other,
        };
        let notified = notified?;
        // A notification that came after the time ran out, before the lock was back, counts.
        Ok(again? || notified)
    }
}

impl Drop for ConditionProxyGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self
                .cond
                .handle
                .op::<StoredCondition>(ConditionOp::Release {
                    holder: self.holder,
                });
        }
    }
}

/// An operation on a condition.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ConditionOp {
    /// Takes the lock; with a ticket (the end of a wait), also drops it from the queue and
    /// answers whether it had been notified.
    Acquire {
        holder: Holder,
        wait: Wait,
        ticket: Option<u64>,
    },
    Release {
        holder: Holder,
    },
    /// Releases the lock (which `holder` must hold) and queues a ticket.
    WaitBegin {
        holder: Holder,
    },
    /// Waits until the ticket is notified; answers whether it was.
    WaitEnd {
        ticket: u64,
        wait: Wait,
    },
    /// Takes up to `n` tickets off the queue; answers how many.
    Notify {
        holder: Holder,
        n: u64,
    },
}

/// A condition as the server keeps it.
#[derive(Debug)]
pub(crate) struct StoredCondition {
    /// The thread holding the lock, and the connection it acquired it on.
    holder: Option<(Holder, u64)>,
    abandoned_by: Option<Holder>,
    /// Tickets not yet notified, oldest first, with the connection that queued each.
    waiters: VecDeque<(u64, u64)>,
    next_ticket: u64,
}

impl StoredCondition {
    fn check_holder(&self, me: Holder, what: &str) -> Result<()> {
        match self.holder {
            Some((h, _)) if h == me => Ok(()),
            _ => Err(Error::InvalidArgument(format!(
                "{what} on a manager condition whose lock this thread does not hold"
            ))),
        }
    }
}

impl ObjectKind for StoredCondition {
    const NAME: &'static str = "condition";
    type Op = ConditionOp;
    type Init = ();

    fn new((): ()) -> Result<StoredCondition> {
        Ok(StoredCondition {
            holder: None,
            abandoned_by: None,
            waiters: VecDeque::new(),
            next_ticket: 0,
        })
    }

    fn for_each_value(&mut self, _f: &mut dyn FnMut(&mut Blob)) {}

    fn incoming(_op: &ConditionOp) -> Vec<u64> {
        Vec::new()
    }

    fn must_wait(&self, op: &ConditionOp, _conn: u64) -> Option<Pending> {
        match op {
            ConditionOp::Acquire {
                holder: me, wait, ..
            } => match self.holder {
                Some((h, _)) if h != *me => Some(Pending::or_fail(*wait, Error::WouldBlock)),
                _ => None,
            },
            ConditionOp::WaitEnd { ticket, wait } => self
                .waiters
                .iter()
                .any(|&(t, _)| t == *ticket)
                .then_some(Pending {
                    wait: *wait,
                    busy: Ok(Reply::Bool(false)),
                    expired: Ok(Reply::Bool(false)),
                    poll: None,
                }),
            _ => None,
        }
    }

    fn apply(
        &mut self,
        op: ConditionOp,
        conn: u64,
        _dropped: &mut Vec<u64>,
    ) -> Result<(Reply, Out)> {
        let reply = match op {
            ConditionOp::Acquire {
                holder: me, ticket, ..
            } => {
                match self.holder {
                    Some((h, _)) if h == me => return Err(Error::Deadlock),
                    Some(_) => return Err(Error::WouldBlock),
                    None => {}
                }
                if let Some(dead) = self.abandoned_by.take() {
                    return Err(Error::OwnerDied { tid: dead.tid });
                }
                self.holder = Some((me, conn));
                match ticket {
                    Some(t) => {
                        let queued = self.waiters.len();
                        self.waiters.retain(|&(w, _)| w != t);
                        // Off the queue already: a `Notify` took it.
                        Reply::Bool(queued == self.waiters.len())
                    }
                    None => Reply::Done,
                }
            }
            ConditionOp::Release { holder: me } => {
                self.check_holder(me, "release")?;
                self.holder = None;
                Reply::Done
            }
            ConditionOp::WaitBegin { holder: me } => {
                self.check_holder(me, "wait")?;
                self.holder = None;
                self.next_ticket += 1;
                self.waiters.push_back((self.next_ticket, conn));
                Reply::Ticket(self.next_ticket)
            }
            ConditionOp::WaitEnd { ticket, .. } => {
                Reply::Bool(!self.waiters.iter().any(|&(t, _)| t == ticket))
            }
            ConditionOp::Notify { holder: me, n } => {
                self.check_holder(me, "notify")?;
                let n = usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(self.waiters.len());
                self.waiters.drain(..n);
                Reply::Len(n as u64)
            }
        };
        Ok((reply, Out::Copied))
    }

    fn release_held_by(&mut self, conn: u64) -> bool {
        let before = self.waiters.len();
        self.waiters.retain(|&(_, c)| c != conn);
        let mut changed = before != self.waiters.len();
        if let Some((h, c)) = self.holder
            && c == conn
        {
            self.holder = None;
            self.abandoned_by = Some(h);
            changed = true;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::object::apply_keeping_refs;

    #[test]
    fn a_notify_wakes_the_oldest_waiter_and_needs_the_lock() {
        let a = Holder { pid: 1, tid: 1 };
        let b = Holder { pid: 2, tid: 2 };
        let mut c = StoredCondition::new(()).unwrap();
        let acquire = |h, ticket| ConditionOp::Acquire {
            holder: h,
            wait: Wait::No,
            ticket,
        };
        apply_keeping_refs(&mut c, acquire(a, None)).unwrap();
        let Reply::Ticket(t) =
            apply_keeping_refs(&mut c, ConditionOp::WaitBegin { holder: a }).unwrap()
        else {
            panic!()
        };
        let end = ConditionOp::WaitEnd {
            ticket: t,
            wait: Wait::No,
        };
        assert!(c.must_wait(&end, 0).is_some());
        let e = apply_keeping_refs(&mut c, ConditionOp::Notify { holder: b, n: 1 }).unwrap_err();
        assert!(e.to_string().contains("notify"), "{e}");
        apply_keeping_refs(&mut c, acquire(b, None)).unwrap();
        let woke = apply_keeping_refs(&mut c, ConditionOp::Notify { holder: b, n: 5 }).unwrap();
        assert!(matches!(woke, Reply::Len(1)));
        assert!(c.must_wait(&end, 0).is_none());
        assert!(c.must_wait(&acquire(a, Some(t)), 0).is_some());
        apply_keeping_refs(&mut c, ConditionOp::Release { holder: b }).unwrap();
        let notified = apply_keeping_refs(&mut c, acquire(a, Some(t))).unwrap();
        assert!(matches!(notified, Reply::Bool(true)));
    }
}
