//! Progress reporting: the library says what it is doing, the binary decides how to show it.
//!
//! The CLI draws bars with indicatif on a terminal; server-init logs; tests pass [`NoProgress`].

/// Receives progress from long operations. All methods have no-op defaults.
pub trait Progress: Sync {
    /// A phase starts ("hash", "compress", "verify", "extract") with a total in bytes.
    fn start(&self, _phase: &'static str, _total_bytes: u64) {}
    /// `bytes` more of the current phase are done.
    fn advance(&self, _bytes: u64) {}
    /// The current phase is over.
    fn finish(&self) {}
    /// Something the user should see but that does not stop the operation.
    fn warn(&self, _message: &str) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
