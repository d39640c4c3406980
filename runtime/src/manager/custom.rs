//! Custom shared types (Python's `BaseManager.register`): a user type implementing
//! [`Managed`] (its typed operations `Op`, its replies `Reply` and `apply`) that a server
//! registers under a name, and [`ManagedProxy<T>`], the typed proxy clients get. Also the
//! object on the server's side, [`StoredCustom`]: the registered type behind an erased
//! interface, with its operations ([`CustomOp`]), and the registry of the types a server of
//! this process serves.
//!
//! Only typed data crosses the wire: an operation is an encoded `T::Op` that the server
//! decodes as `T::Op`, never code. The server process finds a registered type's code in the
//! binary (it is the same program): [`ManagerServer::register`](crate::ManagerServer::register)
//! runs in the serving process itself; a [`Manager`](crate::Manager)'s child server finds the
//! type in the link-time list that [`mp::managed!`](crate::managed) adds it to. Must not know
//! other kinds, sessions or the store.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, PoisonError};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::object::{ObjectKind, Out};
use super::protocol::{Blob, Reply, unexpected};
use super::proxy::{Creator, proxy};
use crate::codec::{self, Bytes};
use crate::error::{Error, Result};

/// A type whose values can live in a manager's server and be changed there by typed
/// operations: Python's `BaseManager.register(typeid, callable)`, with the methods a proxy may
/// call written as an `Op` enum and their answers as a `Reply`.
///
/// Declare the type with [`mp::managed!`](crate::managed), register it on the server under a
/// name ([`ManagerBuilder::register`](crate::ManagerBuilder::register),
/// [`ManagerServer::register`](crate::ManagerServer::register)), and create objects with
/// [`Manager::managed`](crate::Manager::managed). A name the server did not register is an
/// [`Error::InvalidArgument`] naming it.
///
/// ```
/// # mp::guard!();
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Counter {
///     hits: u64,
/// }
///
/// #[derive(Serialize, Deserialize)]
/// enum CounterOp {
///     Add(u64),
///     Get,
/// }
///
/// impl mp::Managed for Counter {
///     type Op = CounterOp;
///     type Reply = u64;
///
///     fn apply(&mut self, op: CounterOp) -> u64 {
///         match op {
///             CounterOp::Add(n) => {
///                 self.hits += n;
///                 self.hits
///             }
///             CounterOp::Get => self.hits,
///         }
///     }
/// }
/// mp::managed!(Counter);
///
/// #[mp::worker]
/// fn hit(counter: mp::ManagedProxy<Counter>) -> mp::Result<u64> {
///     counter.call(CounterOp::Add(1))
/// }
///
/// let manager = mp::Manager::builder().register::<Counter>("Counter").start()?;
/// let counter = manager.managed("Counter", Counter::default())?;
/// mp::spawn(hit, counter.clone())?.join()??;
/// assert_eq!(counter.call(CounterOp::Add(10))?, 11);
/// assert_eq!(counter.get()?.hits, 11);
/// assert!(manager.managed("Gauge", Counter::default()).is_err()); // not registered
/// # Ok::<(), mp::Error>(())
/// ```
pub trait Managed: Serialize + DeserializeOwned + Send + 'static {
    /// The operations a proxy may ask for.
    type Op: Serialize + DeserializeOwned;
    /// What an operation answers.
    type Reply: Serialize + DeserializeOwned;

    /// Applies `op` to the value, on the server, with the object locked: operations on one
    /// object never run at once. A panic here fails the call with
    /// [`Error::InvalidArgument`] and leaves the value as the panic left it.
    fn apply(&mut self, op: Self::Op) -> Self::Reply;
}

/// Declares a [`Managed`] type so that the server process of a
/// [`Manager`](crate::Manager) (this program, started again) can find its code when it is
/// registered with [`ManagerBuilder::register`](crate::ManagerBuilder::register). Put it
/// next to the type, at item level (see [`Managed`]).
#[macro_export]
macro_rules! managed {
    ($ty:ty) => {
        const _: () = {
            #[$crate::__private::linkme::distributed_slice($crate::__private::MANAGED_TYPES)]
            #[linkme(crate = $crate::__private::linkme)]
            static MANAGED: $crate::__private::ManagedType =
                $crate::__private::ManagedType::of::<$ty>();
        };
    };
}

/// One type declared with [`mp::managed!`](crate::managed). Not for direct use.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct ManagedType {
    type_name: fn() -> &'static str,
    new: fn(&[u8]) -> Result<Box<dyn Erased>>,
}

impl ManagedType {
    /// The declaration of `T`.
    pub const fn of<T: Managed>() -> ManagedType {
        ManagedType {
            type_name: std::any::type_name::<T>,
            new: new_erased::<T>,
        }
    }
}

/// Every type declared with `mp::managed!` in this binary.
#[doc(hidden)]
#[linkme::distributed_slice]
pub static MANAGED_TYPES: [ManagedType];

/// The types the servers of this process serve, by registered name.
static REGISTRY: Mutex<Option<HashMap<String, ManagedType>>> = Mutex::new(None);

/// Registers `T` under `name` for the servers of this process.
pub(crate) fn register<T: Managed>(name: &str) {
    register_type(name, ManagedType::of::<T>());
}

fn register_type(name: &str, ty: ManagedType) {
    REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .insert(name.to_owned(), ty);
}

