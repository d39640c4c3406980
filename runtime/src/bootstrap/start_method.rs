//! How a child process comes to exist (Python's start methods): [`StartMethod`], the
//! process-wide choice ([`set_start_method`], [`get_start_method`], the `MP_START_METHOD`
//! variable) and its resolution for one start (per call or per pool, else process-wide, else
//! the variable, else `spawn`).

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::{Error, Result};

/// The environment variable that picks the start method: `spawn`, `forkserver` or `fork`
/// (read by [`get_start_method`] when [`set_start_method`] was not called).
///
/// ```
/// assert_eq!(mp::START_METHOD_ENV, "MP_START_METHOD");
/// ```
pub const START_METHOD_ENV: &str = "MP_START_METHOD";

/// How a child process is started (Python's `multiprocessing` start methods).
///
/// * [`Spawn`](StartMethod::Spawn), the default: the program is started again
///   (`/proc/self/exe`) and routed to the worker before `main`. Safe whatever the parent
///   does; costs an `exec`.
/// * [`ForkServer`](StartMethod::ForkServer): a single-threaded server, started once per
///   process by `spawn`, forks each child. Safe with threads in the parent (the server never
///   runs the parent's threads or holds its locks) and several times cheaper than `spawn`.
/// * [`Fork`](StartMethod::Fork): this very process is forked. The cheapest, and the child
///   sees the parent's memory; refused ([`Error::ForkWithThreads`]) while the process runs
///   other threads, whose locks would stay locked forever in the child.
///
/// In every case the child dies with its parent, gets its arguments and descriptors the same
/// way, and is a child of the starting process (`join`, `exitcode`, `kill`, `terminate` and
/// [`active_children`](crate::active_children) behave the same).
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn double(x: u64) -> u64 {
///     x * 2
/// }
///
/// let mut p = mp::Process::new(double, 21).with_start_method(mp::StartMethod::ForkServer);
/// p.start()?;
/// assert_eq!(p.join()?, 42);
/// assert_eq!("forkserver".parse::<mp::StartMethod>()?, mp::StartMethod::ForkServer);
/// # Ok::<(), mp::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum StartMethod {
    /// Start the program again and route it to the worker before `main` (the default).
    #[default]
    Spawn,
    /// Ask a single-threaded fork server, started once by `spawn`, to fork the child.
    ForkServer,
    /// Fork this process (single-threaded callers only).
    Fork,
}

impl StartMethod {
    /// Every start method, in Python's order of `get_all_start_methods()` on Linux.
    ///
    /// ```
    /// let names: Vec<_> = mp::StartMethod::ALL.iter().map(|m| m.name()).collect();
    /// assert_eq!(names, ["fork", "spawn", "forkserver"]);
    /// ```
    pub const ALL: [StartMethod; 3] = [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::ForkServer,
    ];

    /// Python's name for the method: `spawn`, `forkserver` or `fork`.
    ///
    /// ```
    /// assert_eq!(mp::StartMethod::ForkServer.name(), "forkserver");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
            StartMethod::Fork => "fork",
        }
    }

    fn code(self) -> u8 {
        match self {
            StartMethod::Spawn => 1,
            StartMethod::ForkServer => 2,
            StartMethod::Fork => 3,
        }
    }

    fn from_code(code: u8) -> Option<StartMethod> {
        StartMethod::ALL.into_iter().find(|m| m.code() == code)
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StartMethod {
    type Err = Error;

    /// Parses Python's names; anything else is [`Error::InvalidArgument`].
    fn from_str(s: &str) -> Result<StartMethod> {
        StartMethod::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown start method {s:?}: expected spawn, forkserver or fork"
                ))
            })
    }
}

/// The process-wide method set by [`set_start_method`]; 0 while unset.
static CHOSEN: AtomicU8 = AtomicU8::new(0);

/// Sets the start method of every child this process starts from now on without one of its
/// own (Python's `multiprocessing.set_start_method`; a later call replaces it, as with
/// `force=True`). It takes precedence over `MP_START_METHOD`; a method chosen per process
/// ([`Process::with_start_method`](crate::Process::with_start_method)) or per pool
/// ([`PoolBuilder::start_method`](crate::PoolBuilder::start_method)) over both.
///
/// ```
/// mp::set_start_method(mp::StartMethod::ForkServer);
/// assert_eq!(mp::get_start_method()?, mp::StartMethod::ForkServer);
/// mp::set_start_method(mp::StartMethod::Spawn);
/// # Ok::<(), mp::Error>(())
/// ```
pub fn set_start_method(method: StartMethod) {
    CHOSEN.store(method.code(), Ordering::Relaxed);
}

/// The start method children get when none is chosen for them (Python's
/// `multiprocessing.get_start_method`): the one set by [`set_start_method`], else the
/// `MP_START_METHOD` variable's, else [`StartMethod::Spawn`]. An invalid `MP_START_METHOD` is
/// [`Error::InvalidArgument`] (and so is every start that relies on it).
///
/// ```
/// // Without `set_start_method` or `MP_START_METHOD`, children are spawned.
/// # if std::env::var_os("MP_START_METHOD").is_none() {
/// assert_eq!(mp::get_start_method()?, mp::StartMethod::Spawn);
/// # }
/// # Ok::<(), mp::Error>(())
/// ```
pub fn get_start_method() -> Result<StartMethod> {
    if let Some(method) = StartMethod::from_code(CHOSEN.load(Ordering::Relaxed)) {
        return Ok(method);
    }
    match std::env::var(START_METHOD_ENV) {
        Ok(name) if name.is_empty() => Ok(StartMethod::Spawn),
        Ok(name) => name.parse().map_err(|_| {
            Error::InvalidArgument(format!(
                "{START_METHOD_ENV}={name:?} is not a start method: expected spawn, \
                 forkserver or fork"
            ))
        }),
        Err(std::env::VarError::NotPresent) => Ok(StartMethod::Spawn),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::InvalidArgument(format!(
            "{START_METHOD_ENV} is not valid unicode: expected spawn, forkserver or fork"
        ))),
    }
}

/// The method for one start: the caller's choice, else the process-wide one.
pub(crate) fn resolve(chosen: Option<StartMethod>) -> Result<StartMethod> {
    match chosen {
        Some(method) => Ok(method),
        None => get_start_method(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for m in StartMethod::ALL {
            assert_eq!(m.name().parse::<StartMethod>().unwrap(), m);
        }
        let err = "vfork".parse::<StartMethod>().unwrap_err();
        assert!(err.to_string().contains("unknown start method \"vfork\""));
    }
}
