//! `PoolProxy`: a process pool held by a manager's server (Python's `manager.Pool(n)`), and the
//! pool on the server's side, [`StoredPool`]: its operations ([`PoolOp`]), when collecting a
//! call's results must wait and how each applies.
//!
//! A task names its `#[mp::worker]` as a [`Target`] (name, signature, definition site: how
//! a child's registry finds a worker everywhere in `mp`) beside its encoded arguments; the
//! server, the same program, runs it in its own [`Pool`](crate::Pool) through [`RunByName`],
//! a worker of `mp` that finds the target in the pool child's registry and calls it on the
//! bytes ([`WorkerEntry::call_bytes`](crate::worker::WorkerEntry)). So the server never knows
//! a task's types, and no code travels: only a registered function's name. Must not know
//! other kinds, sessions or the store.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::object::{ObjectKind, Out, Pending};
use super::protocol::{Blob, Reply, Wait, unexpected};
use super::proxy::{Creator, Named, proxy};
use crate::bootstrap::panic::{PanicReport, catch_panic};
use crate::codec::{self, Bytes};
use crate::error::{Error, Result};
use crate::pool::AsyncResult;
use crate::worker::{SealedWorker, Target, Worker, WorkerEntry};

/// How often a call waiting for its results checks whether they are in (a pool's progress
/// wakes no waiter on the server).
const POLL: Duration = Duration::from_millis(2);

proxy! {
    /// A process pool that lives in a [`Manager`](crate::Manager)'s server (Python's
    /// `manager.Pool(processes)`): [`map`](PoolProxy::map) and [`apply`](PoolProxy::apply) run
    /// an `#[mp::worker]` in the server's worker processes, which may be on another machine.
    ///
    /// The worker travels by name, as everywhere in `mp`, so the server must be the same
    /// program (a [`Manager`](crate::Manager)'s own server process always is; for a
    /// [`ManagerServer`](crate::ManagerServer), one built with the worker): a name it does not
    /// know is [`Error::WorkerNotFound`]. The pool's processes start with the first call and
    /// stop with the object (its last proxy gone) or the server.
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let manager = mp::Manager::new()?;
    /// let pool = manager.pool(2)?;
    /// assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
    /// assert_eq!(pool.apply(square, 7)?, 49);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub struct PoolProxy of StoredPool, over ();
}

impl Named for PoolProxy {
    /// A named pool created here has [`cpu_count`](crate::cpu_count) processes.
    fn named(creator: &Creator, name: &str) -> Result<Self> {
        creator
            .create::<StoredPool, ()>(Some(name), crate::cpu_count() as u64)
            .map(PoolProxy::from_handle)
    }
}

impl PoolProxy {
    /// A new pool of `processes` worker processes (at least one), started at the first call.
    pub(super) fn create(creator: &Creator, processes: usize) -> Result<Self> {
        if processes == 0 {
            return Err(Error::InvalidArgument(
                "a pool needs at least one process".to_owned(),
            ));
        }
        creator
            .create::<StoredPool, ()>(None, processes as u64)
            .map(PoolProxy::from_handle)
    }

    /// Runs `worker` on every item in the server's pool and returns the results in input
    /// order (Python's `pool.map`); the first error in input order fails the call.
    pub fn map<W: Worker>(
        &self,
        worker: W,
        items: impl IntoIterator<Item = W::Args>,
    ) -> Result<Vec<W::Output>> {
        let items = items
            .into_iter()
            .map(|args| encode(&args).map(Bytes))
            .collect::<Result<Vec<_>>>()?;
        let target = Target::of(worker.__entry());
        let ticket = match self
            .handle
            .op::<StoredPool>(PoolOp::Submit { target, items })?
        {
            Reply::Ticket(t) => t,
            other => return Err(unexpected(other)),
        };
        match self.handle.op::<StoredPool>(PoolOp::Collect { ticket })? {
            Reply::Blobs(results) => results
                .iter()
                .map(|b| codec::decode(&b.bytes, Vec::new()))
                .collect(),
            other => Err(unexpected(other)),
        }
    }

    /// Runs `worker(args)` in the server's pool and returns its result (Python's
    /// `pool.apply`).
    pub fn apply<W: Worker>(&self, worker: W, args: W::Args) -> Result<W::Output> {
        self.map(worker, [args])?
            .pop()
            .ok_or_else(|| Error::Malformed("the manager's pool answered no result".into()))
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut fds = Vec::new();
    codec::encode(value, &mut bytes, &mut fds)?;
    if !fds.is_empty() {
        return Err(Error::Encode(
            "a task for a manager's pool cannot hold an OS handle (queue, pipe end, shared \
             memory, lock); pass a manager proxy instead"
                .to_owned(),
        ));
    }
    Ok(bytes)
}

/// Decodes `W`'s arguments from `args`, calls it (a panic is an error) and encodes its
/// result: how a managed pool's task runs a worker known only by name.
pub(crate) fn call_bytes<W: Worker>(args: &[u8]) -> Result<Vec<u8>> {
    let args: W::Args = codec::decode(args, Vec::new())?;
    // Quiet, as a pool task's panic is: the caller gets it as an error.
    let output = catch_panic(PanicReport::Quiet, || W::INSTANCE.call(args)).map_err(
        |(message, location)| Error::WorkerPanicked {
            worker: W::NAME.to_owned(),
            message,
            location,
        },
    )?;
    encode(&output)
}

/// The worker a managed pool runs: calls the worker `target` names on encoded arguments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunByName;

impl SealedWorker for RunByName {}

impl Worker for RunByName {
    type Args = (Target, Bytes);
    type Output = Result<Bytes>;
    const NAME: &'static str = "mp::manager::pool::run_by_name";
    const SIGNATURE: &'static str = "fn run_by_name(target: Target, args: Bytes) -> Result<Bytes>";
    const INSTANCE: Self = RunByName;

