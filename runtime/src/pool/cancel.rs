//! Cancelling tasks that no worker has been given yet: one call's
//! ([`AsyncResult::cancel`](crate::AsyncResult::cancel)) or every queued one (an executor's
//! `shutdown` with `cancel_futures`). A cancelled chunk leaves the pool's queue under its lock
//! (the only place chunks are handed to workers), so a chunk is either cancelled or sent,
//! never both, and completes at once with [`ChunkFailure::Cancelled`]: its waiter gets
//! [`Error::Cancelled`](crate::Error::Cancelled). A task already in a worker is never
//! interrupted here.

use std::sync::Arc;

use super::core::{Chunk, PoolCore, PoolState};
use super::job::Job;
use super::outcome::{ChunkFailure, ChunkResult};

impl PoolCore {
    /// Cancels `job`, whose `chunks` chunks were all submitted, if none of them has been
    /// handed to a worker or finished; whether it did (all or nothing, as Python's
    /// `Future.cancel`).
    pub(crate) fn cancel_job(&self, job: &Arc<Job>, chunks: usize) -> bool {
        let mut st = self.lock();
        let queued = st
            .pending
            .iter()
            .filter(|c| Arc::ptr_eq(&c.job, job))
            .count();
        if chunks == 0 || queued != chunks {
            return false;
        }
        let cancelled = take_pending(&mut st, |c| Arc::ptr_eq(&c.job, job));
        fail_cancelled(&mut st, cancelled);
        true
    }

    /// Cancels every queued chunk of every call; how many.
    pub(crate) fn cancel_queued(&self) -> usize {
        let mut st = self.lock();
        let cancelled = take_pending(&mut st, |_| true);
        let n = cancelled.len();
        fail_cancelled(&mut st, cancelled);
        n
    }

    /// Whether a chunk of `job` is held by a worker (running, or queued in that worker).
    pub(crate) fn job_in_worker(&self, job: &Arc<Job>) -> bool {
        let st = self.lock();
        st.workers
            .iter()
            .any(|w| w.in_flight.iter().any(|f| Arc::ptr_eq(&f.chunk.job, job)))
    }
}

/// Removes the queued chunks that `which` selects, keeping the others in their order.
fn take_pending(st: &mut PoolState, which: impl Fn(&Chunk) -> bool) -> Vec<Chunk> {
    let (taken, kept): (Vec<Chunk>, Vec<Chunk>) = st.pending.drain(..).partition(|c| which(c));
    st.pending.extend(kept);
    taken
}

fn fail_cancelled(st: &mut PoolState, chunks: Vec<Chunk>) {
    for chunk in chunks {
        chunk
            .job
            .complete(chunk.index, ChunkResult::Failed(ChunkFailure::Cancelled));
        st.outstanding -= 1;
    }
}
