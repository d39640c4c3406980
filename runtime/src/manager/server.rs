//! The manager server: handshakes run by the listener's gate on the accepting thread
//! (`connection/gate.rs`: bounded in number and time), then one thread per authenticated
//! connection, a store of objects held as
//! opaque blobs, reference counts by attached connections and transfer tokens, and blocking
//! operations that wait on the server while watching their client. Protocol: `README.md`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use super::protocol::{
    Answer, Blob, Call, Holder, Init, Key, Kind, Op, Reply, Request, Type, Wait, spin_toward,
};
use crate::channel::Channel;
use crate::connection::Listener;
use crate::connection::gate::Event;
use crate::error::{Error, Result};
use crate::sys;

/// How often a blocked operation checks that its client is still there.
const WATCH_CLIENT: Duration = Duration::from_millis(100);
/// Connections beyond this are closed at once (each costs a thread).
const MAX_CONNECTIONS: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A shared object: its type, its state, and a condition variable for blocked operations.
struct Object {
    ty: Type,
    state: Mutex<State>,
    changed: Condvar,
    /// Operations blocked on `changed` (changed under `state`'s lock): a change wakes them
    /// only if there are any, since a notification costs a system call.
    waiters: AtomicUsize,
}

impl Object {
    /// Wakes the blocked operations, if any. Call with `state` locked.
    fn notify(&self) {
        if self.waiters.load(Ordering::Relaxed) > 0 {
            self.changed.notify_all();
        }
    }
}

enum State {
    List {
        items: Vec<Blob>,
        version: u64,
    },
    Dict {
        /// Entries keep insertion order, as Python's dicts do; each with the clock at its
        /// last write (its version; 0 means absent).
        map: IndexMap<Key, (Blob, u64)>,
        clock: u64,
    },
    Value {
        value: Blob,
        version: u64,
    },
    Queue {
        items: VecDeque<Blob>,
        maxsize: Option<usize>,
    },
    Lock {
        holder: Option<(Holder, u64)>,
        /// The holder that vanished with the lock: the next acquirer is told.
        abandoned_by: Option<Holder>,
    },
    Event {
        set: bool,
    },
}

impl State {
    /// Takes the references the stored values hold (the object is being freed).
    fn take_refs(&mut self) -> Vec<u64> {
        let mut refs = Vec::new();
        let mut take = |b: &mut Blob| refs.append(&mut b.refs);
        match self {
            State::List { items, .. } => items.iter_mut().for_each(&mut take),
            State::Queue { items, .. } => items.iter_mut().for_each(&mut take),
            State::Dict { map, .. } => map.values_mut().for_each(|(v, _)| take(v)),
            State::Value { value, .. } => take(value),
            State::Lock { .. } | State::Event { .. } => {}
        }
        refs
    }

    /// The references the stored values hold.
    fn refs(&self) -> Vec<u64> {
        let blobs: Box<dyn Iterator<Item = &Blob>> = match self {
            State::List { items, .. } => Box::new(items.iter()),
            State::Queue { items, .. } => Box::new(items.iter()),
            State::Dict { map, .. } => Box::new(map.values().map(|(v, _)| v)),
            State::Value { value, .. } => Box::new(std::iter::once(value)),
            State::Lock { .. } | State::Event { .. } => Box::new(std::iter::empty()),
        };
        blobs.flat_map(|b| b.refs.iter().copied()).collect()
    }

    fn new(kind: Kind, init: Init) -> Result<State> {
        Ok(match (kind, init) {
            (Kind::List, Init::Empty) => State::List {
                items: Vec::new(),
                version: 1,
            },
            (Kind::List, Init::List(items)) => State::List { items, version: 1 },
            (Kind::Dict, Init::Empty) => State::Dict {
                map: IndexMap::new(),
                clock: 1,
            },
            (Kind::Dict, Init::Dict(pairs)) => State::Dict {
                map: pairs.into_iter().map(|(k, v)| (k, (v, 1))).collect(),
                clock: 1,
            },
            (Kind::Value, Init::Value(value)) => State::Value { value, version: 1 },
            (Kind::Queue, Init::Empty) => State::Queue {
                items: VecDeque::new(),
                maxsize: None,
            },
            (Kind::Queue, Init::Queue { maxsize }) => State::Queue {
                items: VecDeque::new(),
                maxsize: maxsize.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
            },
            (Kind::Lock, Init::Empty) => State::Lock {
                holder: None,
                abandoned_by: None,
            },
            (Kind::Event, Init::Empty) => State::Event { set: false },
            (kind, init) => {
                return Err(Error::InvalidArgument(format!(
                    "cannot create a {} from {init:?}",
                    kind.name()
                )));
            }
        })
    }
}

struct Entry {
    object: Arc<Object>,
    /// Attached connections, outstanding tokens, and values stored in other objects (proxies
    /// inside them) or on their way in or out of one.
    refs: usize,
    /// Named objects live until the server stops.
    named: bool,
}

