//! The object-store target: S3, GCS, Azure Blob and a local directory, through `object_store`.
//!
//! ## Layout (under the URL's prefix)
//! ```text
//! oci-layout                          {"imageLayoutVersion":"1.0.0"}
//! index.json                          OCI image index: one entry per channel, with
//!                                     org.opencontainers.image.ref.name = channel name
//! blobs/sha256/<hex>                  manifests, configs, layers
//! channels/<name>.json                the channel record (authoritative)
//! ids/sha256/<hex>.json               which manifest carries bundle id sha256:<hex>
//!                                     ([`crate::resolve`]), written with the bundle
//! history/<name>/<seq:010>.json       one immutable object per channel move (append-only)
//! ```
//! It is an OCI image layout, so `skopeo copy oci:DIR:<channel> ...` reads a directory target.
//!
//! ## Compare-and-swap
//! A channel record is replaced with `PutMode::Update` (the ETag / generation read just before),
//! or created with `PutMode::Create`; the service refuses the write if someone moved the channel
//! in between, and we report [`Error::ChannelConflict`]. `LocalFileSystem` has no
//! `PutMode::Update`, so the directory target does its own CAS: an exclusive `flock` on
//! `channels/.lock`, compare, write a temporary file, fsync, rename, fsync the directory.
//! `index.json` is derived from the channel records and rewritten after every move (CAS-looped on
//! cloud stores, under the lock on a directory). History events are created with
//! `PutMode::Create` under the next free sequence number, so two writers never overwrite each other.
//! An id record is replaced the same way as a channel record (conditional write on cloud stores,
//! `ids/.lock` on a directory), following [`crate::resolve::replaces`].
//!
//! Blob writes are atomic on every store (a single PUT, or a multipart upload that only appears
//! when completed), so a present blob is a complete blob.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bundle::manifest::{Descriptor, KEY_REF_NAME, MEDIA_INDEX, MEDIA_MANIFEST};
use bundle::store::LayoutIndex;
use bundle::Digest;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion, WriteMultipart,
};

use crate::channel::{validate_channel, ChannelRecord, HistoryEvent};
use crate::error::{Error, Result};
use crate::net;
use crate::resolve::{Found, IdRecord};
use crate::target::{check_digest, BlobStream, Capabilities, ChannelMode, Target};

