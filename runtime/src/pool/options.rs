//! [`CallOptions`]: the options of one `map`-like call (chunk size, read-ahead, progress
//! bar) and the calls made with them. It feeds and collects through `map.rs` and hands out
//! the handles of `result.rs`; it must not touch the pool's state or its workers.

use std::sync::Arc;
use std::time::Instant;

use super::Pool;
use super::map::{Feed, Feeder, collect, exact_len};
use super::progress::Progress;
use super::result::{AsyncResult, Imap, ImapOptions, Submitted};
use crate::error::{Error, Result};
use crate::worker::Worker;

/// Options for one `map`-like call: from [`Pool::chunksize`] or [`Pool::progress`].
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// let pool = mp::Pool::new(2)?;
/// let squares = pool.chunksize(10).progress().map(square, 0..1000)?;
/// assert_eq!(squares[999], 998_001);
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
#[must_use = "call `map`, `imap`, ... on it"]
pub struct CallOptions<'p> {
    pub(super) pool: &'p Pool,
    pub(super) chunksize: Option<usize>,
    pub(super) buffersize: Option<usize>,
    pub(super) progress: bool,
}

impl<'p> CallOptions<'p> {
    /// Sets the chunk size: tasks travel to workers `n` at a time.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n);
        self
    }

    /// Bounds the read-ahead of an `imap`-like call (see [`Pool::buffersize`]).
    pub fn buffersize(mut self, n: usize) -> Self {
        self.buffersize = Some(n);
        self
    }

    /// Shows a progress bar on stderr (only when stderr is a terminal).
    pub fn progress(mut self) -> Self {
        self.progress = true;
        self
    }

    /// [`Pool::map`] with these options.
    pub fn map<W: Worker>(
        self,
        worker: W,
        items: impl IntoIterator<Item = W::Args>,
    ) -> Result<Vec<W::Output>> {
        let items = items.into_iter();
        // Two monomorphic arms on purpose (as in `submit_all`): one iterator type over both
        // (an enum) made the 1 M-squares map 15–30 % slower.
        match exact_len(&items) {
            Some(n) => self.map_input(worker, items, n),
            None => {
                let items: Vec<W::Args> = items.collect();
                let n = items.len();
                self.map_input(worker, items.into_iter(), n)
            }
        }
    }

    fn map_input<W: Worker>(
        self,
        worker: W,
        input: impl Iterator<Item = W::Args>,
        n: usize,
    ) -> Result<Vec<W::Output>> {
        // Enough chunks ahead that every worker holds its fill and a few more wait queued
        // while the caller sleeps; the rest is cut from the input as results come in, so the
        // chunks alive at once (and their memory) do not grow with the input.
        let window = 8 * self.pool.processes();
        let mut feed = Feeder::new(
            &self.pool.shared,
            self.chunksize,
            worker,
            input,
            Some(n),
            window,
            true,
        )?;
        feed.output_in_place(n);
        feed.refill(0)?;
        let job = Arc::clone(&feed.job);
        let progress = Progress::new(self.progress, Some(n));
        collect(&job, &progress, &mut feed, &*self.pool.shared)
    }

    /// [`Pool::starmap`] with these options.
    pub fn starmap<W: Worker>(
        self,
        worker: W,
        items: impl IntoIterator<Item = W::Args>,
    ) -> Result<Vec<W::Output>> {
        self.map(worker, items)
    }

    /// [`Pool::map_async`] with these options (the progress bar does not apply). Every chunk
    /// is submitted before it returns: nobody is there to feed the workers later.
    pub fn map_async<W: Worker>(
        self,
        worker: W,
        items: impl IntoIterator<Item = W::Args>,
    ) -> Result<AsyncResult<Vec<W::Output>>> {
        let (job, cut, finish) = self.submit_all(worker, items)?;
        Ok(AsyncResult::new(job, &self.pool.shared, cut, finish))
    }

    /// [`Pool::map_async_with`] with these options.
    pub fn map_async_with<W: Worker>(
        self,
        worker: W,
        items: impl IntoIterator<Item = W::Args>,
        callback: impl FnOnce(&Vec<W::Output>) + Send + 'static,
        error_callback: impl FnOnce(&Error) + Send + 'static,
    ) -> Result<AsyncResult<Vec<W::Output>>> {
        let callbacks = self.pool.callbacks()?;
        let (job, cut, finish) = self.submit_all(worker, items)?;
        Ok(AsyncResult::with_callbacks(
            job,
            &self.pool.shared,
            (cut, finish),
            callbacks,
            (callback, error_callback),
        ))
    }

    /// Submits every chunk of a `map_async`: its call, cut, and decoder.
    fn submit_all<W: Worker>(
        self,
        worker: W,
        items: impl IntoIterator<Item = W::Args>,
    ) -> Result<Submitted<Vec<W::Output>>> {
        let items = items.into_iter();
        match exact_len(&items) {
            Some(n) => self.submit_input(worker, items, n),
            None => {
                let items: Vec<W::Args> = items.collect();
                let n = items.len();
                self.submit_input(worker, items.into_iter(), n)
            }
        }
    }

    fn submit_input<W: Worker>(
        self,
        worker: W,
        input: impl Iterator<Item = W::Args>,
        n: usize,
    ) -> Result<Submitted<Vec<W::Output>>> {
        let mut feed = Feeder::new(
            &self.pool.shared,
            self.chunksize,
            worker,
            input,
            Some(n),
            usize::MAX,
            true,
        )?;
        feed.output_in_place(n);
        feed.refill(0)?;
        let job = Arc::clone(&feed.job);
        Ok((job, feed.cut, |job, mut cut, pump| {
            collect::<W::Output>(job, &Progress::off(), &mut cut, pump)
        }))
    }

    fn imap_options(self, ordered: bool) -> ImapOptions {
        ImapOptions {
            chunksize: self.chunksize,
            buffersize: self.buffersize,
            progress: self.progress,
            ordered,
            deadline: None,
        }
    }

    /// [`Pool::imap`] with these options.
    pub fn imap<W: Worker, I: IntoIterator<Item = W::Args>>(
        self,
        worker: W,
        items: I,
    ) -> Imap<'p, W, I::IntoIter> {
        let options = self.imap_options(true);
        Imap::new(&self.pool.shared, options, (worker, items.into_iter(), Ok))
    }

    /// [`Pool::imap_unordered`] with these options.
    pub fn imap_unordered<W: Worker, I: IntoIterator<Item = W::Args>>(
        self,
        worker: W,
        items: I,
    ) -> Imap<'p, W, I::IntoIter> {
        let options = self.imap_options(false);
        Imap::new(&self.pool.shared, options, (worker, items.into_iter(), Ok))
    }

    /// [`Pool::try_imap`] with these options.
    pub fn try_imap<W, E, I>(self, worker: W, items: I) -> Imap<'p, W, I::IntoIter>
    where
        W: Worker,
        E: Into<Error>,
        I: IntoIterator<Item = std::result::Result<W::Args, E>>,
    {
        let options = self.imap_options(true);
        let convert = |item: std::result::Result<W::Args, E>| item.map_err(Into::into);
        Imap::new(
            &self.pool.shared,
            options,
            (worker, items.into_iter(), convert),
        )
    }

    /// [`Pool::try_imap_unordered`] with these options.
    pub fn try_imap_unordered<W, E, I>(self, worker: W, items: I) -> Imap<'p, W, I::IntoIter>
    where
        W: Worker,
        E: Into<Error>,
        I: IntoIterator<Item = std::result::Result<W::Args, E>>,
    {
        let options = self.imap_options(false);
        let convert = |item: std::result::Result<W::Args, E>| item.map_err(Into::into);
        Imap::new(
            &self.pool.shared,
            options,
            (worker, items.into_iter(), convert),
        )
    }

    /// `imap` with a deadline for every result (`Executor::map_timeout`).
    pub(super) fn imap_until<W: Worker, I: IntoIterator<Item = W::Args>>(
        self,
        worker: W,
        items: I,
        deadline: Instant,
    ) -> Imap<'p, W, I::IntoIter> {
        let mut options = self.imap_options(true);
        options.deadline = Some(deadline);
        Imap::new(&self.pool.shared, options, (worker, items.into_iter(), Ok))
    }
}
