//! What comes back for one chunk of a pool call: the worker's reply frame or the reason it
//! has none ([`ChunkResult`]), and its decoding into results ([`Decoded::decode`]), which runs in
//! the caller's thread. Holds no state and must not wait or touch the pool: the supervisor
//! only moves frames, the caller decodes them.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::child::Panicked;
use crate::error::{Error, ExitStatus, Result};
use crate::wire::Frame;

/// Why a whole pool stopped; every task it still held fails with this.
#[derive(Debug, Clone)]
pub(crate) enum StopReason {
    Interrupted,
    Terminated,
    Initializer(String),
    Broken(String),
}

impl StopReason {
    pub(crate) fn error(&self) -> Error {
        match self {
            StopReason::Interrupted => Error::Interrupted,
            StopReason::Terminated => Error::PoolTerminated,
            StopReason::Initializer(m) => Error::InitializerFailed(m.clone()),
            StopReason::Broken(m) => Error::ChildFailed(m.clone()),
        }
    }
}

/// Why one chunk has no results.
#[derive(Debug, Clone)]
pub(crate) enum ChunkFailure {
    /// `rank`: an MPI worker rank and its host.
    Died {
        pid: u32,
        status: ExitStatus,
        rank: Option<(u32, String)>,
    },
    Timeout {
        pid: u32,
        limit: Duration,
    },
    Child(Arc<Error>),
    Stopped(StopReason),
    /// Cancelled before a worker was given it.
    Cancelled,
    /// Its worker was ended by a `SIGINT` sent to it (Python's `KeyboardInterrupt`).
    Interrupted,
}

impl ChunkFailure {
    /// The error for the chunk whose tasks are `first..first + len`.
    pub(crate) fn error(&self, first: usize, len: usize) -> Error {
        match self {
            ChunkFailure::Died { pid, status, rank } => Error::WorkerDied {
                pid: *pid,
                status: *status,
                task_index: first,
                tasks: len,
                rank: rank.as_ref().map(|(r, _)| *r),
                host: rank.as_ref().map(|(_, h)| h.clone()),
            },
            ChunkFailure::Timeout { pid, limit } => Error::TaskTimeout {
                task_index: first,
                limit: *limit,
                pid: *pid,
            },
            ChunkFailure::Child(e) => Error::clone(e),
            ChunkFailure::Stopped(reason) => reason.error(),
            ChunkFailure::Cancelled => Error::Cancelled,
            ChunkFailure::Interrupted => Error::Interrupted,
        }
    }
}

/// What came back for one chunk.
pub(crate) enum ChunkResult {
    /// The worker's reply: results follow the header in `frame`.
    Done {
        frame: Frame,
        panics: bool,
    },
    /// Every task returned, and the results were copied into the call's output as they were
    /// read (`in_place.rs`).
    Placed,
    Failed(ChunkFailure),
}

/// Decoded results of one chunk.
pub(crate) enum Decoded<O> {
    /// Every task returned; the values are in the call's output already.
    Placed,
    /// Every task returned.
    Values(Vec<O>),
    /// Some task failed (or the whole chunk did): one result per task.
    Mixed(Vec<Result<O>>),
}

impl<O: DeserializeOwned + 'static> Decoded<O> {
    /// Decodes a chunk of tasks `first..first + len` of worker `worker`.
    pub(crate) fn decode(
        result: ChunkResult,
        first: usize,
        len: usize,
        worker: &str,
    ) -> Decoded<O> {
        let each = |f: &dyn Fn() -> Error| Decoded::Mixed((0..len).map(|_| Err(f())).collect());
        match result {
            ChunkResult::Failed(why) => each(&|| why.error(first, len)),
            ChunkResult::Placed => Decoded::Placed,
            ChunkResult::Done {
                frame,
                panics: false,
            } => match frame.decode_seq::<O>() {
                Ok(values) if values.len() == len => Decoded::Values(values),
                Ok(values) => each(&|| wrong_count(values.len(), len)),
                Err(e) => each(&|| Error::Decode(e.to_string())),
            },
            ChunkResult::Done {
                frame,
                panics: true,
            } => match frame.decode::<Vec<std::result::Result<O, Panicked>>>() {
                Ok(values) if values.len() == len => Decoded::Mixed(
                    values
                        .into_iter()
                        .map(|r| {
                            r.map_err(|p| Error::WorkerPanicked {
                                worker: worker.to_owned(),
                                message: p.message,
                                location: p.location,
                            })
                        })
                        .collect(),
                ),
                Ok(values) => each(&|| wrong_count(values.len(), len)),
                Err(e) => each(&|| Error::Decode(e.to_string())),
            },
        }
    }

    /// One result per task (for a chunk decoded without a destination).
    pub(crate) fn into_results(self) -> Vec<Result<O>> {
        match self {
            Decoded::Placed => unreachable!("only a call with an output has chunks placed"),
            Decoded::Values(v) => v.into_iter().map(Ok).collect(),
            Decoded::Mixed(v) => v,
        }
    }
}

fn wrong_count(got: usize, want: usize) -> Error {
    Error::Malformed(format!(
        "a pool worker sent {got} results for a chunk of {want} tasks"
    ))
}
