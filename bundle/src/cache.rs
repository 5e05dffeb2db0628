//! The build cache: what lets the next deploy do work in proportion to what changed.
//!
//! - **File hashes**, keyed by (path, size, device, inode, mtime, ctime): a file whose stat did not
//!   change is not read again. ctime cannot be set from user space, so a rewrite in place with a
//!   restored mtime is still seen.
//! - **Layers**, keyed by the BLAKE3 of the layer's canonical tar headers, file hashes and
//!   compression: when the same layer was built before and its blob is still in the store, it is
//!   neither read nor compressed again.
//!
//! The cache is an optimisation only: a missing, stale or corrupt cache file is ignored, and a
//! wrong cached hash is caught when the file is streamed into its layer (see `build.rs`). So cache
//! files are replaced by rename but not fsynced (`write_replace`): on this project's test VM an
//! fsync costs 1 to 10 ms, and a build wrote one per layer.

use std::collections::HashMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, FileHash};

/// Cached stat stamp and hash of one file.
pub type FileStamp = (u64, (u64, u64, i128, i128));

/// The file-hash cache of one site directory.
#[derive(Debug, Default)]
pub struct FileCache {
    entries: HashMap<String, (FileStamp, FileHash)>,
    path: Option<PathBuf>,
}

impl FileCache {
    /// Load the cache for `site` from `dir` (empty when absent or unreadable).
    pub fn load(dir: &Path, site: &Path) -> FileCache {
        let key = blake3::hash(site.as_os_str().as_encoded_bytes()).to_hex();
        let path = dir.join(format!("files-{}.tsv", &key[..32]));
        let mut entries = HashMap::new();
        if let Ok(text) = fs::read_to_string(&path) {
            for line in text.lines() {
                if let Some((k, v)) = parse_line(line) {
                    entries.insert(k, v);
                }
            }
        }
        FileCache {
            entries,
            path: Some(path),
        }
    }

    /// The cached hash of `path`, if its stamp still matches.
    pub fn get(&self, path: &str, stamp: &FileStamp) -> Option<FileHash> {
        self.entries
            .get(path)
            .filter(|(s, _)| s == stamp)
            .map(|(_, h)| *h)
    }

    /// Drop the entries loaded from disk (after the hash pass they are not needed, and on a
    /// 50,000-file site they hold several MiB).
    pub fn release_loaded(&mut self) {
        self.entries = HashMap::new();
    }

    /// Replace the cache contents with `entries` and write it out.
    pub fn save<'a>(&mut self, entries: impl Iterator<Item = (&'a str, FileStamp, FileHash)>) {
        if let Some(path) = &self.path {
            if let Some(parent) = path.parent() {
                let _ = fs::create_dir_all(parent);
            }
            // Best effort: a cache that cannot be written only costs time next build. Streamed,
            // so a large site's cache is never held whole in memory.
            let _ = write_replace(path, |w| {
                for (p, (size, (dev, ino, m, c)), h) in entries {
                    writeln!(w, "{size}\t{dev}\t{ino}\t{m}\t{c}\t{}\t{p}", h.hex())?;
                }
                Ok(())
            });
        }
    }
}

fn parse_line(line: &str) -> Option<(String, (FileStamp, FileHash))> {
    let mut f = line.splitn(7, '\t');
    let size = f.next()?.parse().ok()?;
    let dev = f.next()?.parse().ok()?;
    let ino = f.next()?.parse().ok()?;
    let m = f.next()?.parse().ok()?;
    let c = f.next()?.parse().ok()?;
    let h = FileHash::parse_hex(f.next()?)?;
    let p = f.next()?.to_string();
    Some((p, ((size, (dev, ino, m, c)), h)))
}

/// A layer built before: its diff_id, blob digest and blob size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedLayer {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// sha256 of the compressed blob.
    pub digest: Digest,
    /// Compressed size.
    pub size: u64,
}

/// Look a layer up by key.
pub fn layer_get(dir: &Path, key: &blake3::Hash) -> Option<CachedLayer> {
    let bytes = fs::read(dir.join("layers").join(key.to_hex().as_str())).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Record a layer under its key (best effort).
pub fn layer_put(dir: &Path, key: &blake3::Hash, layer: &CachedLayer) {
    let d = dir.join("layers");
    let _ = fs::create_dir_all(&d);
    if let Ok(bytes) = serde_json::to_vec(layer) {
        let _ = write_replace(&d.join(key.to_hex().as_str()), |w| w.write_all(&bytes));
    }
}

/// Replace `path` with what `fill` writes, through a temporary sibling renamed into place: readers
/// see the old file or the new one, never a partial write. No fsync: after a crash the file may be
/// lost or torn, which the parsers above treat as a cache miss.
pub(crate) fn write_replace(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = crate::store::temp_file_in(dir, ".tmp-")?;
    let mut w = BufWriter::new(tmp);
    fill(&mut w)?;
    let tmp = w.into_inner().map_err(|e| e.into_error())?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
