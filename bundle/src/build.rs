//! Building a bundle from a site directory into the local store.
//!
//! Pipeline: walk (sorted, checked) → hash every file with BLAKE3 on rayon, reusing the build
//! cache → assign layers ([`crate::layout`]) → write the layers in parallel (each streams its
//! canonical tar through sha256 for the `diff_id`, the compressor, and sha256 again for the blob
//! digest, straight into the store) → config → manifest → `index.json`.
//!
//! Memory stays flat: file contents are streamed in [`COPY_BUFFER`] chunks, never held whole.
//! Each file is hashed a second time while it is streamed into its layer, so a file that changed
//! since the walk (or a stale cache entry) is caught rather than bundled under the wrong hash.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use rayon::prelude::*;

use crate::cache::{self, CachedLayer, FileCache};
use crate::compress::{write_index_trailer, Compression};
use crate::digest::{Digest, FileHash, HashingWriter};
use crate::error::{Error, Result};
use crate::frames::{self, CopyError, FrameCheck, FrameMap, FrameRec};
use crate::index::{Entry, EntryKind, Index};
use crate::layout::{self, Member};
use crate::manifest::*;
use crate::midstate::Sha256Resumable;
use crate::progress::Progress;
use crate::store::Store;
use crate::tar;
use crate::walk::{walk, WalkOptions};

/// Files at least this large are hashed in parallel over their chunks (BLAKE3's
/// `update_rayon`), [`HASH_CHUNK`] at a time: below it, parallelism across files already keeps
/// both cores busy.
///
/// They used to be hashed through a memory map (`update_mmap_rayon`). A file another process
/// truncates while it is mapped turns the next access to a page past its end into SIGBUS, which
/// killed `build` with no message (issue 8: exit 135 with a 4 MiB file truncated mid-hash). A
/// site directory is written by a generator we do not control, so no input file is known to be
/// immutable; `MAP_PRIVATE` does not help (pages not yet faulted in still come from the file).
/// So build input is read with `read(2)` only, and a file that shrinks or grows is reported as
/// [`Error::ChangedDuringBuild`].
pub const PARALLEL_HASH_THRESHOLD: u64 = 4 * 1024 * 1024;
/// How much of a large file is read before it is hashed in parallel; two such buffers are in
/// flight, one being hashed while the next is read.
pub const HASH_CHUNK: usize = 2 * 1024 * 1024;
/// Read buffer for streaming file contents into layers.
pub const COPY_BUFFER: usize = 256 * 1024;

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Layer compression.
    pub compression: Compression,
    /// `os` of the image config.
    pub os: String,
    /// `architecture` of the image config.
    pub architecture: String,
    /// `variant` of the image config (`v8` for linux/arm64/v8), if any.
    pub variant: Option<String>,
    /// What the walk leaves out.
    pub walk: WalkOptions,
    /// Use and update the build cache.
    pub use_cache: bool,
    /// Tags to give the bundle in the store.
    pub tags: Vec<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            compression: Compression::Zstd,
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
            walk: WalkOptions::default(),
            use_cache: true,
            tags: Vec::new(),
        }
    }
}

/// What a build did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    /// Bundle id: the config digest, content-only.
    pub id: Digest,
    /// Manifest digest: what a registry pull or a Kubernetes image reference by digest uses.
    pub manifest: Digest,
    /// Manifest size.
    pub manifest_size: u64,
    /// Regular files.
    pub files: usize,
    /// Bytes of regular files.
    pub bytes: u64,
    /// Number of layers (layer 0 included).
    pub layers: usize,
    /// Layers taken from the cache without reading or compressing.
    pub layers_reused: usize,
    /// Files whose hash came from the cache.
    pub files_cached: usize,
    /// Total size of the layer blobs.
    pub compressed_bytes: u64,
    /// zstd frames in the layers (one per run of members, see [`crate::frames`]); 0 for gzip.
    pub frames: usize,
    /// Frames compressed from the site files by this build; the others were copied from the
    /// blobs of the previous build (or whole layers were reused).
    pub frames_compressed: usize,
    /// Uncompressed tar bytes of the frames compressed by this build.
    pub tar_bytes_compressed: u64,
    /// Frames copied from earlier blobs as they are, without being decompressed: the unchanged
    /// start of a rebuilt layer, whose `diff_id` hash state the frame cache recorded (see
    /// [`crate::midstate`]). The other copied frames were decompressed and checked.
    pub frames_copied_raw: usize,
    /// Layer compression.
    pub compression: Compression,
    /// Things left out.
    pub warnings: Vec<String>,
}

