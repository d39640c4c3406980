//! A `map`'s output filled in place: whoever reads a worker's reply (the supervisor thread,
//! or a waiting caller) copies numeric results from where they arrived (the channel's receive
//! buffer, or an out-of-line frame's mapping) straight to their place in the call's output,
//! rather than into a frame of their own that the caller then copies again. The output is
//! not zeroed first (`sys::NumericFill`).
//!
//! Only a chunk that ran without a panic, whose results are numbers and fit the output as it
//! was announced, is placed; any other reply travels to the caller as a frame, as always.

use std::any::Any;

use crate::codec;
use crate::sys;

/// A call's output that replies are copied into as they are read (type-erased, so that the
/// job and the reader need not know the result type).
pub(crate) trait Placement: Send {
    /// Copies the encoded results `body` of chunk `index` (`len` tasks) to their place; false
    /// (nothing copied) when they are not `len` numbers of the output's type or do not fit.
    fn place(&mut self, index: usize, len: usize, body: &[u8]) -> bool;

    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

/// The output of a call of `n` tasks in chunks of `chunksize`, when its results are numbers.
struct InPlace<T> {
    fill: sys::NumericFill<T>,
    chunksize: usize,
}

/// Room for the `n` results of a call in chunks of `chunksize`, when `T` is a wire number
/// (`None` otherwise: its results are decoded by the caller).
pub(crate) fn output<T: Send + 'static>(n: usize, chunksize: usize) -> Option<Box<dyn Placement>> {
    let fill = sys::NumericFill::<T>::new(n)?;
    Some(Box::new(InPlace { fill, chunksize }))
}

impl<T: Send + 'static> Placement for InPlace<T> {
    fn place(&mut self, index: usize, len: usize, body: &[u8]) -> bool {
        let Some(Ok(values)) = codec::numeric_seq::<T>(body) else {
            return false;
        };
        let Some(first) = index.checked_mul(self.chunksize) else {
            return false;
        };
        values.len() == len * size_of::<T>() && self.fill.place(first, values)
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// The results placed in `output` (made by [`output`] for `T`): those of the chunks from the
/// first on, as long as none is missing; `None` if there is a gap.
pub(crate) fn finish<T: 'static>(output: Box<dyn Placement>) -> Option<Vec<T>> {
    let output = output.into_any().downcast::<InPlace<T>>().ok()?;
    output.fill.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(values: &[u32]) -> Vec<u8> {
        let mut buf = Vec::new();
        codec::encode(&values.to_vec(), &mut buf, &mut Vec::new()).unwrap();
        buf
    }

    #[test]
    fn chunks_go_to_their_place_in_any_order() {
        let mut out = output::<u32>(5, 2).unwrap();
        assert!(out.place(2, 1, &encoded(&[4])));
        assert!(!out.place(1, 2, &encoded(&[2])), "fewer results than tasks");
        assert!(
            !out.place(1, 2, &encoded(&[2, 3, 9])),
            "more results than tasks"
        );
        assert!(
            !out.place(3, 2, &encoded(&[6, 7])),
            "beyond the announced length"
        );
        assert!(out.place(0, 2, &encoded(&[0, 1])));
        assert!(out.place(1, 2, &encoded(&[2, 3])));
        assert_eq!(finish::<u32>(out).unwrap(), [0, 1, 2, 3, 4]);
        assert!(output::<String>(5, 2).is_none());
        assert!(
            finish::<u64>(output::<u32>(1, 1).unwrap()).is_none(),
            "another type"
        );
    }
}