    fn call(self, (target, args): (Target, Bytes)) -> Result<Bytes> {
        let entry = target.lookup().map_err(|detail| Error::WorkerNotFound {
            name: target.worker.clone(),
            detail,
        })?;
        (entry.call_bytes)(&args).map(Bytes)
    }

    fn __entry(self) -> &'static WorkerEntry {
        &RUN_BY_NAME
    }
}

/// `mp`'s own worker, in the link-time registry beside the `#[mp::worker]`s (so the registry
/// needs no arrow up to the manager); `cargo mp workers` leaves it out.
// `#[link_section]`, which linkme places, counts as `unsafe` code to the lint: the static is a
// plain `WorkerEntry` in the registry's section, exactly what `#[mp::worker]` places.
#[allow(unsafe_code)]
#[linkme::distributed_slice(crate::worker::WORKERS)]
pub(crate) static RUN_BY_NAME: WorkerEntry =
    WorkerEntry::new::<RunByName>(concat!(file!(), ":", line!()));

/// An operation on a pool.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PoolOp {
    /// Starts `target` on every item; answers a ticket for `Collect`.
    Submit { target: Target, items: Vec<Bytes> },
    /// Waits for the call `ticket` and answers its results.
    Collect { ticket: u64 },
}

/// A call in progress: its results, and the connection that submitted it.
struct Call {
    result: AsyncResult<Vec<Result<Bytes>>>,
    conn: u64,
}

/// A pool as the server keeps it.
pub(crate) struct StoredPool {
    processes: usize,
    /// Started at the first call (not under the store's lock, where objects are created).
    pool: Option<crate::Pool>,
    calls: HashMap<u64, Call>,
    next_ticket: u64,
}

impl ObjectKind for StoredPool {
    const NAME: &'static str = "pool";
    type Op = PoolOp;
    /// The number of processes.
    type Init = u64;

    fn new(processes: u64) -> Result<StoredPool> {
        Ok(StoredPool {
            processes: usize::try_from(processes).unwrap_or(usize::MAX).max(1),
            pool: None,
            calls: HashMap::new(),
            next_ticket: 0,
        })
    }

    fn for_each_value(&mut self, _f: &mut dyn FnMut(&mut Blob)) {}

    fn incoming(_op: &PoolOp) -> Vec<u64> {
        Vec::new()
    }

    fn must_wait(&self, op: &PoolOp, _conn: u64) -> Option<Pending> {
        match op {
            PoolOp::Collect { ticket } => {
                let call = self.calls.get(ticket)?;
                (!call.result.ready()).then_some(Pending {
                    wait: Wait::Forever,
                    busy: Err(Error::WouldBlock),
                    expired: Err(Error::Timeout),
                    poll: Some(POLL),
                })
            }
            PoolOp::Submit { .. } => None,
        }
    }

    fn apply(&mut self, op: PoolOp, conn: u64, _dropped: &mut Vec<u64>) -> Result<(Reply, Out)> {
        let reply = match op {
            PoolOp::Submit { target, items } => {
                let pool = match &mut self.pool {
                    Some(pool) => pool,
                    pool => pool.insert(crate::Pool::new(self.processes)?),
                };
                let tasks = items.into_iter().map(|args| (target.clone(), args));
                let result = pool.map_async(RunByName, tasks)?;
                self.next_ticket += 1;
                self.calls.insert(self.next_ticket, Call { result, conn });
                Reply::Ticket(self.next_ticket)
            }
            PoolOp::Collect { ticket } => {
                let call = self.calls.remove(&ticket).ok_or_else(|| {
                    Error::InvalidArgument(format!("no call #{ticket} in this pool"))
                })?;
                let results = call.result.get()?;
                Reply::Blobs(
                    results
                        .into_iter()
                        .map(|r| {
                            r.map(|bytes| Blob {
                                bytes: bytes.into(),
                                refs: Default::default(),
                            })
                        })
                        .collect::<Result<_>>()?,
                )
            }
        };
        Ok((reply, Out::Copied))
    }

    fn release_held_by(&mut self, conn: u64) -> bool {
        // The calls of a client that is gone: their results are dropped (the tasks finish).
        self.calls.retain(|_, call| call.conn != conn);
        false
    }
}