/// Leave out every link that does not resolve through the bundle's own entries (see
/// [`crate::links`]), until none is left: dropping one link can leave another, which went through
/// it, dangling. The walk already dropped what is bad on disk; this catches links that resolve on
/// disk only through an entry the bundle does not carry (an excluded directory, a dropped link).
fn drop_unresolvable_links(entries: &mut Vec<Entry>, progress: &dyn Progress) {
    loop {
        let bad = crate::links::bad_links(entries);
        if bad.is_empty() {
            return;
        }
        for &(i, problem) in bad.iter().rev() {
            let e = entries.remove(i);
            progress.warn(&format!("dropped symlink {}: {problem}", e.path));
        }
    }
}

/// Build the site at `src` into `store`.
pub fn build(
    src: &Path,
    store: &Store,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuildReport> {
    for t in &opts.tags {
        crate::store::validate_tag(t)?;
    }
    check_platform(&opts.os, &opts.architecture, opts.variant.as_deref())?;
    // From before the layer cache looks at which blobs exist until the manifest is in
    // index.json: `gc` cannot delete what this build writes or reuses (see `crate::store`).
    let _writing = store.write_lock()?;
    // The file cache loads while the site is walked (both are a few percent of a rebuild
    // with nothing changed, one serial): the walk's errors come first, as before.
    let (walked, file_cache) = rayon::join(
        || walk(src, &opts.walk),
        || match std::fs::canonicalize(src) {
            Ok(canon) if opts.use_cache => FileCache::load(&store.cache_dir(), &canon),
            _ => FileCache::default(),
        },
    );
    let (mut walked, mut file_cache) = (walked?, file_cache);
    for w in &walked.warnings {
        progress.warn(w);
    }
    let canon = std::fs::canonicalize(src).map_err(Error::io("resolve", src))?;
    // Files are opened relative to this handle: a site path joined to the site's path may be
    // longer than PATH_MAX (see `crate::dirfd`).
    let root_fd = crate::dirfd::open_dir_path(&canon).map_err(Error::io("open", &canon))?;
    let root = root_fd.as_fd();

    // Hash.
    let total: u64 = walked.files.iter().map(|f| f.size).sum();
    progress.start("hash", total);
    let hashed: Vec<Result<(FileHash, bool)>> = walked
        .files
        .par_iter()
        .enumerate()
        .map(|(i, f)| {
            let stamp = (f.size, f.stamp);
            let r = match file_cache.get(i, f.path.as_str(), &stamp) {
                Some(h) => Ok((h, true)),
                None => hash_file(root, &src.join(f.path.as_str()), f.path.as_str(), f.size)
                    .map(|h| (h, false)),
            };
            progress.advance(f.size);
            r
        })
        .collect();
    progress.finish();
    // The loaded entries are not needed any more; `save` writes the new ones, unless they are
    // the same.
    let cache_unchanged = file_cache.unchanged(walked.files.len());
    file_cache.release_loaded();
    let mut files_cached = 0;
    let mut file_hashes = Vec::with_capacity(walked.files.len());
    for h in hashed {
        let (hash, cached) = h?;
        files_cached += usize::from(cached);
        file_hashes.push(hash);
    }
    let (dirs, symlinks) = (
        std::mem::take(&mut walked.dirs),
        std::mem::take(&mut walked.symlinks),
    );
    let files = &walked.files;
    // The new file cache is known now: written while the index is put together (a serial
    // 20 ms on a 53,000-file site, beside work that is partly serial too). A build that fails
    // below with a file changed under it empties it again.
    let (index, ()) = rayon::join(
        || -> Result<(Index, u32)> {
            let mut entries: Vec<Entry> = files
                .par_iter()
                .zip(&file_hashes)
                .map(|(f, &hash)| Entry {
                    path: f.path.clone(),
                    kind: EntryKind::File {
                        size: f.size,
                        hash,
                        executable: f.executable,
                    },
                    layer: 0,
                })
                .collect();
            entries.reserve(dirs.len() + symlinks.len());
            entries.extend(dirs.into_iter().map(|path| Entry {
                path,
                kind: EntryKind::Dir,
                layer: 0,
            }));
            entries.extend(symlinks.into_iter().map(|(path, target)| Entry {
                path,
                kind: EntryKind::Symlink { target },
                layer: 0,
            }));
            // Paths are unique (one walk), so an unstable sort gives the one order.
            entries.par_sort_unstable_by(|a, b| {
                a.path.as_str().as_bytes().cmp(b.path.as_str().as_bytes())
            });
            if opts.walk.drop_bad_symlinks {
                drop_unresolvable_links(&mut entries, progress);
            }
            let layer_count = layout::assign_layers(&mut entries);
            Ok((Index::new(entries)?, layer_count))
        },
        || {
            if opts.use_cache && !cache_unchanged {
                file_cache.save(
                    files
                        .iter()
                        .zip(&file_hashes)
                        .map(|(f, h)| (f.path.as_str(), (f.size, f.stamp), *h)),
                );
            }
        },
    );
    let (index, layer_count) = index?;
    // The index's bytes and each layer's members both follow from the entries alone.
    let ((index_bytes, index_digest), members) = rayon::join(
        || {
            let bytes = index.encode();
            let digest = Digest::of(&bytes);
            (bytes, digest)
        },
        || layout::all_members(index.entries(), layer_count),
    );

    // Layers, biggest first so the two cores finish together; layer 0 before them all. It
    // holds no content but compresses the index into its trailer, which is new whenever
    // anything changed, while most other layers of a rebuild are cache hits: started after
    // them, it ran alone at the end of a one-page rebuild (a 7 MB index takes 60 ms to
    // compress). In a cold build it delays one large layer by as much, on one core.
    let mut weight = vec![0u64; layer_count as usize];
    weight[0] = u64::MAX;
    for e in index.entries() {
        if let Some(w) = weight.get_mut(e.layer as usize) {
            *w += e.size();
        }
    }
    let mut order: Vec<(u32, u64)> = (0..layer_count).zip(weight).collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let results: Mutex<BTreeMap<u32, Result<LayerResult>>> = Mutex::new(BTreeMap::new());
    let contexts = ContextPool::default();
    let cache_dir = store.cache_dir();
    // Loaded by the first layer the layer cache misses: a build where nothing changed reads no
    // frame table.
    let frame_map = OnceLock::new();
    let stats = FrameStats::default();
    let job = LayerJob {
        store,
        members: &members,
        root,
        src: &canon,
        opts,
        index_bytes: &index_bytes,
        index_digest: &index_digest,
        cache_dir: &cache_dir,
        contexts: &contexts,
        frames: &frame_map,
        stats: &stats,
        use_frames: opts.use_cache && opts.compression == Compression::Zstd,
        progress,
    };
    progress.start("compress", total);
    rayon::scope_fifo(|s| {
        for &(n, _) in &order {
            let (job, results) = (&job, &results);
            s.spawn_fifo(move |_| {
                let r = build_layer(job, n);
                if let Ok(mut m) = results.lock() {
                    m.insert(n, r);
                }
            });
        }
    });
    progress.finish();
    let results = results
        .into_inner()
        .map_err(|_| Error::corrupt("build", "a layer worker panicked"))?;
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut reused = 0;
    let mut changed = false;
    for (_, r) in results {
        let (l, was_cached) = match r {
            Ok(v) => v,
            Err(e) => {
                if matches!(e, Error::ChangedDuringBuild { .. }) {
                    changed = true;
                }
                if changed {
                    // A stale cache could have caused it: start from scratch next time.
                    file_cache.save(std::iter::empty());
                }
                return Err(e);
            }
        };
        reused += usize::from(was_cached);
        diff_ids.push(l.diff_id);
        layers.push(Descriptor {
            media_type: opts.compression.media_type().to_string(),
            digest: l.digest,
            size: l.size,
            annotations: BTreeMap::new(),
        });
    }

    let mut labels = BTreeMap::new();
    labels.insert(KEY_FORMAT.to_string(), FORMAT_VERSION.to_string());
    labels.insert(KEY_INDEX.to_string(), index_digest.to_string());
    labels.insert(KEY_FILES.to_string(), index.file_count().to_string());
    labels.insert(KEY_BYTES.to_string(), index.total_bytes().to_string());
    let config = ImageConfig {
        architecture: opts.architecture.clone(),
        config: RunConfig { labels },
        os: opts.os.clone(),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids,
        },
        variant: opts.variant.clone(),
    };
    let config_bytes = config.to_bytes();
    let id = store.put_blob(&config_bytes)?;
    let mut annotations = BTreeMap::new();
    annotations.insert(KEY_FORMAT.to_string(), FORMAT_VERSION.to_string());
    let compressed_bytes = layers.iter().map(|l| l.size).sum();
    let manifest = Manifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST.into(),
        config: Descriptor {
            media_type: MEDIA_CONFIG.into(),
            digest: id,
            size: config_bytes.len() as u64,
            annotations: BTreeMap::new(),
        },
        layers,
        annotations,
    };
    let manifest_bytes = manifest.to_bytes();
    let manifest_digest = store.put_blob(&manifest_bytes)?;
    store.add_manifest(manifest_digest, manifest_bytes.len() as u64, id, &opts.tags)?;
    if opts.use_cache && opts.compression == Compression::Zstd {
        let blobs: Vec<Digest> = manifest.layers.iter().map(|l| l.digest).collect();
        FrameMap::save_site(&cache_dir, &canon, &blobs);
    }
    Ok(BuildReport {
        id,
        manifest: manifest_digest,
        manifest_size: manifest_bytes.len() as u64,
        files: index.file_count(),
        bytes: index.total_bytes(),
        layers: layer_count as usize,
        layers_reused: reused,
        files_cached,
        compressed_bytes,
        frames: stats.frames.load(Ordering::Relaxed),
        frames_compressed: stats.compressed.load(Ordering::Relaxed),
        tar_bytes_compressed: stats.compressed_bytes.load(Ordering::Relaxed),
        frames_copied_raw: stats.raw.load(Ordering::Relaxed),
        compression: opts.compression,
        warnings: walked.warnings,
    })
}

