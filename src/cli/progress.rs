//! The progress bar shown on a terminal during long work; hidden with -q or
//! when stderr is not a terminal (cron, systemd, pipes).

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::Progress;

static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `f` (which writes to stderr) with the active bar, if any, cleared.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = ACTIVE.lock().ok().and_then(|g| g.clone());
    match bar {
        Some(b) => b.suspend(f),
        None => f(),
    }
}

/// A byte-count progress bar on stderr.
pub struct TerminalProgress {
    bar: ProgressBar,
}

impl TerminalProgress {
    /// A bar when stderr is a terminal and output is not quiet.
    pub fn for_terminal(quiet: bool, label: &str) -> Option<TerminalProgress> {
        if quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        // Hidden until start() knows the total, so no empty frame is drawn.
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        if let Ok(mut g) = ACTIVE.lock() {
            *g = Some(bar.clone());
        }
        Some(TerminalProgress { bar })
    }
}

impl Progress for TerminalProgress {
    fn start(&self, total_bytes: u64) {
        // A tool may run several phases through one bar (the archive's
        // copy, then its integrity check): each starts from zero.
        self.bar.set_position(0);
        self.bar.set_length(total_bytes);
        self.bar.set_draw_target(ProgressDrawTarget::stderr());
    }
    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
}

impl Drop for TerminalProgress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        if let Ok(mut g) = ACTIVE.lock() {
            *g = None;
        }
    }
}
