//! The pool's wire protocol and its child side.
//!
//! A pool worker is started with [`Role::PoolWorker`](crate::process::Role). Its first message
//! names the initializer (if any) followed by the initializer's arguments; it answers
//! [`FromWorker::Ready`] or [`FromWorker::InitFailed`]. Then each message is a chunk of tasks:
//! a [`ToWorker::Task`] header naming the worker, followed by `Vec<W::Args>`. The answer is
//! [`FromWorker::Done`] followed by the results (`Vec<W::Output>` when nothing panicked,
//! `Vec<Result<W::Output, Panicked>>` otherwise), or [`FromWorker::Failed`]. A worker answers
//! its messages in order and exits when the parent closes the connection.

use serde::{Deserialize, Serialize};

use super::wire::send_header_and_seq;
use crate::bootstrap::panic::{PanicReport, catch_panic};
use crate::error::CHILD_FAILED;
use crate::error::Error;
use crate::sys;
use crate::wire::{Channel, Frame};
use crate::worker::{Invocation, Target};
use crate::worker::{Worker, WorkerEntry};

/// Parent → worker header.
#[derive(Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// A chunk of tasks for `target`; `Vec<Args>` follows.
    Task(Target),
}

/// Worker → parent header.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// The initializer ran (or there is none); tasks may start.
    Ready,
    /// The initializer panicked or could not run; the worker exits.
    InitFailed(String),
    /// The chunk ran; its results follow (see the module docs for their shape).
    Done {
        /// Whether a task panicked, which selects the results' shape.
        panics: bool,
    },
    /// The chunk could not run (undecodable arguments, unknown worker, unencodable results):
    /// the error every task of the chunk gets, as it happened in the worker.
    Failed(Error),
}

/// A task that panicked: its message and location.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Panicked {
    pub(crate) message: String,
    pub(crate) location: Option<String>,
}