/// BLAKE3 of one file; fails if its length is not the walked size.
fn hash_file(root: BorrowedFd<'_>, fs_path: &Path, path: &str, size: u64) -> Result<FileHash> {
    let changed = || Error::ChangedDuringBuild {
        path: path.to_string(),
    };
    let f = open_input(root, fs_path, path)?;
    let mut hasher = blake3::Hasher::new();
    if size >= PARALLEL_HASH_THRESHOLD {
        // Read the next chunk while the current one is hashed on both cores.
        let mut f = f;
        let (mut cur, mut next) = (vec![0u8; HASH_CHUNK], vec![0u8; HASH_CHUNK]);
        let mut n = fill(&mut f, &mut cur).map_err(Error::io("read", fs_path))?;
        while n > 0 {
            if hasher.count() + n as u64 > size {
                return Err(changed());
            }
            let (_, r) = rayon::join(
                || {
                    hasher.update_rayon(&cur[..n]);
                },
                || fill(&mut f, &mut next),
            );
            n = r.map_err(Error::io("read", fs_path))?;
            std::mem::swap(&mut cur, &mut next);
        }
    } else {
        // At most size + 1 bytes: a file that grew is caught without reading all of it.
        hasher
            .update_reader(f.take(size + 1))
            .map_err(Error::io("read", fs_path))?;
    }
    if hasher.count() != size {
        return Err(changed());
    }
    Ok(hasher.finalize().into())
}

