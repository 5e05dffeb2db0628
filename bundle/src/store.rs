//! The local store: an OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`).
//!
//! Because it is a plain OCI layout, `skopeo copy oci:<store>:<tag> ...` reads it. Blobs are
//! written to a temporary file in `blobs/sha256/`, hashed while written, and renamed to their
//! digest only once complete ([`BlobWriter::finish`]), so a blob path always holds the right bytes
//! and a crash leaves at most a `.tmp-*` file. `index.json` is rewritten by rename under an
//! exclusive lock (`index.json.lock`), so concurrent builds do not lose each other's entries.
//! The build cache lives in `cache/` beside the layout; OCI readers ignore it.
//!
//! ## Writers and `gc`: the store lock
//!
//! A writer (build, import, pull, tag) puts blobs in `blobs/sha256/` first and names them in
//! `index.json` last; until then they are unreferenced, and so are blobs it decides to reuse
//! because they are already there (a cached layer, a blob a pull skips). `gc` deletes exactly the
//! unreferenced blobs. Before issue 8 a `gc` running beside a build deleted finished layers the
//! build had not yet recorded, and the build exited 0 with a tag on a bundle that no longer
//! verified.
//!
//! So every writer holds a **shared** `flock` on `store.lock` ([`Store::write_lock`]) from before
//! its first look at the blobs until its manifest is in `index.json`, and `gc` holds it
//! **exclusively** ([`Store::gc`]) while it reads `index.json` and deletes. Writers run side by
//! side; `gc` waits (saying so) until no writer runs, and writers wait for a running `gc`, which
//! is short. Whatever `gc` sees unreferenced is therefore unreferenced by every finished
//! operation and wanted by no running one. A writer that dies drops its lock with its process
//! (flock locks belong to the open file), so a crash never wedges the store; its temporary files
//! are removed by a later `gc` once older than [`GC_TMP_AGE`] (kept as a second line of defence
//! for writers outside this protocol). Lock order, for both sides: `store.lock`, then
//! `index.json.lock`. Readers (verify, extract, export, ls) take no lock: they only read blobs
//! reachable from `index.json`, which `gc` never deletes.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashingReader, HashingWriter};
use crate::error::Error;
use crate::manifest::{Descriptor, KEY_REF_NAME, MEDIA_INDEX, MEDIA_MANIFEST};

/// Annotation in `index.json` recording the bundle id of a manifest, so ids resolve without
/// opening every manifest.
pub const KEY_ID: &str = "dev.sitebundle.id";

/// Name of the store lock (see the module documentation), beside `index.json`.
pub const STORE_LOCK: &str = "store.lock";

/// Temporary blob files older than this are debris of a crashed build, and `gc` removes them.
pub const GC_TMP_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// A place blobs can be read from (the local store, a staging directory, ...).
pub trait BlobSource: Sync {
    /// Open a blob for streaming. The caller verifies the digest while reading.
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>, Error>;
    /// Read `len` bytes at `offset` of a blob (used to fetch the index trailer without the layer).
    fn read_range(&self, digest: &Digest, offset: u64, len: u64) -> Result<Vec<u8>, Error>;
    /// Where a blob lives, for the message of an I/O error while reading it.
    fn location(&self, digest: &Digest) -> PathBuf {
        PathBuf::from(format!("blob {digest}"))
    }
}

/// The OCI layout `index.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayoutIndex {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Image index media type.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// One descriptor per (manifest, tag).
    pub manifests: Vec<Descriptor>,
}

impl Default for LayoutIndex {
    fn default() -> Self {
        LayoutIndex {
            schema_version: 2,
            media_type: MEDIA_INDEX.to_string(),
            manifests: Vec::new(),
        }
    }
}

/// One bundle known to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredBundle {
    /// Manifest digest.
    pub manifest: Digest,
    /// Bundle id (config digest).
    pub id: Option<Digest>,
    /// Tags pointing at it.
    pub tags: Vec<String>,
}

