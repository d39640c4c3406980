//! The manager server's sessions: handshakes run by the listener's gate on the accepting
//! thread (`connection/gate.rs`: bounded in number and time), then one thread per
//! authenticated connection, which attaches to one object and applies operations to it
//! (waiting on the server, while watching its client, for those that wait), and moves the
//! references values carry in and out (`README.md`, "Proxies inside stored values").
//! Object lifetime is `store.rs`'s; what an operation does is its kind's (`list.rs`, …):
//! nothing here knows a particular kind.

mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::kinds::{Init, Op};
use super::object::{Out, Pending};
use super::protocol::{Blob, Envelope, Reply, Request, Response, Wait, spin_toward};
use crate::connection::Listener;
use crate::connection::gate::Event;
use crate::error::{Error, Result};
use crate::sys;
use crate::wire::Channel;
use store::{Object, Store};

/// How often a blocked operation checks that its client is still there.
const WATCH_CLIENT: Duration = Duration::from_millis(100);
/// Connections beyond this are closed at once (each costs a thread).
const MAX_CONNECTIONS: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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

/// One connection's view: the object it is attached to.
struct Session {
    conn: u64,
    peer: String,
    attached: Option<(u64, Arc<Object>)>,
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
        let objects = lock(&self.store).len();
        self.close_all();
        // The count `Manager::object_count` reports: objects a leak (a cycle) kept are here.
        tracing::info!(target: "mp", "manager stopped; it held {objects} shared objects");
        Ok(())
    }

    /// Stops the accept loop and wakes every blocked operation.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake.notify();
        // Collected first: an object's state is never locked under the store's lock (a read
        // that hands out references locks the store under an object's state).
        let objects = lock(&self.store).objects();
        for object in objects {
            let _guard = lock(&object.contents);
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
            let (client_cpu, request) = match channel
                .recv_frame(None)
                .and_then(|f| f.decode::<Envelope<Request<Op, Init>>>())
            {
                Ok(Envelope { cpu, body }) => (cpu, body),
                Err(Error::Disconnected) => return,
                Err(e) => {
                    // Garbage, an oversized frame, a request of another version: say so and
                    // close this connection; the others are not affected.
                    tracing::warn!(target: "mp", "manager: dropping {}: {e}", s.peer);
                    let _ = channel.send(&Envelope {
                        cpu: sys::current_cpu(),
                        body: Err::<Reply, _>(e),
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
            let answer = Envelope {
                cpu: sys::current_cpu(),
                body: response,
            };
            channel.set_spin(spin_toward(client_cpu));
            // Whether the answer itself reached the client.
            let delivered = match channel.send(&answer) {
                Ok(()) => Ok(true),
                // Too large to send (a snapshot of a huge list): nothing was written, so the
                // client gets the error instead.
                Err(e @ (Error::TooLarge { .. } | Error::Encode(_))) => channel
                    .send(&Envelope {
                        cpu: answer.cpu,
                        body: Err::<Reply, _>(e),
                    })
                    .map(|()| false),
                Err(e) => Err(e),
            };
            if !matches!(delivered, Ok(true)) {
                self.undelivered(s, answer.body, took);
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
        if let Some((_, object)) = &s.attached {
            let mut contents = lock(&object.contents);
            if contents.release_held_by(s.conn) {
                tracing::warn!(target: "mp", "manager: {} vanished holding a {}", s.peer, object.ty.kind);
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
    fn undelivered(&self, s: &Session, mut response: Response, took: bool) {
        if took && let (Ok(Reply::Blobs(items)), Some((_, object))) = (&response, &s.attached) {
            self.requeue(object, items.clone());
            return;
        }
        let Ok(reply) = &mut response else {
            return;
        };
        let mut tokens = Vec::new();
        reply.for_each_blob(|b| tokens.append(&mut b.refs.take()));
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
        lock(&object.contents).put_back(items);
        object.notify();
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
                work.append(&mut lock(&object.contents).take_refs());
            }
        }
    }

    /// Frees an object that lost its last reference: drops what its values referred to.
    fn free(&self, freed: Option<Arc<Object>>) {
        if let Some(object) = freed {
            let refs = lock(&object.contents).take_refs();
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
            for r in b.refs.iter_mut() {
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
        request: Request<Op, Init>,
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
                objects: lock(&self.store).len() as u64,
            },
            Request::Shutdown => Reply::Done,
            Request::Op(op) => {
                let object = attached(s)?.1.clone();
                return self.apply(s.conn, channel, &object, op);
            }
        };
        Ok((reply, false))
    }

    /// Applies `op` to `object` for connection `conn`, holding the references the values it
    /// stores carry (dropped again if it stores nothing).
    fn apply(
        &self,
        conn: u64,
        channel: &Channel,
        object: &Arc<Object>,
        op: Op,
    ) -> Result<(Reply, bool)> {
        let incoming = op.incoming();
        if !incoming.is_empty() {
            lock(&self.store).hold(&incoming)?;
        }
        let mut dropped = Vec::new();
        match self.apply_held(conn, channel, object, op, &mut dropped) {
            Ok(applied) => {
                self.drop_refs(dropped);
                Ok(applied)
            }
            Err(e) => {
                // Nothing was stored.
                self.drop_refs(incoming);
                Err(e)
            }
        }
    }

    /// Waits while the operation must, then applies it with the object's contents locked
    /// and turns the references in its reply into the client's tokens; also returns whether
    /// the reply holds items taken out of the object, to put back if it is not delivered.
    fn apply_held(
        &self,
        conn: u64,
        channel: &Channel,
        object: &Object,
        op: Op,
        dropped: &mut Vec<u64>,
    ) -> Result<(Reply, bool)> {
        let mut deadline = None;
        let mut contents = lock(&object.contents);
        while let Some(pending) = contents.must_wait(&object.ty, &op, conn)? {
            let Pending {
                wait,
                busy,
                expired,
                poll,
            } = pending;
            let slice = match wait {
                Wait::No => return busy.map(|r| (r, false)),
                Wait::For(d) => {
                    let deadline = *deadline.get_or_insert_with(|| Instant::now() + d);
                    match deadline.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => left.min(WATCH_CLIENT),
                        _ => return expired.map(|r| (r, false)),
                    }
                }
                Wait::Forever => WATCH_CLIENT,
            };
            let slice = poll.map_or(slice, |p| slice.min(p));
            object.waiters.fetch_add(1, Ordering::Relaxed);
            contents = object
                .changed
                .wait_timeout(contents, slice)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            object.waiters.fetch_sub(1, Ordering::Relaxed);
            // A client waiting for its answer sends nothing: readable means it is gone.
            if self.stopping.load(Ordering::Acquire) || sys::net::peer_closed_or_sent(channel.fd())
            {
                return Err(Error::Disconnected);
            }
        }
        let (mut reply, out) = contents.apply(&object.ty, op, conn, dropped)?;
        self.hand_out(&mut reply, out == Out::Copied);
        object.notify();
        Ok((reply, out == Out::Dequeued))
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
