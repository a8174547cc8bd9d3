//! What a person watches while a simulation runs: a progress bar over simulated time (on a
//! terminal only) and one line as each stage ends.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{self, Write};

use crate::error::unless_closed;

/// The bar and the live lines; both can be off.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    lines: bool,
}

impl Progress {
    /// A bar over `planned_s` simulated seconds when `bar` is true; stage lines on stdout
    /// when `lines` is true.
    pub fn new(planned_s: f64, bar: bool, lines: bool) -> Self {
        let progress = if bar {
            let progress = ProgressBar::with_draw_target(
                Some(planned_s.ceil() as u64),
                ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{bar:32}] {pos}/{len} simulated s ({elapsed}) {msg}",
            ) {
                progress.set_style(style.progress_chars("=> "));
            }
            progress
        } else {
            ProgressBar::hidden()
        };
        Self {
            bar: progress,
            lines,
        }
    }

    /// Simulated time reached.
    pub fn at(&self, simulated_s: f64) {
        self.bar.set_position(simulated_s as u64);
    }

    /// The ramp grew (a stage was extended).
    pub fn extend(&self, by_s: f64) {
        self.bar.inc_length(by_s.ceil() as u64);
    }

    /// What the simulation is doing now.
    pub fn message(&self, text: String) {
        self.bar.set_message(text);
    }

    /// A line on stdout, above the bar; a closed stdout is no error ([`unless_closed`]).
    pub fn line(&self, text: &str) -> io::Result<()> {
        if !self.lines {
            return Ok(());
        }
        unless_closed(self.bar.suspend(|| writeln!(io::stdout().lock(), "{text}")))
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
