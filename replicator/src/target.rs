//! The one trait for "a place bundles live": [`Target`].
//!
//! Every backend (OCI registry, object store, local directory, HTTP origin) implements it, and
//! push, promote, rollback, status and pull are written once against `&dyn Target`.
//!
//! **Read side** (all targets; what `sitebundle-init` and `status` need): [`Target::has_blob`],
//! [`Target::get_blob`], [`Target::get_blob_range`], [`Target::get_manifest`],
//! [`Target::read_channel`], [`Target::list_channels`], [`Target::history`].
//!
//! **Write side** (not HTTP origins, which answer [`Error::ReadOnly`]): [`Target::put_blob`],
//! [`Target::put_manifest`], [`Target::record_id`], [`Target::swap_channel`],
//! [`Target::append_history`].
//!
//! **Bundle ids** ([`crate::resolve`]): [`Target::lookup_id`] and [`Target::lookup_id_legacy`]
//! read which manifest carries a bundle id; [`Target::record_id`] writes it.
//! The order is always blobs, then manifest (and its id record), then channel ([`crate::push`]), so a reader that
//! follows a channel always finds a complete bundle.
//!
//! Addressing is by digest only: channels are resolved to a [`ChannelRecord`] once per operation
//! and only digests are used after that.
//!
//! Integrity: [`Target::get_manifest`] returns bytes already checked against the digest;
//! [`Target::get_blob`] returns an unchecked stream, and callers use [`read_blob_verified`] or
//! [`download_blob`], which check it.

use std::path::Path;

use async_trait::async_trait;
use bundle::Digest;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::channel::{ChannelRecord, HistoryEvent};
use crate::error::{Error, Result};

/// A blob's bytes as they arrive (not yet verified).
pub type BlobStream = BoxStream<'static, Result<Bytes>>;

/// What identifies the version of a channel record a target served (an HTTP `ETag`, or its
/// `Last-Modified`), to revalidate it later ([`Target::read_channel_if_changed`]). Opaque;
/// at most [`Validator::MAX_LEN`] visible ASCII characters (a longer or odd one is not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validator {
    /// An entity tag, sent back as `If-None-Match`.
    ETag(String),
    /// A `Last-Modified` date, sent back as `If-Modified-Since`.
    LastModified(String),
}

impl Validator {
    /// Longest validator kept.
    pub const MAX_LEN: usize = 256;

    /// A validator from a header value, if it is short, visible ASCII.
    pub fn checked(v: &str) -> Option<String> {
        (!v.is_empty() && v.len() <= Self::MAX_LEN && v.bytes().all(|b| (0x20..0x7f).contains(&b)))
            .then(|| v.to_string())
    }
}

/// What [`Target::read_channel_if_changed`] found.
#[derive(Debug, Clone)]
pub enum ChannelRead {
    /// The channel is as the validator says: use the record read with it.
    Unchanged,
    /// The channel as read now (`None`: it does not exist), with a validator for next time.
    Record {
        /// The record, or `None` when the channel does not exist.
        record: Option<ChannelRecord>,
        /// What to send next time, when the target offers it.
        validator: Option<Validator>,
    },
}

/// How a target moves a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelMode {
    /// A conditional write the service enforces (ETag / generation / create-only, or a lock).
    CompareAndSwap,
    /// Read, compare, write, read again: a concurrent writer between the read and the write is
    /// detected afterwards, not prevented (OCI tags have no conditional update).
    ReadCheckWrite,
    /// Channels cannot be moved here.
    ReadOnly,
}

/// What a target supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// Blobs and manifests can be written.
    pub writable: bool,
    /// How channels move.
    pub channels: ChannelMode,
    /// The target keeps channel history.
    pub history: bool,
}

/// A place bundles live. Implementations: [`crate::store_target::StoreTarget`] (S3, GCS, Azure,
/// directory), [`crate::oci::OciTarget`] (registries), [`crate::http::HttpTarget`] (read-only
/// origins).
#[async_trait]
pub trait Target: Send + Sync + std::fmt::Debug {
    /// The target's URL, redacted: used in every message about it.
    fn name(&self) -> &str;

    /// What this target supports.
    fn capabilities(&self) -> Capabilities;

    /// Is the blob present (and complete)?
    async fn has_blob(&self, digest: &Digest) -> Result<bool>;

    /// Stream a blob. The bytes are **not** verified: use [`read_blob_verified`] or
    /// [`download_blob`]. A missing blob is [`Error::NotFound`].
    async fn get_blob(&self, digest: &Digest) -> Result<BlobStream>;

    /// Read `len` bytes at `offset` of a blob (the index trailer of layer 0, without the layer).
    async fn get_blob_range(&self, digest: &Digest, offset: u64, len: u64) -> Result<Bytes>;

    /// A manifest's bytes, checked against `digest`.
    async fn get_manifest(&self, digest: &Digest) -> Result<Bytes>;

    /// Where a channel points, or `None` if it does not exist.
    async fn read_channel(&self, channel: &str) -> Result<Option<ChannelRecord>>;

    /// Where a channel points, revalidating an earlier read: `validator` is what that read
    /// returned. [`ChannelRead::Unchanged`] when the target says the channel has not changed
    /// since (an HTTP origin: one conditional `GET`, answered `304` without a body), which lets
    /// a sync pass over unchanged sites cost one small request each. The default reads the
    /// channel again and offers no validator.
    async fn read_channel_if_changed(
        &self,
        channel: &str,
        validator: Option<&Validator>,
    ) -> Result<ChannelRead> {
        let _ = validator;
        Ok(ChannelRead::Record {
            record: self.read_channel(channel).await?,
            validator: None,
        })
    }

