//! Calling a worker in a child: its panic caught and turned into a message and a location,
//! and (for a `Process`) printed once on the child's stderr, as Python prints a child's
//! traceback. Used by the router's calls and by pool workers.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;

use super::identity::identity;
use crate::error::Error;
use crate::sys;

/// A caught panic: its message and `file:line:column`.
pub(crate) type PanicInfo = (String, Option<String>);

/// Whether a caught panic is also printed on this process's stderr.
#[derive(Clone, Copy)]
pub(crate) enum PanicReport {
    /// A `Process`'s worker: printed once, here, as Python prints a child's traceback (the
    /// parent gets the message and location as `Error::WorkerPanicked`).
    Print(&'static str),
    /// A pool task: only returned (Python's `Pool` re-raises in the caller and prints nothing
    /// in the worker; a map of many failing tasks would flood stderr).
    Quiet,
}

static LAST_PANIC: Mutex<Option<PanicInfo>> = Mutex::new(None);
thread_local! {
    /// The worker whose panic this thread prints (`PanicReport::Print`), if any.
    static REPORT: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Runs `f`, turning a panic into its message and location. The default hook's report is kept
/// for panics on other threads; on this thread `report` says whether it is printed.
pub(crate) fn catch_panic<R>(report: PanicReport, f: impl FnOnce() -> R) -> Result<R, PanicInfo> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        let worker_thread = std::thread::current().id();
        panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() != worker_thread {
                return default(info);
            }
            let message = payload_message(info.payload());
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            if let Some(worker) = REPORT.get() {
                print_panic(worker, &message, location.as_deref());
            }
            *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some((message, location));
        }));
    });
    REPORT.set(match report {
        PanicReport::Print(worker) => Some(worker),
        PanicReport::Quiet => None,
    });
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        LAST_PANIC
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| (payload_message(&*payload), None))
    })
}

/// A child's report of its worker's panic on its own stderr: who, where, what, and a backtrace
/// when `RUST_BACKTRACE` (or `RUST_LIB_BACKTRACE`) asks for one.
fn print_panic(worker: &str, message: &str, location: Option<&str>) {
    use std::backtrace::{Backtrace, BacktraceStatus};
    use std::io::Write;
    let me = identity();
    let at = location.map(|l| format!(" at {l}")).unwrap_or_default();
    let mut text = format!(
        "process `{}` (pid {}): worker `{worker}` panicked{at}:\n{message}\n",
        me.name,
        sys::getpid()
    );
    let backtrace = Backtrace::capture();
    match backtrace.status() {
        BacktraceStatus::Captured => text.push_str(&format!("stack backtrace:\n{backtrace}\n")),
        _ => text.push_str("note: run with `RUST_BACKTRACE=1` to display a backtrace\n"),
    }
    // One write: the report is not interleaved with other output of this process.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A panic payload as text: the message of `panic!`, or for `panic_any` the value and its type
/// where the type is a common one.
fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        return (*s).to_owned();
    }
    if let Some(s) = payload.downcast_ref::<String>() {
        return s.clone();
    }
    macro_rules! known {
        ($($t:ty),*) => {$(
            if let Some(v) = payload.downcast_ref::<$t>() {
                return format!("panic payload of type `{}`: {v:?}", stringify!($t));
            }
        )*};
    }
    known!(
        i8,
        i16,
        i32,
        i64,
        i128,
        isize,
        u8,
        u16,
        u32,
        u64,
        u128,
        usize,
        f32,
        f64,
        bool,
        char,
        Error,
        std::io::Error,
        Box<dyn std::error::Error + Send + Sync>
    );
    "panic payload of a type other than a string (`std::panic::panic_any` with a value that \
     is not `&str` or `String`)"
        .to_owned()
}
