//! The server's store: every object by id, its reference count (attached connections,
//! outstanding transfer tokens, values stored in other objects), names and tokens. It decides
//! when an object is freed; it must not lock an object's contents (the server frees the
//! objects this returns, outside the store's lock) nor know any kind's operations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::error::{Error, Result};
use crate::manager::kinds::{Contents, Init};
use crate::manager::protocol::Type;

/// A shared object: its type, its contents, and a condition variable for blocked operations.
pub(crate) struct Object {
    pub(crate) ty: Type,
    pub(crate) contents: Mutex<Contents>,
    pub(crate) changed: Condvar,
    /// Operations blocked on `changed` (changed under `contents`' lock): a change wakes them
    /// only if there are any, since a notification costs a system call.
    pub(crate) waiters: AtomicUsize,
}

impl Object {
    /// Wakes the blocked operations, if any. Call with `contents` locked.
    pub(crate) fn notify(&self) {
        if self.waiters.load(Ordering::Relaxed) > 0 {
            self.changed.notify_all();
        }
    }
}

/// An object in the store, with what keeps it alive.
struct Record {
    object: Arc<Object>,
    /// Attached connections, outstanding tokens, and values stored in other objects (proxies
    /// inside them) or on their way in or out of one.
    refs: usize,
    /// Named objects live until the server stops.
    named: bool,
}

/// Every object of a server by id, the names, and the transfer tokens.
#[derive(Default)]
pub(crate) struct Store {
    objects: HashMap<u64, Record>,
    names: HashMap<String, u64>,
    /// Transfer tokens and the object each keeps alive.
    tokens: HashMap<u64, u64>,
    next_id: u64,
    next_token: u64,
}

impl Store {
    /// Creates an object of type `ty` from `init` (with a name: finds the object of that
    /// name, of the same type), with one reference: the creating connection's.
    pub(crate) fn create(
        &mut self,
        ty: Type,
        name: Option<String>,
        init: Init,
    ) -> Result<(u64, Arc<Object>)> {
        if let Some(name) = &name
            && let Some(&id) = self.names.get(name)
        {
            let entry = self
                .objects
                .get_mut(&id)
                .expect("named objects are never freed");
            if entry.object.ty != ty {
                return Err(Error::InvalidArgument(format!(
                    "the shared object `{name}` is a {}, not a {ty}",
                    entry.object.ty
                )));
            }
            entry.refs += 1;
            return Ok((id, entry.object.clone()));
        }
        let mut contents = Contents::new(&ty, init)?;
        // The initial values' proxies: the new object holds a reference to each.
        self.hold(&contents.refs())?;
        self.next_id += 1;
        let id = self.next_id;
        let object = Arc::new(Object {
            ty,
            contents: Mutex::new(contents),
            changed: Condvar::new(),
            waiters: AtomicUsize::new(0),
        });
        let named = name.is_some();
        if let Some(name) = name {
            self.names.insert(name, id);
        }
        self.objects.insert(
            id,
            Record {
                object: object.clone(),
                refs: 1,
                named,
            },
        );
        Ok((id, object))
    }

    /// Attaches a connection to object `id`, which must be of type `ty`.
    pub(crate) fn attach(&mut self, id: u64, ty: &Type, token: Option<u64>) -> Result<Arc<Object>> {
        let entry = self.objects.get_mut(&id).ok_or_else(|| gone(id))?;
        if entry.object.ty != *ty {
            return Err(Error::InvalidArgument(format!(
                "shared object #{id} is a {}, not a {ty}",
                entry.object.ty
            )));
        }
        // A token's reference becomes this connection's; without one (or with one already
        // used: a proxy read twice from a stored value) the connection adds its own. A token
        // counts only for the object it was issued for.
        match token {
            Some(t) if self.tokens.get(&t) == Some(&id) => {
                self.tokens.remove(&t);
            }
            _ => entry.refs += 1,
        }
        Ok(entry.object.clone())
    }

    /// Issues a transfer token for a new reference to `id`.
    pub(crate) fn share(&mut self, id: u64) -> Result<u64> {
        let entry = self
            .objects
            .get_mut(&id)
            .ok_or_else(|| Error::InvalidArgument(format!("shared object #{id} is gone")))?;
        entry.refs += 1;
        self.next_token += 1;
        self.tokens.insert(self.next_token, id);
        Ok(self.next_token)
    }

    /// Takes one reference to each of `ids` (a value holding proxies to them is being stored),
    /// all or none: an object that no longer exists fails the whole operation.
    pub(crate) fn hold(&mut self, ids: &[u64]) -> Result<()> {
        for (n, &id) in ids.iter().enumerate() {
            match self.objects.get_mut(&id) {
                Some(entry) => entry.refs += 1,
                None => {
                    for held in &ids[..n] {
                        if let Some(entry) = self.objects.get_mut(held) {
                            entry.refs -= 1;
                        }
                    }
                    return Err(gone(id));
                }
            }
        }
        Ok(())
    }