#[derive(Default)]
struct Store {
    objects: HashMap<u64, Entry>,
    names: HashMap<String, u64>,
    /// Transfer tokens and the object each keeps alive.
    tokens: HashMap<u64, u64>,
    next_id: u64,
    next_token: u64,
}

impl Store {
    fn create(&mut self, ty: Type, name: Option<String>, init: Init) -> Result<(u64, Arc<Object>)> {
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
        let state = State::new(ty.kind, init)?;
        // The initial values' proxies: the new object holds a reference to each.
        self.hold(&state.refs())?;
        self.next_id += 1;
        let id = self.next_id;
        let object = Arc::new(Object {
            ty,
            state: Mutex::new(state),
            changed: Condvar::new(),
            waiters: AtomicUsize::new(0),
        });
        let named = name.is_some();
        if let Some(name) = name {
            self.names.insert(name, id);
        }
        self.objects.insert(
            id,
            Entry {
                object: object.clone(),
                refs: 1,
                named,
            },
        );
        Ok((id, object))
    }

    fn attach(&mut self, id: u64, ty: &Type, token: Option<u64>) -> Result<Arc<Object>> {
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

    fn share(&mut self, id: u64) -> Result<u64> {
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
    fn hold(&mut self, ids: &[u64]) -> Result<()> {
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
    fn issue(&mut self, id: u64, copy: bool) -> u64 {
        if copy && let Some(entry) = self.objects.get_mut(&id) {
            entry.refs += 1;
        }
        self.next_token += 1;
        self.tokens.insert(self.next_token, id);
        self.next_token
    }

    /// Turns a token back into the reference it stands for (a value taken out of a queue that
    /// could not be delivered goes back in); the object's id, or `None` for an unknown token.
    fn redeem(&mut self, token: u64) -> Option<u64> {
        self.tokens.remove(&token)
    }

    /// Drops one reference to `id`; returns the object if that was the last one (its own
    /// references are then the caller's to drop: [`Server::drop_refs`]).
    #[must_use = "a freed object's contents hold references to drop"]
    fn unref(&mut self, id: u64) -> Option<Arc<Object>> {
        let entry = self.objects.get_mut(&id)?;
        entry.refs = entry.refs.saturating_sub(1);
        if entry.refs == 0 && !entry.named {
            return self.objects.remove(&id).map(|e| e.object);
        }
        None
    }

    #[must_use = "a freed object's contents hold references to drop"]
    fn release(&mut self, token: u64) -> Option<Arc<Object>> {
        let id = self.tokens.remove(&token)?;
        self.unref(id)
    }
}

fn gone(id: u64) -> Error {
    Error::InvalidArgument(format!(
        "shared object #{id} no longer exists (every proxy to it was dropped)"
    ))
}

/// A manager server. Runs in its own process (a [`Manager`](crate::Manager)'s child) or in
/// the caller's ([`ManagerServer`](crate::ManagerServer)).
pub(crate) struct Server {
    listener: Listener,
    /// A random id of this server instance, which clients compare to tell whether a proxy
    /// belongs to this server (then a container holds it by reference) or to another.
    instance: u64,
    store: Mutex<Store>,
    stopping: AtomicBool,
    wake: sys::Wakeup,
    next_conn: AtomicU64,
    /// Open connections, to close them at shutdown.
    conns: Mutex<HashMap<u64, Arc<Channel>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// One connection's view: the object it is attached to and the locks it took.
struct Session {
    conn: u64,
    peer: String,
    attached: Option<(u64, Arc<Object>)>,
    locks: Vec<Arc<Object>>,
}

impl Server {
    pub(crate) fn new(listener: Listener) -> Result<Arc<Server>> {
        let mut instance = [0u8; 8];
        sys::net::random_bytes(&mut instance).map_err(Error::io("cannot read random bytes"))?;
        Ok(Arc::new(Server {
            listener,
            instance: u64::from_le_bytes(instance),
            store: Mutex::new(Store::default()),
            stopping: AtomicBool::new(false),
            wake: sys::Wakeup::new().map_err(Error::io("cannot create a wake-up descriptor"))?,
            next_conn: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
        }))
    }

    pub(crate) fn address(&self) -> &crate::Address {
        self.listener.address()
    }

    /// Accepts connections until a client asks for `Shutdown`; then closes every connection.
    /// The handshakes run here, on this thread, under the listener's bounds; a connection
    /// gets its own thread only once its peer has authenticated.
    pub(crate) fn serve(self: &Arc<Server>) -> Result<()> {
        while !self.stopping.load(Ordering::Acquire) {
            let (channel, peer, pid) = match self.listener.next_event(Some(self.wake.fd()))? {
                Event::Accepted { channel, peer, pid } => (channel, peer, pid),
                Event::Woken => continue,
                Event::Failed(e @ Error::Io { .. }) => {
                    tracing::warn!(target: "mp", "manager: {e}");
                    // Out of descriptors, for instance: do not spin.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                Event::Failed(e) => {
                    tracing::warn!(target: "mp", "manager: {e}");
                    continue;
                }
            };
            if lock(&self.conns).len() >= MAX_CONNECTIONS {
                tracing::warn!(target: "mp", "manager: refusing {peer}: {MAX_CONNECTIONS} connections open");
                continue;
            }
            let server = self.clone();
            let thread = std::thread::Builder::new()
                .name("mp-manager-conn".into())
                .spawn(move || server.connection(channel, peer, pid));
            match thread {
                Ok(t) => {
                    let mut threads = lock(&self.threads);
                    threads.retain(|t| !t.is_finished());
                    threads.push(t);
                }
                Err(e) => tracing::warn!(target: "mp", "manager: cannot start a thread: {e}"),
            }
        }
        self.close_all();
        Ok(())
    }

    /// Stops the accept loop and wakes every blocked operation.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake.notify();
        // Collected first: an object's state is never locked under the store's lock (a read
        // that hands out references locks the store under an object's state).
        let objects: Vec<Arc<Object>> = lock(&self.store)
            .objects
            .values()
            .map(|e| e.object.clone())
            .collect();
        for object in objects {
            let _guard = lock(&object.state);
            object.changed.notify_all();
        }
    }

    fn close_all(&self) {
        self.stop();
        for channel in lock(&self.conns).values() {
            sys::net::shutdown(channel.fd());
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
        let deadline = Instant::now() + Duration::from_secs(2);
        for t in threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }

    fn connection(self: Arc<Server>, channel: Channel, peer: String, pid: u32) {
        let channel = Arc::new(channel);
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        lock(&self.conns).insert(conn, channel.clone());
        let mut session = Session {
            conn,
            peer: format!("{peer} (client pid {pid})"),
            attached: None,
            locks: Vec::new(),
        };
        // A stop that came before the registration above would not have closed this one.
        if !self.stopping.load(Ordering::Acquire) {
            self.session(&mut session, &channel);
        }
        self.end_session(session);
        lock(&self.conns).remove(&conn);
    }

    fn session(&self, s: &mut Session, channel: &Channel) {
        loop {
            let (client_cpu, request) =
                match channel.recv_frame(None).and_then(|f| f.decode::<Call>()) {
                    Ok(Call { cpu, request }) => (cpu, request),
                    Err(Error::Disconnected) => return,
                    Err(e) => {
                        // Garbage, an oversized frame, a request of another version: say so and
                        // close this connection; the others are not affected.
                        tracing::warn!(target: "mp", "manager: dropping {}: {e}", s.peer);
                        let _ = channel.send(&Answer {
                            cpu: sys::current_cpu(),
                            response: Err(e),
                        });
                        return;
                    }
                };
            let shutdown = matches!(request, Request::Shutdown);
            let (response, took) = match self.handle(s, channel, request) {
                Ok((reply, took)) => (Ok(reply), took),
                // The client vanished (or the server is stopping) during a blocking operation.
                Err(Error::Disconnected) => return,
                Err(e) => (Err(e), false),
            };
            let answer = Answer {
                cpu: sys::current_cpu(),
                response,
            };
            channel.set_spin(spin_toward(client_cpu));
            // Whether the answer itself reached the client.
            let delivered = match channel.send(&answer) {
                Ok(()) => Ok(true),
                // Too large to send (a snapshot of a huge list): nothing was written, so the
                // client gets the error instead.
                Err(e @ (Error::TooLarge { .. } | Error::Encode(_))) => channel
                    .send(&Answer {
                        cpu: answer.cpu,
                        response: Err(e),
                    })
                    .map(|()| false),
                Err(e) => Err(e),
            };
            if !matches!(delivered, Ok(true)) {
                self.undelivered(s, answer.response, took);
            }
            if delivered.is_err() {
                return;
            }
            if shutdown {
                self.stop();
                return;
            }
        }
    }

    fn end_session(&self, s: Session) {
        for object in &s.locks {
            let mut state = lock(&object.state);
            if let State::Lock {
                holder,
                abandoned_by,
            } = &mut *state
                && let Some((h, conn)) = *holder
                && conn == s.conn
            {
                tracing::warn!(target: "mp", "manager: {} vanished holding a lock", s.peer);
                *holder = None;
                *abandoned_by = Some(h);
                object.notify();
            }
        }
        if let Some((id, _)) = s.attached {
            let freed = lock(&self.store).unref(id);
            self.free(freed);
        }
    }

    /// A reply that did not reach its client: queue items taken for it go back to the front,
    /// in order, with their references; the references any other reply handed out are dropped.
    fn undelivered(&self, s: &Session, mut response: Result<Reply>, took: bool) {
        if took && let (Ok(Reply::Blobs(items)), Some((_, object))) = (&response, &s.attached) {
            self.requeue(object, items.clone());
            return;
        }
        let Ok(reply) = &mut response else {
            return;
        };
        let mut tokens = Vec::new();
        reply.for_each_blob(|b| tokens.append(&mut b.refs));
        if tokens.is_empty() {
            return;
        }
        let freed: Vec<_> = {
            let mut store = lock(&self.store);
            tokens
                .into_iter()
                .filter_map(|t| store.release(t))
                .collect()
        };
        for object in freed {
            self.free(Some(object));
        }
    }

    /// Puts items taken from a queue back at its front, their tokens turned back into the
    /// references the queue holds.
    fn requeue(&self, object: &Object, mut items: Vec<Blob>) {
        {
            let mut store = lock(&self.store);
            for item in &mut items {
                item.refs = item.refs.iter().filter_map(|&t| store.redeem(t)).collect();
            }
        }
        if let State::Queue { items: queue, .. } = &mut *lock(&object.state) {
            for item in items.into_iter().rev() {
                queue.push_front(item);
            }
            object.notify();
        }
    }

    /// Drops one reference to each of `ids`, freeing what that leaves unreferenced, and what
    /// the freed objects' values referred to, and so on. Never called with an object's
    /// state locked (freeing locks the freed objects' states, outside the store's lock).
    fn drop_refs(&self, ids: Vec<u64>) {
        let mut work = ids;
        while !work.is_empty() {
            let freed: Vec<Arc<Object>> = {
                let mut store = lock(&self.store);
                work.drain(..).filter_map(|id| store.unref(id)).collect()
            };
            for object in freed {
                work.append(&mut lock(&object.state).take_refs());
            }
        }
    }

    /// Frees an object that lost its last reference: drops what its values referred to.
    fn free(&self, freed: Option<Arc<Object>>) {
        if let Some(object) = freed {
            let refs = lock(&object.state).take_refs();
            self.drop_refs(refs);
        }
    }

    /// Turns the ids in a reply's values into tokens for the client: new references for a
    /// copy (the container keeps its own), the container's own for values taken out of it.
    /// A copy's references are taken with the container's state still locked, so no writer
    /// can drop the container's meanwhile.
    fn hand_out(&self, reply: &mut Reply, copy: bool) {
        let mut any = false;
        reply.for_each_blob(|b| any |= !b.refs.is_empty());
        if !any {
            return;
        }
        let mut store = lock(&self.store);
        reply.for_each_blob(|b| {
            for r in &mut b.refs {
                *r = store.issue(*r, copy);
            }
        });
    }

    /// Handles one request; also returns whether the reply holds queue items taken from the
    /// queue, to requeue them if it cannot be delivered.
    fn handle(
        &self,
        s: &mut Session,
        channel: &Channel,
        request: Request,
    ) -> Result<(Reply, bool)> {
        let reply = match request {
            Request::Create { ty, name, init } => {
                check_detached(s)?;
                let (id, object) = lock(&self.store).create(ty, name, init)?;
                s.attached = Some((id, object));
                Reply::Created {
                    id,
                    server: self.instance,
                }
            }
            Request::Attach { id, ty, token } => {
                check_detached(s)?;
                let object = lock(&self.store).attach(id, &ty, token)?;
                s.attached = Some((id, object));
                Reply::Created {
                    id,
                    server: self.instance,
                }
            }
            Request::Share => {
                let (id, _) = attached(s)?;
                Reply::Token(lock(&self.store).share(*id)?)
            }
            Request::Release { token } => {
                let freed = lock(&self.store).release(token);
                self.free(freed);
                Reply::Done
            }
            Request::Stats => Reply::Stats {
                server: self.instance,
                objects: lock(&self.store).objects.len() as u64,
            },
            Request::Shutdown => Reply::Done,
            Request::Op(op) => {
                let object = attached(s)?.1.clone();
                return self.apply(s, channel, &object, op);
            }
        };
        Ok((reply, false))
    }

    fn apply(
        &self,
        s: &mut Session,
        channel: &Channel,
        object: &Arc<Object>,
        op: Op,
    ) -> Result<(Reply, bool)> {
        let waiter = Waiter {
            server: self,
            object,
            channel,
        };
        // The references the stored values will hold, taken before they are stored (and
        // dropped again if they are not).
        let incoming = op.stored_refs();
        if !incoming.is_empty() {
            lock(&self.store).hold(&incoming)?;
        }
        let reply = match op {
            Op::QueuePut { items, wait } => match queue_put(&waiter, items, wait) {
                Ok(reply) => reply,
                Err(e) => {
                    self.drop_refs(incoming);
                    return Err(e);
                }
            },
            Op::QueueTake { max, wait } => {
                // The items' references go to the client with them.
                let mut reply = Reply::Blobs(queue_take(&waiter, max, wait)?);
                self.hand_out(&mut reply, false);
                return Ok((reply, true));
            }
            Op::LockAcquire { holder, wait } => {
                let reply = lock_acquire(&waiter, holder, s.conn, wait)?;
                if !s.locks.iter().any(|l| Arc::ptr_eq(l, object)) {
                    s.locks.push(object.clone());
                }
                reply
            }
            Op::EventWait { wait } => {
                let set = waiter.wait(wait, Error::Timeout, |state| match state {
                    State::Event { set: true } => Some(Ok(true)),
                    State::Event { set: false } => None,
                    _ => Some(Err(wrong_kind(&object.ty))),
                });
                match set {
                    Ok(_) => Reply::Bool(true),
                    Err(Error::Timeout) => Reply::Bool(false),
                    Err(e) => return Err(e),
                }
            }
            op => {
                let mut dropped = Vec::new();
                let applied = {
                    let mut state = lock(&object.state);
                    match apply_now(&mut state, &object.ty, op, &mut dropped) {
                        Ok((mut reply, out)) => {
                            self.hand_out(&mut reply, out == Out::Copied);
                            object.notify();
                            Ok(reply)
                        }
                        Err(e) => {
                            // Nothing was stored.
                            dropped = incoming;
                            Err(e)
                        }
                    }
                };
                self.drop_refs(dropped);
                applied?
            }
        };
        Ok((reply, false))
    }
}

fn check_detached(s: &Session) -> Result<()> {
    match s.attached {
        None => Ok(()),
        Some(_) => Err(Error::InvalidArgument(
            "this connection is already attached to a shared object".to_owned(),
        )),
    }
}

fn attached(s: &Session) -> Result<&(u64, Arc<Object>)> {
    s.attached.as_ref().ok_or_else(|| {
        Error::InvalidArgument("no shared object is attached to this connection".to_owned())
    })
}

fn wrong_kind(ty: &Type) -> Error {
    Error::InvalidArgument(format!("that operation does not apply to a {ty}"))
}

/// Waits on an object's condition for an operation, watching the client and the server.
struct Waiter<'a> {
    server: &'a Server,
    object: &'a Object,
    channel: &'a Channel,
}

impl Waiter<'_> {
    /// Calls `ready` on the state until it gives an answer, waiting as `wait` allows; `busy`
    /// is the error of a `Wait::No` call that would have to wait.
    fn wait<R>(
        &self,
        wait: Wait,
        busy: Error,
        mut ready: impl FnMut(&mut State) -> Option<Result<R>>,
    ) -> Result<R> {
        let deadline = match wait {
            Wait::For(d) => Some(Instant::now() + d),
            _ => None,
        };
        let mut state = lock(&self.object.state);
        loop {
            if let Some(answer) = ready(&mut state) {
                if answer.is_ok() {
                    self.object.notify();
                }
                return answer;
            }
            let slice = match (wait, deadline) {
                (Wait::No, _) => return Err(busy),
                (_, Some(d)) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(WATCH_CLIENT),
                    _ => return Err(Error::Timeout),
                },
                _ => WATCH_CLIENT,
            };
            self.object.waiters.fetch_add(1, Ordering::Relaxed);
            state = self
                .object
                .changed
                .wait_timeout(state, slice)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            self.object.waiters.fetch_sub(1, Ordering::Relaxed);
            // A client waiting for its answer sends nothing: readable means it is gone.
            if self.server.stopping.load(Ordering::Acquire)
                || sys::net::peer_closed_or_sent(self.channel.fd())
            {
                return Err(Error::Disconnected);
            }
        }
    }
}

fn queue_put(w: &Waiter<'_>, items: Vec<Blob>, wait: Wait) -> Result<Reply> {
    let mut items = Some(items);
    w.wait(wait, Error::Full, |state| {
        let State::Queue {
            items: queue,
            maxsize,
        } = state
        else {
            return Some(Err(wrong_kind(&w.object.ty)));
        };
        let n = items.as_ref().map_or(0, Vec::len);
        if let Some(max) = *maxsize {
            if n > max {
                return Some(Err(Error::InvalidArgument(format!(
                    "{n} items can never fit in a queue of maxsize {max}"
                ))));
            }
            if queue.len() + n > max {
                return None;
            }
        }
        queue.extend(items.take().unwrap_or_default());
        Some(Ok(Reply::Done))
    })
}

fn queue_take(w: &Waiter<'_>, max: u64, wait: Wait) -> Result<Vec<Blob>> {
    let max = usize::try_from(max).unwrap_or(usize::MAX).max(1);
    w.wait(wait, Error::Empty, |state| {
        let State::Queue { items, .. } = state else {
            return Some(Err(wrong_kind(&w.object.ty)));
        };
        if items.is_empty() {
            return None;
        }
        let n = max.min(items.len());
        Some(Ok(items.drain(..n).collect()))
    })
}

fn lock_acquire(w: &Waiter<'_>, me: Holder, conn: u64, wait: Wait) -> Result<Reply> {
    w.wait(wait, Error::WouldBlock, |state| {
        let State::Lock {
            holder,
            abandoned_by,
        } = state
        else {
            return Some(Err(wrong_kind(&w.object.ty)));
        };
        match holder {
            Some((h, _)) if *h == me => Some(Err(Error::Deadlock)),
            Some(_) => None,
            None => {
                if let Some(dead) = abandoned_by.take() {
                    return Some(Err(Error::OwnerDied { tid: dead.tid }));
                }
                *holder = Some((me, conn));
                Some(Ok(Reply::Done))
            }
        }
    })
}

fn index(i: u64, len: usize) -> Result<usize> {
    match usize::try_from(i) {
        Ok(i) if i < len => Ok(i),
        _ => Err(Error::OutOfRange {
            index: usize::try_from(i).unwrap_or(usize::MAX),
            len,
        }),
    }
}

/// Whether the values in a reply are copies of stored ones (the client gets new references)
/// or were taken out of the object (the client gets the object's references).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    Copied,
    Taken,
}