/// The local OCI layout store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The default location: `$SITEBUNDLE_HOME`, else `$XDG_DATA_HOME/sitebundle`, else
    /// `~/.local/share/sitebundle`.
    pub fn default_root() -> PathBuf {
        if let Some(h) = std::env::var_os("SITEBUNDLE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(h);
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(x).join("sitebundle");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".local/share/sitebundle")
    }

    /// Open (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, Error> {
        let root = root.into();
        let blobs = root.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(Error::io("create store directory", &blobs))?;
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            write_atomic(
                &index,
                &serde_json::to_vec(&LayoutIndex::default()).unwrap_or_default(),
            )?;
        }
        Ok(Store { root })
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the build cache lives.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// Path of a blob (which may not exist).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Is the blob present?
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Size of a present blob.
    pub fn blob_size(&self, d: &Digest) -> Result<u64, Error> {
        let p = self.blob_path(d);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::BlobMissing { digest: *d }),
            Err(e) => Err(Error::Io {
                op: "stat",
                path: p,
                source: e,
            }),
        }
    }

    /// Read a whole (small) blob and check its digest.
    pub fn read_blob(&self, d: &Digest, max: u64) -> Result<Vec<u8>, Error> {
        let mut r = HashingReader::new(self.open_blob(d)?.take(max + 1));
        let mut buf = Vec::new();
        r.read_to_end(&mut buf)
            .map_err(Error::io("read", self.blob_path(d)))?;
        if buf.len() as u64 > max {
            return Err(Error::corrupt(
                format!("blob {d}"),
                format!("larger than {max} bytes"),
            ));
        }
        let (found, _) = r.finish();
        if found != *d {
            return Err(Error::DigestMismatch {
                what: format!("blob {}", d),
                expected: *d,
                found,
            });
        }
        Ok(buf)
    }

    /// Start writing a blob; its digest is known at [`BlobWriter::finish`].
    pub fn blob_writer(&self) -> Result<BlobWriter, Error> {
        let dir = self.root.join("blobs/sha256");
        let tmp =
            temp_file_in(&dir, ".tmp-").map_err(Error::io("create temporary blob in", &dir))?;
        let file = tmp.reopen().map_err(Error::io("open", tmp.path()))?;
        Ok(BlobWriter {
            store: self.clone(),
            tmp,
            out: HashingWriter::new(BufWriter::with_capacity(256 * 1024, file)),
        })
    }

    /// Store `bytes` as a blob and return its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest, Error> {
        let d = Digest::of(bytes);
        if self.has_blob(&d) {
            return Ok(d);
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes)
            .map_err(Error::io("write blob", self.blob_path(&d)))?;
        w.finish().map(|(d, _)| d)
    }

    /// Read `index.json`.
    pub fn layout_index(&self) -> Result<LayoutIndex, Error> {
        let p = self.root.join("index.json");
        let bytes = fs::read(&p).map_err(Error::io("read", &p))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(p.display().to_string(), e.to_string()))
    }

    /// Record a manifest in `index.json`, with its bundle id and the given tags. A tag that
    /// pointed elsewhere is moved; a manifest with no tag gets one untagged entry.
    pub fn add_manifest(
        &self,
        manifest: Digest,
        size: u64,
        id: Digest,
        tags: &[String],
    ) -> Result<(), Error> {
        self.add_manifests(&[(manifest, size, id, tags.to_vec())])
    }

    /// [`Store::add_manifest`] for many manifests at once, with one rewrite of `index.json` and
    /// in time linear in its size. When two of them claim the same tag, the later one gets it.
    pub fn add_manifests(&self, adds: &[(Digest, u64, Digest, Vec<String>)]) -> Result<(), Error> {
        use std::collections::{HashMap, HashSet};
        for (_, _, _, tags) in adds {
            for t in tags {
                validate_tag(t)?;
            }
        }
        // Who gets each tag: the last manifest claiming it.
        let mut owner: HashMap<&str, usize> = HashMap::new();
        for (i, (_, _, _, tags)) in adds.iter().enumerate() {
            for t in tags {
                owner.insert(t.as_str(), i);
            }
        }
        let added: HashSet<Digest> = adds.iter().map(|a| a.0).collect();
        self.update_index(|idx| {
            idx.manifests
                .retain(|d| match d.annotations.get(KEY_REF_NAME) {
                    Some(t) => !owner.contains_key(t.as_str()),
                    None => !added.contains(&d.digest),
                });
            let mut present: HashSet<Digest> = idx.manifests.iter().map(|d| d.digest).collect();
            for (i, (manifest, size, id, tags)) in adds.iter().enumerate() {
                let entry = |tag: Option<&String>| {
                    let mut a = std::collections::BTreeMap::new();
                    a.insert(KEY_ID.to_string(), id.to_string());
                    if let Some(t) = tag {
                        a.insert(KEY_REF_NAME.to_string(), t.clone());
                    }
                    Descriptor {
                        media_type: MEDIA_MANIFEST.to_string(),
                        digest: *manifest,
                        size: *size,
                        annotations: a,
                    }
                };
                let mut seen = HashSet::new();
                let mine: Vec<&String> = tags
                    .iter()
                    .filter(|t| owner.get(t.as_str()) == Some(&i) && seen.insert(t.as_str()))
                    .collect();
                if mine.is_empty() {
                    if present.insert(*manifest) {
                        idx.manifests.push(entry(None));
                    }
                } else {
                    present.insert(*manifest);
                    for t in mine {
                        idx.manifests.push(entry(Some(t)));
                    }
                }
            }
        })
    }

    /// Remove a tag (the bundle stays, untagged if it was its last tag).
    pub fn untag(&self, tag: &str) -> Result<bool, Error> {
        let mut found = false;
        self.update_index(|idx| {
            for d in idx.manifests.iter_mut() {
                if d.annotations.get(KEY_REF_NAME).map(String::as_str) == Some(tag) {
                    d.annotations.remove(KEY_REF_NAME);
                    found = true;
                }
            }
            let mut seen = std::collections::HashSet::new();
            idx.manifests
                .retain(|d| d.annotations.contains_key(KEY_REF_NAME) || seen.insert(d.digest));
        })?;
        Ok(found)
    }

    /// Remove a manifest (with all its tags) from `index.json`. Its blobs stay until [`Store::gc`].
    pub fn remove_manifest(&self, manifest: &Digest) -> Result<bool, Error> {
        let mut found = false;
        self.update_index(|idx| {
            let before = idx.manifests.len();
            idx.manifests.retain(|d| d.digest != *manifest);
            found = idx.manifests.len() != before;
        })?;
        Ok(found)
    }

    /// Hold the store as a writer (shared with other writers, exclusive of [`Store::gc`]) until
    /// the returned guard is dropped. Take it before looking at which blobs exist and keep it
    /// until the manifest is recorded in `index.json`: see the module documentation.
    pub fn write_lock(&self) -> Result<WriteLock, Error> {
        let file = self.lock_file()?;
        self.flock(&file, rustix::fs::FlockOperation::LockShared)?;
        Ok(WriteLock { _file: file })
    }

    fn lock_file(&self) -> Result<File, Error> {
        let p = self.root.join(STORE_LOCK);
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(Error::io("open", &p))
    }

    fn flock(&self, f: &File, op: rustix::fs::FlockOperation) -> Result<(), Error> {
        rustix::fs::flock(f, op).map_err(|e| Error::Io {
            op: "lock",
            path: self.root.join(STORE_LOCK),
            source: e.into(),
        })
    }

    /// Delete every blob no manifest of `index.json` references (and temporary files older than
    /// [`GC_TMP_AGE`], which a crashed writer left). Returns (blobs removed, bytes freed).
    ///
    /// Holds the store lock exclusively (module documentation): it first waits until no build,
    /// pull or import is running on this store, and calls `on_wait` once if it has to.
    pub fn gc(&self, on_wait: impl FnOnce()) -> Result<(usize, u64), Error> {
        use rustix::fs::FlockOperation;
        let store_lock = self.lock_file()?;
        match rustix::fs::flock(&store_lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                on_wait();
                self.flock(&store_lock, FlockOperation::LockExclusive)?;
            }
            Err(e) => {
                return Err(Error::Io {
                    op: "lock",
                    path: self.root.join(STORE_LOCK),
                    source: e.into(),
                })
            }
        }
        let (_lock, idx) = self.lock_index()?;
        let mut keep = std::collections::HashSet::new();
        for d in &idx.manifests {
            keep.insert(d.digest);
            let bytes = self.read_blob(&d.digest, crate::manifest::MAX_JSON_BYTES)?;
            let m: crate::manifest::Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| Error::corrupt(format!("manifest {}", d.digest), e.to_string()))?;
            keep.insert(m.config.digest);
            keep.extend(m.layers.iter().map(|l| l.digest));
        }
        let dir = self.root.join("blobs/sha256");
        let now = std::time::SystemTime::now();
        let (mut removed, mut freed) = (0usize, 0u64);
        for entry in fs::read_dir(&dir).map_err(Error::io("read directory", &dir))? {
            let entry = entry.map_err(Error::io("read directory", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // A temporary file renamed or removed meanwhile by a writer outside the lock
            // protocol is not an error.
            let md = match entry.metadata() {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                r => r.map_err(Error::io("stat", entry.path()))?,
            };
            let drop = if name.starts_with(".tmp-") {
                md.modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|age| age > GC_TMP_AGE)
            } else {
                match format!("sha256:{name}").parse::<Digest>() {
                    Ok(d) => !keep.contains(&d),
                    Err(_) => false, // not ours: leave it
                }
            };
            if drop {
                match fs::remove_file(entry.path()) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    r => r.map_err(Error::io("remove", entry.path()))?,
                }
                removed += 1;
                freed += md.len();
            }
        }
        Ok((removed, freed))
    }

    fn lock_index(&self) -> Result<(File, LayoutIndex), Error> {
        let lock_path = self.root.join("index.json.lock");
        let lock = File::create(&lock_path).map_err(Error::io("create", &lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            Error::Io {
                op: "lock",
                path: lock_path.clone(),
                source: e.into(),
            }
        })?;
        let idx = self.layout_index()?;
        Ok((lock, idx))
    }

    fn update_index(&self, f: impl FnOnce(&mut LayoutIndex)) -> Result<(), Error> {
        let lock_path = self.root.join("index.json.lock");
        let lock = File::create(&lock_path).map_err(Error::io("create", &lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            Error::Io {
                op: "lock",
                path: lock_path.clone(),
                source: e.into(),
            }
        })?;
        let mut idx = self.layout_index()?;
        let before = serde_json::to_vec_pretty(&idx).unwrap_or_default();
        f(&mut idx);
        let bytes = serde_json::to_vec_pretty(&idx).unwrap_or_default();
        if bytes == before {
            // Nothing changed (a rebuild of what is already there): no rewrite, no fsync.
            return Ok(());
        }
        write_atomic(&self.root.join("index.json"), &bytes)
        // The lock is released when `_lock` is dropped.
    }

    /// Every bundle in the store, grouped by manifest.
    pub fn list(&self) -> Result<Vec<StoredBundle>, Error> {
        let idx = self.layout_index()?;
        let mut out: Vec<StoredBundle> = Vec::new();
        for d in idx.manifests {
            let id = d.annotations.get(KEY_ID).and_then(|s| s.parse().ok());
            let tag = d.annotations.get(KEY_REF_NAME).cloned();
            match out.iter_mut().find(|b| b.manifest == d.digest) {
                Some(b) => b.tags.extend(tag),
                None => out.push(StoredBundle {
                    manifest: d.digest,
                    id,
                    tags: tag.into_iter().collect(),
                }),
            }
        }
        Ok(out)
    }

    /// Resolve a reference to a manifest digest. A reference is a tag, a full digest (manifest
    /// digest or bundle id), or a unique prefix of one (`sha256:` optional, at least 4 hex digits).
    /// A bundle id held by several manifests (its zstd and gzip builds) names the zstd one, then
    /// the latest in `index.json`; a prefix of two different bundles is ambiguous.
    pub fn resolve(&self, reference: &str) -> Result<Digest, Error> {
        let bundles = self.list()?;
        if let Some(b) = bundles
            .iter()
            .find(|b| b.tags.iter().any(|t| t == reference))
        {
            return Ok(b.manifest);
        }
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        let is_hex =
            hex.len() >= 4 && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hex {
            return Err(Error::UnknownRef {
                reference: reference.to_string(),
            });
        }
        let hex = hex.to_ascii_lowercase();
        let mut matches: Vec<Digest> = Vec::new();
        for b in &bundles {
            let hit = b.manifest.hex().starts_with(&hex)
                || b.id.is_some_and(|id| id.hex().starts_with(&hex));
            if hit && !matches.contains(&b.manifest) {
                matches.push(b.manifest);
            }
        }
        if matches.len() > 1 {
            if let Some(m) = self.preferred_of_one_id(&bundles, &matches) {
                return Ok(m);
            }
        }
        match matches.len() {
            0 => Err(Error::UnknownRef {
                reference: reference.to_string(),
            }),
            1 => Ok(matches[0]),
            _ => Err(Error::AmbiguousRef {
                reference: reference.to_string(),
                candidates: matches
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

impl Store {
    /// When every manifest in `matches` carries one bundle id (the zstd and gzip builds of one
    /// site, say), the one a bundle id names: a manifest whose layers are all zstd over any
    /// other, then the latest in `index.json` (the most recently built, pulled, imported or
    /// tagged). The same rule as on targets (`spec/protocol.md`, "Bundle ids"). `None` when the
    /// matches are different bundles (a prefix shared by two ids stays ambiguous).
    fn preferred_of_one_id(&self, bundles: &[StoredBundle], matches: &[Digest]) -> Option<Digest> {
        let ids: Vec<Option<Digest>> = matches
            .iter()
            .map(|m| bundles.iter().find(|b| b.manifest == *m).and_then(|b| b.id))
            .collect();
        let first = ids.first().copied().flatten()?;
        if ids.iter().any(|i| *i != Some(first)) {
            return None;
        }
        let is_zstd = |m: &Digest| {
            self.read_blob(m, crate::manifest::MAX_JSON_BYTES)
                .ok()
                .and_then(|b| serde_json::from_slice::<crate::manifest::Manifest>(&b).ok())
                .is_some_and(|m| {
                    !m.layers.is_empty()
                        && m.layers
                            .iter()
                            .all(|l| l.media_type == crate::manifest::MEDIA_LAYER_ZSTD)
                })
        };
        // Latest: the manifest whose last entry in index.json comes last.
        let idx = self.layout_index().ok()?;
        let last = |m: &Digest| idx.manifests.iter().rposition(|d| d.digest == *m);
        let mut by_age: Vec<Digest> = matches.to_vec();
        by_age.sort_by_key(|m| last(m));
        let zstd: Vec<Digest> = by_age.iter().copied().filter(|m| is_zstd(m)).collect();
        zstd.last().or(by_age.last()).copied()
    }
}

impl BlobSource for Store {
    fn location(&self, digest: &Digest) -> PathBuf {
        self.blob_path(digest)
    }

    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>, Error> {
        let p = self.blob_path(digest);
        match File::open(&p) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::BlobMissing { digest: *digest })
            }
            Err(e) => Err(Error::Io {
                op: "open",
                path: p,
                source: e,
            }),
        }
    }

    fn read_range(&self, digest: &Digest, offset: u64, len: u64) -> Result<Vec<u8>, Error> {
        use std::os::unix::fs::FileExt;
        let p = self.blob_path(digest);
        let f = File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::BlobMissing { digest: *digest },
            _ => Error::Io {
                op: "open",
                path: p.clone(),
                source: e,
            },
        })?;
        let len = usize::try_from(len)
            .map_err(|_| Error::corrupt(format!("blob {digest}"), "range too large"))?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, offset)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => {
                    Error::corrupt(format!("blob {digest}"), "shorter than its descriptor says")
                }
                _ => Error::Io {
                    op: "read",
                    path: p.clone(),
                    source: e,
                },
            })?;
        Ok(buf)
    }
}