    /// Every channel on this target, sorted.
    async fn list_channels(&self) -> Result<Vec<String>>;

    /// A channel's history, oldest first ([`Error::Unsupported`] where none is kept).
    async fn history(&self, channel: &str) -> Result<Vec<HistoryEvent>>;

    /// Upload a blob from a local file of `size` bytes whose digest is `digest`.
    async fn put_blob(&self, digest: &Digest, size: u64, file: &Path) -> Result<()>;

    /// Store a manifest (its blobs must already be there). `bytes` hash to `digest`.
    async fn put_manifest(&self, digest: &Digest, bytes: Bytes) -> Result<()>;

    /// Move `channel` to `new` only if it currently is `expected` (`None`: does not exist).
    /// Fails with [`Error::ChannelConflict`] otherwise, leaving the channel as it was.
    async fn swap_channel(
        &self,
        channel: &str,
        expected: Option<&ChannelRecord>,
        new: &ChannelRecord,
    ) -> Result<()>;

    /// Append an event to a channel's history (the target assigns `seq`).
    async fn append_history(&self, event: &HistoryEvent) -> Result<()>;

    /// `(registry host, repository)` for registry targets, so push can mount blobs across
    /// repositories of the same registry. `None` elsewhere.
    fn registry_repository(&self) -> Option<(&str, &str)> {
        None
    }

    /// What this target's id record says about bundle id `id`: which manifest carries it
    /// ([`crate::resolve`]). `Ok(None)`: no record. The caller checks what it names.
    async fn lookup_id(&self, _id: &Digest) -> Result<Option<crate::resolve::Found>> {
        Ok(None)
    }

    /// Targets written before id records existed: the manifest of a channel whose bundle id is
    /// `id`, from one listing (`index.json`), never by reading every channel. `Ok(None)` where
    /// there is no such listing (registries).
    async fn lookup_id_legacy(&self, _id: &Digest) -> Result<Option<Digest>> {
        Ok(None)
    }

    /// Record that `manifest` (whose bytes are `bytes`, already stored here) carries its bundle
    /// id, following the preference rule of [`crate::resolve::replaces`]. Written by a push
    /// after the manifest and before any channel.
    async fn record_id(&self, _manifest: &Digest, _bytes: &Bytes) -> Result<()> {
        Err(Error::Unsupported {
            target: self.name().to_string(),
            op: "recording bundle ids",
        })
    }

    /// Try to make `digest` present here without uploading it, by a cross-repository mount from
    /// `from` (another repository of the same registry that has it). `Ok(false)`: not possible,
    /// upload instead.
    async fn mount_blob(&self, _digest: &Digest, _from: &dyn Target) -> Result<bool> {
        Ok(false)
    }
}

/// Read a whole blob of at most `max` bytes into memory and check its digest. The cap is
/// enforced while reading ([`crate::net::collect`]), and the stream is paced.
pub async fn read_blob_verified(target: &dyn Target, digest: &Digest, max: u64) -> Result<Bytes> {
    let s = target.get_blob(digest).await?;
    let what = format!("blob {digest}");
    let buf = crate::net::collect(s, max, None, target.name(), &what).await?;
    let b = buf.clone();
    let found = crate::blocking::run(move || Digest::of(&b)).await?;
    check_digest(target, &what, digest, &found)?;
    Ok(buf)
}

/// Download a blob of `size` bytes to `dest` (created or truncated), checking size and digest;
/// the stream is cut as soon as it passes `size`, or runs slower than [`crate::net::Pace`]
/// allows. On any failure `dest` is removed. A failure to write `dest` is an [`Error::Io`]
/// ([`Error::is_local_io`]): the target is not to blame.
pub async fn download_blob(
    target: &dyn Target,
    digest: &Digest,
    size: u64,
    dest: &Path,
) -> Result<()> {
    let res = async {
        let what = format!("blob {digest}");
        let pace = crate::net::Pace::from_env()?;
        let mut s = crate::net::paced(
            target.get_blob(digest).await?,
            pace,
            target.name().to_string(),
            what.clone(),
        );
        let mut f = tokio::fs::File::create(dest)
            .await
            .map_err(Error::io("create", dest))?;
        let mut n: u64 = 0;
        while let Some(chunk) = s.next().await {
            let chunk = chunk?;
            n += chunk.len() as u64;
            if n > size {
                return Err(Error::Corrupt {
                    target: target.name().to_string(),
                    what,
                    reason: format!("longer than the {size} bytes its descriptor says"),
                });
            }
            f.write_all(&chunk)
                .await
                .map_err(Error::io("write", dest))?;
        }
        f.flush().await.map_err(Error::io("write", dest))?;
        if n != size {
            return Err(Error::Corrupt {
                target: target.name().to_string(),
                what,
                reason: format!("{n} bytes, its descriptor says {size}"),
            });
        }
        let found = crate::blocking::hash_file(dest.to_path_buf()).await?;
        check_digest(target, &what, digest, &found)
    }
    .await;
    if res.is_err() {
        let _ = tokio::fs::remove_file(dest).await;
    }
    res
}

/// `Err(DigestMismatch)` unless `found == expected`.
pub fn check_digest(
    target: &dyn Target,
    what: &str,
    expected: &Digest,
    found: &Digest,
) -> Result<()> {
    if found == expected {
        Ok(())
    } else {
        Err(Error::DigestMismatch {
            target: target.name().to_string(),
            what: what.to_string(),
            expected: *expected,
            found: *found,
        })
    }
}
