//! Telling a local I/O failure from corrupt data.
//!
//! Readers of formats (the canonical tar reader, the decompressors, the `tar` crate) turn every
//! `io::Error` they see into "malformed input", because from where they sit a read that fails and
//! a stream that makes no sense look alike. For sitebundle the two mean opposite things: corrupt
//! data says "fetch or build the bundle again" (exit 3), while a full disk (ENOSPC), a failing
//! disk (EIO) or a permission (EACCES) on the store or DEST says "fix this machine" and must not
//! send anyone re-pushing a good bundle (issue 8).
//!
//! So the two ends of such a pipeline, the reader of local bytes and the writer to a local file,
//! are wrapped: the first error either raises is recorded in an [`IoTrap`] (and passed on
//! unchanged in kind), and when the pipeline fails, [`IoTrap::reclassify`] replaces whatever the
//! format code made of it with [`Error::Io`] naming the path. Mismatching bytes that were read
//! fine remain integrity errors.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::error::Error;

/// Which end of a pipeline an I/O error came from.
pub(crate) enum IoSide {
    /// Reading the source (a blob of the store, an archive file).
    Read,
    /// Writing to a local file, at this path.
    Write(PathBuf),
}

/// The first I/O error seen by a wrapped reader or writer, shared with the code that reports.
#[derive(Default, Clone)]
pub(crate) struct IoTrap(Arc<Mutex<Option<(IoSide, io::Error)>>>);

impl IoTrap {
    /// Remember `e` (if it is the first) and hand back an error of the same kind to pass on.
    pub(crate) fn record(&self, side: impl FnOnce() -> IoSide, e: io::Error) -> io::Error {
        let passed = match e.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(e.kind(), e.to_string()),
        };
        if let Ok(mut slot) = self.0.lock() {
            if slot.is_none() {
                *slot = Some((side(), e));
            }
        }
        passed
    }

    /// Wrap a reader of local bytes: its errors are recorded as [`IoSide::Read`].
    pub(crate) fn reader<R: Read>(&self, inner: R) -> TrapReader<R> {
        TrapReader {
            inner,
            trap: self.clone(),
        }
    }

    /// The error to report for a failed pipeline: `e` itself when it already is an I/O error or
    /// nothing was recorded, else the recorded I/O error (a read names `read_location()`).
    pub(crate) fn reclassify(&self, e: Error, read_location: impl FnOnce() -> PathBuf) -> Error {
        if matches!(e, Error::Io { .. }) {
            return e;
        }
        match self.0.lock().ok().and_then(|mut s| s.take()) {
            Some((IoSide::Read, source)) => Error::Io {
                op: "read",
                path: read_location(),
                source,
            },
            Some((IoSide::Write(path), source)) => Error::Io {
                op: "write",
                path,
                source,
            },
            None => e,
        }
    }
}

/// A reader whose errors are recorded in an [`IoTrap`].
pub(crate) struct TrapReader<R> {
    inner: R,
    trap: IoTrap,
}

impl<R: Read> Read for TrapReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .map_err(|e| self.trap.record(|| IoSide::Read, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(5)) // EIO
        }
    }

    #[test]
    fn a_read_error_seen_as_corruption_is_reported_as_io() {
        let trap = IoTrap::default();
        let mut r = trap.reader(Failing);
        let mut buf = [0u8; 4];
        let seen = r.read(&mut buf).expect_err("fails");
        assert_eq!(seen.raw_os_error(), Some(5));
        let e = trap.reclassify(Error::corrupt("layer 1", "decompression failed"), || {
            PathBuf::from("/store/blobs/sha256/ab")
        });
        match e {
            Error::Io { op, path, source } => {
                assert_eq!(op, "read");
                assert_eq!(path, PathBuf::from("/store/blobs/sha256/ab"));
                assert_eq!(source.raw_os_error(), Some(5));
            }
            other => panic!("not reclassified: {other:?}"),
        }
    }

    #[test]
    fn corruption_without_io_error_stays_corruption() {
        let trap = IoTrap::default();
        let e = trap.reclassify(Error::corrupt("layer 1", "bad header"), PathBuf::new);
        assert!(e.is_integrity());
    }
}
