//! Feeding a pool call: the one feeder that cuts an input into chunks and submits them
//! ([`Feeder`], for `map`, `map_async` and `imap`), the chunk size it cuts by, the encoding of
//! a chunk, and [`collect`], which takes a `map`'s chunks as they arrive and keeps the feeder
//! going.
//!
//! A window bounds the chunks in flight: `map` keeps 8 per worker, `imap` 4, `map_async` all
//! (nobody is there to feed it later). It must not wait for results itself (the call does,
//! `job.rs`) nor decode them (`outcome.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::child::ToWorker;
use super::core::{Chunk, PoolCore};
use super::in_place;
use super::job::{Job, Pump};
use super::link::Backend;
use super::outcome::Decoded;
use super::progress::Progress;
use super::wire::{self, Encoded};
use crate::codec;
use crate::error::{Error, Result};
use crate::wire::INLINE_MAX;
use crate::worker::{Target, Worker};

/// The payload of a chunk chosen automatically stays within this many bytes, which leaves
/// room in an inline frame for the headers (see [`automatic_chunksize`]).
const INLINE_BUDGET: usize = INLINE_MAX - 256;

/// The length of an input that knows it exactly (a range, a vector): such an input is cut
/// into chunks as it is read; another is read whole first by `map`, since the automatic chunk
/// size needs the count.
pub(super) fn exact_len(input: &impl Iterator) -> Option<usize> {
    match input.size_hint() {
        (lo, Some(hi)) if lo == hi => Some(lo),
        _ => None,
    }
}

/// The automatic chunk size for `n` items on `processes` workers, the first item being
/// `sample`: Python's choice (about four chunks per worker), made smaller where needed so that
/// a chunk's tasks, and its results when their size is known, fit in one inline frame: a
/// small frame goes through the socket in one copy each way, while a larger one needs a
/// shared buffer of its own, whose set-up and page-cache work cost more than they save (a
/// million `u64` squares: about 8 ms in inline chunks against 13 ms in eight large ones).
pub(super) fn automatic_chunksize<W: Worker>(
    n: usize,
    processes: usize,
    sample: Option<&W::Args>,
) -> usize {
    let python = n.div_ceil(processes * 4).max(1);
    let sample = sample.map_or(&[][..], std::slice::from_ref);
    let per_task = codec::size_hint(sample).max(codec::size_hint::<W::Output>(&[]));
    let inline = match per_task {
        Some(bytes) => (INLINE_BUDGET / bytes.max(1)).max(1),
        None => usize::MAX,
    };
    python.min(inline)
}

/// How a call's result is decoded from its chunks (in the waiting thread, with its pump).
pub(super) type Finish<T> = fn(&Job, Cut, &dyn Pump) -> Result<T>;

/// How a call's input has been cut so far: chunk `k` holds tasks `k * chunksize ..`, and every
/// chunk is full but the last one of an input that has ended.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cut {
    pub(super) chunksize: usize,
    /// Chunks submitted.
    pub(super) chunks: usize,
    /// Tasks read from the input (and submitted).
    pub(super) items: usize,
    /// The input has ended: `chunks` and `items` are final.
    pub(super) ended: bool,
}

impl Cut {
    /// A call whose `items` tasks were all submitted in chunks of `chunksize`.
    pub(super) fn whole(items: usize, chunksize: usize) -> Cut {
        Cut {
            chunksize,
            chunks: items.div_ceil(chunksize),
            items,
            ended: true,
        }
    }

    /// The number of tasks in chunk `k` (submitted already).
    pub(super) fn len_of(&self, k: usize) -> usize {
        self.chunksize.min(self.items - k * self.chunksize)
    }

    /// Once the input has ended: the numbers of chunks and tasks.
    fn totals(&self) -> Option<(usize, usize)> {
        self.ended.then_some((self.chunks, self.items))
    }
}

/// The submitting side of a call, as [`collect`] sees it: a [`Feeder`], or the [`Cut`] of a
/// call submitted whole.
pub(super) trait Feed {
    /// Submits more chunks, if any are due now that `taken` results have been taken.
    fn refill(&mut self, taken: usize) -> Result<()>;
    /// How the input has been cut so far.
    fn cut(&self) -> Cut;
    /// How many chunks a caller with nothing to take may sleep for, now that `taken` have
    /// been taken: as many as are still to come, unless there is more input to submit.
    fn batch(&self, taken: usize) -> usize {
        self.cut().chunks - taken
    }
}