/// Open site file `path` for reading, relative to the site root's handle and without following
/// a symlink. A file that vanished, or became a symlink, since the walk changed during the build.
fn open_input(root: BorrowedFd<'_>, fs_path: &Path, path: &str) -> Result<File> {
    crate::dirfd::open_file(root, path).map_err(|e| {
        let changed = e.kind() == io::ErrorKind::NotFound
            || e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error());
        if changed {
            Error::ChangedDuringBuild {
                path: path.to_string(),
            }
        } else {
            Error::io("read", fs_path)(e)
        }
    })
}

/// Read into `buf` until it is full or the file ends; the number of bytes read.
fn fill(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The cache key of a layer: everything its blob bytes depend on.
fn layer_key(
    members: &[Member<'_>],
    compression: Compression,
    n: u32,
    index_digest: &Digest,
) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    // Key 3: the members' header fields instead of their 512-byte headers (on a 53,000-file
    // site, building and hashing every header was a fifth of a rebuild with nothing changed);
    // the fingerprint of the header writer stands for how those fields become bytes. Key 2:
    // zstd layers became runs of frames (crate::frames); a blob cached under key 1 is one
    // frame, and reusing it would make a rebuild differ from a cold build.
    h.update(b"sitebundle layer key 3\0");
    h.update(header_fingerprint().as_bytes());
    h.update(match compression {
        Compression::Zstd => b"zstd-3\0",
        Compression::Gzip => b"gzip-6\0",
    });
    if n == 0 {
        // Layer 0 carries the index trailer.
        h.update(index_digest.bytes());
    }
    // The fields go into one buffer hashed at once (the same bytes as an update per field,
    // so the same key): BLAKE3 is several times faster over a buffer than over six small
    // updates per member.
    let mut buf: Vec<u8> = Vec::with_capacity(members.len() * 160);
    let mut field = |b: &[u8]| {
        buf.extend_from_slice(&(b.len() as u64).to_le_bytes());
        buf.extend_from_slice(b);
    };
    for m in members {
        // Everything `layout::header` reads (the mtime comes from the hash).
        let (tag, e, link): (&[u8], _, &str) = match m {
            Member::Dir(e) => (b"d", e, ""),
            Member::Symlink(e) => match &e.kind {
                crate::index::EntryKind::Symlink { target } => (b"s", e, target.as_str()),
                _ => (b"s", e, ""),
            },
            Member::File(e) => (b"f", e, ""),
            Member::HardLink(e, canon) => (b"h", e, canon.path.as_str()),
        };
        field(tag);
        field(e.path.as_str().as_bytes());
        field(link.as_bytes());
        field(&e.mode().to_le_bytes());
        field(&e.size().to_le_bytes());
        field(e.hash().map(|h| h.0).unwrap_or_default().as_slice());
    }
    h.update(&buf);
    h.finalize()
}

/// BLAKE3 of the headers [`tar::write_header`] writes for a fixed set of members (short and
/// long paths, every kind, a size past the octal field): a change to how header fields become
/// bytes changes every layer key, so a layer cached by an older writer is never reused.
fn header_fingerprint() -> &'static blake3::Hash {
    static FP: OnceLock<blake3::Hash> = OnceLock::new();
    FP.get_or_init(|| {
        use crate::tar::{TarHeader, TarKind};
        let long = "d/".repeat(80) + "é.html";
        let samples = [
            (TarKind::File, "index.html", 0o644, 1234, ""),
            (TarKind::File, long.as_str(), 0o755, 1 << 40, ""),
            (TarKind::Dir, "assets", 0o755, 0, ""),
            (TarKind::Symlink, "latest", 0o777, 0, "v2/index.html"),
            (TarKind::HardLink, "copy.png", 0o644, 0, long.as_str()),
        ];
        let mut h = blake3::Hasher::new();
        for (kind, path, mode, size, link) in samples {
            let mut v = Vec::new();
            let _ = tar::write_header(
                &mut v,
                &TarHeader {
                    path: path.to_string(),
                    kind,
                    mode,
                    size,
                    mtime: crate::tar::content_mtime(&[7; 32]),
                    link: link.to_string(),
                },
            );
            h.update(&v);
        }
        h.finalize()
    })
}

