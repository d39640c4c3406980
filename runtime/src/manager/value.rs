//! `ValueProxy<T>`: one typed value held by a manager (Python's `manager.Value` and
//! `manager.Namespace`), with an atomic read-modify-write.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::handle::Handle;
use super::protocol::{Kind, Op, Reply, unexpected};
use crate::error::{Result, SendError};

/// One value of any serializable type that lives in a [`Manager`](crate::Manager)'s server
/// process (Python's `manager.Value(typecode, v)`; with a struct for `T`, Python's
/// `manager.Namespace()` with typed fields).
///
/// [`get`](ValueProxy::get) returns a copy: **changing it does not change the shared value**
/// — [`set`](ValueProxy::set) it, or use [`update`](ValueProxy::update), which is atomic.
///
/// ```
/// # mp::guard!();
/// #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
/// struct Settings {
///     threshold: f64,
///     label: String,
/// }
///
/// #[mp::worker]
/// fn configure(ns: mp::ValueProxy<Settings>) -> mp::Result<()> {
///     ns.update(|s| s.label = "tuned".into())?;
///     Ok(())
/// }
///
/// let manager = mp::Manager::new()?;
/// let ns = manager.value(Settings { threshold: 0.5, label: String::new() })?;
/// mp::spawn(configure, ns.clone())?.join()??;
/// let s = ns.get()?;
/// assert_eq!((s.threshold, s.label.as_str()), (0.5, "tuned"));
/// # Ok::<(), mp::Error>(())
/// ```
#[doc(alias = "Namespace")]
#[doc(alias = "Value")]
pub struct ValueProxy<T> {
    pub(super) handle: Arc<Handle>,
    pub(super) _type: PhantomData<fn() -> T>,
}

super::proxy_impls!(ValueProxy<T>, Kind::Value, T);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// A copy of the value.
    pub fn get(&self) -> Result<T> {
        Ok(self.versioned()?.0)
    }

    /// Replaces the value; on failure hands it back.
    pub fn set(&self, value: T) -> Result<(), SendError<T>> {
        super::send_value(&self.handle, value, Op::ValueSet)
    }

    /// Changes the value atomically: `f` runs here on a copy, which replaces the value only
    /// if no other process changed it meanwhile; otherwise `f` runs again on the fresh value.
    /// So `f` may run more than once, and should only compute. Returns what `f` returned.
    ///
    /// ```
    /// # mp::guard!();
    /// let manager = mp::Manager::new()?;
    /// let total = manager.value(10u64)?;
    /// let before = total.update(|t| std::mem::replace(t, *t + 5))?;
    /// assert_eq!((before, total.get()?), (10, 15));
    /// # Ok::<(), mp::Error>(())
    /// ```
    pub fn update<R>(&self, mut f: impl FnMut(&mut T) -> R) -> Result<R> {
        let (mut value, mut version) = self.versioned()?;
        loop {
            let result = f(&mut value);
            match self.handle.op(Op::ValueSwap {
                version,
                value: self.handle.encode(&value)?,
            })? {
                Reply::Swapped => return Ok(result),
                Reply::Entry {
                    value: Some(current),
                    version: v,
                } => {
                    value = self.handle.decode(&current)?;
                    version = v;
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    fn versioned(&self) -> Result<(T, u64)> {
        match self.handle.op(Op::ValueGet)? {
            Reply::Entry {
                value: Some(b),
                version,
            } => Ok((self.handle.decode(&b)?, version)),
            other => Err(unexpected(other)),
        }
    }
}
