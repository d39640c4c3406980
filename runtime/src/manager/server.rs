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
    Answer, Blob, Call, Holder, Init, Kind, Op, Reply, Request, Type, Wait, spin_toward,
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
        map: IndexMap<Blob, (Blob, u64)>,
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
    /// Attached connections plus outstanding tokens.
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
        let entry = self.objects.get_mut(&id).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "shared object #{id} no longer exists (every proxy to it was dropped)"
            ))
        })?;
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

    fn unref(&mut self, id: u64) {
        if let Some(entry) = self.objects.get_mut(&id) {
            entry.refs = entry.refs.saturating_sub(1);
            if entry.refs == 0 && !entry.named {
                self.objects.remove(&id);
            }
        }
    }

    fn release(&mut self, token: u64) {
        if let Some(id) = self.tokens.remove(&token) {
            self.unref(id);
        }
    }
}

/// A manager server. Runs in its own process (a [`Manager`](crate::Manager)'s child) or in
/// the caller's ([`ManagerServer`](crate::ManagerServer)).
pub(crate) struct Server {
    listener: Listener,
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
        Ok(Arc::new(Server {
            listener,
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
        for entry in lock(&self.store).objects.values() {
            let _guard = lock(&entry.object.state);
            entry.object.changed.notify_all();
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
            if took && !matches!(delivered, Ok(true)) {
                // Queue items that did not reach the client go back to the front, in order.
                if let (Ok(Reply::Blobs(items)), Some((_, object))) = (answer.response, &s.attached)
                {
                    requeue(object, items);
                }
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
            lock(&self.store).unref(id);
        }
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
                Reply::Created { id }
            }
            Request::Attach { id, ty, token } => {
                check_detached(s)?;
                let object = lock(&self.store).attach(id, &ty, token)?;
                s.attached = Some((id, object));
                Reply::Created { id }
            }
            Request::Share => {
                let (id, _) = attached(s)?;
                Reply::Token(lock(&self.store).share(*id)?)
            }
            Request::Release { token } => {
                lock(&self.store).release(token);
                Reply::Done
            }
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
        let reply = match op {
            Op::QueuePut { items, wait } => queue_put(&waiter, items, wait)?,
            Op::QueueTake { max, wait } => {
                return Ok((Reply::Blobs(queue_take(&waiter, max, wait)?), true));
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
                let mut state = lock(&object.state);
                let reply = apply_now(&mut state, &object.ty, op)?;
                object.notify();
                reply
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

fn requeue(object: &Object, items: Vec<Blob>) {
    if let State::Queue { items: queue, .. } = &mut *lock(&object.state) {
        for item in items.into_iter().rev() {
            queue.push_front(item);
        }
        object.notify();
    }
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

/// Applies a non-blocking operation.
fn apply_now(state: &mut State, ty: &Type, op: Op) -> Result<Reply> {
    Ok(match (state, op) {
        (State::List { items, .. }, Op::Len) => Reply::Len(items.len() as u64),
        (State::Dict { map, .. }, Op::Len) => Reply::Len(map.len() as u64),
        (State::Queue { items, .. }, Op::Len) => Reply::Len(items.len() as u64),

        (State::List { items, version }, op) => {
            let reply = match op {
                Op::ListGet(i) => {
                    return Ok(Reply::MaybeBlob(
                        usize::try_from(i).ok().and_then(|i| items.get(i)).cloned(),
                    ));
                }
                Op::ListSnapshot => {
                    return Ok(Reply::Items {
                        items: items.clone(),
                        version: *version,
                    });
                }
                Op::ListPush(item) => {
                    items.push(item);
                    Reply::Done
                }
                Op::ListExtend(more) => {
                    items.extend(more);
                    Reply::Done
                }
                Op::ListSet(i, item) => {
                    let i = index(i, items.len())?;
                    items[i] = item;
                    Reply::Done
                }
                Op::ListInsert(i, item) => {
                    let at = index(i, items.len() + 1)?;
                    items.insert(at, item);
                    Reply::Done
                }
                Op::ListRemoveAt(i) => {
                    let i = index(i, items.len())?;
                    Reply::Blob(items.remove(i))
                }
                Op::ListPop => Reply::MaybeBlob(items.pop()),
                Op::ListRemoveItem(item) => match items.iter().position(|x| *x == item) {
                    Some(i) => {
                        items.remove(i);
                        Reply::Bool(true)
                    }
                    None => return Ok(Reply::Bool(false)),
                },
                Op::Clear => {
                    items.clear();
                    Reply::Done
                }
                Op::ListReplace {
                    version: expected,
                    items: new,
                } => {
                    if expected != *version {
                        return Ok(Reply::Items {
                            items: items.clone(),
                            version: *version,
                        });
                    }
                    *items = new;
                    Reply::Swapped
                }
                _ => return Err(wrong_kind(ty)),
            };
            *version += 1;
            reply
        }

        (State::Dict { map, clock }, op) => {
            let version_of =
                |map: &IndexMap<Blob, (Blob, u64)>, key: &Blob| map.get(key).map_or(0, |(_, v)| *v);
            match op {
                Op::DictGet(key) => Reply::MaybeBlob(map.get(&key).map(|(v, _)| v.clone())),
                Op::DictGetMany(keys) => Reply::MaybeBlobs(
                    keys.iter()
                        .map(|k| map.get(k).map(|(v, _)| v.clone()))
                        .collect(),
                ),
                Op::DictContains(key) => Reply::Bool(map.contains_key(&key)),
                Op::DictKeys => Reply::Blobs(map.keys().cloned().collect()),
                Op::DictValues => Reply::Blobs(map.values().map(|(v, _)| v.clone()).collect()),
                Op::DictItems => Reply::Pairs(
                    map.iter()
                        .map(|(k, (v, _))| (k.clone(), v.clone()))
                        .collect(),
                ),
                Op::DictEntry(key) => Reply::Entry {
                    value: map.get(&key).map(|(v, _)| v.clone()),
                    version: version_of(map, &key),
                },
                Op::DictInsert(key, value) => {
                    *clock += 1;
                    Reply::MaybeBlob(map.insert(key, (value, *clock)).map(|(v, _)| v))
                }
                Op::DictRemove(key) => {
                    *clock += 1;
                    Reply::MaybeBlob(map.shift_remove(&key).map(|(v, _)| v))
                }
                Op::DictUpdate(pairs) => {
                    *clock += 1;
                    for (k, v) in pairs {
                        map.insert(k, (v, *clock));
                    }
                    Reply::Done
                }
                Op::Clear => {
                    *clock += 1;
                    map.clear();
                    Reply::Done
                }
                Op::DictSwap {
                    key,
                    version,
                    value,
                } => {
                    let current = version_of(map, &key);
                    if current != version {
                        return Ok(Reply::Entry {
                            value: map.get(&key).map(|(v, _)| v.clone()),
                            version: current,
                        });
                    }
                    *clock += 1;
                    match value {
                        Some(v) => {
                            map.insert(key, (v, *clock));
                        }
                        None => {
                            map.shift_remove(&key);
                        }
                    }
                    Reply::Swapped
                }
                _ => return Err(wrong_kind(ty)),
            }
        }

        (State::Value { value, version }, op) => match op {
            Op::ValueGet => Reply::Entry {
                value: Some(value.clone()),
                version: *version,
            },
            Op::ValueSet(new) => {
                *value = new;
                *version += 1;
                Reply::Done
            }
            Op::ValueSwap {
                version: expected,
                value: new,
            } => {
                if expected != *version {
                    return Ok(Reply::Entry {
                        value: Some(value.clone()),
                        version: *version,
                    });
                }
                *value = new;
                *version += 1;
                Reply::Swapped
            }
            _ => return Err(wrong_kind(ty)),
        },

        (State::Lock { holder, .. }, Op::LockIsLocked) => Reply::Bool(holder.is_some()),
        (State::Lock { holder, .. }, Op::LockRelease { holder: me }) => match holder {
            Some((h, _)) if *h == me => {
                *holder = None;
                Reply::Done
            }
            _ => {
                return Err(Error::InvalidArgument(
                    "release of a manager lock that this thread does not hold".to_owned(),
                ));
            }
        },

        (State::Event { set }, Op::EventSet) => {
            *set = true;
            Reply::Done
        }
        (State::Event { set }, Op::EventClear) => {
            *set = false;
            Reply::Done
        }
        (State::Event { set }, Op::EventIsSet) => Reply::Bool(*set),

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
        crate::codec::Bytes(b.to_vec())
    }

    #[test]
    fn objects_live_while_referenced() {
        let mut store = Store::default();
        let (id, _) = store.create(ty(Kind::List), None, Init::Empty).unwrap();
        let token = store.share(id).unwrap();
        store.unref(id); // the creating connection closes
        assert!(store.objects.contains_key(&id), "the token keeps it");
        store.attach(id, &ty(Kind::List), Some(token)).unwrap();
        assert!(store.tokens.is_empty());
        store.unref(id);
        assert!(!store.objects.contains_key(&id), "last reference gone");
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
        store.unref(b); // b's creator goes; its token still keeps it
        assert!(store.objects.contains_key(&b));
        store.release(token_b);
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
        store.unref(a);
        store.unref(a);
        assert!(store.objects.contains_key(&a), "named objects stay");
    }

    #[test]
    fn compare_and_swap_detects_races() {
        let t = ty(Kind::Dict);
        let mut state = State::new(Kind::Dict, Init::Empty).unwrap();
        let Reply::Entry {
            value: None,
            version: 0,
        } = apply_now(&mut state, &t, Op::DictEntry(blob(b"k"))).unwrap()
        else {
            panic!()
        };
        let swap = |version, v: &[u8]| Op::DictSwap {
            key: blob(b"k"),
            version,
            value: Some(blob(v)),
        };
        assert!(matches!(
            apply_now(&mut state, &t, swap(0, b"1")).unwrap(),
            Reply::Swapped
        ));
        // A second writer that read "absent" loses and is told the current entry.
        let Reply::Entry {
            value: Some(v),
            version,
        } = apply_now(&mut state, &t, swap(0, b"2")).unwrap()
        else {
            panic!()
        };
        assert_eq!(&v[..], b"1");
        assert!(matches!(
            apply_now(&mut state, &t, swap(version, b"2")).unwrap(),
            Reply::Swapped
        ));
    }

    #[test]
    fn list_operations_and_range_errors() {
        let t = ty(Kind::List);
        let mut state = State::new(Kind::List, Init::List(vec![blob(b"a")])).unwrap();
        apply_now(&mut state, &t, Op::ListInsert(1, blob(b"b"))).unwrap();
        assert!(matches!(
            apply_now(&mut state, &t, Op::ListInsert(5, blob(b"x"))),
            Err(Error::OutOfRange { index: 5, len: 3 })
        ));
        assert!(matches!(
            apply_now(&mut state, &t, Op::ListSet(2, blob(b"x"))),
            Err(Error::OutOfRange { index: 2, len: 2 })
        ));
        assert!(matches!(
            apply_now(&mut state, &t, Op::EventSet),
            Err(Error::InvalidArgument(_))
        ));
        let Reply::Blob(b) = apply_now(&mut state, &t, Op::ListRemoveAt(0)).unwrap() else {
            panic!()
        };
        assert_eq!(&b[..], b"a");
    }
}