/// Counters of the frame work a build did (zstd layers only), for [`BuildReport`].
#[derive(Debug, Default)]
struct FrameStats {
    /// Frames in the layers written (reused layers included).
    frames: AtomicUsize,
    /// Frames compressed from the site files.
    compressed: AtomicUsize,
    /// Tar bytes of those frames.
    compressed_bytes: AtomicU64,
    /// Frames copied without decompressing them.
    raw: AtomicUsize,
}

/// What a layer worker gives back: the layer, whether it came whole from the layer cache.
type LayerResult = (CachedLayer, bool);

/// Everything a layer worker shares with the others.
struct LayerJob<'a> {
    store: &'a Store,
    /// The members of every layer ([`layout::all_members`]).
    members: &'a [Vec<Member<'a>>],
    root: BorrowedFd<'a>,
    src: &'a Path,
    opts: &'a BuildOptions,
    index_bytes: &'a [u8],
    index_digest: &'a Digest,
    cache_dir: &'a Path,
    contexts: &'a ContextPool,
    frames: &'a OnceLock<FrameMap>,
    stats: &'a FrameStats,
    /// Whether cached frames may be used (zstd, cache on).
    use_frames: bool,
    progress: &'a dyn Progress,
}

impl LayerJob<'_> {
    /// The frames of earlier builds (loaded on first use).
    fn frame_map(&self) -> &FrameMap {
        self.frames.get_or_init(|| {
            if self.use_frames {
                FrameMap::load(self.cache_dir, self.src)
            } else {
                FrameMap::default()
            }
        })
    }
}