    /// A token for a reference to `id` that the caller hands over: a new one (`copy`: a value
    /// read from a container, which keeps its own), or the caller's (a value taken out).
    pub(crate) fn issue(&mut self, id: u64, copy: bool) -> u64 {
        if copy && let Some(entry) = self.objects.get_mut(&id) {
            entry.refs += 1;
        }
        self.next_token += 1;
        self.tokens.insert(self.next_token, id);
        self.next_token
    }

    /// Turns a token back into the reference it stands for (a value taken out of a queue that
    /// could not be delivered goes back in); the object's id, or `None` for an unknown token.
    pub(crate) fn redeem(&mut self, token: u64) -> Option<u64> {
        self.tokens.remove(&token)
    }

    /// Drops one reference to `id`; returns the object if that was the last one (its own
    /// references are then the caller's to drop: `Server::drop_refs`).
    #[must_use = "a freed object's contents hold references to drop"]
    pub(crate) fn unref(&mut self, id: u64) -> Option<Arc<Object>> {
        let entry = self.objects.get_mut(&id)?;
        entry.refs = entry.refs.saturating_sub(1);
        if entry.refs == 0 && !entry.named {
            return self.objects.remove(&id).map(|e| e.object);
        }
        None
    }

    /// Gives up a token unused; returns the object if that was its last reference.
    #[must_use = "a freed object's contents hold references to drop"]
    pub(crate) fn release(&mut self, token: u64) -> Option<Arc<Object>> {
        let id = self.tokens.remove(&token)?;
        self.unref(id)
    }
}

fn gone(id: u64) -> Error {
    Error::InvalidArgument(format!(
        "shared object #{id} no longer exists (every proxy to it was dropped; \
         `Manager::object_count` tells how many objects the server holds)"
    ))
}

impl Store {
    /// How many objects the store holds.
    pub(crate) fn len(&self) -> usize {
        self.objects.len()
    }

    /// Every object, to wake their waiters at shutdown.
    pub(crate) fn objects(&self) -> Vec<Arc<Object>> {
        self.objects.values().map(|r| r.object.clone()).collect()
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::protocol::Blob;

    fn ty(kind: &'static str) -> Type {
        Type {
            kind: kind.into(),
            fingerprint: 7,
            elements: "u8".to_owned(),
        }
    }

    /// A new, empty, unnamed list's id.
    fn new_list(store: &mut Store) -> u64 {
        let init = Init::List(Vec::new());
        store.create(ty("list"), None, init).unwrap().0
    }

    #[test]
    fn objects_live_while_referenced() {
        let mut store = Store::default();
        let id = new_list(&mut store);
        let token = store.share(id).unwrap();
        assert!(store.unref(id).is_none()); // the creating connection closes
        assert!(store.objects.contains_key(&id), "the token keeps it");
        store.attach(id, &ty("list"), Some(token)).unwrap();
        assert!(store.tokens.is_empty());
        assert!(store.unref(id).is_some(), "last reference gone");
        assert!(!store.objects.contains_key(&id));
        assert!(store.attach(id, &ty("list"), None).is_err());
    }

    #[test]
    fn a_token_counts_only_for_its_own_object() {
        let mut store = Store::default();
        let a = new_list(&mut store);
        let b = new_list(&mut store);
        let token_b = store.share(b).unwrap();
        // Presented with the wrong object, the token is neither used nor lost.
        store.attach(a, &ty("list"), Some(token_b)).unwrap();
        assert_eq!(store.objects[&a].refs, 2);
        assert_eq!(store.tokens.get(&token_b), Some(&b));
        assert!(store.unref(b).is_none()); // b's creator goes; its token still keeps it
        assert!(store.objects.contains_key(&b));
        assert!(store.release(token_b).is_some());
        assert!(!store.objects.contains_key(&b));
    }

    #[test]
    fn named_objects_are_found_and_type_checked() {
        let mut store = Store::default();
        let (a, _) = store
            .create(ty("dict"), Some("d".into()), Init::Dict(Vec::new()))
            .unwrap();
        let (b, _) = store
            .create(ty("dict"), Some("d".into()), Init::Dict(Vec::new()))
            .unwrap();
        assert_eq!(a, b);
        let e = store
            .create(ty("list"), Some("d".into()), Init::List(Vec::new()))
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("is a dict<u8>, not a list<u8>"),
            "{e}"
        );
        assert!(store.unref(a).is_none());
        assert!(store.unref(a).is_none(), "named objects stay");
        assert!(store.objects.contains_key(&a));
    }

    #[test]
    fn holding_is_all_or_nothing() {
        let mut store = Store::default();
        let a = new_list(&mut store);
        let e = store.hold(&[a, 99]).unwrap_err();
        assert!(e.to_string().contains("#99 no longer exists"), "{e}");
        assert_eq!(
            store.objects[&a].refs, 1,
            "the reference to `a` was given back"
        );
        // A container created with a proxy inside holds its object.
        let init = Init::List(vec![Blob::holding(b"p", &[a])]);
        let (outer, _) = store.create(ty("list"), None, init).unwrap();
        assert_eq!(store.objects[&a].refs, 2);
        assert!(
            store.unref(a).is_none(),
            "the creator goes; the list still holds it"
        );
        let freed = store.unref(outer).expect("the outer list's last reference");
        assert_eq!(freed.contents.lock().unwrap().take_refs(), [a]);
    }
}
