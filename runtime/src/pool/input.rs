//! The input of an `imap` call as its feeder reads it: [`Guarded`] turns an input item that is
//! an error (`try_imap`) or an input iterator that panics into the end of the input, and keeps
//! what happened, with the position, for the consumer to meet once it has taken every result
//! before it. So the results of the items read before the failure come first (Python's
//! `imap` raises the input's exception at its place in the stream), whatever the read-ahead.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, Result};

/// Why an input ended early.
pub(crate) enum InputFailure {
    /// The input yielded this error.
    Error(Error),
    /// The input iterator panicked with this payload.
    Panic(Box<dyn Any + Send>),
}

/// Where an input's failure is kept: shared between the feeder's [`Guarded`] and the consumer.
pub(super) type FailureCell = Arc<Mutex<Option<InputFailure>>>;

/// How an input item becomes a task's arguments (or the error that ends the input).
pub(super) type Convert<I, A> = fn(<I as Iterator>::Item) -> Result<A>;

/// An input iterator whose items become `Result<A>` through `convert`, which ends (for good)
/// at its first error or panic and records it in `failure`.
pub(crate) struct Guarded<I: Iterator, A> {
    inner: I,
    convert: Convert<I, A>,
    failure: FailureCell,
    ended: bool,
}

impl<I: Iterator, A> Guarded<I, A> {
    pub(super) fn new(inner: I, convert: Convert<I, A>) -> (Self, FailureCell) {
        let failure = FailureCell::default();
        let guarded = Guarded {
            inner,
            convert,
            failure: Arc::clone(&failure),
            ended: false,
        };
        (guarded, failure)
    }

    fn fail(&mut self, why: InputFailure) -> Option<A> {
        self.ended = true;
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
        None
    }
}

impl<I: Iterator, A> Iterator for Guarded<I, A> {
    type Item = A;

    fn next(&mut self) -> Option<A> {
        if self.ended {
            return None;
        }
        let inner = &mut self.inner;
        match catch_unwind(AssertUnwindSafe(|| inner.next())) {
            Ok(None) => {
                self.ended = true;
                None
            }
            Ok(Some(item)) => match (self.convert)(item) {
                Ok(args) => Some(args),
                Err(e) => self.fail(InputFailure::Error(e)),
            },
            Err(payload) => self.fail(InputFailure::Panic(payload)),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.ended {
            (0, Some(0))
        } else {
            self.inner.size_hint()
        }
    }
}