fn build_layer(job: &LayerJob<'_>, n: u32) -> Result<LayerResult> {
    let members = &job.members[n as usize];
    let layer_bytes: u64 = members
        .iter()
        .map(|m| if let Member::File(e) = m { e.size() } else { 0 })
        .sum();
    let opts = job.opts;
    let key = layer_key(members, opts.compression, n, job.index_digest);
    if opts.use_cache {
        if let Some(c) = cache::layer_get(job.cache_dir, &key) {
            let frames = match opts.compression {
                Compression::Zstd => FrameMap::table_len(job.cache_dir, &c.digest),
                Compression::Gzip => Some(0),
            };
            if let (Some(f), true) = (frames, job.store.blob_size(&c.digest).ok() == Some(c.size)) {
                job.stats.frames.fetch_add(f, Ordering::Relaxed);
                job.progress.advance(layer_bytes);
                return Ok((c, true));
            }
        }
    }
    let headers: Vec<Vec<u8>> = members
        .iter()
        .map(|m| {
            let mut v = Vec::with_capacity(tar::BLOCK);
            let _ = tar::write_header(&mut v, &layout::header(m));
            v
        })
        .collect();
    let layer = match opts.compression {
        Compression::Zstd => {
            let runs = frames::runs(members, &headers);
            let r = match build_zstd_layer(job, n, members, &headers, &runs, opts.use_cache)? {
                Ok(r) => r,
                // A cached frame was not what its key said: compress the layer from the files.
                Err(_) => build_zstd_layer(job, n, members, &headers, &runs, false)?
                    .map_err(|why| Error::corrupt("build", why))?,
            };
            job.stats.frames.fetch_add(runs.len(), Ordering::Relaxed);
            if opts.use_cache {
                FrameMap::put_table(job.cache_dir, &r.0.digest, &r.1);
            }
            r.0
        }
        Compression::Gzip => build_gzip_layer(job, n, members, &headers)?,
    };
    if opts.use_cache {
        cache::layer_put(job.cache_dir, &key, &layer);
    }
    Ok((layer, false))
}

