//! Logging in Python's style (`log_to_stderr`, `get_logger`), built on `tracing`: records are
//! tagged `[LEVEL/process-name pid]`, the level can be read and changed at any time, and
//! children inherit the level in force in the parent (also one set by the program's own
//! `tracing` subscriber).

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
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
    install();
    Logger { _private: () }
}

/// Installs the stderr subscriber (once); it shows the records at or above the level in
/// force, read at each record, so [`Logger::set_level`] takes effect at once.
fn install() {
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .event_format(PythonStyle)
        .with_filter(filter_fn(|meta| {
            level_of(LEVEL.load(Ordering::Relaxed)).is_some_and(|level| *meta.level() <= level)
        }));
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
}

/// The level a child starts with: the one set through `mp`, or else the most verbose level
/// the program's own `tracing` subscriber records, if it installed one.
pub(crate) fn level_code() -> Option<u8> {
    match LEVEL.load(Ordering::Relaxed) {
        0 if tracing::dispatcher::has_been_set() => tracing::level_filters::LevelFilter::current()
            .into_level()
            .map(code_of),
        0 => None,
        code => Some(code),
    }
}

/// Reports a failure `mp` itself meets in a child (a malformed bootstrap, a worker that lost
/// its pool): an error record with the target `mp`, like every other `mp` record, and the same
/// line on stderr when no subscriber would record it (a child of a program that enabled no
/// logging), so the failure is never silent.
pub(crate) fn report_failure(message: std::fmt::Arguments<'_>) {
    if tracing::enabled!(target: "mp", tracing::Level::ERROR) {
        tracing::error!(target: "mp", "{message}");
    } else {
        eprintln!("mp: {message}");
    }
}

/// [`report_failure`] for what `mp` repaired but the user should know (a warning record).
pub(crate) fn report_warning(message: std::fmt::Arguments<'_>) {
    if tracing::enabled!(target: "mp", tracing::Level::WARN) {
        tracing::warn!(target: "mp", "{message}");
    } else {
        eprintln!("mp: {message}");
    }
}

pub(crate) fn install_from_code(code: Option<u8>) {
    if let Some(level) = code.and_then(level_of) {
        LEVEL.store(code_of(level), Ordering::Relaxed);
        install();
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
    /// The level records must reach to be shown by [`log_to_stderr`]'s output (Python's
    /// `logger.level`); `None` until a level is set.
    ///
    /// ```
    /// let logger = mp::log_to_stderr(mp::Level::WARN);
    /// assert_eq!(logger.level(), Some(mp::Level::WARN));
    /// logger.set_level(mp::Level::DEBUG);
    /// assert_eq!(mp::get_logger().level(), Some(mp::Level::DEBUG));
    /// ```
    pub fn level(&self) -> Option<Level> {
        level_of(LEVEL.load(Ordering::Relaxed))
    }

    /// Changes the level (Python's `logger.setLevel`), at once for this process and for the
    /// children it starts afterwards; starts the stderr output if it was not on.
    pub fn set_level(&self, level: Level) {
        LEVEL.store(code_of(level), Ordering::Relaxed);
        install();
    }

    /// A `DEBUG` record. Records carry the caller's `file:line` in their `caller` field.
    #[track_caller]
    pub fn debug(&self, message: impl fmt::Display) {
        let caller = caller();
        tracing::debug!(target: "mp", caller, "{message}");
    }
    /// An `INFO` record.
    #[track_caller]
    pub fn info(&self, message: impl fmt::Display) {
        let caller = caller();
        tracing::info!(target: "mp", caller, "{message}");
    }
    /// A `WARN` record (Python's `warning`).
    #[track_caller]
    pub fn warning(&self, message: impl fmt::Display) {
        let caller = caller();
        tracing::warn!(target: "mp", caller, "{message}");
    }
    /// A `WARN` record: [`warning`](Logger::warning) under the name `tracing` and `log` use.
    #[track_caller]
    pub fn warn(&self, message: impl fmt::Display) {
        let caller = caller();
        tracing::warn!(target: "mp", caller, "{message}");
    }
    /// An `ERROR` record.
    #[track_caller]
    pub fn error(&self, message: impl fmt::Display) {
        let caller = caller();
        tracing::error!(target: "mp", caller, "{message}");
    }
}

/// `file:line` of the code that called a `Logger` method.
#[track_caller]
fn caller() -> String {
    let at = std::panic::Location::caller();
    format!("{}:{}", at.file(), at.line())
}

struct PythonStyle;

impl<S, N> FormatEvent<S, N> for PythonStyle
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
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
        let mut fields = Fields::default();
        event.record(&mut fields);
        write!(writer, "{}", fields.message)?;
        for (name, value) in &fields.others {
            write!(writer, " {name}={value}")?;
        }
        writeln!(writer)
    }
}

/// An event's fields as Python's format shows them: the message, then any other field but the
/// caller's location (which `tracing`'s own formats show).
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(&'static str, String)>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "caller" => {}
            name => self.others.push((name, format!("{value:?}"))),
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "caller" => {}
            name => self.others.push((name, format!("{value:?}"))),
        }
    }
}
