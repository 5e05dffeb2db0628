//! Peak memory of a child process, from the kernel's own accounting: `wait4(2)` returns the
//! child's `rusage`, whose `ru_maxrss` is its peak resident set in KiB. Not a timer, not a sample:
//! the number the kernel kept for that one process.
//!
//! The child is not spawned from the test process itself: on `execve` Linux records the peak RSS
//! of the memory image being replaced into the new program's `ru_maxrss`, and a child spawned by
//! the test (fork or vfork) replaces a copy of the *test's* image, often hundreds of MiB. So a
//! small launcher (Python, already needed by the tests) forks, the grandchild `exec`s the
//! program, and the launcher reports the grandchild's `wait4` figure. What remains of the
//! launcher's own image in the figure (about 10 MiB) counts against the program, so the figure
//! errs high, never low.

use std::io::Read;
use std::process::{Command, Stdio};

/// What a measured run gave.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// Peak resident set size, KiB.
    pub max_rss_kib: u64,
}

impl Measured {
    /// Peak RSS in MiB.
    pub fn max_rss_mib(&self) -> f64 {
        self.max_rss_kib as f64 / 1024.0
    }

    /// Standard error as text.
    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// The launcher: fork, `exec` the program in the child, `wait4` it, write its `ru_maxrss` (KiB)
/// to the file named by `SITEBUNDLE_RSS_OUT`, exit with its status.
const LAUNCHER: &str = r#"
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
with open(os.environ["SITEBUNDLE_RSS_OUT"], "w") as f:
    f.write(str(ru.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128)
"#;

/// Run `cmd` to completion (stdin closed, stdout and stderr captured) and measure its peak RSS.
pub fn run(cmd: &Command) -> Measured {
    let out_file = tempfile_path();
    let mut launcher = Command::new("python3");
    launcher.arg("-c").arg(LAUNCHER).arg(cmd.get_program());
    launcher.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => launcher.env(k, v),
            None => launcher.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        launcher.current_dir(d);
    }
    launcher.env("SITEBUNDLE_RSS_OUT", &out_file);
    let mut child = launcher
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 (needed to measure RSS): {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let status = child.wait().expect("wait for the launcher");
    let kib = std::fs::read_to_string(&out_file)
        .unwrap_or_else(|e| panic!("the launcher wrote no RSS figure ({e}): {status}"));
    let _ = std::fs::remove_file(&out_file);
    Measured {
        code: status.code(),
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
        max_rss_kib: kib.trim().parse().expect("a number of KiB"),
    }
}

fn tempfile_path() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "sitebundle-rss-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}