/// Write a zstd layer as one frame per run, taking unchanged runs' frames from the previous
/// build when `use_frames` (see [`crate::frames`]). `Ok(Err(why))` when a cached frame was not
/// what its key promised: the caller starts the layer again without the frame cache.
fn build_zstd_layer(
    job: &LayerJob<'_>,
    n: u32,
    members: &[Member<'_>],
    headers: &[Vec<u8>],
    runs: &[frames::Run],
    use_frames: bool,
) -> Result<std::result::Result<(CachedLayer, Vec<FrameRec>), String>> {
    let store = job.store;
    let werr = |e: io::Error| Error::Io {
        op: "write layer blob in",
        path: store.root().to_path_buf(),
        source: e,
    };
    // Every compressed byte goes through `blob`, which hashes each frame for its table.
    let mut blob = Summed {
        inner: store.blob_writer()?,
        hasher: blake3::Hasher::new(),
    };
    let mut diff = Sha256Resumable::default();
    let mut recs = Vec::with_capacity(runs.len());
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut ctx = job.contexts.take();
    for run in runs {
        let key = frames::run_key(members, headers, run);
        let offset = blob.inner.len();
        let cached = if use_frames {
            job.frame_map().get(&key)
        } else {
            None
        };
        let content: u64 = members[run.members.clone()]
            .iter()
            .map(|m| if let Member::File(e) = m { e.size() } else { 0 })
            .sum();
        if let Some(loc) = cached {
            let path = store.blob_path(&loc.blob);
            // Where the `diff_id` hash stands where the earlier blob had this frame (the
            // unchanged start of a layer): its compressed bytes as they are, its end state
            // from the table. Elsewhere: decompressed, checked and hashed.
            let copied = match loc.chain {
                Some(c) if diff.midstate() == Some(c.before) => {
                    frames::copy_raw(&path, &loc, &c.sum, &mut blob).map(|()| {
                        diff = Sha256Resumable::resume(c.after);
                        job.stats.raw.fetch_add(1, Ordering::Relaxed);
                    })
                }
                _ => frames::copy_cached(
                    &path,
                    &loc,
                    &mut blob,
                    FrameCheck::new(members, headers, run, &mut diff),
                ),
            };
            match copied {
                Ok(()) => {
                    job.progress.advance(content);
                    recs.push(blob.record(key, offset, &diff));
                    continue;
                }
                Err(CopyError::Stale(why)) => {
                    job.contexts.put(ctx);
                    return Ok(Err(why));
                }
                Err(CopyError::Write(e)) => return Err(werr(e)),
            }
        }
        {
            let mut enc = match ctx.as_mut() {
                Some(c) => zstd::stream::write::Encoder::with_context(&mut blob, c),
                None => zstd::stream::write::Encoder::new(&mut blob, crate::compress::ZSTD_LEVEL)
                    .map_err(Error::io("start compressor for", store.root()))?,
            };
            let start = |e: io::Error| Error::Io {
                op: "start compressor for",
                path: store.root().to_path_buf(),
                source: e,
            };
            enc.set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(
                crate::compress::ZSTD_LEVEL,
            ))
            .map_err(start)?;
            // The content checksum lets plain `zstd -d` detect corruption too.
            enc.include_checksum(true).map_err(start)?;
            // The frame header then says its size, and zstd sizes its window and tables to it:
            // the same for a cold build and a rebuild.
            enc.set_pledged_src_size(Some(run.tar_len)).map_err(start)?;
            let mut out = Both(&mut diff, &mut enc);
            write_run(job, members, headers, run, &mut out, &mut buf)?;
            enc.finish().map_err(werr)?;
        }
        job.stats.compressed.fetch_add(1, Ordering::Relaxed);
        job.stats
            .compressed_bytes
            .fetch_add(run.tar_len, Ordering::Relaxed);
        recs.push(blob.record(key, offset, &diff));
    }
    job.contexts.put(ctx);
    let diff_id = diff.finish();
    let mut blob = blob.inner;
    if n == 0 {
        let offset = blob.len();
        write_index_trailer(&mut blob, Compression::Zstd, offset, job.index_bytes).map_err(werr)?;
    }
    let (digest, size) = blob.finish()?;
    Ok(Ok((
        CachedLayer {
            diff_id,
            digest,
            size,
        },
        recs,
    )))
}

/// A layer blob being written, with the BLAKE3 of the frame being written into it (recorded in
/// the frame table, checked when a rebuild copies the frame as it is).
struct Summed {
    inner: crate::store::BlobWriter,
    hasher: blake3::Hasher,
}

impl Summed {
    /// The table record of the frame that started at `offset` and just ended, with the
    /// `diff_id` hash's state after it; starts the next frame's sum.
    fn record(&mut self, key: [u8; 32], offset: u64, diff: &Sha256Resumable) -> FrameRec {
        let sum = *self.hasher.finalize().as_bytes();
        self.hasher.reset();
        FrameRec {
            key,
            offset,
            len: self.inner.len() - offset,
            sum,
            after: diff.midstate(),
        }
    }
}

impl Write for Summed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes to two writers (the `diff_id` hash and the compressor).
struct Both<'a, A: Write, B: Write>(&'a mut A, &'a mut B);

impl<A: Write, B: Write> Write for Both<'_, A, B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.1.flush()
    }
}

