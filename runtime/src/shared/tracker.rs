//! The resource tracker: one helper process per process tree (a program and every child `mp`
//! starts from it, at any depth) that removes the named segments a process leaves behind when
//! it dies, even by `SIGKILL` (Python's `resource_tracker`).
//!
//! The tree shares one name in the abstract socket namespace, chosen by its root and handed
//! down in each child's bootstrap. A process that creates its first named segment connects to
//! that name; if nobody listens, it binds the name itself and starts the tracker with the
//! listening socket (two processes racing for it: one bind wins, the other connects). Each
//! process writes `+name` / `-name` lines on its own connection, and the tracker removes a
//! process's names when that connection reaches end-of-file, then reports them on stderr. It
//! exits when no process is connected any more.
//!
//! A killed tracker is replaced: the next registration that finds the connection broken
//! starts a new one and registers again every name this process holds. Names that another
//! process registered with the dead tracker are registered again on that process's next
//! create, unlink or keep; until then its death would leave them behind. The tracker is
//! started with `SIGINT`, `SIGTERM` and `SIGHUP` ignored from its first instruction (the
//! dispositions survive `exec`), so a Ctrl-C aimed at the program cannot kill it before it
//! cleaned up.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::sys;
use crate::sys::net::{Endpoint, Listener};

/// Marks the tracker process: the listening socket's descriptor number.
pub(crate) const TRACKER_ENV: &str = "MP_RESOURCE_TRACKER";

/// How long a tracker waits for its first connection (its starter connects at once).
const FIRST_CONNECTION: Duration = Duration::from_secs(10);

/// The tree's tracker name: chosen by the root on first use, adopted from the bootstrap in a
/// child.
static TREE: OnceLock<String> = OnceLock::new();

/// This process's connection to the tracker, and the names it registered there.
static CLIENT: Mutex<Client> = Mutex::new(Client {
    conn: None,
    names: BTreeSet::new(),
});

struct Client {
    /// The connection and the tracker's pid (from its greeting).
    conn: Option<(UnixStream, u32)>,
    names: BTreeSet<String>,
}

/// The abstract socket name of this process tree's tracker.
pub(crate) fn tree_name() -> &'static str {
    TREE.get_or_init(|| {
        let mut nonce = [0u8; 8];
        let _ = sys::net::random_bytes(&mut nonce);
        let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        format!("mp-resource-tracker-{}-{nonce}", sys::getpid())
    })
}

/// Called in a child with the name its parent's tree uses.
pub(crate) fn adopt_tree_name(name: String) {
    let _ = TREE.set(name);
}

fn endpoint() -> Endpoint {
    Endpoint::UnixAbstract(tree_name().as_bytes().to_vec())
}

impl Client {
    /// Writes `line`, connecting (or starting the tracker) first when needed. A broken
    /// connection (the tracker was killed) is replaced once, with every held name sent again.
    fn send(&mut self, line: &str) -> Result<()> {
        let mut last = None;
        for _ in 0..2 {
            let fresh = self.conn.is_none();
            if fresh {
                self.conn = Some(connect_or_start()?);
            }
            let (conn, _) = self.conn.as_mut().expect("connected above");
            let mut text = String::new();
            if fresh {
                for name in &self.names {
                    text.push_str(&format!("+{name}\n"));
                }
            }
            text.push_str(line);
            match conn.write_all(text.as_bytes()) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.conn = None;
                    last = Some(e);
                }
            }
        }
        Err(Error::io("cannot reach the resource tracker")(
            last.expect("a failed attempt"),
        ))
    }
}

fn connect_or_start() -> Result<(UnixStream, u32)> {
    match connect() {
        Ok(conn) => Ok(conn),
        Err(_) => start(),
    }
}

/// Connects to the tree's tracker and waits for its greeting, its pid: a connection is
/// registered only once the tracker accepted it (one that was still queued when a tracker
/// exited is refused here, not lost with the names written on it).
fn connect() -> std::io::Result<(UnixStream, u32)> {
    let mut conn = UnixStream::from(sys::net::connect(&endpoint(), Duration::from_secs(5))?);
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut greeting = [0u8; 4];
    conn.read_exact(&mut greeting)?;
    conn.set_read_timeout(None)?;
    Ok((conn, u32::from_le_bytes(greeting)))
}

/// Binds the tree's name, starts the tracker on the listening socket, and connects to it.
fn start() -> Result<(UnixStream, u32)> {
    // Reading the hook keeps it (and its `.init_array` entry) in this binary.
    std::hint::black_box(&sys::CHILD_HOOK);
    let listener = match Listener::bind(&endpoint()) {
        Ok(listener) => listener,
        // Another process of the tree started it meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return connect().map_err(Error::io("cannot connect to the resource tracker"));
        }
        Err(e) => return Err(Error::io("cannot start the resource tracker")(e)),
    };
    let inherited = sys::dup_fd(listener.fd()).map_err(Error::io("cannot start the tracker"))?;
    let env = [(TRACKER_ENV, inherited.as_raw_fd().to_string())];
    let mut child = sys::spawn_self(
        "mp-resource-tracker",
        &[],
        &env,
        &[inherited.as_fd()],
        sys::SpawnOutput::Inherit,
        sys::Interrupts::Ignore,
    )
    .map_err(Error::io("cannot start the resource tracker"))?;
    drop(inherited);
    // Reap it whenever it exits, so it is never a zombie of this process.
    let _ = std::thread::Builder::new()
        .name("mp-tracker-reaper".into())
        .spawn(move || child.wait());
    // The listening socket is bound: this connection waits in its backlog until the tracker
    // accepts it, and nobody else can take the name while this process holds it.
    let conn = connect().map_err(Error::io("cannot connect to the resource tracker"));
    drop(listener);
    conn
}

