//! The opt-in progress bar of long `map`/`imap` calls: drawn on stderr, and only when stderr
//! is a terminal, so logs and CI output stay clean.

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
                    "{bar:40} {pos}/{len} tasks [{elapsed_precise} < {eta_precise}] {per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            ),
            None => indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {pos} tasks [{elapsed_precise}] {per_sec}",
                )
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

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish();
        }
    }
}
