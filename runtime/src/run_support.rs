//! What `cargo mp run` asks of a program, through two environment variables that children
//! inherit: `MP_PREFIX_OUTPUT` (every child's stdout and stderr lines prefixed with its name,
//! forwarded by threads of its parent) and `MP_RUN_LOG` (a file that gets a line per process
//! started, `start <pid> <name>`, per child reaped, `exit <pid> <code>` (Python's exit code
//! convention, `-N` for signal `N`), and per process that ends through `mp` (a worker that
//! returns, `main` under `mp::main!`; not one that calls `process::exit` itself or is killed),
//! `peak <pid> <KiB>`, its peak resident memory). Without them nothing here does anything.

use crate::sys::Child;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::ExitStatus;

/// Set by `cargo mp run`: prefix children's output with their names.
pub(crate) const PREFIX_ENV: &str = "MP_PREFIX_OUTPUT";
/// Set by `cargo mp run`: where processes are logged.
pub(crate) const LOG_ENV: &str = "MP_RUN_LOG";

/// Whether children's output is to be prefixed.
pub(crate) fn prefix_output() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os(PREFIX_ENV).is_some_and(|v| v != "0"))
}

/// The run log, when `cargo mp run` asked for one.
fn log_file() -> Option<&'static Mutex<std::fs::File>> {
    static LOG: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let path = std::env::var_os(LOG_ENV)?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .ok()?;
        Some(Mutex::new(file))
    })
    .as_ref()
}

/// Appends one line, built only when there is a log to write to.
fn log_line(line: impl FnOnce() -> String) {
    if let Some(file) = log_file() {
        let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
        // One short `write` in append mode: lines from several processes do not interleave.
        let _ = file.write_all(line().as_bytes());
    }
}

/// Logs a child that was started.
pub(crate) fn record_start(pid: u32, name: &str) {
    log_line(|| format!("start {pid} {}\n", name.replace(char::is_whitespace, "_")));
}

/// Logs a rank of an MPI job (rank 0 logs each as it connects): `rank <rank> <host>`.
#[cfg(feature = "mpi")]
pub(crate) fn record_rank(rank: u32, host: &str) {
    log_line(|| format!("rank {rank} {}\n", host.replace(char::is_whitespace, "_")));
}

/// Logs an MPI rank whose connection was lost: `lost <rank> <host>`.
#[cfg(feature = "mpi")]
pub(crate) fn record_lost(rank: u32, host: &str) {
    log_line(|| format!("lost {rank} {}\n", host.replace(char::is_whitespace, "_")));
}

/// Logs a child that was reaped.
pub(crate) fn record_exit(pid: u32, status: ExitStatus) {
    log_line(|| format!("exit {pid} {}\n", status.code()));
}

/// Logs this process's peak resident memory (called as it ends).
pub(crate) fn record_peak() {
    if log_file().is_some()
        && let Some(kib) = crate::sys::peak_rss_kib()
    {
        log_line(|| format!("peak {} {kib}\n", crate::sys::getpid()));
    }
}

/// Threads forwarding children's output, joined (briefly) when `main` returns.
static FORWARDERS: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

/// Forwards `child`'s piped stdout and stderr to ours, each line prefixed with `[name] `.
pub(crate) fn forward_output(child: &mut Child, name: &str) {
    let prefix = format!("[{name}] ");
    let mut threads = Vec::new();
    if let Some(out) = child.stdout.take() {
        threads.push(spawn_forwarder(out, prefix.clone(), false));
    }
    if let Some(err) = child.stderr.take() {
        threads.push(spawn_forwarder(err, prefix, true));
    }
    let mut all = FORWARDERS.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|t| !t.is_finished());
    all.extend(threads.into_iter().flatten());
}

fn spawn_forwarder(
    stream: impl Read + Send + 'static,
    prefix: String,
    to_stderr: bool,
) -> Option<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("mp-output".into())
        .spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                let mut out: Box<dyn Write> = if to_stderr {
                    Box::new(std::io::stderr().lock())
                } else {
                    Box::new(std::io::stdout().lock())
                };
                let _ = out.write_all(prefix.as_bytes());
                let _ = out.write_all(&line);
                let _ = out.flush();
            }
        })
        .ok()
}

/// Lets the forwarders print what the children wrote last (at most a second in all).
pub(crate) fn drain_output() {
    let threads = std::mem::take(&mut *FORWARDERS.lock().unwrap_or_else(|e| e.into_inner()));
    let deadline = Instant::now() + Duration::from_secs(1);
    for t in threads {
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
}
