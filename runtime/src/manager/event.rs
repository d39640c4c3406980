//! `EventProxy`: an event held by a manager (Python's `manager.Event()`), and the event on the
//! server's side, [`StoredEvent`]: its operations ([`EventOp`]), when a wait must wait and how
//! each applies. Must not know other kinds, sessions or the store.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::object::{ObjectKind, Out, Pending};
use super::protocol::{Blob, Reply, Wait};
use super::proxy::{Creator, Named, proxy};
use crate::error::{Error, Result};

proxy! {
    /// An event that lives in a [`Manager`](crate::Manager)'s server process (Python's
    /// `manager.Event()`).
    ///
    /// ```
    /// # mp::guard!();
    /// #[mp::worker]
    /// fn signal(ready: mp::EventProxy) -> mp::Result<()> {
    ///     ready.set()
    /// }
    ///
    /// let manager = mp::Manager::new()?;
    /// let ready = manager.event()?;
    /// assert!(!ready.wait_timeout(std::time::Duration::from_millis(10))?);
    /// mp::spawn(signal, ready.clone())?.join()??;
    /// assert!(ready.wait_timeout(std::time::Duration::from_secs(5))?);
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub struct EventProxy of StoredEvent, over ();
}

impl Named for EventProxy {
    fn named(creator: &Creator, name: &str) -> Result<Self> {
        EventProxy::create(creator, Some(name))
    }
}

impl EventProxy {
    /// A new event (named: found if it exists).
    pub(super) fn create(creator: &Creator, name: Option<&str>) -> Result<Self> {
        creator
            .create::<StoredEvent, ()>(name, ())
            .map(EventProxy::from_handle)
    }

    /// Sets the flag, waking every waiter.
    pub fn set(&self) -> Result<()> {
        self.handle.done::<StoredEvent>(EventOp::Set)
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        self.handle.done::<StoredEvent>(EventOp::Clear)
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        self.handle.bool::<StoredEvent>(EventOp::IsSet)
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<()> {
        match self.handle.bool::<StoredEvent>(EventOp::Wait {
            wait: Wait::Forever,
        })? {
            true => Ok(()),
            false => Err(Error::Malformed(
                "the manager ended an unbounded wait unset".into(),
            )),
        }
    }

    /// Waits at most `timeout`; whether the flag was set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.handle.bool::<StoredEvent>(EventOp::Wait {
            wait: Wait::For(timeout),
        })
    }
}

/// An operation on an event.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum EventOp {
    Set,
    Clear,
    IsSet,
    /// Waits until the flag is set; answers whether it is.
    Wait {
        wait: Wait,
    },
}

/// An event as the server keeps it.
#[derive(Debug)]
pub(crate) struct StoredEvent {
    set: bool,
}

impl ObjectKind for StoredEvent {
    const NAME: &'static str = "event";
    type Op = EventOp;
    type Init = ();

    fn new((): ()) -> Result<StoredEvent> {
        Ok(StoredEvent { set: false })
    }

    fn for_each_value(&mut self, _f: &mut dyn FnMut(&mut Blob)) {}

    fn incoming(_op: &EventOp) -> Vec<u64> {
        Vec::new()
    }

    fn must_wait(&self, op: &EventOp, _conn: u64) -> Option<Pending> {
        match op {
            EventOp::Wait { wait } if !self.set => Some(Pending {
                wait: *wait,
                busy: Ok(Reply::Bool(false)),
                expired: Ok(Reply::Bool(false)),
                poll: None,
            }),
            _ => None,
        }
    }

    fn apply(&mut self, op: EventOp, _conn: u64, _dropped: &mut Vec<u64>) -> Result<(Reply, Out)> {
        let reply = match op {
            EventOp::Set => {
                self.set = true;
                Reply::Done
            }
            EventOp::Clear => {
                self.set = false;
                Reply::Done
            }
            EventOp::IsSet => Reply::Bool(self.set),
            EventOp::Wait { .. } => Reply::Bool(self.set),
        };
        Ok((reply, Out::Copied))
    }
}