/// A writer's shared hold on the store ([`Store::write_lock`]); released when dropped.
#[derive(Debug)]
pub struct WriteLock {
    _file: File,
}

/// A blob being written; hashed as it goes, named by its digest when finished.
pub struct BlobWriter {
    store: Store,
    tmp: tempfile::NamedTempFile,
    out: HashingWriter<BufWriter<File>>,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.out.len()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Flush, and rename into place under its digest. Returns (digest, size).
    pub fn finish(self) -> Result<(Digest, u64), Error> {
        let (buf, digest, size) = self.out.finish();
        let file = buf.into_inner().map_err(|e| Error::Io {
            op: "write",
            path: self.tmp.path().to_path_buf(),
            source: e.into_error(),
        })?;
        drop(file);
        let dest = self.store.blob_path(&digest);
        if dest.exists() {
            // Same digest, same bytes: keep the existing file, drop ours.
            return Ok((digest, size));
        }
        self.tmp.persist(&dest).map_err(|e| Error::Io {
            op: "rename blob to",
            path: dest.clone(),
            source: e.error,
        })?;
        Ok((digest, size))
    }

    /// Finish, fail unless the bytes hash to `expected`, and keep the blob in its temporary file
    /// (not yet in the store): for an operation that publishes its blobs only once everything it
    /// brought is verified ([`crate::archive::import`]). Dropping it removes the file.
    pub fn finish_staged(
        self,
        expected: &Digest,
        what: &str,
    ) -> Result<tempfile::NamedTempFile, Error> {
        self.finish_checked(expected, what).map(|(_, tmp, _)| tmp)
    }

