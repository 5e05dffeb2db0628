//! Progress bars on a terminal (indicatif); nothing when stderr is not a terminal or with
//! `--quiet`/`--json`. Warnings go to stderr unless `--quiet`.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

/// The CLI's implementation of `bundle::Progress`.
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    draw: bool,
    quiet: bool,
}

impl Bars {
    /// Bars that draw only on a terminal.
    pub fn new(quiet: bool, json: bool) -> Bars {
        Bars {
            bar: Mutex::new(None),
            draw: !quiet && !json && std::io::stderr().is_terminal(),
            quiet,
        }
    }
}

impl bundle::Progress for Bars {
    fn start(&self, phase: &'static str, total: u64) {
        if !self.draw {
            return;
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(phase);
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(bar);
        }
    }
    fn advance(&self, n: u64) {
        if let Ok(b) = self.bar.lock() {
            if let Some(b) = b.as_ref() {
                b.inc(n);
            }
        }
    }
    fn finish(&self) {
        if let Ok(mut b) = self.bar.lock() {
            if let Some(b) = b.take() {
                b.finish_and_clear();
            }
        }
    }
    fn warn(&self, message: &str) {
        if !self.quiet {
            eprintln!("warning: {message}");
        }
    }
}
