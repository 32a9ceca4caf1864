//! Progress on stderr (indicatif), drawn only on a terminal: a Hub download's line and bar per
//! file, and the steps of a long command (`gen perplexity`'s windows, `gen convert`'s tensors).

use crate::weights::hub::Reporter;
use anyhow::Result;
use hf_hub::api::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Shows Hub downloads on stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct HubReporter;

impl Reporter for HubReporter {
    fn note(&self, msg: &str) -> Result<()> {
        super::note(msg)
    }

    fn progress(&self, file: &str) -> Box<dyn Progress> {
        Box::new(DownloadBar::new(true, file.to_string()))
    }
}

/// A progress bar on stderr for one file (hidden when stderr is not a terminal).
pub struct DownloadBar {
    bar: ProgressBar,
}

impl DownloadBar {
    /// A bar for the file `label`, drawn only when `visible`.
    pub fn new(visible: bool, label: String) -> Self {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        let style = ProgressStyle::with_template(
            "{msg} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(label);
        Self { bar }
    }
}

/// A bar over the steps of a long command, drawn on stderr only when it is a terminal (in a
/// pipe or a log it shows nothing).
pub struct StepBar {
    bar: ProgressBar,
}

impl StepBar {
    /// A bar of `total` steps named `label` (`perplexity`, `convert`).
    pub fn new(label: &str, total: usize) -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total as u64), target);
        let style =
            ProgressStyle::with_template("gen: {prefix} [{wide_bar}] {pos}/{len} {msg} eta {eta}")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(label.to_string());
        Self { bar }
    }

    /// One more step done; `msg` follows the count (e.g. the running perplexity).
    pub fn step(&self, msg: String) {
        self.bar.set_message(msg);
        self.bar.inc(1);
    }

    /// Removes the bar, so that the next line is printed where it was.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for DownloadBar {
    fn init(&mut self, size: usize, _filename: &str) {
        self.bar.set_length(size as u64);
        self.bar.set_position(0);
    }

    fn update(&mut self, size: usize) {
        self.bar.inc(size as u64);
    }

    fn finish(&mut self) {
        self.bar.finish();
    }
}
