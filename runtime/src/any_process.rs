//! Processes of different workers in one collection: [`AnyProcess`], a `Process` whose result
//! type is erased, and `join_flat` for workers that return a `Result` of their own.

use std::any::Any;
use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::process::Process;
use crate::worker::Worker;

/// A started [`Process`] of any worker, for collections of processes running different
/// workers (`Vec<mp::AnyProcess>`). Made with [`Process::into_any`]; `join` gives the result
/// as `Box<dyn Any + Send>`, to downcast to the worker's return type when it matters.
///
/// ```
/// # mp::guard!();
/// #[mp::worker]
/// fn count(n: u32) -> u32 { n }
/// #[mp::worker]
/// fn greet(name: String) -> String { format!("hi {name}") }
///
/// let mut all = vec![
///     mp::spawn(count, 3)?.into_any(),
///     mp::spawn(greet, "ann".to_string())?.into_any(),
/// ];
/// let results: Vec<_> = all.iter_mut().map(|p| p.join()).collect::<mp::Result<_>>()?;
/// assert_eq!(results[0].downcast_ref::<u32>(), Some(&3));
/// assert_eq!(results[1].downcast_ref::<String>().unwrap(), "hi ann");
/// # Ok::<(), mp::Error>(())
/// ```
///
/// Choosing the worker at run time needs no erasure when the arguments agree: start one
/// branch's process in each arm and call `into_any` on both (`if fast { mp::spawn(a, x)?.into_any() }
/// else { mp::spawn(b, x)?.into_any() }`).
pub struct AnyProcess {
    inner: Box<dyn ErasedProcess>,
}

trait ErasedProcess: Send {
    fn join(&mut self, timeout: Option<Duration>) -> Result<Box<dyn Any + Send>>;
    fn pid(&self) -> Option<u32>;
    fn name(&self) -> &str;
    fn is_alive(&self) -> bool;
    fn exitcode(&self) -> Option<i32>;
    fn terminate(&mut self) -> Result<()>;
    fn kill(&mut self) -> Result<()>;
}

impl<W: Worker> ErasedProcess for Process<W> {
    fn join(&mut self, timeout: Option<Duration>) -> Result<Box<dyn Any + Send>> {
        let value = match timeout {
            Some(t) => Process::join_timeout(self, t)?,
            None => Process::join(self)?,
        };
        Ok(Box::new(value))
    }
    fn pid(&self) -> Option<u32> {
        Process::pid(self)
    }
    fn name(&self) -> &str {
        Process::name(self)
    }
    fn is_alive(&self) -> bool {
        Process::is_alive(self)
    }
    fn exitcode(&self) -> Option<i32> {
        Process::exitcode(self)
    }
    fn terminate(&mut self) -> Result<()> {
        Process::terminate(self)
    }
    fn kill(&mut self) -> Result<()> {
        Process::kill(self)
    }
}

impl<W: Worker> Process<W> {
    /// This process with its result type erased, to keep processes of different workers in
    /// one collection (see [`AnyProcess`]).
    pub fn into_any(self) -> AnyProcess {
        AnyProcess {
            inner: Box::new(self),
        }
    }
}

impl<T, E, W> Process<W>
where
    W: Worker<Output = std::result::Result<T, E>>,
    E: Into<Error>,
{
    /// [`join`](Process::join) for a worker that returns `Result<T, E>`: one `Result` instead
    /// of `mp::Result<Result<T, E>>` (no `??`), the worker's error converted into
    /// [`Error`](crate::Error) (an `mp::Error` itself, or `std::io::Error`, comes through as
    /// it is).
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn parse(s: String) -> mp::Result<u32> {
    ///     s.parse().map_err(|e| mp::Error::InvalidArgument(format!("{s:?}: {e}")))
    /// }
    ///
    /// assert_eq!(mp::spawn(parse, "42".to_string())?.join_flat()?, 42);
    /// let err = mp::spawn(parse, "x".to_string())?.join_flat().unwrap_err();
    /// assert!(matches!(err, mp::Error::InvalidArgument(_)));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn join_flat(&mut self) -> Result<T> {
        self.join()?.map_err(Into::into)
    }
}

impl AnyProcess {
    /// Waits for the worker and returns its result, type-erased.
    pub fn join(&mut self) -> Result<Box<dyn Any + Send>> {
        self.inner.join(None)
    }
    /// Like [`join`](AnyProcess::join), giving up after `timeout` with [`Error::Timeout`].
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Box<dyn Any + Send>> {
        self.inner.join(Some(timeout))
    }
    /// The child's pid once started.
    pub fn pid(&self) -> Option<u32> {
        self.inner.pid()
    }
    /// The process's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }
    /// Whether the child is running.
    pub fn is_alive(&self) -> bool {
        self.inner.is_alive()
    }
    /// Python's `exitcode`.
    pub fn exitcode(&self) -> Option<i32> {
        self.inner.exitcode()
    }
    /// Asks the child to stop (`SIGTERM`).
    pub fn terminate(&mut self) -> Result<()> {
        self.inner.terminate()
    }
    /// Stops the child at once (`SIGKILL`).
    pub fn kill(&mut self) -> Result<()> {
        self.inner.kill()
    }
}

impl fmt::Debug for AnyProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyProcess")
            .field("name", &self.name())
            .field("pid", &self.pid())
            .finish()
    }
}
