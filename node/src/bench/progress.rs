//! The progress bar on stderr (hidden when stderr is not a terminal or
//! when the caller asks for quiet).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the bar is redrawn from the counters.
const TICK: Duration = Duration::from_millis(200);

/// Counters the clients of a run update and the progress bar shows.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages (or connections) done.
    pub done: AtomicU64,
    /// Errors so far.
    pub errors: AtomicU64,
}

impl Counters {
    /// Counts one success.
    pub fn success(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one error.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether to draw progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressMode {
    visible: bool,
}

impl ProgressMode {
    /// Draw on stderr when it is a terminal and `quiet` is false.
    pub fn stderr(quiet: bool) -> ProgressMode {
        use std::io::IsTerminal as _;
        ProgressMode {
            visible: !quiet && std::io::stderr().is_terminal(),
        }
    }

    /// Never draw (tests, scripts).
    pub fn hidden() -> ProgressMode {
        ProgressMode { visible: false }
    }

    /// Starts a bar for one phase of a run: `label`, out of `total` if
    /// known, redrawn from `counters` until the returned guard is
    /// finished or dropped.
    pub(crate) fn start(
        self,
        label: &str,
        total: Option<u64>,
        counters: Arc<Counters>,
    ) -> PhaseProgress {
        if !self.visible {
            return PhaseProgress {
                bar: None,
                ticker: None,
            };
        }
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        let template = match total {
            Some(_) => "{prefix:>12} [{elapsed_precise}] {bar:30} {pos}/{len} {per_sec} {msg}",
            None => "{prefix:>12} [{elapsed_precise}] {spinner} {pos} {per_sec} {msg}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_prefix(label.to_owned());
        let ticker = {
            let bar = bar.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(TICK);
                loop {
                    tick.tick().await;
                    bar.set_position(counters.done.load(Ordering::Relaxed));
                    let errors = counters.errors.load(Ordering::Relaxed);
                    if errors > 0 {
                        bar.set_message(format!("{errors} errors"));
                    }
                    bar.tick();
                }
            })
        };
        PhaseProgress {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }
}

/// One phase's bar; cleared when dropped.
pub(crate) struct PhaseProgress {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for PhaseProgress {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
