//! `spool`: copy chosen file contents out of a bundle's layers, checked, into a directory that
//! holds each content once, named by its BLAKE3.
//!
//! Why this exists: publishing a bundle into a website bucket uploads only the files that changed,
//! and each upload needs the bytes of one file. Layers are compressed tar streams, so one file
//! cannot be read on its own, and extracting the whole tree ([`crate::extract()`]) would write
//! every file of the site to disk for a change of one page. A spool reads only the layers that
//! hold a wanted content (in parallel, as extract does), checks each of them exactly as verify
//! does (every header against the index, every file's BLAKE3, the `diff_id`, the blob digest),
//! and keeps only the wanted contents, once each however many paths share them. Memory stays
//! flat in the site's size: each content streams from its layer into its own file.
//!
//! A layer's last checks (the `diff_id`, the blob digest) come after its files were written: when
//! [`spool`] returns an error the directory must not be used (the caller removes it).

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::check::{check_layer, run_layers, MemberSink};
use crate::digest::FileHash;
use crate::error::{Error, Result};
use crate::index::{EntryRef, KindRef};
use crate::progress::Progress;
use crate::reader::Bundle;
use crate::store::BlobSource;

/// What a spool did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SpoolReport {
    /// Distinct contents written.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Layers read (the others hold no wanted content and were not opened).
    pub layers_read: usize,
}

/// Where the content `hash` is in a spool directory.
pub fn spooled_path(dir: &Path, hash: &FileHash) -> PathBuf {
    dir.join(hash.hex())
}

/// Write every content of `bundle` whose BLAKE3 is in `wanted` into `dir` (which must exist and
/// be empty, or hold an earlier spool of the same bundle), as `dir/<blake3 hex>`. Every byte is
/// checked on the way; a wanted hash that no file of the bundle has is an error.
pub fn spool(
    source: &dyn BlobSource,
    bundle: &Bundle,
    dir: &Path,
    wanted: &HashSet<FileHash>,
    progress: &dyn Progress,
) -> Result<SpoolReport> {
    // One streamed pass over the index: which layers hold a wanted content, which contents
    // exist, and how many bytes those layers hold.
    let mut layers: BTreeSet<u32> = BTreeSet::new();
    let mut present: HashSet<FileHash> = HashSet::new();
    let mut layer_bytes: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    bundle.index.for_each(source, |e| {
        if let KindRef::File { hash, size, .. } = e.kind {
            if wanted.contains(&hash) {
                layers.insert(e.layer);
                present.insert(hash);
            }
            *layer_bytes.entry(e.layer).or_default() += size;
        }
        Ok(())
    })?;
    if let Some(h) = wanted.iter().find(|h| !present.contains(h)) {
        return Err(Error::corrupt(
            "spool",
            format!("no file of the bundle has content {}", h.hex()),
        ));
    }
    let claimed = Mutex::new(HashSet::new());
    // Contents already spooled by an earlier run count as claimed: they were renamed into place
    // only after their hash matched.
    for h in wanted {
        if spooled_path(dir, h).is_file() {
            if let Ok(mut c) = claimed.lock() {
                c.insert(*h);
            }
        }
    }
    let total: u64 = layers
        .iter()
        .map(|k| layer_bytes.get(k).copied().unwrap_or(0))
        .sum();
    progress.start("unpack", total);
    let order: Vec<usize> = layers.iter().map(|&k| k as usize).collect();
    let written = Mutex::new((0usize, 0u64));
    run_layers(source, bundle, &order, |k, lines| {
        let mut sink = Sink {
            dir,
            wanted,
            claimed: &claimed,
            current: None,
            files: 0,
            bytes: 0,
        };
        let n = check_layer(source, bundle, k, lines, &mut sink, progress)?;
        if let Ok(mut w) = written.lock() {
            w.0 += sink.files;
            w.1 += sink.bytes;
        }
        Ok(n)
    })?;
    let (files, bytes) = written
        .into_inner()
        .map_err(|_| Error::corrupt("spool", "internal: lock poisoned"))?;
    progress.finish();
    Ok(SpoolReport {
        files,
        bytes,
        layers_read: order.len(),
    })
}

