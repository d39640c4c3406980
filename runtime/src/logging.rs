//! Logging in Python's style (`log_to_stderr`, `get_logger`), built on `tracing`: records are
//! tagged `[LEVEL/process-name pid]`, and children inherit the level chosen in the parent.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub use tracing::Level;

/// 0: not enabled; otherwise the level's code (1 = ERROR ... 5 = TRACE).
static LEVEL: AtomicU8 = AtomicU8::new(0);

fn code_of(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn level_of(code: u8) -> Option<Level> {
    Some(match code {
        1 => Level::ERROR,
        2 => Level::WARN,
        3 => Level::INFO,
        4 => Level::DEBUG,
        5 => Level::TRACE,
        _ => return None,
    })
}

/// Sends log records of `level` and above to stderr, in this process and in every child it
/// starts afterwards (Python's `multiprocessing.log_to_stderr(level)`).
///
/// Records look like `[INFO/Process-1 4242] message`. If the program already installed a
/// `tracing` subscriber, that one keeps receiving the records instead.
///
/// ```
/// let logger = mp::log_to_stderr(mp::Level::INFO);
/// logger.info("ready");
/// ```
pub fn log_to_stderr(level: Level) -> Logger {
    LEVEL.store(code_of(level), Ordering::Relaxed);
    install(level);
    Logger { _private: () }
}

fn install(level: Level) {
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .event_format(PythonStyle)
        .try_init();
}

pub(crate) fn level_code() -> Option<u8> {
    match LEVEL.load(Ordering::Relaxed) {
        0 => None,
        code => Some(code),
    }
}

pub(crate) fn install_from_code(code: Option<u8>) {
    if let Some(level) = code.and_then(level_of) {
        LEVEL.store(code_of(level), Ordering::Relaxed);
        install(level);
    }
}

/// The `mp` logger (Python's `multiprocessing.get_logger()`): records go to `tracing` with the
/// target `mp`, so [`log_to_stderr`] or any subscriber of yours shows them.
///
/// ```
/// mp::get_logger().info(format!("process {} is running", mp::current_process().name()));
/// ```
pub fn get_logger() -> Logger {
    Logger { _private: () }
}

/// Emits records with the target `mp`; see [`get_logger`].
#[derive(Debug, Clone, Copy)]
pub struct Logger {
    _private: (),
}

impl Logger {
    /// A `DEBUG` record.
    pub fn debug(&self, message: impl fmt::Display) {
        tracing::debug!(target: "mp", "{message}");
    }
    /// An `INFO` record.
    pub fn info(&self, message: impl fmt::Display) {
        tracing::info!(target: "mp", "{message}");
    }
    /// A `WARN` record (Python's `warning`).
    #[doc(alias = "warn")]
    pub fn warning(&self, message: impl fmt::Display) {
        tracing::warn!(target: "mp", "{message}");
    }
    /// An `ERROR` record.
    pub fn error(&self, message: impl fmt::Display) {
        tracing::error!(target: "mp", "{message}");
    }
}

struct PythonStyle;

impl<S, N> FormatEvent<S, N> for PythonStyle
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let me = crate::current_process();
        write!(
            writer,
            "[{}/{} {}] ",
            event.metadata().level(),
            me.name(),
            me.pid()
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
