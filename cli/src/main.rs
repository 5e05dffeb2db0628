//! `sitebundle`: parse the arguments, run one command from `commands/`, report errors with a hint
//! and an exit code (see `args::EXIT_CODES`).

/// `println!` for this crate (defined before the modules, so it shadows std's in all of them):
/// see [`stdout_line`].
macro_rules! println {
    () => {
        $crate::stdout_line(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::stdout_line(format_args!($($arg)*), true)
    };
}

/// `print!` for this crate: see [`stdout_line`].
#[allow(unused_macros)]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::stdout_line(format_args!($($arg)*), false)
    };
}

mod args;
mod commands;
mod progress;
mod report;
mod targets;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => ExitCode::from(report::report(&e)),
    }
}

/// Write to stdout. When the reader has gone (`sitebundle inspect | head`, a pager that quit),
/// end the command quietly with exit 0, as a Unix tool killed by SIGPIPE would end, instead of
/// std's `println!` panicking with "failed printing to stdout". A command cut this way leaves
/// its targets as every interrupted command does: two-phase writes are either whole or not
/// visible. Any other write error is reported on stderr and exits 6 (local I/O).
fn stdout_line(args: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let r = out
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    if let Err(e) = r {
        stdout_failed(e);
        std::process::exit(6);
    }
}

/// The rule of [`stdout_line`] for a failed write to stdout: exit 0 at once when the reader
/// has gone; otherwise print the error and give it back.
fn stdout_failed(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to standard output: {e}");
    e
}

/// A buffered stdout for commands that stream many lines (`ls`), under the rule of
/// [`stdout_line`].
pub(crate) struct Stdout(std::io::BufWriter<std::io::StdoutLock<'static>>);

impl Stdout {
    pub(crate) fn new() -> Stdout {
        Stdout(std::io::BufWriter::new(std::io::stdout().lock()))
    }
}

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(stdout_failed)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().map_err(stdout_failed)
    }
}