/// Writes wanted contents, once each, and discards the rest of a layer.
struct Sink<'a> {
    dir: &'a Path,
    wanted: &'a HashSet<FileHash>,
    claimed: &'a Mutex<HashSet<FileHash>>,
    /// The content being written: its writer and temporary path.
    current: Option<(BufWriter<File>, PathBuf)>,
    files: usize,
    bytes: u64,
}

impl MemberSink for Sink<'_> {
    fn open_file(&mut self, e: &EntryRef<'_>) -> Result<Box<dyn Write + '_>> {
        let KindRef::File { hash: h, .. } = e.kind else {
            return Ok(Box::new(io::sink()));
        };
        let mine = self.wanted.contains(&h)
            && self
                .claimed
                .lock()
                .map_err(|_| Error::corrupt("spool", "internal: lock poisoned"))?
                .insert(h);
        if !mine {
            return Ok(Box::new(io::sink()));
        }
        let tmp = self.dir.join(format!(".{}.partial", h.hex()));
        let _ = fs::remove_file(&tmp);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            // What a web server needs, under the umask: a spooled file may be hard-linked into a
            // directory target as it is.
            .mode(0o644)
            .open(&tmp)
            .map_err(Error::io("create", &tmp))?;
        self.current = Some((BufWriter::with_capacity(128 * 1024, f), tmp));
        match self.current.as_mut() {
            Some((w, _)) => Ok(Box::new(w)),
            None => Err(Error::corrupt("spool", "internal: no current file")),
        }
    }

    fn file_done(&mut self, e: &EntryRef<'_>) -> Result<()> {
        let Some((w, tmp)) = self.current.take() else {
            return Ok(());
        };
        w.into_inner().map_err(|err| Error::Io {
            op: "write",
            path: tmp.clone(),
            source: err.into_error(),
        })?;
        if let KindRef::File { hash, size, .. } = e.kind {
            let dest = spooled_path(self.dir, &hash);
            fs::rename(&tmp, &dest).map_err(Error::io("rename", &dest))?;
            self.files += 1;
            self.bytes += size;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn spools_only_wanted_contents_once_each_and_checks_them() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let site = tmp.path().join("site");
        fs::create_dir_all(site.join("a")).expect("mkdir");
        fs::write(site.join("index.html"), b"<p>page</p>").expect("write");
        fs::write(site.join("a/copy.html"), b"<p>page</p>").expect("write");
        fs::write(site.join("a/other.css"), b"body{}").expect("write");
        let store = Store::open(tmp.path().join("store")).expect("store");
        let opts = crate::BuildOptions {
            use_cache: false,
            ..Default::default()
        };
        let r = crate::build(&site, &store, &opts, &crate::NoProgress).expect("build");
        let b = Bundle::open(&store, &r.manifest).expect("open");
        let page = FileHash::of(b"<p>page</p>");
        let out = tmp.path().join("spool");
        fs::create_dir(&out).expect("mkdir");
        let wanted: HashSet<FileHash> = [page].into();
        let rep = spool(&store, &b, &out, &wanted, &crate::NoProgress).expect("spool");
        assert_eq!(rep.files, 1);
        assert_eq!(
            fs::read(spooled_path(&out, &page)).expect("read"),
            b"<p>page</p>"
        );
        assert_eq!(fs::read_dir(&out).expect("ls").count(), 1);
        // A content no file has is refused.
        let missing: HashSet<FileHash> = [FileHash::of(b"nope")].into();
        let other = tmp.path().join("spool2");
        fs::create_dir(&other).expect("mkdir");
        assert!(spool(&store, &b, &other, &missing, &crate::NoProgress).is_err());
        // A damaged layer fails the spool (the caller then discards the directory).
        let layer = &b.meta.manifest.layers[1];
        let p = store.blob_path(&layer.digest);
        let mut bytes = fs::read(&p).expect("read layer");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        let _ = fs::remove_file(&p);
        fs::write(&p, &bytes).expect("write layer");
        let third = tmp.path().join("spool3");
        fs::create_dir(&third).expect("mkdir");
        assert!(spool(&store, &b, &third, &wanted, &crate::NoProgress).is_err());
    }
}