impl Feed for Cut {
    fn refill(&mut self, _taken: usize) -> Result<()> {
        Ok(())
    }

    fn cut(&self) -> Cut {
        *self
    }
}

/// Cuts a call's input into chunks and submits them, keeping at most `window` chunks in
/// flight. The call's chunk count is fixed when the input ends, so an iterator that misstates
/// its length loses or invents nothing.
pub(super) struct Feeder<'p, W: Worker, I> {
    /// The pool, which is also the pump of the call's waits.
    pub(super) shared: &'p PoolCore,
    worker: W,
    pub(super) job: Arc<Job>,
    input: std::iter::Fuse<I>,
    /// An item read ahead of the first chunk (to size it).
    first: Option<W::Args>,
    /// Chunks in flight at most.
    pub(super) window: usize,
    pub(super) cut: Cut,
}

impl<'p, W: Worker, I: Iterator<Item = W::Args>> Feeder<'p, W, I> {
    /// A feeder of a new call of `worker` on `shared` over `input`, which announces `n` items
    /// (`None`: a stream, cut in chunks of one unless `chunksize` is set), taken as they
    /// arrive (`by_arrival`) or in order. Fails on a chunk size of 0.
    pub(super) fn new(
        shared: &'p PoolCore,
        chunksize: Option<usize>,
        worker: W,
        input: I,
        n: Option<usize>,
        window: usize,
        by_arrival: bool,
    ) -> Result<Self> {
        let mut input = input.fuse();
        let mut first = None;
        let chunksize = match (chunksize, n) {
            (Some(0), _) => {
                return Err(Error::InvalidArgument(
                    "chunksize must be at least 1".into(),
                ));
            }
            (Some(c), _) => c,
            (None, None) => 1,
            (None, Some(n)) => {
                first = input.next();
                automatic_chunksize::<W>(n, shared.processes(), first.as_ref())
            }
        };
        Ok(Feeder {
            shared,
            worker,
            job: Job::new(W::NAME, None, by_arrival),
            input,
            first,
            window,
            cut: Cut {
                chunksize,
                chunks: 0,
                items: 0,
                ended: false,
            },
        })
    }
}

impl<W: Worker, I> Feeder<'_, W, I> {
    /// Has the replies of this call of `n` announced tasks copied into its output as they are
    /// read, when its results are numbers (`in_place.rs`); before its first chunk is sent.
    pub(super) fn output_in_place(&self, n: usize) {
        if let Some(output) = in_place::output::<W::Output>(n, self.cut.chunksize) {
            self.job.set_output(output);
        }
    }
}

impl<W: Worker, I: Iterator<Item = W::Args>> Feed for Feeder<'_, W, I> {
    fn refill(&mut self, taken: usize) -> Result<()> {
        let cut = &mut self.cut;
        while !cut.ended && cut.chunks - taken < self.window {
            let mut chunk: Vec<W::Args> = self.first.take().into_iter().collect();
            chunk.extend(self.input.by_ref().take(cut.chunksize - chunk.len()));
            let len = chunk.len();
            if len > 0 {
                if let Err(e) = submit_chunk(self.shared, self.worker, &self.job, cut.chunks, chunk)
                {
                    self.job.cancel();
                    return Err(e);
                }
                cut.chunks += 1;
                cut.items += len;
            }
            if len < cut.chunksize {
                // A short chunk: the (fused) input has ended.
                cut.ended = true;
                self.job.set_total(cut.chunks);
            }
        }
        Ok(())
    }

    fn cut(&self) -> Cut {
        self.cut
    }

    /// Half the window while the input lasts: the other half keeps the workers busy while
    /// the caller sleeps.
    fn batch(&self, taken: usize) -> usize {
        let to_come = self.cut.chunks - taken;
        if self.cut.ended {
            to_come
        } else {
            to_come.min(self.window / 2).max(1)
        }
    }
}