    /// Finish, and fail unless the bytes hash to `expected`.
    pub fn finish_verified(self, expected: &Digest, what: &str) -> Result<u64, Error> {
        let (store, tmp, size) = self.finish_checked(expected, what)?;
        let dest = store.blob_path(expected);
        if !dest.exists() {
            tmp.persist(&dest).map_err(|e| Error::Io {
                op: "rename blob to",
                path: dest.clone(),
                source: e.error,
            })?;
        }
        Ok(size)
    }

    /// Flush the temporary file and check its digest: the store, the file and its size.
    fn finish_checked(
        self,
        expected: &Digest,
        what: &str,
    ) -> Result<(Store, tempfile::NamedTempFile, u64), Error> {
        let (buf, digest, size) = self.out.finish();
        drop(buf.into_inner().map_err(|e| Error::Io {
            op: "write",
            path: self.tmp.path().to_path_buf(),
            source: e.into_error(),
        })?);
        if digest != *expected {
            return Err(Error::DigestMismatch {
                what: what.to_string(),
                expected: *expected,
                found: digest,
            });
        }
        Ok((self.store, self.tmp, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Validate a tag: what OCI allows in a reference tag.
pub fn validate_tag(t: &str) -> Result<(), Error> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRef {
            reference: t.to_string(),
            reason: "a tag is 1-128 of [A-Za-z0-9._-], starting with a letter, digit or _",
        })
    }
}

/// A new temporary file in `dir`, to be renamed into place, whose mode follows the umask like
/// any file a tool creates (`0666 & ~umask`: 0644 under the usual 022).
///
/// `tempfile` creates files 0600, which is right for secrets and wrong for what we publish: a
/// `file://` target's `index.json` and channel records, the store's blobs and `index.json`, an
/// exported archive or `sitebundle-init`'s status file renamed into place kept 0600, so a web
/// server running as another user could not read them (issue 8). Every file this project renames
/// into place is created here, or by `object_store`, which also follows the umask.
pub fn temp_file_in(dir: &Path, prefix: &str) -> io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
}

/// Write a small file atomically: temporary sibling, fsync, rename. The file's mode follows the
/// umask (see [`temp_file_in`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = temp_file_in(dir, ".tmp-").map_err(Error::io("create temporary file in", dir))?;
    tmp.write_all(bytes)
        .map_err(Error::io("write", tmp.path()))?;
    tmp.as_file()
        .sync_all()
        .map_err(Error::io("sync", tmp.path()))?;
    tmp.persist(path).map_err(|e| Error::Io {
        op: "rename into",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}
