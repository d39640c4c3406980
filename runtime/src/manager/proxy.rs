//! What every proxy type shares: the sealed [`Proxy`] trait ([`Manager::named`]'s bound), the
//! [`Creator`] that makes objects on one server, and `proxy_impls!`, which gives a proxy
//! struct its `Clone`, `Debug`, `Serialize` and `Deserialize`.
//!
//! Nothing here knows a particular kind; the kinds' files build on it, never the reverse.
//!
//! [`Manager::named`]: crate::Manager::named

use std::sync::{Arc, OnceLock};

use serde::Serialize;

use super::handle::{self, Endpoint, Handle};
use super::object::Registered;
use super::protocol::{Blob, Control, Reply, unexpected};
use crate::error::Result;

/// Something [`Manager::named`](crate::Manager::named) can find or create by name: every
/// proxy type ([`ListProxy`](crate::ListProxy), [`DictProxy`](crate::DictProxy),
/// [`ValueProxy`](crate::ValueProxy), [`QueueProxy`](crate::QueueProxy),
/// [`LockProxy`](crate::LockProxy), [`EventProxy`](crate::EventProxy),
/// [`RLockProxy`](crate::RLockProxy), [`SemaphoreProxy`](crate::SemaphoreProxy) (created with
/// one permit), [`ConditionProxy`](crate::ConditionProxy), [`SetProxy`](crate::SetProxy), and
/// [`BarrierProxy`](crate::BarrierProxy), found only: create it with
/// [`Manager::named_barrier`](crate::Manager::named_barrier)).
///
/// Sealed: only the proxy types of `mp` implement it, since each needs its own operations on
/// the server.
///
/// ```
/// # mp::guard!();
/// fn shared_log<P: mp::Proxy>(manager: &mp::Manager) -> mp::Result<P> {
///     manager.named::<P>("log")
/// }
///
/// let manager = mp::Manager::new()?;
/// let log: mp::ListProxy<String> = shared_log(&manager)?;
/// log.append("started".into())?;
/// assert_eq!(shared_log::<mp::ListProxy<String>>(&manager)?.len()?, 1);
/// # Ok::<(), mp::Error>(())
/// ```
pub trait Proxy: Named {}

/// The hidden half of [`Proxy`]: how a proxy type finds or creates a named object. Not
/// nameable outside `mp`, which seals `Proxy`.
pub trait Named: Sized {
    /// Finds the object of this name and type on the manager, creating an empty one (for
    /// [`ValueProxy`](crate::ValueProxy): `T::default()`) if there is none.
    fn named(creator: &Creator, name: &str) -> Result<Self>;
}

/// Makes objects on one manager server: its endpoint, and its instance id (asked for when
/// first needed), which values to store are encoded for.
pub struct Creator {
    pub(crate) endpoint: Endpoint,
    instance: OnceLock<u64>,
}

impl Creator {
    pub(crate) fn new(endpoint: Endpoint) -> Creator {
        Creator {
            endpoint,
            instance: OnceLock::new(),
        }
    }

    /// The server instance's id and object count, in one round trip.
    pub(crate) fn stats(&self) -> Result<(u64, usize)> {
        let mut conn = self.endpoint.connect()?;
        match self.endpoint.call(&mut conn, Control::Stats)? {
            Reply::Stats { server, objects } => {
                let _ = self.instance.set(server);
                Ok((server, usize::try_from(objects).unwrap_or(usize::MAX)))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Encodes a value to store on this server (see [`handle::encode_for`]).
    pub(crate) fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Blob> {
        let server = match self.instance.get() {
            Some(&id) => id,
            None => self.stats()?.0,
        };
        handle::encode_for(server, self.endpoint.limit(), value)
    }

    /// Creates an object of kind `K` over element types `E` (or with a name, finds it).
    pub(crate) fn create<K: Registered, E>(
        &self,
        name: Option<&str>,
        init: K::Init,
    ) -> Result<Arc<Handle>> {
        Handle::create::<K, E>(&self.endpoint, name.map(str::to_owned), init)
    }
}

/// A proxy struct `$name` (its handle and element types) to an object of kind `$kind` over
/// element types `$elements`, with `from_handle`, `Clone` (sharing the connections), `Debug`,
/// `Serialize`, `Deserialize`, and [`Proxy`] once the file implements [`Named`].
macro_rules! proxy {
    (
        $(#[$meta:meta])*
        pub struct $name:ident $(<$($g:ident),+>)? of $kind:ty, over $elements:ty;
    ) => {
        $(#[$meta])*
        pub struct $name$(<$($g),+>)? {
            handle: ::std::sync::Arc<$crate::manager::handle::Handle>,
            _type: ::std::marker::PhantomData<fn() -> $elements>,
        }

        impl$(<$($g),+>)? $name$(<$($g),+>)? {
            fn from_handle(handle: ::std::sync::Arc<$crate::manager::handle::Handle>) -> Self {
                $name {
                    handle,
                    _type: ::std::marker::PhantomData,
                }
            }
        }

        impl$(<$($g),+>)? $crate::manager::proxy::Proxy for $name$(<$($g),+>)?
        where
            Self: $crate::manager::proxy::Named,
        {
        }

        impl$(<$($g),+>)? Clone for $name$(<$($g),+>)? {
            fn clone(&self) -> Self {
                $name {
                    handle: self.handle.clone(),
                    _type: ::std::marker::PhantomData,
                }
            }
        }

        impl$(<$($g),+>)? ::std::fmt::Debug for $name$(<$($g),+>)? {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.handle)
            }
        }

        impl$(<$($g),+>)? ::serde::Serialize for $name$(<$($g),+>)? {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                $crate::manager::handle::serialize(&self.handle, s)
            }
        }

        impl<'de $($(, $g)+)?> ::serde::Deserialize<'de> for $name$(<$($g),+>)? {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                let ty = $crate::manager::handle::type_of::<$elements>(
                    <$kind as $crate::manager::object::ObjectKind>::NAME,
                );
                $crate::manager::handle::deserialize(d, ty).map($name::from_handle)
            }
        }
    };
}
pub(crate) use proxy;