fn client() -> std::sync::MutexGuard<'static, Client> {
    CLIENT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers a segment name this process created and must remove.
pub(crate) fn register(name: &str) -> Result<()> {
    let mut client = client();
    let sent = client.send(&format!("+{name}\n"));
    if sent.is_ok() {
        client.names.insert(name.to_owned());
    }
    sent
}

/// Removes a name from the tracker's list (it was unlinked, or is kept on purpose).
pub(crate) fn unregister(name: &str) {
    let mut client = client();
    if client.names.remove(name) {
        let _ = client.send(&format!("-{name}\n"));
    }
}

/// The pid of the tracker this process is connected to, if it is connected.
pub(crate) fn tracker_pid() -> Option<u32> {
    client().conn.as_ref().map(|&(_, pid)| pid)
}

/// One connected process, as the tracker sees it.
struct Tracked {
    conn: UnixStream,
    pid: Option<u32>,
    partial: Vec<u8>,
    names: BTreeSet<String>,
}

/// The tracker's main loop, run by the pre-`main` hook in a process started by [`start`].
pub(crate) fn run(spec: &str) -> i32 {
    // Started with these ignored already (`sys::Interrupts::Ignore`); this is for a tracker
    // started some other way.
    sys::ignore_interrupts();
    let Some(fd) = spec.parse().ok().and_then(sys::adopt_inherited_fd) else {
        crate::logging::report_failure(format_args!("malformed {TRACKER_ENV}={spec:?}"));
        return crate::error::CHILD_FAILED;
    };
    serve(Listener::from_fd(fd, false));
    0
}

fn serve(listener: Listener) {
    let mut clients: Vec<Tracked> = Vec::new();
    let mut had_client = false;
    let mut ready = Vec::new();
    loop {
        let timeout = match (clients.is_empty(), had_client) {
            (false, _) => None,
            // The last process left: exit unless one is connecting right now.
            (true, true) => Some(Duration::ZERO),
            (true, false) => Some(FIRST_CONNECTION),
        };
        let mut fds = vec![listener.fd()];
        fds.extend(clients.iter().map(|c| c.conn.as_fd()));
        if sys::poll_many(&fds, timeout, &mut ready).is_err() {
            break;
        }
        if ready.is_empty() && clients.is_empty() {
            break;
        }
        let mut gone = Vec::new();
        for &i in &ready {
            if i == 0 {
                if let Ok((fd, _)) = listener.accept() {
                    let mut conn = UnixStream::from(fd);
                    // The greeting: this connection is served, by this pid (four bytes into an
                    // empty socket buffer do not block).
                    if conn.write_all(&sys::getpid().to_le_bytes()).is_err() {
                        continue;
                    }
                    let pid = sys::peer_pid(conn.as_fd()).ok();
                    had_client = true;
                    clients.push(Tracked {
                        conn,
                        pid,
                        partial: Vec::new(),
                        names: BTreeSet::new(),
                    });
                }
            } else if !read_lines(&mut clients[i - 1]) {
                gone.push(i - 1);
            }
        }
        for i in gone.into_iter().rev() {
            clean_up(clients.swap_remove(i));
        }
    }
    for client in clients {
        clean_up(client);
    }
}

/// Reads what `client` sent; `false` at end-of-file (the process is gone).
fn read_lines(client: &mut Tracked) -> bool {
    let mut buf = [0u8; 4096];
    let n = match client.conn.read(&mut buf) {
        Ok(0) => return false,
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return true,
        Err(_) => return false,
    };
    client.partial.extend_from_slice(&buf[..n]);
    while let Some(end) = client.partial.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = client.partial.drain(..=end).collect();
        let line = String::from_utf8_lossy(&line[..end]);
        if let Some(name) = line.strip_prefix('+') {
            client.names.insert(name.to_owned());
        } else if let Some(name) = line.strip_prefix('-') {
            client.names.remove(name);
        }
    }
    true
}

/// Removes every name a gone process still held, and says which, with a count.
fn clean_up(client: Tracked) {
    let removed: Vec<String> = client
        .names
        .into_iter()
        .filter(|name| sys::shm_unlink(name).is_ok())
        .collect();
    if removed.is_empty() {
        return;
    }
    let who = client
        .pid
        .map_or_else(|| "a process".to_owned(), |pid| format!("process {pid}"));
    let what = match removed.len() {
        1 => "1 shared memory segment".to_owned(),
        n => format!("{n} shared memory segments"),
    };
    let names: Vec<String> = removed.iter().map(|n| format!("{n:?}")).collect();
    crate::logging::report_warning(format_args!(
        "resource tracker: {who} ended without removing {what}; removed {}",
        names.join(", ")
    ));
}
