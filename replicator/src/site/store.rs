//! The one trait website targets implement: [`SiteStore`], a flat key space of objects with
//! headers and a BLAKE3 in their metadata.
//!
//! Why not [`crate::Target`] or `object_store::ObjectStore`: a website target stores files, not
//! bundles, and needs what `ObjectStore` cannot say: headers on every write, a header change
//! without re-uploading the bytes (S3 `CopyObject` with `REPLACE`, Azure `Set Blob Properties`,
//! GCS `PATCH`), and the metadata back from a listing where the store gives it. S3 and Azure are
//! served by `object_store` plus a few signed requests of their own ([`super::cloud`]); GCS by the
//! JSON API ([`super::gcs`]); a directory by the filesystem ([`super::dir`]).
//!
//! Keys are site paths relative to the target's prefix; the store adds the prefix. Every method
//! counts the requests it makes ([`RequestCounts`]), for `--json` summaries and benchmarks.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bundle::FileHash;
use bytes::Bytes;
use serde::Serialize;

use super::headers::Headers;
use crate::error::Result;

/// Name of the metadata entry holding an object's BLAKE3 (hex) on S3 (`x-amz-meta-…`) and GCS.
pub const META_BLAKE3: &str = "sitebundle-blake3";
/// The same on Azure, whose metadata names must be C# identifiers (no `-`).
pub const META_BLAKE3_AZURE: &str = "sitebundle_blake3";

/// What a store can keep besides the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Features {
    /// Objects carry headers (Content-Type, Cache-Control, ...). A directory does not: the web
    /// server decides.
    pub headers: bool,
    /// A listing returns each object's metadata (GCS, a directory's own hashing does not count).
    pub metadata_in_listing: bool,
}

/// An object as the store describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Size in bytes.
    pub size: u64,
    /// The BLAKE3 of its bytes, if known: recorded in its metadata by a sitebundle publish, or
    /// computed (a directory).
    pub blake3: Option<FileHash>,
    /// A sitebundle publish wrote it (its metadata says so). A reconcile deletes only these,
    /// unless asked to delete foreign objects too.
    pub ours: bool,
    /// Headers, where the store keeps them and the call returned them.
    pub headers: Option<Headers>,
}

/// A version token for compare-and-swap on the marker (ETag, generation, content digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(pub String);

/// The condition of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Only if the key does not exist.
    Absent,
    /// Only if the key is still at this version.
    Matches(Version),
}

/// Requests made, by kind.
#[derive(Debug, Default)]
pub struct RequestCounts {
    put: AtomicU64,
    copy: AtomicU64,
    delete: AtomicU64,
    list: AtomicU64,
    head: AtomicU64,
    get: AtomicU64,
}

/// A snapshot of [`RequestCounts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Requests {
    /// Object writes (a multipart upload counts each part plus its start and completion).
    pub put: u64,
    /// Header-only changes (copy in place, set properties, patch).
    pub copy: u64,
    /// Delete requests (a batch delete counts once).
    pub delete: u64,
    /// Listing pages.
    pub list: u64,
    /// Object metadata reads.
    pub head: u64,
    /// Object reads (marker, indexes).
    pub get: u64,
}

impl Requests {
    /// `self - before`.
    pub fn since(&self, before: &Requests) -> Requests {
        Requests {
            put: self.put - before.put,
            copy: self.copy - before.copy,
            delete: self.delete - before.delete,
            list: self.list - before.list,
            head: self.head - before.head,
            get: self.get - before.get,
        }
    }

    /// Every request.
    pub fn total(&self) -> u64 {
        self.put + self.copy + self.delete + self.list + self.head + self.get
    }
}

/// Which counter.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// A write.
    Put,
    /// A header-only change.
    Copy,
    /// A delete.
    Delete,
    /// A listing page.
    List,
    /// A metadata read.
    Head,
    /// A read.
    Get,
}

impl RequestCounts {
    /// Count `n` requests of kind `op`.
    pub fn add(&self, op: Op, n: u64) {
        let c = match op {
            Op::Put => &self.put,
            Op::Copy => &self.copy,
            Op::Delete => &self.delete,
            Op::List => &self.list,
            Op::Head => &self.head,
            Op::Get => &self.get,
        };
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Requests {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Requests {
            put: l(&self.put),
            copy: l(&self.copy),
            delete: l(&self.delete),
            list: l(&self.list),
            head: l(&self.head),
            get: l(&self.get),
        }
    }
}

/// A place a site's files are published to.
#[async_trait]
pub trait SiteStore: Send + Sync + std::fmt::Debug {
    /// The target's URL, for messages.
    fn name(&self) -> &str;

    /// What the store keeps.
    fn features(&self) -> Features;

    /// Requests made so far.
    fn requests(&self) -> Requests;

    /// Read a small object (marker, index), refusing more than `max` bytes: `None` when absent.
    async fn get_small(&self, key: &str, max: u64) -> Result<Option<(Bytes, Version)>>;

    /// Write a small object if `condition` holds ([`super::SiteError::MarkerConflict`] when it does
    /// not); `None`: unconditionally. Returns the new version.
    async fn put_small(
        &self,
        key: &str,
        body: Bytes,
        headers: &Headers,
        condition: Option<Condition>,
    ) -> Result<Version>;

    /// Upload the `size` bytes of `file` (whose BLAKE3 is `hash`) to `key`, with `headers`.
    async fn put_file(
        &self,
        key: &str,
        file: &Path,
        size: u64,
        hash: &FileHash,
        headers: &Headers,
    ) -> Result<()>;

    /// Give the existing object `key` (content `hash`) new headers without sending its bytes.
    async fn set_headers(&self, key: &str, hash: &FileHash, headers: &Headers) -> Result<()>;

    /// The object at `key`, or `None`.
    async fn head(&self, key: &str) -> Result<Option<Stored>>;

    /// Every object under the prefix (keys relative to it); metadata only where
    /// [`Features::metadata_in_listing`].
    async fn list(&self) -> Result<Vec<(String, Stored)>>;

    /// Delete these keys (absent keys are not an error).
    async fn delete(&self, keys: &[String]) -> Result<()>;

    /// Where a spool of the contents to upload is best kept (a directory target: beside its root,
    /// on the same filesystem, so an upload is a hard link). `None`: anywhere.
    fn spool_near(&self) -> Option<std::path::PathBuf> {
        None
    }
}