/// Registers, in a server process, the types its `Manager` registered by name: each found
/// by its type name in this binary's `mp::managed!` declarations.
pub(crate) fn register_declared(types: &[(String, String)]) -> Result<()> {
    for (name, type_name) in types {
        register_type(name, declared(type_name)?);
    }
    Ok(())
}

/// The declaration of the type called `type_name`.
pub(crate) fn declared(type_name: &str) -> Result<ManagedType> {
    MANAGED_TYPES
        .iter()
        .find(|t| (t.type_name)() == type_name)
        .copied()
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "`{type_name}` is registered with the manager but not declared: add \
                 `mp::managed!({type_name});` next to it, so the server process finds its code"
            ))
        })
}

/// A registered type's value, behind an interface that takes and answers encoded bytes.
#[doc(hidden)]
pub(crate) trait Erased: Send {
    fn apply(&mut self, op: &[u8]) -> Result<Vec<u8>>;
    fn get(&self) -> Result<Vec<u8>>;
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    codec::encode(value, &mut bytes, &mut Vec::new())?;
    Ok(bytes)
}

fn new_erased<T: Managed>(init: &[u8]) -> Result<Box<dyn Erased>> {
    Ok(Box::new(codec::decode::<T>(init, Vec::new())?))
}

impl<T: Managed> Erased for T {
    fn apply(&mut self, op: &[u8]) -> Result<Vec<u8>> {
        let op: T::Op = codec::decode(op, Vec::new())?;
        let reply = catch_unwind(AssertUnwindSafe(|| Managed::apply(self, op))).map_err(|p| {
            let why = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Error::InvalidArgument(format!(
                "`{}::apply` panicked on the manager: {why}",
                std::any::type_name::<T>()
            ))
        })?;
        encode(&reply)
    }

    fn get(&self) -> Result<Vec<u8>> {
        encode(self)
    }
}

proxy! {
    /// A proxy to a value of a custom shared type `T` (see [`Managed`]) held by a manager:
    /// [`call`](ManagedProxy::call) sends a typed operation, which the server applies to the
    /// value, and returns its reply. It travels to other processes like every proxy.
    pub struct ManagedProxy<T> of StoredCustom, over T;
}

impl<T: Managed> ManagedProxy<T> {
    /// A new object holding `value`, of the type the server registered as `name`.
    pub(super) fn create(creator: &Creator, name: &str, value: &T) -> Result<Self> {
        let init = CustomInit {
            name: name.to_owned(),
            type_name: std::any::type_name::<T>().to_owned(),
            value: Bytes(encode(value)?),
        };
        creator
            .create::<StoredCustom, T>(None, init)
            .map(ManagedProxy::from_handle)
    }

    /// Applies `op` to the value on the server ([`Managed::apply`]) and returns its reply.
    pub fn call(&self, op: T::Op) -> Result<T::Reply> {
        let blob = self.handle.encode(&op)?;
        if !blob.refs.is_empty() {
            return Err(Error::Encode(
                "an operation on a custom shared type cannot hold a proxy to its own manager"
                    .to_owned(),
            ));
        }
        self.reply(CustomOp::Apply(Bytes(blob.bytes.into_vec())))
    }

    /// A copy of the value now.
    pub fn get(&self) -> Result<T> {
        self.reply(CustomOp::Get)
    }

    fn reply<R: DeserializeOwned>(&self, op: CustomOp) -> Result<R> {
        match self.handle.op::<StoredCustom>(op)? {
            Reply::Blob(b) => self.handle.decode(&b),
            other => Err(unexpected(other)),
        }
    }
}

/// What a custom object is created from: the registered name, the type the client means by
/// it, and the encoded value.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CustomInit {
    name: String,
    type_name: String,
    value: Bytes,
}

/// An operation on a custom object.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum CustomOp {
    /// An encoded `T::Op`.
    Apply(Bytes),
    Get,
}

/// A custom object as the server keeps it.
pub(crate) struct StoredCustom {
    value: Box<dyn Erased>,
}

impl ObjectKind for StoredCustom {
    const NAME: &'static str = "managed";
    type Op = CustomOp;
    type Init = CustomInit;

    fn new(init: CustomInit) -> Result<StoredCustom> {
        let ty = REGISTRY
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|r| r.get(&init.name).copied())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "the manager has no shared type registered as `{}` (register it with \
                     `Manager::builder().register::<T>(\"{}\")`)",
                    init.name, init.name
                ))
            })?;
        let registered = (ty.type_name)();
        if registered != init.type_name {
            return Err(Error::InvalidArgument(format!(
                "the manager's shared type `{}` is a `{registered}`, not a `{}`",
                init.name, init.type_name
            )));
        }
        Ok(StoredCustom {
            value: (ty.new)(&init.value)?,
        })
    }

    fn for_each_value(&mut self, _f: &mut dyn FnMut(&mut Blob)) {}

    fn incoming(_op: &CustomOp) -> Vec<u64> {
        Vec::new()
    }

    fn apply(&mut self, op: CustomOp, _conn: u64, _dropped: &mut Vec<u64>) -> Result<(Reply, Out)> {
        let bytes = match op {
            CustomOp::Apply(op) => self.value.apply(&op)?,
            CustomOp::Get => self.value.get()?,
        };
        Ok((
            Reply::Blob(Blob {
                bytes: bytes.into(),
                refs: Default::default(),
            }),
            Out::Copied,
        ))
    }
}
