//! The list of object kinds a manager serves: one line per kind, from which `kinds!` makes
//! the server's `Op` and `Init` enums (what requests carry), `Contents` (what an object
//! holds) and their dispatch to each kind's [`ObjectKind`] implementation.
//!
//! Adding a kind is a file with its proxy and its `ObjectKind` (see `list.rs`) and one line
//! here. This file must hold no kind's behaviour, only the list and the dispatch.

use serde::{Deserialize, Serialize};

use super::object::{ObjectKind, Out, Pending, Registered, wrong_kind};
use super::protocol::{Blob, Reply, Type};
use super::{
    array, barrier, condition, custom, dict, event, list, lock, pool, queue, rlock, semaphore, set,
    value,
};
use crate::error::{Error, Result};

macro_rules! kinds {
    ($($kind:ident($contents:ty),)+) => {
        /// An operation on the object a connection is attached to: one variant per kind.
        #[derive(Debug, Serialize, Deserialize)]
        pub(crate) enum Op {
            $($kind(<$contents as ObjectKind>::Op),)+
        }

        /// The contents of a new object: one variant per kind.
        #[derive(Debug, Serialize, Deserialize)]
        pub(crate) enum Init {
            $($kind(<$contents as ObjectKind>::Init),)+
        }

        /// What an object holds: one variant per kind.
        pub(crate) enum Contents {
            $($kind($contents),)+
        }

        /// The kinds in order: a kind's variant index in `Op` and `Init`.
        enum Tag {
            $($kind,)+
        }

        $(impl Registered for $contents {
            const TAG: u32 = Tag::$kind as u32;
        })+

        impl Op {
            /// The objects the values this operation would store refer to (one reference
            /// each).
            pub(crate) fn incoming(&self) -> Vec<u64> {
                match self {
                    $(Op::$kind(op) => <$contents>::incoming(op),)+
                }
            }
        }

        impl Contents {
            /// A new object of type `ty` from `init`, which must be of the same kind.
            pub(crate) fn new(ty: &Type, init: Init) -> Result<Contents> {
                match init {
                    $(Init::$kind(init) if ty.kind == <$contents>::NAME => {
                        Ok(Contents::$kind(<$contents>::new(init)?))
                    })+
                    init => Err(Error::InvalidArgument(format!(
                        "cannot create a {} from {init:?}",
                        ty.kind
                    ))),
                }
            }

            /// Calls `f` on each stored value.
            pub(crate) fn for_each_value(&mut self, f: &mut dyn FnMut(&mut Blob)) {
                match self {
                    $(Contents::$kind(c) => c.for_each_value(f),)+
                }
            }

            /// See [`ObjectKind::must_wait`]; an operation of another kind is an error.
            pub(crate) fn must_wait(&self, ty: &Type, op: &Op, conn: u64) -> Result<Option<Pending>> {
                match (self, op) {
                    $((Contents::$kind(c), Op::$kind(op)) => Ok(c.must_wait(op, conn)),)+
                    _ => Err(wrong_kind(ty)),
                }
            }

            /// See [`ObjectKind::apply`]; an operation of another kind is an error.
            pub(crate) fn apply(
                &mut self,
                ty: &Type,
                op: Op,
                conn: u64,
                dropped: &mut Vec<u64>,
            ) -> Result<(Reply, Out)> {
                match (self, op) {
                    $((Contents::$kind(c), Op::$kind(op)) => c.apply(op, conn, dropped),)+
                    _ => Err(wrong_kind(ty)),
                }
            }

            /// See [`ObjectKind::put_back`].
            pub(crate) fn put_back(&mut self, items: Vec<Blob>) {
                match self {
                    $(Contents::$kind(c) => c.put_back(items),)+
                }
            }

            /// See [`ObjectKind::release_held_by`].
            pub(crate) fn release_held_by(&mut self, conn: u64) -> bool {
                match self {
                    $(Contents::$kind(c) => c.release_held_by(conn),)+
                }
            }
        }
    };
}

kinds! {
    List(list::StoredList),
    Dict(dict::StoredDict),
    Value(value::StoredValue),
    Queue(queue::StoredQueue),
    Lock(lock::StoredLock),
    Event(event::StoredEvent),
    RLock(rlock::StoredRLock),
    Semaphore(semaphore::StoredSemaphore),
    Condition(condition::StoredCondition),
    Barrier(barrier::StoredBarrier),
    Array(array::StoredArray),
    Set(set::StoredSet),
    Custom(custom::StoredCustom),
    Pool(pool::StoredPool),
}

impl Contents {
    /// The references the stored values hold.
    pub(crate) fn refs(&mut self) -> Vec<u64> {
        let mut refs = Vec::new();
        self.for_each_value(&mut |b| refs.extend_from_slice(&b.refs));
        refs
    }

    /// Takes the references the stored values hold (the object is being freed).
    pub(crate) fn take_refs(&mut self) -> Vec<u64> {
        let mut refs = Vec::new();
        self.for_each_value(&mut |b| refs.append(&mut b.refs.take()));
        refs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::protocol::{Request, Variant};

    fn encode<T: Serialize>(value: &T) -> Vec<u8> {
        let mut bytes = Vec::new();
        crate::codec::encode(value, &mut bytes, &mut Vec::new()).unwrap();
        bytes
    }

    #[test]
    fn a_variant_encodes_as_the_servers_enum() {
        let op = list::ListOp::Push(Blob::plain(b"x"));
        let sent = Request::<_, ()>::Op(Variant {
            tag: <list::StoredList as Registered>::TAG,
            name: "list",
            value: &op,
        });
        let server = Request::<Op, Init>::Op(Op::List(list::ListOp::Push(Blob::plain(b"x"))));
        assert_eq!(encode(&sent), encode(&server));
        let init = Request::<(), _>::Create {
            ty: crate::manager::handle::type_of::<u8>(event::StoredEvent::NAME),
            name: None,
            init: Variant {
                tag: <event::StoredEvent as Registered>::TAG,
                name: "event",
                value: (),
            },
        };
        let bytes = encode(&init);
        let decoded: Request<Op, Init> = crate::codec::decode(&bytes, Vec::new()).unwrap();
        assert!(matches!(
            decoded,
            Request::Create {
                init: Init::Event(()),
                ..
            }
        ));
    }

    #[test]
    fn an_operation_of_another_kind_is_refused() {
        let ty = crate::manager::handle::type_of::<u8>(list::StoredList::NAME);
        let mut list = Contents::new(&ty, Init::List(vec![Blob::plain(b"a")])).unwrap();
        let e = list
            .apply(&ty, Op::Event(event::EventOp::Set), 0, &mut Vec::new())
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        let e = Contents::new(&ty, Init::Lock(())).err().unwrap();
        assert!(e.to_string().contains("cannot create a list"), "{e}");
    }
}