/// Appends the references `blob` held to `dropped` (it was overwritten, removed or not stored).
fn discard(blob: Blob, dropped: &mut Vec<u64>) {
    dropped.extend(blob.refs);
}

/// Applies a non-blocking operation. The references held by values it overwrites, removes
/// without returning, or does not store after all (a lost compare-and-swap) are appended to
/// `dropped`; on an error nothing was stored or removed.
fn apply_now(state: &mut State, ty: &Type, op: Op, dropped: &mut Vec<u64>) -> Result<(Reply, Out)> {
    use Out::{Copied, Taken};
    Ok(match (state, op) {
        (State::List { items, .. }, Op::Len) => (Reply::Len(items.len() as u64), Copied),
        (State::Dict { map, .. }, Op::Len) => (Reply::Len(map.len() as u64), Copied),
        (State::Queue { items, .. }, Op::Len) => (Reply::Len(items.len() as u64), Copied),

        (State::List { items, version }, op) => {
            let reply = match op {
                Op::ListGet(i) => {
                    return Ok((
                        Reply::MaybeBlob(
                            usize::try_from(i).ok().and_then(|i| items.get(i)).cloned(),
                        ),
                        Copied,
                    ));
                }
                Op::ListSnapshot => {
                    return Ok((
                        Reply::Items {
                            items: items.clone(),
                            version: *version,
                        },
                        Copied,
                    ));
                }
                Op::ListPush(item) => {
                    items.push(item);
                    (Reply::Done, Copied)
                }
                Op::ListExtend(more) => {
                    items.extend(more);
                    (Reply::Done, Copied)
                }
                Op::ListSet(i, item) => {
                    let i = index(i, items.len())?;
                    discard(std::mem::replace(&mut items[i], item), dropped);
                    (Reply::Done, Copied)
                }
                Op::ListInsert(i, item) => {
                    let at = index(i, items.len() + 1)?;
                    items.insert(at, item);
                    (Reply::Done, Copied)
                }
                Op::ListRemoveAt(i) => {
                    let i = index(i, items.len())?;
                    (Reply::Blob(items.remove(i)), Taken)
                }
                Op::ListPop => (Reply::MaybeBlob(items.pop()), Taken),
                Op::ListRemoveItem(item) => match items.iter().position(|x| x.bytes == item) {
                    Some(i) => {
                        discard(items.remove(i), dropped);
                        (Reply::Bool(true), Copied)
                    }
                    None => return Ok((Reply::Bool(false), Copied)),
                },
                Op::Clear => {
                    items.drain(..).for_each(|b| discard(b, dropped));
                    (Reply::Done, Copied)
                }
                Op::ListReplace {
                    version: expected,
                    items: new,
                } => {
                    if expected != *version {
                        new.into_iter().for_each(|b| discard(b, dropped));
                        return Ok((
                            Reply::Items {
                                items: items.clone(),
                                version: *version,
                            },
                            Copied,
                        ));
                    }
                    std::mem::replace(items, new)
                        .into_iter()
                        .for_each(|b| discard(b, dropped));
                    (Reply::Swapped, Copied)
                }
                _ => return Err(wrong_kind(ty)),
            };
            *version += 1;
            reply
        }

        (State::Dict { map, clock }, op) => {
            let version_of =
                |map: &IndexMap<Key, (Blob, u64)>, key: &Key| map.get(key).map_or(0, |(_, v)| *v);
            match op {
                Op::DictGet(key) => (
                    Reply::MaybeBlob(map.get(&key).map(|(v, _)| v.clone())),
                    Copied,
                ),
                Op::DictGetMany(keys) => (
                    Reply::MaybeBlobs(
                        keys.iter()
                            .map(|k| map.get(k).map(|(v, _)| v.clone()))
                            .collect(),
                    ),
                    Copied,
                ),
                Op::DictContains(key) => (Reply::Bool(map.contains_key(&key)), Copied),
                Op::DictKeys => (Reply::Keys(map.keys().cloned().collect()), Copied),
                Op::DictValues => (
                    Reply::Blobs(map.values().map(|(v, _)| v.clone()).collect()),
                    Copied,
                ),
                Op::DictItems => (
                    Reply::Pairs(
                        map.iter()
                            .map(|(k, (v, _))| (k.clone(), v.clone()))
                            .collect(),
                    ),
                    Copied,
                ),
                Op::DictEntry(key) => (
                    Reply::Entry {
                        value: map.get(&key).map(|(v, _)| v.clone()),
                        version: version_of(map, &key),
                    },
                    Copied,
                ),
                Op::DictInsert(key, value) => {
                    *clock += 1;
                    (
                        Reply::MaybeBlob(map.insert(key, (value, *clock)).map(|(v, _)| v)),
                        Taken,
                    )
                }
                Op::DictRemove(key) => {
                    *clock += 1;
                    (
                        Reply::MaybeBlob(map.shift_remove(&key).map(|(v, _)| v)),
                        Taken,
                    )
                }
                Op::DictUpdate(pairs) => {
                    *clock += 1;
                    for (k, v) in pairs {
                        if let Some((old, _)) = map.insert(k, (v, *clock)) {
                            discard(old, dropped);
                        }
                    }
                    (Reply::Done, Copied)
                }
                Op::Clear => {
                    *clock += 1;
                    map.drain(..).for_each(|(_, (v, _))| discard(v, dropped));
                    (Reply::Done, Copied)
                }
                Op::DictSwap {
                    key,
                    version,
                    value,
                } => {
                    let current = version_of(map, &key);
                    if current != version {
                        if let Some(new) = value {
                            discard(new, dropped);
                        }
                        return Ok((
                            Reply::Entry {
                                value: map.get(&key).map(|(v, _)| v.clone()),
                                version: current,
                            },
                            Copied,
                        ));
                    }
                    *clock += 1;
                    let old = match value {
                        Some(v) => map.insert(key, (v, *clock)),
                        None => map.shift_remove(&key),
                    };
                    if let Some((old, _)) = old {
                        discard(old, dropped);
                    }
                    (Reply::Swapped, Copied)
                }
                _ => return Err(wrong_kind(ty)),
            }
        }

        (State::Value { value, version }, op) => match op {
            Op::ValueGet => (
                Reply::Entry {
                    value: Some(value.clone()),
                    version: *version,
                },
                Copied,
            ),
            Op::ValueSet(new) => {
                discard(std::mem::replace(value, new), dropped);
                *version += 1;
                (Reply::Done, Copied)
            }
            Op::ValueSwap {
                version: expected,
                value: new,
            } => {
                if expected != *version {
                    discard(new, dropped);
                    return Ok((
                        Reply::Entry {
                            value: Some(value.clone()),
                            version: *version,
                        },
                        Copied,
                    ));
                }
                discard(std::mem::replace(value, new), dropped);
                *version += 1;
                (Reply::Swapped, Copied)
            }
            _ => return Err(wrong_kind(ty)),
        },

        (State::Lock { holder, .. }, Op::LockIsLocked) => (Reply::Bool(holder.is_some()), Copied),
        (State::Lock { holder, .. }, Op::LockRelease { holder: me }) => match holder {
            Some((h, _)) if *h == me => {
                *holder = None;
                (Reply::Done, Copied)
            }
            _ => {
                return Err(Error::InvalidArgument(
                    "release of a manager lock that this thread does not hold".to_owned(),
                ));
            }
        },

        (State::Event { set }, Op::EventSet) => {
            *set = true;
            (Reply::Done, Copied)
        }
        (State::Event { set }, Op::EventClear) => {
            *set = false;
            (Reply::Done, Copied)
        }
        (State::Event { set }, Op::EventIsSet) => (Reply::Bool(*set), Copied),

        _ => return Err(wrong_kind(ty)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(kind: Kind) -> Type {
        Type {
            kind,
            fingerprint: 7,
            elements: "u8".to_owned(),
        }
    }

    fn blob(b: &[u8]) -> Blob {
        Blob::plain(b)
    }

    fn key(b: &[u8]) -> Key {
        crate::codec::Bytes(b.to_vec())
    }

    /// Applies `op`, expecting it to drop no reference.
    fn apply(state: &mut State, t: &Type, op: Op) -> Result<Reply> {
        let mut dropped = Vec::new();
        let reply = apply_now(state, t, op, &mut dropped).map(|(r, _)| r);
        assert!(dropped.is_empty());
        reply
    }

    #[test]
    fn objects_live_while_referenced() {
        let mut store = Store::default();
        let (id, _) = store.create(ty(Kind::List), None, Init::Empty).unwrap();
        let token = store.share(id).unwrap();
        assert!(store.unref(id).is_none()); // the creating connection closes
        assert!(store.objects.contains_key(&id), "the token keeps it");
        store.attach(id, &ty(Kind::List), Some(token)).unwrap();
        assert!(store.tokens.is_empty());
        assert!(store.unref(id).is_some(), "last reference gone");
        assert!(!store.objects.contains_key(&id));
        assert!(store.attach(id, &ty(Kind::List), None).is_err());
    }

    #[test]
    fn a_token_counts_only_for_its_own_object() {
        let mut store = Store::default();
        let (a, _) = store.create(ty(Kind::List), None, Init::Empty).unwrap();
        let (b, _) = store.create(ty(Kind::List), None, Init::Empty).unwrap();
        let token_b = store.share(b).unwrap();
        // Presented with the wrong object, the token is neither used nor lost.
        store.attach(a, &ty(Kind::List), Some(token_b)).unwrap();
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
            .create(ty(Kind::Dict), Some("d".into()), Init::Empty)
            .unwrap();
        let (b, _) = store
            .create(ty(Kind::Dict), Some("d".into()), Init::Empty)
            .unwrap();
        assert_eq!(a, b);
        let e = store
            .create(ty(Kind::List), Some("d".into()), Init::Empty)
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
    fn compare_and_swap_detects_races() {
        let t = ty(Kind::Dict);
        let mut state = State::new(Kind::Dict, Init::Empty).unwrap();
        let Reply::Entry {
            value: None,
            version: 0,
        } = apply(&mut state, &t, Op::DictEntry(key(b"k"))).unwrap()
        else {
            panic!()
        };
        let swap = |version, v: &[u8]| Op::DictSwap {
            key: key(b"k"),
            version,
            value: Some(blob(v)),
        };
        assert!(matches!(
            apply(&mut state, &t, swap(0, b"1")).unwrap(),
            Reply::Swapped
        ));
        // A second writer that read "absent" loses and is told the current entry.
        let Reply::Entry {
            value: Some(v),
            version,
        } = apply(&mut state, &t, swap(0, b"2")).unwrap()
        else {
            panic!()
        };
        assert_eq!(&v.bytes[..], b"1");
        assert!(matches!(
            apply(&mut state, &t, swap(version, b"2")).unwrap(),
            Reply::Swapped
        ));
    }

    #[test]
    fn list_operations_and_range_errors() {
        let t = ty(Kind::List);
        let mut state = State::new(Kind::List, Init::List(vec![blob(b"a")])).unwrap();
        apply(&mut state, &t, Op::ListInsert(1, blob(b"b"))).unwrap();
        assert!(matches!(
            apply(&mut state, &t, Op::ListInsert(5, blob(b"x"))),
            Err(Error::OutOfRange { index: 5, len: 3 })
        ));
        assert!(matches!(
            apply(&mut state, &t, Op::ListSet(2, blob(b"x"))),
            Err(Error::OutOfRange { index: 2, len: 2 })
        ));
        assert!(matches!(
            apply(&mut state, &t, Op::EventSet),
            Err(Error::InvalidArgument(_))
        ));
        let Reply::Blob(b) = apply(&mut state, &t, Op::ListRemoveAt(0)).unwrap() else {
            panic!()
        };
        assert_eq!(&b.bytes[..], b"a");
    }

    fn holding(bytes: &[u8], refs: &[u64]) -> Blob {
        Blob {
            bytes: crate::codec::Bytes(bytes.to_vec()),
            refs: refs.to_vec(),
        }
    }

    #[test]
    fn holding_is_all_or_nothing() {
        let mut store = Store::default();
        let (a, _) = store.create(ty(Kind::List), None, Init::Empty).unwrap();
        let e = store.hold(&[a, 99]).unwrap_err();
        assert!(e.to_string().contains("#99 no longer exists"), "{e}");
        assert_eq!(
            store.objects[&a].refs, 1,
            "the reference to `a` was given back"
        );
        // A container created with a proxy inside holds its object.
        let init = Init::List(vec![holding(b"p", &[a])]);
        let (outer, _) = store.create(ty(Kind::List), None, init).unwrap();
        assert_eq!(store.objects[&a].refs, 2);
        assert!(
            store.unref(a).is_none(),
            "the creator goes; the list still holds it"
        );
        let freed = store.unref(outer).expect("the outer list's last reference");
        assert_eq!(lock(&freed.state).take_refs(), [a]);
    }

    #[test]
    fn values_leaving_a_container_drop_or_hand_over_their_references() {
        let t = ty(Kind::List);
        let mut state = State::new(Kind::List, Init::List(vec![holding(b"a", &[1])])).unwrap();
        let mut dropped = Vec::new();
        let mut run = |state: &mut State, op| apply_now(state, &t, op, &mut dropped).unwrap().1;
        assert_eq!(run(&mut state, Op::ListGet(0)), Out::Copied);
        assert_eq!(
            run(&mut state, Op::ListSet(0, holding(b"b", &[2]))),
            Out::Copied
        );
        run(&mut state, Op::ListPush(holding(b"c", &[3, 4])));
        // A lost compare-and-swap does not store its values.
        run(
            &mut state,
            Op::ListReplace {
                version: 0,
                items: vec![holding(b"d", &[5])],
            },
        );
        assert!(
            run(
                &mut state,
                Op::ListRemoveItem(crate::codec::Bytes(b"b".to_vec()))
            ) == Out::Copied
        );
        assert_eq!(run(&mut state, Op::ListPop), Out::Taken);
        assert_eq!(dropped, [1, 5, 2]);
        assert!(state.refs().is_empty());

        let t = ty(Kind::Value);
        let mut state = State::new(Kind::Value, Init::Value(holding(b"v", &[7]))).unwrap();
        let mut dropped = Vec::new();
        apply_now(
            &mut state,
            &t,
            Op::ValueSwap {
                version: 9,
                value: holding(b"w", &[8]),
            },
            &mut dropped,
        )
        .unwrap();
        apply_now(
            &mut state,
            &t,
            Op::ValueSet(holding(b"x", &[])),
            &mut dropped,
        )
        .unwrap();
        assert_eq!(dropped, [8, 7]);
    }
}