/// The tar bytes of one run, streamed from the site files into `out`.
fn write_run(
    job: &LayerJob<'_>,
    members: &[Member<'_>],
    headers: &[Vec<u8>],
    run: &frames::Run,
    out: &mut impl Write,
    buf: &mut [u8],
) -> Result<()> {
    let werr = |e: io::Error| Error::Io {
        op: "write layer blob in",
        path: job.store.root().to_path_buf(),
        source: e,
    };
    for i in run.members.clone() {
        out.write_all(&headers[i]).map_err(werr)?;
        if let Member::File(e) = &members[i] {
            let fs_path: PathBuf = job.src.join(e.path.as_str());
            copy_verified(
                job.store.root(),
                job.root,
                &fs_path,
                e,
                out,
                buf,
                job.progress,
            )?;
            out.write_all(&[0u8; tar::BLOCK][..tar::padding(e.size())])
                .map_err(werr)?;
        }
    }
    if run.last {
        tar::write_end(out).map_err(werr)?;
    }
    Ok(())
}

/// Write a gzip layer as one stream (gzip layers are not framed).
fn build_gzip_layer(
    job: &LayerJob<'_>,
    n: u32,
    members: &[Member<'_>],
    headers: &[Vec<u8>],
) -> Result<CachedLayer> {
    let store = job.store;
    let blob = store.blob_writer()?;
    let enc = Compression::Gzip
        .encoder(blob)
        .map_err(Error::io("start compressor for", store.root()))?;
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut out = HashingWriter::new(enc);
    let all = frames::Run {
        members: 0..members.len(),
        tar_len: 0,
        last: true,
    };
    write_run(job, members, headers, &all, &mut out, &mut buf)?;
    let werr = |e: io::Error| Error::Io {
        op: "write layer blob in",
        path: store.root().to_path_buf(),
        source: e,
    };
    let (enc, diff_id, _) = out.finish();
    let mut blob = enc.finish().map_err(werr)?;
    if n == 0 {
        let offset = blob.len();
        write_index_trailer(&mut blob, Compression::Gzip, offset, job.index_bytes).map_err(werr)?;
    }
    let (digest, size) = blob.finish()?;
    Ok(CachedLayer {
        diff_id,
        digest,
        size,
    })
}

/// zstd compression contexts, reused from one layer to the next. Each holds a few MiB (window and
/// match tables); allocating one per layer (and a 256 KiB copy buffer per file) let glibc's heap
/// grow with the number of layers. On the 1 GB corpus, this pool, one copy buffer per layer and
/// streaming the cache file took the build's peak RSS from 73 MiB to 54 MiB.
#[derive(Default)]
struct ContextPool(Mutex<Vec<zstd::zstd_safe::CCtx<'static>>>);

impl ContextPool {
    /// A context from the pool, or a new one (`None` if it cannot be allocated: then the
    /// encoder makes its own).
    fn take(&self) -> Option<zstd::zstd_safe::CCtx<'static>> {
        let pooled = self.0.lock().ok().and_then(|mut v| v.pop());
        pooled.or_else(zstd::zstd_safe::CCtx::try_create)
    }

    fn put(&self, ctx: Option<zstd::zstd_safe::CCtx<'static>>) {
        if let (Some(c), Ok(mut v)) = (ctx, self.0.lock()) {
            v.push(c);
        }
    }
}

/// Stream a file into the tar, hashing as it goes; fail if it is not what the index says.
fn copy_verified(
    store_root: &Path,
    root: BorrowedFd<'_>,
    fs_path: &Path,
    e: &Entry,
    out: &mut impl Write,
    buf: &mut [u8],
    progress: &dyn Progress,
) -> Result<()> {
    let mut f = open_input(root, fs_path, e.path.as_str())?;
    let mut hasher = blake3::Hasher::new();
    let mut left = e.size();
    loop {
        let want = buf
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX).max(1));
        let got = f
            .read(&mut buf[..want])
            .map_err(Error::io("read", fs_path))?;
        if got == 0 {
            break;
        }
        if got as u64 > left {
            return Err(Error::ChangedDuringBuild {
                path: e.path.to_string(),
            });
        }
        hasher.update(&buf[..got]);
        // A write error is the store's (disk full, ...), not the site file's.
        out.write_all(&buf[..got]).map_err(|err| Error::Io {
            op: "write layer blob in",
            path: store_root.to_path_buf(),
            source: err,
        })?;
        left -= got as u64;
        progress.advance(got as u64);
    }
    if left != 0 || Some(FileHash::from(hasher.finalize())) != e.hash() {
        return Err(Error::ChangedDuringBuild {
            path: e.path.to_string(),
        });
    }
    Ok(())
}
