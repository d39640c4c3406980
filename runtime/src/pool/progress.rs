//! The opt-in progress bar of long `map`/`imap` calls: drawn on stderr, and only when stderr
//! is a terminal, so logs and CI output stay clean.

use std::fmt::Write as _;
use std::io::IsTerminal;

/// A progress bar, or nothing when it is off.
pub(crate) struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    /// A bar over `total` tasks (`None`: unknown, a spinner with a count) when `enabled` and
    /// stderr is a terminal.
    pub(crate) fn new(enabled: bool, total: Option<usize>) -> Progress {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = match total {
            Some(n) => indicatif::ProgressBar::new(n as u64).with_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} tasks [{elapsed_precise} < {eta_precise}] {rate}",
                )
                .map(with_rate)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            ),
            None => indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {pos} tasks [{elapsed_precise}] {rate}",
                )
                .map(with_rate)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            ),
        };
        Progress(Some(bar))
    }

    pub(crate) fn off() -> Progress {
        Progress(None)
    }

    /// Counts `n` finished tasks.
    pub(crate) fn inc(&self, n: usize) {
        if let Some(bar) = &self.0 {
            bar.inc(n as u64);
        }
    }
}

/// The `{rate}` key: tasks per second, rounded (`{per_sec}` prints `1234.5678/s`).
fn with_rate(style: indicatif::ProgressStyle) -> indicatif::ProgressStyle {
    style.with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&rate(state.per_sec()));
        },
    )
}

/// A rate rounded to three significant digits, whole numbers from 100 up: `1235/s`,
/// `12.3/s`, `1.23/s`, `0.004/s` (slow tasks); `0/s` before the first task ends.
fn rate(per_sec: f64) -> String {
    let mut out = String::new();
    let _ = match per_sec {
        r if !r.is_finite() || r <= 0.0 => write!(out, "0/s"),
        r if r >= 99.5 => write!(out, "{r:.0}/s"),
        r if r >= 9.995 => write!(out, "{r:.1}/s"),
        r if r >= 0.9995 => write!(out, "{r:.2}/s"),
        r => write!(out, "{r:.3}/s"),
    };
    out
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rate;

    #[test]
    fn the_rate_is_rounded() {
        assert_eq!(rate(1234.5678), "1235/s");
        assert_eq!(rate(99.96), "100/s");
        assert_eq!(rate(12.3456), "12.3/s");
        assert_eq!(rate(9.999), "10.0/s");
        assert_eq!(rate(1.23456), "1.23/s");
        assert_eq!(rate(0.5), "0.500/s");
        assert_eq!(rate(0.004), "0.004/s");
        assert_eq!(rate(0.0), "0/s");
        assert_eq!(rate(f64::NAN), "0/s");
        assert_eq!(rate(f64::INFINITY), "0/s");
    }
}
