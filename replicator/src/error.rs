//! Typed errors for the replicator. Every variant names the target (its redacted URL) and the
//! object (blob digest, channel, key) it is about; hints for users are added by the CLI.
//!
//! No variant carries a credential: URLs are redacted before they get here
//! ([`crate::url::redact`]), and backend errors are wrapped, never formatted with request headers.

use std::path::PathBuf;

use bundle::Digest;

/// Result alias used across the replicator.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed backend error (object_store, oci-client, reqwest).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while talking to a target or moving a bundle between targets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A target URL could not be parsed (the URL is shown redacted).
    #[error("invalid target URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, without any userinfo.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A channel name is not acceptable (it must be a valid OCI tag).
    #[error("invalid channel name {name:?}: {reason}")]
    InvalidChannel {
        /// The name given.
        name: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A required setting is missing from the environment.
    #[error("{var} is not set: {why}")]
    MissingEnv {
        /// The environment variable.
        var: &'static str,
        /// What it is needed for.
        why: &'static str,
    },
    /// A configuration file or credential source is malformed.
    #[error("{what}: {reason}")]
    Config {
        /// Which file or setting.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// An object (blob, manifest, channel) does not exist on a target.
    #[error("{target}: {what} not found")]
    NotFound {
        /// The target (redacted URL).
        target: String,
        /// What was looked for.
        what: String,
    },
    /// Bytes read from or written to a target do not hash to their digest.
    #[error("{target}: {what}: expected {expected}, found {found}")]
    DigestMismatch {
        /// The target (redacted URL).
        target: String,
        /// Which object.
        what: String,
        /// The digest that was promised.
        expected: Digest,
        /// The digest of the bytes seen.
        found: Digest,
    },
    /// A channel was not where the caller expected it: someone else moved it.
    #[error("{target}: channel {channel} was moved by someone else (expected {expected}, found {found})")]
    ChannelConflict {
        /// The target (redacted URL).
        target: String,
        /// The channel.
        channel: String,
        /// What the caller expected (a digest, or "nothing").
        expected: String,
        /// What the target holds (a digest, or "nothing").
        found: String,
    },
    /// A write was attempted on a read-only target (an HTTP origin).
    #[error("{target} is read-only: cannot {op}")]
    ReadOnly {
        /// The target (redacted URL).
        target: String,
        /// The operation refused.
        op: &'static str,
    },
    /// The target does not support this operation (for example history on a registry).
    #[error("{target} does not support {op}")]
    Unsupported {
        /// The target (redacted URL).
        target: String,
        /// The operation.
        op: &'static str,
    },
    /// A call to the target's service failed.
    #[error("{target}: {op} {object}")]
    Backend {
        /// The target (redacted URL).
        target: String,
        /// What we tried ("put blob", "read channel", ...).
        op: &'static str,
        /// The object ("sha256:...", "channels/prod.json", ...).
        object: String,
        /// Whether a retry may succeed (5xx, timeout, cut connection).
        retryable: bool,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// Stored data on a target is malformed (a channel record, a history event, index.json).
    #[error("{target}: {what}: {reason}")]
    Corrupt {
        /// The target (redacted URL).
        target: String,
        /// Which object.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A target's answer was refused by a rule of [`crate::net`] (a redirect to another host or
    /// from https to http, credentials the target asked to be sent elsewhere).
    #[error("{target}: {what}: refused {reason}")]
    Refused {
        /// The target (redacted URL).
        target: String,
        /// What was being done.
        what: String,
        /// Which rule refused it.
        reason: String,
    },
    /// A target sent its answer slower than the minimum rate ([`crate::net::Pace`]).
    #[error("{target}: {what}: too slow: {reason}")]
    TooSlow {
        /// The target (redacted URL).
        target: String,
        /// What was being read.
        what: String,
        /// How slow.
        reason: String,
    },
    /// A target did not finish an operation within its deadline.
    #[error("{target}: {what} did not finish within {after:?}, the deadline per target ({hint})")]
    Timeout {
        /// The target (redacted URL).
        target: String,
        /// The operation.
        what: String,
        /// The deadline.
        after: std::time::Duration,
        /// Which setting raises it.
        hint: &'static str,
    },
    /// A local file operation failed.
    #[error("{op} {path}")]
    Io {
        /// What we tried.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The bundle library failed (local store, parsing, verification).
    #[error("bundle")]
    Bundle(#[from] bundle::Error),
    /// Phase 1 of a push failed on some targets: no channel was moved anywhere.
    #[error("the bundle could not be made complete on {} target(s), so no channel was moved anywhere:\n{}", failures.len(), render(failures))]
    Incomplete {
        /// (target, error chain) for every failed target.
        failures: Vec<(String, String)>,
    },
    /// Targets disagree about a channel that an operation needs to resolve once.
    #[error("targets disagree about channel {channel}:\n{}", render(details))]
    Disagree {
        /// The channel.
        channel: String,
        /// (target, what it holds).
        details: Vec<(String, String)>,
    },
    /// An operation cannot be done with the targets given (read-only target, no history, ...).
    #[error("{0}")]
    Usage(String),
    /// A website target refused or could not do what was asked (see [`crate::site`]).
    #[error(transparent)]
    Site(#[from] crate::site::SiteError),
    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

impl Error {
    /// True when retrying the same request may succeed (5xx answers, timeouts, cut connections).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Backend {
                retryable: true,
                ..
            }
        )
    }

    /// True when the error means data failed an integrity check.
    pub fn is_integrity(&self) -> bool {
        match self {
            Error::DigestMismatch { .. } | Error::Corrupt { .. } => true,
            Error::Bundle(e) => e.is_integrity(),
            _ => false,
        }
    }

    /// True when the error is a local failure (disk full, I/O error, permission denied on the
    /// local store or a download's file), not the target's fault: trying another target or the
    /// same one again cannot help, so callers stop at once.
    pub fn is_local_io(&self) -> bool {
        matches!(
            self,
            Error::Io { .. } | Error::Bundle(bundle::Error::Io { .. })
        )
    }

    /// Wrap a local I/O error.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

/// `  target: message` lines.
fn render(items: &[(String, String)]) -> String {
    items
        .iter()
        .map(|(t, m)| format!("  {t}: {m}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An error and its sources on one line (`a: b: c`), for per-target reports.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.ends_with(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
