//! Success and error callbacks of `apply_async_with` / `map_async_with` (Python's
//! `callback=` and `error_callback=`): one thread per pool, started on first use (Python's
//! result-handler thread), runs them in the order calls finish. A call with callbacks is
//! held unfinished ([`Job::hold_for`]) until its result is decoded here, its callback has
//! run and the result is stored for `get`, so a caller who sees it ready also sees the
//! callback's effects (as in Python).
//!
//! A panicking callback is caught and logged (`tracing`, target `mp`); the result still
//! reaches `get`, and the thread goes on with the next callbacks: a failing callback never
//! stops the pool (Python's result handler dies and leaves the pool hanging).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;

use super::core::PoolCore;
use super::job::{Completions, Job};
use super::map::{Cut, Finish};
use crate::error::{Error, Result};

/// Tells the thread that no more callbacks come: it ends once those it has are done.
const CLOSING: usize = usize::MAX;

/// Where a call with callbacks leaves its result for `get`.
pub(super) type Slot<T> = Arc<Mutex<Option<Result<T>>>>;

type Task = Box<dyn FnOnce() + Send>;

/// A pool's callback thread and the callbacks it waits to run, by index.
pub(super) struct Callbacks {
    finished: Arc<Completions>,
    tasks: Arc<Mutex<Tasks>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Tasks {
    waiting: HashMap<usize, Task>,
    next: usize,
}

impl Callbacks {
    /// Starts the thread.
    pub(super) fn start() -> Result<Callbacks> {
        let finished = Arc::new(Completions::default());
        let tasks = Arc::new(Mutex::new(Tasks::default()));
        let (run_finished, run_tasks) = (Arc::clone(&finished), Arc::clone(&tasks));
        let thread = std::thread::Builder::new()
            .name("mp-pool-callbacks".into())
            .spawn(move || run(&run_finished, &run_tasks))
            .map_err(Error::io("cannot start the pool's callback thread"))?;
        Ok(Callbacks {
            finished,
            tasks,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Holds `job` until its result is decoded by `finish` (with the pool's help while it
    /// lasts), passed to `on_ok` or `on_err`, and stored in the returned slot.
    pub(super) fn register<T: Send + 'static>(
        &self,
        job: &Arc<Job>,
        pool: Weak<PoolCore>,
        (cut, finish): (Cut, Finish<T>),
        on_ok: impl FnOnce(&T) + Send + 'static,
        on_err: impl FnOnce(&Error) + Send + 'static,
    ) -> Slot<T> {
        let slot: Slot<T> = Slot::default();
        let (task_job, task_slot) = (Arc::clone(job), Arc::clone(&slot));
        let task: Task = Box::new(move || {
            let result = match pool.upgrade() {
                Some(pool) => finish(&task_job, cut, &*pool),
                None => finish(&task_job, cut, &()),
            };
            let called = catch_unwind(AssertUnwindSafe(|| match &result {
                Ok(value) => on_ok(value),
                Err(e) => on_err(e),
            }));
            if let Err(payload) = called {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|m| (*m).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string payload".to_owned());
                tracing::error!(target: "mp", "a pool callback of `{}` panicked: {message}; the result is kept for `get` and the pool goes on", task_job.worker);
            }
            *task_slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
            task_job.release();
        });
        let index = {
            let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            let index = tasks.next;
            tasks.next += 1;
            tasks.waiting.insert(index, task);
            index
        };
        job.hold_for(&self.finished, index);
        slot
    }

    /// No more callbacks come; with `wait`, returns once the registered ones have run
    /// (their calls must all finish: the pool has stopped), else the thread ends on its own
    /// once they have.
    pub(super) fn close(&self, wait: bool) {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            self.finished.push(CLOSING);
            if wait && thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

fn run(finished: &Completions, tasks: &Mutex<Tasks>) {
    let mut closing = false;
    loop {
        if closing
            && tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .waiting
                .is_empty()
        {
            return;
        }
        let index = finished.next(None).expect("no deadline");
        if index == CLOSING {
            closing = true;
            continue;
        }
        let task = tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
            .remove(&index);
        if let Some(task) = task {
            task();
        }
    }
}