/// Blobs above this size go up as multipart uploads (S3 caps a single PUT at 5 GiB, and
/// multipart keeps memory flat).
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Part size for multipart uploads (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts in flight per multipart upload.
const PART_CONCURRENCY: usize = 4;
/// Attempts at rewriting `index.json` or finding a free history slot before giving up.
const CAS_LOOP_ATTEMPTS: usize = 16;
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Which flavour of object store; decides how channels are swapped.
#[derive(Debug, Clone)]
pub enum StoreKind {
    /// A cloud store with conditional writes (S3, GCS, Azure).
    Cloud,
    /// A local directory (LocalFileSystem rooted here): CAS by lock file + rename.
    Dir(PathBuf),
}

/// A target on an `object_store` store.
#[derive(Debug, Clone)]
pub struct StoreTarget {
    name: String,
    store: Arc<dyn ObjectStore>,
    prefix: String,
    kind: StoreKind,
}

impl StoreTarget {
    /// A target over `store`, with every key under `prefix` (may be empty). `name` is the
    /// (redacted) URL used in messages.
    pub fn new(
        name: impl Into<String>,
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        kind: StoreKind,
    ) -> StoreTarget {
        StoreTarget {
            name: name.into(),
            store,
            prefix: prefix.trim_matches('/').to_string(),
            kind,
        }
    }

    /// A directory target rooted at `dir` (created if missing).
    pub fn dir(dir: &FsPath) -> Result<StoreTarget> {
        std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| {
            Error::Backend {
                target: format!("file://{}", dir.display()),
                op: "open",
                object: String::new(),
                retryable: false,
                source: Box::new(e),
            }
        })?;
        Ok(StoreTarget::new(
            format!("file://{}", dir.display()),
            Arc::new(fs),
            "",
            StoreKind::Dir(dir.to_path_buf()),
        ))
    }

    fn key(&self, rel: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rel)
        } else {
            Path::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn blob_key(&self, d: &Digest) -> Path {
        self.key(&format!("blobs/sha256/{}", d.hex()))
    }

    fn channel_key(&self, c: &str) -> Path {
        self.key(&format!("channels/{c}.json"))
    }

    fn history_dir(&self, c: &str) -> Path {
        self.key(&format!("history/{c}"))
    }

    fn err(&self, op: &'static str, object: impl ToString, e: object_store::Error) -> Error {
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound {
                target: self.name.clone(),
                what: object.to_string(),
            },
            e => {
                let retryable = matches!(e, object_store::Error::Generic { .. });
                Error::Backend {
                    target: self.name.clone(),
                    op,
                    object: object.to_string(),
                    retryable,
                    source: Box::new(e),
                }
            }
        }
    }

    fn corrupt(&self, what: impl ToString, reason: impl ToString) -> Error {
        Error::Corrupt {
            target: self.name.clone(),
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Get an object's bytes and version, or `None` when it does not exist.
    async fn get_versioned(
        &self,
        key: &Path,
        op: &'static str,
    ) -> Result<Option<(Bytes, UpdateVersion)>> {
        match self.store.get(key).await {
            Ok(r) => {
                let v = UpdateVersion {
                    e_tag: r.meta.e_tag.clone(),
                    version: r.meta.version.clone(),
                };
                let b = self
                    .read_capped(r, crate::net::MAX_INDEX_JSON, op, key)
                    .await?;
                Ok(Some((b, v)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(op, key, e)),
        }
    }

    /// Read a whole object of at most `max` bytes, refusing it as soon as it passes the cap
    /// (its declared size first), through [`crate::net::collect`].
    async fn read_capped(
        &self,
        r: object_store::GetResult,
        max: u64,
        op: &'static str,
        key: &Path,
    ) -> Result<Bytes> {
        let declared = Some(r.meta.size);
        let me = self.clone();
        let k = key.clone();
        let s = r.into_stream().map_err(move |e| me.err(op, &k, e));
        crate::net::collect(s, max, declared, &self.name, key.as_ref()).await
    }

    fn parse_record(&self, key: &Path, bytes: &[u8]) -> Result<ChannelRecord> {
        serde_json::from_slice::<ChannelRecord>(bytes).map_err(|e| self.corrupt(key, e))
    }

    /// Make sure `oci-layout` exists (create-only; someone else creating it first is fine).
    async fn ensure_layout(&self) -> Result<()> {
        let key = self.key("oci-layout");
        if self.store.head(&key).await.is_ok() {
            return Ok(());
        }
        let r = self
            .store
            .put_opts(
                &key,
                PutPayload::from_static(OCI_LAYOUT),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match r {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(self.err("write", &key, e)),
        }
    }

    /// Rewrite `index.json` so `channel` names `rec` (CAS loop on cloud stores).
    async fn update_index_cloud(&self, channel: &str, rec: &ChannelRecord) -> Result<()> {
        let key = self.key("index.json");
        for _ in 0..CAS_LOOP_ATTEMPTS {
            let cur = self.get_versioned(&key, "read").await?;
            let mut idx = match &cur {
                Some((b, _)) => serde_json::from_slice(b).map_err(|e| self.corrupt(&key, e))?,
                None => LayoutIndex::default(),
            };
            set_index_entry(&mut idx, channel, rec);
            let body = serde_json::to_vec_pretty(&idx).map_err(|e| self.corrupt(&key, e))?;
            let mode = match cur {
                Some((_, v)) => PutMode::Update(v),
                None => PutMode::Create,
            };
            match self
                .store
                .put_opts(&key, body.into(), PutOptions::from(mode))
                .await
            {
                Ok(_) => return Ok(()),
                Err(object_store::Error::Precondition { .. })
                | Err(object_store::Error::AlreadyExists { .. }) => continue,
                Err(e) => return Err(self.err("write", &key, e)),
            }
        }
        Err(self.corrupt(&key, "kept changing while being rewritten"))
    }

    /// Write the id record `new` on a cloud store: conditional create or replace, re-read and
    /// re-decided on a conflict.
    async fn record_id_cloud(&self, new: &IdRecord) -> Result<()> {
        let key = self.key(&crate::resolve::id_record_key(&new.id));
        for _ in 0..CAS_LOOP_ATTEMPTS {
            let cur = self
                .get_small(&key, crate::net::MAX_RECORD, "read id record")
                .await?;
            let mode = match &cur {
                Some((b, v)) => {
                    // An unreadable record is replaced: it names nothing a reader could use.
                    match serde_json::from_slice::<IdRecord>(b) {
                        Ok(r) if r.id == new.id && !r.yields_to(new) => return Ok(()),
                        _ => PutMode::Update(v.clone()),
                    }
                }
                None => PutMode::Create,
            };
            let body = serde_json::to_vec_pretty(new).map_err(|e| self.corrupt(&key, e))?;
            match self
                .store
                .put_opts(&key, body.into(), PutOptions::from(mode))
                .await
            {
                Ok(_) => return Ok(()),
                Err(object_store::Error::Precondition { .. })
                | Err(object_store::Error::AlreadyExists { .. }) => continue,
                Err(e) => return Err(self.err("write", &key, e)),
            }
        }
        Err(self.corrupt(&key, "kept changing while being rewritten"))
    }

    /// Get a small object (at most `max` bytes) and its version; `None` when it does not exist.
    async fn get_small(
        &self,
        key: &Path,
        max: u64,
        op: &'static str,
    ) -> Result<Option<(Bytes, UpdateVersion)>> {
        match self.store.get(key).await {
            Ok(r) => {
                let v = UpdateVersion {
                    e_tag: r.meta.e_tag.clone(),
                    version: r.meta.version.clone(),
                };
                Ok(Some((self.read_capped(r, max, op, key).await?, v)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(op, key, e)),
        }
    }
}

/// The directory target's id record write, on the blocking pool: lock `ids/.lock`, compare by
/// the rule, write by rename.
fn dir_record_id(root: &FsPath, new: &IdRecord) -> Result<()> {
    let dir = root.join(crate::resolve::ID_RECORD_DIR);
    std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
    let lock_path = root.join("ids/.lock");
    let lock = std::fs::File::create(&lock_path).map_err(Error::io("create", &lock_path))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| Error::Io {
        op: "lock",
        path: lock_path.clone(),
        source: e.into(),
    })?;
    let key = crate::resolve::id_record_key(&new.id);
    let path = root.join(&key);
    // A record too large to be one is replaced like an unreadable one.
    if let Ok(Some(b)) = read_small(&path, net::MAX_RECORD, "", &key) {
        if let Ok(r) = serde_json::from_slice::<IdRecord>(&b) {
            if r.id == new.id && !r.yields_to(new) {
                return Ok(());
            }
        }
    }
    let body = serde_json::to_vec_pretty(new).map_err(|e| Error::Task(e.to_string()))?;
    write_atomic(&path, &body)?;
    drop(lock);
    Ok(())
}

/// Point the index entry named `channel` at `rec` (one entry per channel).
fn set_index_entry(idx: &mut LayoutIndex, channel: &str, rec: &ChannelRecord) {
    idx.manifests
        .retain(|d| d.annotations.get(KEY_REF_NAME).map(String::as_str) != Some(channel));
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert(KEY_REF_NAME.to_string(), channel.to_string());
    annotations.insert(bundle::store::KEY_ID.to_string(), rec.id.to_string());
    idx.manifests.push(Descriptor {
        media_type: MEDIA_MANIFEST.to_string(),
        digest: rec.manifest,
        size: rec.size,
        annotations,
    });
    idx.manifests.sort_by(|a, b| {
        a.annotations
            .get(KEY_REF_NAME)
            .cmp(&b.annotations.get(KEY_REF_NAME))
    });
    idx.media_type = MEDIA_INDEX.to_string();
}

/// The directory target's compare-and-swap, run on the blocking pool: lock, compare, write the
/// record and `index.json` by rename, unlock.
fn dir_swap(
    root: &FsPath,
    name: &str,
    channel: &str,
    expected: Option<&ChannelRecord>,
    new: &ChannelRecord,
) -> Result<()> {
    let dir = root.join("channels");
    std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
    let lock_path = dir.join(".lock");
    let lock = std::fs::File::create(&lock_path).map_err(Error::io("create", &lock_path))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| Error::Io {
        op: "lock",
        path: lock_path.clone(),
        source: e.into(),
    })?;
    let path = dir.join(format!("{channel}.json"));
    let what = format!("channels/{channel}.json");
    let current: Option<ChannelRecord> = match read_small(&path, net::MAX_RECORD, name, &what)? {
        Some(b) => Some(serde_json::from_slice(&b).map_err(|e| Error::Corrupt {
            target: name.to_string(),
            what,
            reason: e.to_string(),
        })?),
        None => None,
    };
    if current.as_ref().map(|r| r.manifest) != expected.map(|r| r.manifest) {
        return Err(Error::ChannelConflict {
            target: name.to_string(),
            channel: channel.to_string(),
            expected: ChannelRecord::describe(expected),
            found: ChannelRecord::describe(current.as_ref()),
        });
    }
    // index.json: same lock, so concurrent swaps of different channels keep each other's
    // entries. Read before the record is written, so an unreadable index fails the swap with
    // the channel unmoved.
    let ipath = root.join("index.json");
    let mut idx = match read_small(&ipath, net::MAX_INDEX_JSON, name, "index.json")? {
        Some(b) => serde_json::from_slice(&b).map_err(|e| Error::Corrupt {
            target: name.to_string(),
            what: "index.json".into(),
            reason: e.to_string(),
        })?,
        None => LayoutIndex::default(),
    };
    let body = serde_json::to_vec_pretty(new).map_err(|e| Error::Task(e.to_string()))?;
    write_atomic(&path, &body)?;
    set_index_entry(&mut idx, channel, new);
    let body = serde_json::to_vec_pretty(&idx).map_err(|e| Error::Task(e.to_string()))?;
    write_atomic(&ipath, &body)?;
    drop(lock);
    Ok(())
}

/// Read one of the directory target's own small files (a channel record, `index.json`, an id
/// record) with the cap a remote reader applies to it ([`net::read_local_capped`]): a swap must
/// not read a huge file into memory, nor follow a link out of the target. `None` when absent.
fn read_small(path: &FsPath, max: u64, target: &str, what: &str) -> Result<Option<Vec<u8>>> {
    use net::LocalFile;
    match net::read_local_capped(path, max).map_err(Error::io("read", path))? {
        LocalFile::Missing => Ok(None),
        LocalFile::Bytes(b) => Ok(Some(b)),
        LocalFile::TooLarge => Err(net::too_large(target, what, max)),
        LocalFile::NotAFile => Err(Error::Corrupt {
            target: target.to_string(),
            what: what.to_string(),
            reason: "not a regular file (a symlink, a directory, a fifo or a device);                      this target writes only regular files there"
                .into(),
        }),
    }
}

/// Write a file by temporary file + fsync + rename + directory fsync. Its mode follows the umask
/// (`bundle::store::temp_file_in`), as the blobs `object_store` writes do: a web server running
/// as another user serves this directory.
fn write_atomic(path: &FsPath, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(FsPath::new("."));
    let mut tmp = bundle::store::temp_file_in(dir, ".tmp-")
        .map_err(Error::io("create temporary file in", dir))?;
    tmp.write_all(bytes)
        .map_err(Error::io("write", tmp.path()))?;
    tmp.as_file()
        .sync_all()
        .map_err(Error::io("sync", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| Error::io("rename into", path)(e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[async_trait]
impl Target for StoreTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            writable: true,
            channels: ChannelMode::CompareAndSwap,
            history: true,
        }
    }

    async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let key = self.blob_key(digest);
        match self.store.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err("check blob", digest, e)),
        }
    }

    async fn get_blob(&self, digest: &Digest) -> Result<BlobStream> {
        let key = self.blob_key(digest);
        let r = self
            .store
            .get(&key)
            .await
            .map_err(|e| self.err("get blob", format!("blob {digest}"), e))?;
        let me = self.clone();
        let d = *digest;
        Ok(r.into_stream()
            .map_err(move |e| me.err("read blob", d, e))
            .boxed())
    }

    async fn get_blob_range(&self, digest: &Digest, offset: u64, len: u64) -> Result<Bytes> {
        let key = self.blob_key(digest);
        self.store
            .get_range(&key, offset..offset + len)
            .await
            .map_err(|e| self.err("read range of", format!("blob {digest}"), e))
    }

    async fn get_manifest(&self, digest: &Digest) -> Result<Bytes> {
        let key = self.blob_key(digest);
        let r = self
            .store
            .get(&key)
            .await
            .map_err(|e| self.err("get manifest", format!("manifest {digest}"), e))?;
        let b = self
            .read_capped(r, crate::net::MAX_MANIFEST, "get manifest", &key)
            .await?;
        let b2 = b.clone();
        let found = crate::blocking::run(move || Digest::of(&b2)).await?;
        check_digest(self, &format!("manifest {digest}"), digest, &found)?;
        Ok(b)
    }

    async fn read_channel(&self, channel: &str) -> Result<Option<ChannelRecord>> {
        validate_channel(channel)?;
        let key = self.channel_key(channel);
        match self.get_versioned(&key, "read channel").await? {
            Some((b, _)) => Ok(Some(self.parse_record(&key, &b)?)),
            None => Ok(None),
        }
    }

    async fn list_channels(&self) -> Result<Vec<String>> {
        let dir = self.key("channels");
        let l = self
            .store
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| self.err("list", &dir, e))?;
        let mut out: Vec<String> = l
            .objects
            .iter()
            .filter_map(|o| {
                o.location
                    .filename()?
                    .strip_suffix(".json")
                    .map(String::from)
            })
            .filter(|c| validate_channel(c).is_ok())
            .collect();
        out.sort();
        Ok(out)
    }

    async fn history(&self, channel: &str) -> Result<Vec<HistoryEvent>> {
        validate_channel(channel)?;
        let dir = self.history_dir(channel);
        let l = match self.store.list_with_delimiter(Some(&dir)).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.err("list", &dir, e)),
        };
        let mut keys: Vec<Path> = l.objects.into_iter().map(|o| o.location).collect();
        if keys.len() > crate::net::MAX_HISTORY_EVENTS {
            return Err(self.corrupt(
                &dir,
                format!("more than {} events", crate::net::MAX_HISTORY_EVENTS),
            ));
        }
        keys.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        let events: Vec<HistoryEvent> = futures::stream::iter(keys)
            .map(|k| async move {
                let r = self
                    .store
                    .get(&k)
                    .await
                    .map_err(|e| self.err("read history", &k, e))?;
                let b = self
                    .read_capped(r, crate::net::MAX_RECORD, "read history", &k)
                    .await?;
                serde_json::from_slice::<HistoryEvent>(&b).map_err(|e| self.corrupt(&k, e))
            })
            .buffered(8)
            .try_collect()
            .await?;
        Ok(events)
    }

    async fn put_blob(&self, digest: &Digest, size: u64, file: &FsPath) -> Result<()> {
        let key = self.blob_key(digest);
        if size <= MULTIPART_THRESHOLD {
            let bytes = tokio::fs::read(file)
                .await
                .map_err(Error::io("read", file))?;
            self.store
                .put(&key, Bytes::from(bytes).into())
                .await
                .map_err(|e| self.err("put blob", digest, e))?;
        } else {
            use tokio::io::AsyncReadExt;
            let up = self
                .store
                .put_multipart(&key)
                .await
                .map_err(|e| self.err("start upload of", digest, e))?;
            let mut w = WriteMultipart::new_with_chunk_size(up, PART_SIZE);
            let mut f = tokio::fs::File::open(file)
                .await
                .map_err(Error::io("open", file))?;
            let mut buf = vec![0u8; PART_SIZE];
            loop {
                let n = f.read(&mut buf).await.map_err(Error::io("read", file))?;
                if n == 0 {
                    break;
                }
                if let Err(e) = w.wait_for_capacity(PART_CONCURRENCY).await {
                    return Err(self.err("upload part of", digest, e));
                }
                w.write(&buf[..n]);
            }
            w.finish()
                .await
                .map_err(|e| self.err("complete upload of", digest, e))?;
        }
        // Verify: the object is there with the right size.
        let meta = self
            .store
            .head(&key)
            .await
            .map_err(|e| self.err("check uploaded blob", digest, e))?;
        if meta.size != size {
            return Err(self.corrupt(
                format!("blob {digest}"),
                format!("{} bytes after upload, expected {size}", meta.size),
            ));
        }
        Ok(())
    }

    async fn put_manifest(&self, digest: &Digest, bytes: Bytes) -> Result<()> {
        self.ensure_layout().await?;
        let key = self.blob_key(digest);
        self.store
            .put(&key, bytes.into())
            .await
            .map_err(|e| self.err("put manifest", digest, e))?;
        Ok(())
    }

    async fn lookup_id(&self, id: &Digest) -> Result<Option<Found>> {
        let key = self.key(&crate::resolve::id_record_key(id));
        let Some((b, _)) = self
            .get_small(&key, crate::net::MAX_RECORD, "read id record")
            .await?
        else {
            return Ok(None);
        };
        let r: IdRecord = serde_json::from_slice(&b).map_err(|e| self.corrupt(&key, e))?;
        if r.id != *id {
            return Err(self.corrupt(&key, format!("records bundle id {}", r.id)));
        }
        Ok(Some(Found {
            manifest: r.manifest,
            bytes: None,
        }))
    }

    async fn lookup_id_legacy(&self, id: &Digest) -> Result<Option<Digest>> {
        let key = self.key("index.json");
        match self.get_versioned(&key, "read").await? {
            Some((b, _)) => {
                crate::resolve::id_in_layout_index(&b, id).map_err(|e| self.corrupt(&key, e))
            }
            None => Ok(None),
        }
    }

    async fn record_id(&self, manifest: &Digest, bytes: &Bytes) -> Result<()> {
        let rec = IdRecord::of_manifest(*manifest, bytes)?;
        if let StoreKind::Dir(root) = &self.kind {
            let root = root.clone();
            return crate::blocking::run(move || dir_record_id(&root, &rec)).await?;
        }
        self.record_id_cloud(&rec).await
    }

    async fn swap_channel(
        &self,
        channel: &str,
        expected: Option<&ChannelRecord>,
        new: &ChannelRecord,
    ) -> Result<()> {
        validate_channel(channel)?;
        if let StoreKind::Dir(root) = &self.kind {
            let (root, name, channel) = (root.clone(), self.name.clone(), channel.to_string());
            let (expected, new) = (expected.cloned(), new.clone());
            return crate::blocking::run(move || {
                dir_swap(&root, &name, &channel, expected.as_ref(), &new)
            })
            .await?;
        }
        let key = self.channel_key(channel);
        let cur = self.get_versioned(&key, "read channel").await?;
        let conflict = |found: Option<&ChannelRecord>| Error::ChannelConflict {
            target: self.name.clone(),
            channel: channel.to_string(),
            expected: ChannelRecord::describe(expected),
            found: ChannelRecord::describe(found),
        };
        let mode = match (&cur, expected) {
            (None, None) => PutMode::Create,
            (Some((b, v)), Some(exp)) => {
                let rec = self.parse_record(&key, b)?;
                if rec.manifest != exp.manifest {
                    return Err(conflict(Some(&rec)));
                }
                PutMode::Update(v.clone())
            }
            (Some((b, _)), None) => return Err(conflict(Some(&self.parse_record(&key, b)?))),
            (None, Some(_)) => return Err(conflict(None)),
        };
        let body = serde_json::to_vec_pretty(new).map_err(|e| self.corrupt(&key, e))?;
        match self
            .store
            .put_opts(&key, body.into(), PutOptions::from(mode))
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::Precondition { .. })
            | Err(object_store::Error::AlreadyExists { .. }) => {
                let now = self.read_channel(channel).await?;
                return Err(conflict(now.as_ref()));
            }
            Err(e) => return Err(self.err("move channel", channel, e)),
        }
        self.update_index_cloud(channel, new).await
    }

    async fn append_history(&self, event: &HistoryEvent) -> Result<()> {
        validate_channel(&event.channel)?;
        let dir = self.history_dir(&event.channel);
        let mut next = match self.store.list_with_delimiter(Some(&dir)).await {
            Ok(l) => {
                l.objects
                    .iter()
                    .filter_map(|o| {
                        o.location
                            .filename()?
                            .strip_suffix(".json")?
                            .parse::<u64>()
                            .ok()
                    })
                    .max()
                    .unwrap_or(0)
                    + 1
            }
            Err(object_store::Error::NotFound { .. }) => 1,
            Err(e) => return Err(self.err("list", &dir, e)),
        };
        for _ in 0..CAS_LOOP_ATTEMPTS {
            let mut ev = event.clone();
            ev.seq = next;
            let key = self.key(&format!("history/{}/{next:010}.json", event.channel));
            let body = serde_json::to_vec_pretty(&ev).map_err(|e| self.corrupt(&key, e))?;
            match self
                .store
                .put_opts(&key, body.into(), PutOptions::from(PutMode::Create))
                .await
            {
                Ok(_) => return Ok(()),
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => next += 1,
                Err(e) => return Err(self.err("append history", &key, e)),
            }
        }
        Err(self.corrupt(
            format!("history/{}", event.channel),
            "no free sequence number after several attempts",
        ))
    }
}
