//! Errors of the init binary, and the exit code each one maps to.
//!
//! Every variant names what it is about: the origin (redacted URL), the digest, the path. The
//! exit code tells a pod's operator which kind of problem to look at without reading logs:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | installed (or already installed: nothing to do) |
//! | 1 | usage or configuration error (bad flag, bad digest, bad URL, bad sync config) |
//! | 2 | every origin failed (down, timed out, did not have the bundle, or channel unknown) |
//! | 3 | integrity: bytes did not match their digest on every origin that answered, or the bundle breaks a rule of the format (e.g. a path-traversal entry) |
//! | 4 | local problem with DEST (permissions, disk full, I/O error) |
//!
//! In every failure case DEST is as it was before the run.

use std::path::PathBuf;

use bundle::Digest;

/// The exit codes of `sitebundle-init` (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitStatus {
    /// Installed, or already installed.
    Ok = 0,
    /// Bad flag, digest, URL or config.
    Usage = 1,
    /// No origin could provide the bundle.
    Origins = 2,
    /// Data failed an integrity check.
    Integrity = 3,
    /// DEST could not be written.
    Local = 4,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(s: ExitStatus) -> Self {
        std::process::ExitCode::from(s as u8)
    }
}

/// Why one origin was skipped.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attempt {
    /// The origin, redacted (no credentials, no query).
    pub origin: String,
    /// What went wrong there.
    pub reason: String,
    /// True when the origin answered with bytes that failed a check (a lying origin).
    pub integrity: bool,
}

/// Everything that can make `sitebundle-init` fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A flag, URL or config file is wrong.
    #[error("{0}")]
    Usage(String),
    /// No origin could provide what was asked.
    #[error("no origin could provide {what}: {}", summarize(.attempts))]
    AllOriginsFailed {
        /// The digest or channel asked for.
        what: String,
        /// One entry per origin tried, in order.
        attempts: Vec<Attempt>,
    },
    /// The bundle failed a check while it was installed from the staged blobs.
    #[error("bundle {digest} failed verification")]
    Integrity {
        /// Manifest digest or bundle id.
        digest: Digest,
        /// What failed.
        #[source]
        source: bundle::Error,
    },
    /// A local file operation on DEST failed.
    #[error("{op} {}", path.display())]
    Local {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another installer held DEST's lock for longer than the wait allowed.
    #[error("{} is held by {holder}; gave up after waiting {waited:?} (--lock-timeout)", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as far as known.
        holder: String,
        /// How long we waited.
        waited: std::time::Duration,
    },
    /// DEST holds something sitebundle-init must not replace (e.g. `current` is a directory).
    #[error("{}: {reason}; nothing was changed", path.display())]
    DestLayout {
        /// The offending path.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// DEST cannot be written, and what was asked needs a write.
    #[error("DEST {} is not writable: {reason}", path.display())]
    ReadOnlyDest {
        /// DEST.
        path: PathBuf,
        /// Why, and what could not be done.
        reason: String,
    },
    /// Writing fetched blobs into DEST's staging store failed (disk full, I/O error,
    /// permissions): a local problem, so no other origin is tried.
    #[error("writing {what} into the staging store failed (a local problem, not the origin's)")]
    Staging {
        /// What was being staged.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The run failed, and undoing what it did to DEST failed too.
    #[error("DEST could not be fully restored ({}) after this failure", leftovers.join("; "))]
    NotRestored {
        /// The failure.
        source: Box<InitError>,
        /// What could not be undone.
        leftovers: Vec<String>,
    },
    /// The bundle library failed on a local operation (not an integrity problem).
    #[error("installing {digest}")]
    Bundle {
        /// Manifest digest or bundle id.
        digest: Digest,
        /// What failed.
        #[source]
        source: bundle::Error,
    },
}

fn summarize(attempts: &[Attempt]) -> String {
    if attempts.is_empty() {
        return "no origin given".to_string();
    }
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.origin, a.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

impl InitError {
    /// The exit code for this error.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            InitError::Usage(_) => ExitStatus::Usage,
            InitError::AllOriginsFailed { attempts, .. } => {
                if attempts.iter().any(|a| a.integrity) {
                    ExitStatus::Integrity
                } else {
                    ExitStatus::Origins
                }
            }
            InitError::Integrity { .. } => ExitStatus::Integrity,
            InitError::Local { .. }
            | InitError::Bundle { .. }
            | InitError::Locked { .. }
            | InitError::DestLayout { .. }
            | InitError::ReadOnlyDest { .. }
            | InitError::Staging { .. } => ExitStatus::Local,
            InitError::NotRestored { source, .. } => source.exit_status(),
        }
    }

    /// True when DEST is as it was before the run (every failure but [`InitError::NotRestored`]).
    pub fn dest_unchanged(&self) -> bool {
        !matches!(self, InitError::NotRestored { .. })
    }

    /// Wrap a bundle-library error about `digest`, classifying it: a local I/O error (disk
    /// full, EIO, EACCES) is local, whatever else failed an integrity check or a format rule.
    pub fn from_bundle(digest: Digest, source: bundle::Error) -> InitError {
        if is_local_io(&source) {
            InitError::Bundle { digest, source }
        } else if source.is_integrity() || matches!(source, bundle::Error::InvalidPath { .. }) {
            InitError::Integrity { digest, source }
        } else {
            InitError::Bundle { digest, source }
        }
    }

    /// A closure wrapping an `io::Error` with the operation and path.
    pub fn local(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> InitError {
        let path = path.into();
        move |source| InitError::Local { op, path, source }
    }
}

/// True when a bundle-library error is a local file-system failure (not the data's fault).
pub fn is_local_io(e: &bundle::Error) -> bool {
    matches!(e, bundle::Error::Io { .. })
}

/// Result alias.
pub type Result<T, E = InitError> = std::result::Result<T, E>;

/// Render an error and its chain of causes on one line (for logs).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