/// Runs the pool-worker side: the initializer, then tasks until the parent hangs up.
/// Returns the exit code.
pub(crate) fn serve(channel: &Channel, init: Frame) -> i32 {
    // A `SIGINT` ends the worker quietly (no message, no unwinding), as Python's
    // `KeyboardInterrupt` ends its task: sent to this worker alone, its task fails with
    // `Error::Interrupted` and the pool replaces it; a terminal's Ctrl-C reaches the parent
    // too, which stops the whole pool. An inherited "ignore" is not kept: the parent's own
    // disposition says nothing about its workers.
    sys::default_sigint();
    let (initializer, init) = match init.split_prefix::<Option<Target>>() {
        Ok(split) => split,
        Err(e) => {
            let _ = channel.send(&FromWorker::InitFailed(format!(
                "cannot decode the initializer message: {e}"
            )));
            return CHILD_FAILED;
        }
    };
    if let Some(target) = initializer {
        let entry = match target.lookup() {
            Ok(entry) => entry,
            Err(detail) => {
                let _ = channel.send(&FromWorker::InitFailed(
                    not_found(&target, detail).to_string(),
                ));
                return CHILD_FAILED;
            }
        };
        let code = (entry.pool_init)(Invocation {
            args: init,
            reply: channel,
        });
        if code != 0 {
            return code;
        }
    }
    if channel.send(&FromWorker::Ready).is_err() {
        return 0;
    }
    let mut last: Option<(Target, &'static WorkerEntry)> = None;
    loop {
        let frame = match channel.recv_frame(None) {
            Ok(frame) => frame,
            Err(Error::Disconnected) => return 0,
            Err(e) => {
                crate::logging::report_failure(format_args!(
                    "pool worker cannot read its next task: {e}"
                ));
                return CHILD_FAILED;
            }
        };
        let (ToWorker::Task(target), body) = match frame.split_prefix::<ToWorker>() {
            Ok(split) => split,
            Err(e) => {
                if channel.send(&FromWorker::Failed(e)).is_err() {
                    return 0;
                }
                continue;
            }
        };
        let entry = match &last {
            Some((t, entry)) if *t == target => Ok(*entry),
            _ => target.lookup(),
        };
        let entry = match entry {
            Ok(entry) => entry,
            Err(detail) => {
                let failed = FromWorker::Failed(not_found(&target, detail));
                if channel.send(&failed).is_err() {
                    return 0;
                }
                continue;
            }
        };
        let code = (entry.pool_chunk)(Invocation {
            args: body,
            reply: channel,
        });
        if code != 0 {
            return code;
        }
        last = Some((target, entry));
    }
}

/// The error of a worker the child's registry does not have (the same as `Process` gives).
fn not_found(target: &Target, detail: String) -> Error {
    Error::WorkerNotFound {
        name: target.worker.clone(),
        detail,
    }
}

/// Runs `W` as a pool initializer; 0 when it returned, otherwise `InitFailed` was sent.
pub(crate) fn run_init<W: Worker>(inv: Invocation<'_>) -> i32 {
    let failed = match inv.args.decode::<W::Args>() {
        Err(e) => format!("cannot decode the initializer's arguments: {e}"),
        Ok(args) => match catch_panic(PanicReport::Quiet, || W::INSTANCE.call(args)) {
            Ok(_) => return 0,
            Err((message, location)) => match location {
                Some(l) => format!("`{}` panicked at {l}: {message}", W::NAME),
                None => format!("`{}` panicked: {message}", W::NAME),
            },
        },
    };
    let _ = inv.reply.send(&FromWorker::InitFailed(failed));
    1
}

/// Runs a chunk of `W` tasks and sends the results; non-zero when the parent is gone.
pub(crate) fn run_batch<W: Worker>(inv: Invocation<'_>) -> i32 {
    // Numbers are read from the frame where they arrived, not copied into arguments first.
    let ran = match inv.args.numeric_seq::<W::Args>() {
        Some(Ok(bytes)) => run_tasks::<W>(sys::numeric_values(bytes).expect("numbers")),
        Some(Err(e)) => return reply_code(inv.reply.send(&FromWorker::Failed(e))),
        None => match inv.args.decode_seq::<W::Args>() {
            Ok(args) => run_tasks::<W>(args.into_iter()),
            Err(e) => return reply_code(inv.reply.send(&FromWorker::Failed(e))),
        },
    };
    let (values, panicked) = ran;
    let sent = if panicked.is_empty() {
        send_header_and_seq(inv.reply, &FromWorker::Done { panics: false }, &values)
    } else {
        let total = values.len() + panicked.len();
        let mut values = values.into_iter();
        let mut panicked = panicked.into_iter().peekable();
        let results: Vec<Result<W::Output, Panicked>> = (0..total)
            .map(|i| match panicked.next_if(|(at, _)| *at == i) {
                Some((_, p)) => Err(p),
                None => Ok(values.next().expect("one value per task that returned")),
            })
            .collect();
        inv.reply
            .send(&(FromWorker::Done { panics: true }, &results))
    };
    match sent {
        // The results could not be encoded (or are over the limit): every task of the chunk
        // gets that error as it is, `Error::Encode` or `Error::TooLarge`.
        Err(e @ (Error::Encode(_) | Error::TooLarge { .. })) => {
            reply_code(inv.reply.send(&FromWorker::Failed(e)))
        }
        other => reply_code(other),
    }
}

/// Calls `W` on each of `args`: the values of the tasks that returned, and the panics of the
/// others with their tasks' indices. Values are collected plainly; only a chunk with a panic
/// pays for per-task results. One panic guard covers the tasks up to the next panic, after
/// which the next guard takes the rest: a guard a task (a thread-local write and an
/// out-of-line call each) was a fifth of the CPU time of a map of a million squares, and kept
/// the loop from vectorising.
fn run_tasks<W: Worker>(
    mut args: impl ExactSizeIterator<Item = W::Args>,
) -> (Vec<W::Output>, Vec<(usize, Panicked)>) {
    let total = args.len();
    let mut values: Vec<W::Output> = Vec::with_capacity(total);
    let mut panicked: Vec<(usize, Panicked)> = Vec::new();
    while let Err((message, location)) = catch_panic(PanicReport::Quiet, || {
        values.extend(args.by_ref().map(|a| W::INSTANCE.call(a)));
    }) {
        // The task that panicked was the last one taken from `args`.
        let at = total - args.len() - 1;
        panicked.push((at, Panicked { message, location }));
    }
    (values, panicked)
}

fn reply_code(sent: crate::Result<()>) -> i32 {
    match sent {
        Ok(()) => 0,
        Err(Error::Disconnected) => 1,
        Err(e) => {
            crate::logging::report_failure(format_args!(
                "pool worker cannot send its results: {e}"
            ));
            CHILD_FAILED
        }
    }
}
