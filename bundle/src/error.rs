//! Typed errors for the bundle library.
//!
//! Every variant names the thing it is about (a path in the site, a blob digest, a reference) so
//! that a user can act on it without reading code. Hints ("what to do") are added by the binaries,
//! which know the flags a user can reach for; see `cli/src/report.rs`.

use std::io;
use std::path::PathBuf;

use crate::digest::Digest;

/// Result alias used across the bundle library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building, reading, verifying or extracting a bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Extracting with reuse ([`crate::reuse`]): files of these layers in the installed tree did
    /// not match the index (changed or tampered since they were installed), so the layers must
    /// be fetched. Nothing was written in the destination.
    #[error(
        "installed files of layer(s) {layers:?} do not match the new index: fetch those layers"
    )]
    ReuseRejected {
        /// Layer numbers (1..n) whose installed files cannot be used.
        layers: Vec<usize>,
    },
    /// An operating-system call failed on a path.
    #[error("{op} {path}")]
    Io {
        /// What we tried to do ("read", "create", ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The site directory does not exist or is not a directory.
    #[error("site directory {path} does not exist or is not a directory")]
    SourceMissing {
        /// The directory given.
        path: PathBuf,
    },
    /// The site directory holds no regular file.
    #[error("site directory {path} holds no files")]
    SourceEmpty {
        /// The directory given.
        path: PathBuf,
    },
    /// A symlink points outside the site, is absolute, or points nowhere.
    #[error("symlink {path} -> {target}: {problem}")]
    BadSymlink {
        /// Path of the link inside the site.
        path: String,
        /// Its target as stored on disk.
        target: String,
        /// What is wrong with it.
        problem: SymlinkProblem,
    },
    /// A fifo, socket or device node: not something a web server can serve.
    #[error("{path} is a {kind}, not a regular file, directory or symlink")]
    SpecialFile {
        /// Path inside the site.
        path: String,
        /// "fifo", "socket", "block device", ...
        kind: &'static str,
    },
    /// A file or directory name is not valid UTF-8.
    #[error("{path} has a name that is not valid UTF-8")]
    NonUtf8Name {
        /// Lossy rendering of the path.
        path: String,
    },
    /// A path is not acceptable in a bundle (control characters, `..`, too long, ...).
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path, as far as it could be rendered.
        path: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// Two names differ only by Unicode normalization and would collide on macOS and in URLs.
    #[error("{first} and {second} differ only by Unicode normalization")]
    NormalizationCollision {
        /// The first of the two paths.
        first: String,
        /// The second.
        second: String,
    },
    /// A file's bytes do not hash to what the index says.
    #[error("file {path}: expected blake3 {expected}, found {found}")]
    FileMismatch {
        /// Path inside the site.
        path: String,
        /// Hash the index declares.
        expected: String,
        /// Hash of the bytes read.
        found: String,
    },
    /// A blob's bytes do not hash to its digest.
    #[error("{what}: expected {expected}, found {found}")]
    DigestMismatch {
        /// Which blob ("layer 3 blob", "config", ...).
        what: String,
        /// The digest that was promised.
        expected: Digest,
        /// The digest of the bytes read.
        found: Digest,
    },
    /// A file changed on disk while the bundle was being built.
    #[error("file {path} changed while it was being bundled")]
    ChangedDuringBuild {
        /// Path inside the site.
        path: String,
    },
    /// Structured data (manifest, config, index, tar stream) is malformed or breaks a rule of the format.
    #[error("{what}: {reason}")]
    Corrupt {
        /// Which piece of data.
        what: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A reference matched nothing in the store.
    #[error("no bundle matches {reference:?}")]
    UnknownRef {
        /// The reference given.
        reference: String,
    },
    /// A digest prefix matched more than one bundle.
    #[error("{reference:?} matches more than one bundle: {candidates}")]
    AmbiguousRef {
        /// The reference given.
        reference: String,
        /// The matching digests, comma-separated.
        candidates: String,
    },
    /// A blob the manifest names is not in the store.
    #[error("blob {digest} is missing from the store")]
    BlobMissing {
        /// The missing blob.
        digest: Digest,
    },
    /// An extraction destination exists and is not empty.
    #[error("destination {path} exists and is not empty")]
    DestExists {
        /// The destination.
        path: PathBuf,
    },
    /// An `--exclude` pattern cannot be compiled.
    #[error("invalid exclude pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern given.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// A reference or tag string is malformed.
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidRef {
        /// The string given.
        reference: String,
        /// Why.
        reason: &'static str,
    },
}

/// What is wrong with a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymlinkProblem {
    /// The target is an absolute path.
    Absolute,
    /// The target resolves outside the site directory.
    Escapes,
    /// The target does not exist.
    Dangling,
    /// A name in the target is below a regular file (the kernel says "Not a directory").
    NotADirectory,
    /// Following the target meets the link again, or more links than a server may follow.
    Loop,
}

impl std::fmt::Display for SymlinkProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SymlinkProblem::Absolute => "absolute target",
            SymlinkProblem::Escapes => "points outside the site",
            SymlinkProblem::Dangling => "target does not exist",
            SymlinkProblem::NotADirectory => "target goes through a regular file",
            SymlinkProblem::Loop => "target loops or follows too many links (at most 32)",
        })
    }
}

impl Error {
    /// Wrap an `io::Error` with what was being done and to which path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    /// A `Corrupt` error about `what`.
    pub fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// True when the error means stored or received data failed an integrity check
    /// (as opposed to bad input or an environment problem).
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            Error::FileMismatch { .. } | Error::DigestMismatch { .. } | Error::Corrupt { .. }
        )
    }
}