/// Submits chunk `chunk` of `call`: `items`, encoded by [`encode_chunk`].
pub(super) fn submit_chunk<W: Worker>(
    shared: &PoolCore,
    worker: W,
    job: &Arc<Job>,
    index: usize,
    items: Vec<W::Args>,
) -> Result<()> {
    let header = ToWorker::Task(Target::of(worker.__entry()));
    let len = items.len();
    let mut msg = encode_chunk(&header, items)?;
    if shared.config.backend == Backend::Mpi {
        let what = format!("argument of type `{}`", std::any::type_name::<W::Args>());
        msg = msg
            .into_network()
            .map_err(|e| super::builder::network_refusal(e, &what))?;
    }
    let chunk = Chunk {
        job: Arc::clone(job),
        index,
        len,
        msg,
        attempts: 0,
    };
    shared.submit(chunk)
}

/// The frame of a chunk of tasks. Numbers are not copied: the frame ends with a view of the
/// chunk's own vector, which it keeps, and is written to the worker's socket from there.
fn encode_chunk<T: serde::Serialize + 'static>(
    header: &ToWorker,
    items: Vec<T>,
) -> Result<Encoded> {
    let count = items.len();
    match wire::numbers(items) {
        Ok(source) => {
            let len = source.bytes().len();
            Encoded::header_and_shared(header, &source, 0..len, count)
        }
        Err(items) => Encoded::header_and_seq(header, &items),
    }
}

/// Takes every chunk of a call as it arrives, decoding each, and keeps `feed` submitting;
/// the results in input order, or the first error in input order. Numbers were copied to their place in the call's output as they were
/// read (`in_place.rs`), as far as the input announced them; other values (and numbers beyond
/// that) are decoded chunk by chunk, joined at the end. Awake after each chunk, the caller
/// also works `pump` (reads what else has arrived and feeds the workers, sharing the
/// supervisor's work).
pub(super) fn collect<O: DeserializeOwned + 'static>(
    job: &Job,
    progress: &Progress,
    feed: &mut dyn Feed,
    pump: &dyn Pump,
) -> Result<Vec<O>> {
    let mut parts: BTreeMap<usize, Vec<O>> = BTreeMap::new();
    let mut first_error: Option<(usize, Error)> = None;
    let mut taken = 0;
    let more = |feed: &dyn Feed, taken: usize| {
        feed.cut().totals().is_none_or(|(chunks, _)| taken < chunks)
    };
    while more(feed, taken) {
        // Results need not be taken one by one as they come (numbers are in place already,
        // others wait in the job): the caller sleeps for a batch, which spares wake-ups.
        let batch = feed.batch(taken);
        let (k, result) = job.take_any_of(None, batch, pump).expect("no deadline");
        taken += 1;
        let cut = feed.cut();
        let (first, len) = (k * cut.chunksize, cut.len_of(k));
        match Decoded::decode(result, first, len, job.worker) {
            Decoded::Placed => {}
            Decoded::Values(values) => {
                parts.insert(k, values);
            }
            Decoded::Mixed(results) => {
                let failed = results
                    .into_iter()
                    .enumerate()
                    .find_map(|(j, r)| r.err().map(|e| (first + j, e)));
                if let Some((i, e)) = failed {
                    if first_error.as_ref().is_none_or(|(earlier, _)| i < *earlier) {
                        first_error = Some((i, e));
                    }
                }
            }
        }
        progress.inc(len);
        if more(feed, taken) && !job.has_arrived() {
            // Awake anyway: read what else has arrived and feed the workers meanwhile.
            pump.pump();
        }
        if let Err(e) = feed.refill(taken) {
            first_error.get_or_insert((usize::MAX, e));
            break;
        }
    }
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    let (_, items) = feed
        .cut()
        .totals()
        .expect("the loop ends once the input has");
    // The chunks placed are the first ones (those within the announced length), the others
    // follow in order.
    let placed = match job.take_output() {
        Some(output) => in_place::finish::<O>(output).ok_or_else(|| {
            Error::Malformed("a pool call's output has a gap between its chunks".to_owned())
        })?,
        None => Vec::new(),
    };
    let mut out = placed;
    out.reserve(items - out.len().min(items));
    out.extend(parts.into_values().flatten());
    if out.len() != items {
        return Err(Error::Malformed(format!(
            "a pool call of {items} tasks has {} results",
            out.len()
        )));
    }
    Ok(out)
}
