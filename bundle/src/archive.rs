//! `export` / `import`: a bundle as one `oci-archive` file (a tar of an OCI image layout), the
//! form `skopeo copy oci-archive:FILE ...` reads and writes.
//!
//! Export writes canonical tar headers (see [`crate::tar`]). Import accepts archives written by
//! other tools too (it reads with the `tar` crate), stores each blob only after its bytes hash to
//! the digest its name claims, then opens and fully verifies every sitebundle manifest before it
//! is listed in the store: a bad archive adds no bundle.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::iotrap::IoTrap;
use crate::manifest::{Descriptor, KEY_REF_NAME, MAX_JSON_BYTES};
use crate::progress::Progress;
use crate::reader::Bundle;
use crate::store::{BlobSource, LayoutIndex, Store, KEY_ID};
use crate::tar::{self as ctar, TarHeader, TarKind, EPOCH_BASE};

/// Write the bundle with manifest `manifest` from `store` to `out` as an oci-archive, under
/// reference name `ref_name`.
pub fn export(store: &Store, bundle: &Bundle, ref_name: &str, out: &Path) -> Result<u64> {
    crate::store::validate_tag(ref_name)?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Mode from the umask, like the file `tar -cf` or `skopeo copy` would write.
    let tmp = crate::store::temp_file_in(dir, ".sitebundle-export-")
        .map_err(Error::io("create temporary file in", dir))?;
    let file = tmp.reopen().map_err(Error::io("open", tmp.path()))?;
    let mut w = BufWriter::new(file);
    let werr = |e: io::Error| Error::Io {
        op: "write",
        path: out.to_path_buf(),
        source: e,
    };
    let m = &bundle.meta.manifest;
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert(KEY_REF_NAME.to_string(), ref_name.to_string());
    annotations.insert(KEY_ID.to_string(), bundle.id().to_string());
    let manifest_size = store.blob_size(&bundle.meta.manifest_digest)?;
    let index = LayoutIndex {
        manifests: vec![Descriptor {
            media_type: bundle.meta.manifest.media_type.clone(),
            digest: bundle.meta.manifest_digest,
            size: manifest_size,
            annotations,
        }],
        ..LayoutIndex::default()
    };
    let small = |w: &mut BufWriter<File>, path: &str, bytes: &[u8]| -> io::Result<()> {
        ctar::write_header(
            w,
            &TarHeader {
                path: path.into(),
                kind: TarKind::File,
                mode: 0o644,
                size: bytes.len() as u64,
                mtime: EPOCH_BASE,
                link: String::new(),
            },
        )?;
        w.write_all(bytes)?;
        w.write_all(&[0u8; ctar::BLOCK][..ctar::padding(bytes.len() as u64)])
    };
    let dir_entry = |w: &mut BufWriter<File>, path: &str| {
        ctar::write_header(
            w,
            &TarHeader {
                path: path.into(),
                kind: TarKind::Dir,
                mode: 0o755,
                size: 0,
                mtime: EPOCH_BASE,
                link: String::new(),
            },
        )
    };
    small(&mut w, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(werr)?;
    small(
        &mut w,
        "index.json",
        &serde_json::to_vec(&index).unwrap_or_default(),
    )
    .map_err(werr)?;
    dir_entry(&mut w, "blobs").map_err(werr)?;
    dir_entry(&mut w, "blobs/sha256").map_err(werr)?;
    let mut blobs: Vec<(Digest, u64)> = vec![
        (bundle.meta.manifest_digest, manifest_size),
        (m.config.digest, m.config.size),
    ];
    blobs.extend(m.layers.iter().map(|l| (l.digest, l.size)));
    blobs.sort();
    blobs.dedup();
    for (d, size) in blobs {
        ctar::write_header(
            &mut w,
            &TarHeader {
                path: format!("blobs/sha256/{}", d.hex()),
                kind: TarKind::File,
                mode: 0o644,
                size,
                mtime: EPOCH_BASE,
                link: String::new(),
            },
        )
        .map_err(werr)?;
        let copied = io::copy(&mut store.open_blob(&d)?.take(size + 1), &mut w).map_err(werr)?;
        if copied != size {
            return Err(Error::corrupt(
                format!("blob {d}"),
                format!("is {copied} bytes in the store, descriptor says {size}"),
            ));
        }
        w.write_all(&[0u8; ctar::BLOCK][..ctar::padding(size)])
            .map_err(werr)?;
    }
    ctar::write_end(&mut w).map_err(werr)?;
    let f = w.into_inner().map_err(|e| werr(e.into_error()))?;
    f.sync_all().map_err(werr)?;
    let len = f.metadata().map_err(werr)?.len();
    tmp.persist(out).map_err(|e| Error::Io {
        op: "rename into",
        path: out.to_path_buf(),
        source: e.error,
    })?;
    Ok(len)
}

/// Store every blob of the archive read from `r` (each only after it hashes to its name) and
/// return its `index.json`.
fn read_archive(
    store: &Store,
    staged: &mut Staged,
    path: &Path,
    r: impl Read,
) -> Result<Option<Vec<u8>>> {
    let mut ar = tar::Archive::new(io::BufReader::new(r));
    let what = path.display().to_string();
    let mut index_bytes = None;
    let mut buf = vec![0u8; 256 * 1024];
    for entry in ar
        .entries()
        .map_err(|e| Error::corrupt(&what, e.to_string()))?
    {
        let mut entry = entry.map_err(|e| Error::corrupt(&what, e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| Error::corrupt(&what, e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let name = name.trim_start_matches("./").to_string();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        if name == "index.json" {
            let mut buf = Vec::new();
            (&mut entry)
                .take(MAX_JSON_BYTES + 1)
                .read_to_end(&mut buf)
                .map_err(|e| Error::corrupt(&what, e.to_string()))?;
            index_bytes = Some(buf);
        } else if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            let d: Digest = format!("sha256:{hex}").parse().map_err(|_| {
                Error::corrupt(&what, format!("blob name {name:?} is not a sha256 digest"))
            })?;
            if store.has_blob(&d) || staged.blobs.contains_key(&d) {
                continue;
            }
            let mut bw = store.blob_writer()?;
            // Not io::copy: a failed read is the archive's (corrupt, or local I/O: see the
            // trap), a failed write is the store's.
            loop {
                let n = entry
                    .read(&mut buf)
                    .map_err(|e| Error::corrupt(&what, format!("reading {name}: {e}")))?;
                if n == 0 {
                    break;
                }
                bw.write_all(&buf[..n])
                    .map_err(Error::io("write blob in", store.root()))?;
            }
            let tmp = bw.finish_staged(&d, &format!("{what}: {name}"))?;
            staged.blobs.insert(d, tmp);
        }
    }
    Ok(index_bytes)
}

/// The blobs an import brought, verified by digest but not yet in the store: readers see them
/// over the store's own, and they are renamed into place only once every bundle of the archive
/// verified. A failed import drops them (the temporary files go with them), so the store is left
/// as it was, blobs included. Issue 8: a refused bundle's blobs used to stay behind.
struct Staged {
    store: Store,
    blobs: HashMap<Digest, tempfile::NamedTempFile>,
}

impl Staged {
    /// Size of a blob, staged or stored.
    fn size(&self, d: &Digest) -> Result<u64> {
        match self.blobs.get(d) {
            Some(t) => Ok(t
                .as_file()
                .metadata()
                .map_err(Error::io("stat", t.path()))?
                .len()),
            None => self.store.blob_size(d),
        }
    }

    /// Rename every staged blob into the store.
    fn publish(self) -> Result<()> {
        for (d, tmp) in self.blobs {
            let dest = self.store.blob_path(&d);
            if dest.exists() {
                continue;
            }
            tmp.persist(&dest).map_err(|e| Error::Io {
                op: "rename blob to",
                path: dest.clone(),
                source: e.error,
            })?;
        }
        Ok(())
    }
}

impl BlobSource for Staged {
    fn location(&self, digest: &Digest) -> std::path::PathBuf {
        match self.blobs.get(digest) {
            Some(t) => t.path().to_path_buf(),
            None => self.store.location(digest),
        }
    }

    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        match self.blobs.get(digest) {
            Some(t) => Ok(Box::new(t.reopen().map_err(Error::io("open", t.path()))?)),
            None => self.store.open_blob(digest),
        }
    }

    fn read_range(&self, digest: &Digest, offset: u64, len: u64) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let Some(t) = self.blobs.get(digest) else {
            return self.store.read_range(digest, offset, len);
        };
        let len = usize::try_from(len)
            .map_err(|_| Error::corrupt(format!("blob {digest}"), "range too large"))?;
        let mut buf = vec![0u8; len];
        t.as_file()
            .read_exact_at(&mut buf, offset)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => {
                    Error::corrupt(format!("blob {digest}"), "shorter than its descriptor says")
                }
                _ => Error::io("read", t.path())(e),
            })?;
        Ok(buf)
    }
}

/// At most this many distinct manifests are imported from one archive. An `oci-archive` written
/// by `sitebundle export` or `skopeo copy` holds one; the cap bounds the work a hostile
/// `index.json` can ask for (each distinct bundle is verified in full).
pub const MAX_IMPORT_MANIFESTS: usize = 256;

/// Import every sitebundle in the oci-archive at `path` into `store`, verifying each fully.
/// Returns each distinct bundle once, with the tags the archive gives it.
///
/// Linear in the size of `index.json`: entries naming the same manifest are merged (issue 8: one
/// manifest listed 10,000 times was verified 10,000 times and `index.json` of the store
/// rewritten as often, 151 s), bundles with the same config and layers are verified once, and
/// the store's `index.json` is updated once for all of them.
pub fn import(
    store: &Store,
    path: &Path,
    progress: &dyn Progress,
) -> Result<Vec<(Bundle, Vec<String>)>> {
    let what = path.display().to_string();
    let _writing = store.write_lock()?;
    let f = File::open(path).map_err(Error::io("open", path))?;
    // A read error from the archive file is local I/O, not a malformed archive (the `tar` crate
    // reports both as `io::Error`): see `crate::iotrap`.
    let trap = IoTrap::default();
    let mut staged = Staged {
        store: store.clone(),
        blobs: HashMap::new(),
    };
    let index_bytes = read_archive(store, &mut staged, path, trap.reader(f))
        .map_err(|e| trap.reclassify(e, || path.into()))?;
    let index_bytes =
        index_bytes.ok_or_else(|| Error::corrupt(&what, "no index.json: not an OCI archive"))?;
    let index: LayoutIndex = serde_json::from_slice(&index_bytes)
        .map_err(|e| Error::corrupt(format!("{what}: index.json"), e.to_string()))?;
    // Merge entries by manifest, in order of first appearance.
    let mut order: Vec<(Digest, Vec<String>)> = Vec::new();
    let mut slot: HashMap<Digest, usize> = HashMap::new();
    for desc in index.manifests {
        let i = *slot.entry(desc.digest).or_insert_with(|| {
            order.push((desc.digest, Vec::new()));
            order.len() - 1
        });
        if order.len() > MAX_IMPORT_MANIFESTS {
            return Err(Error::corrupt(
                format!("{what}: index.json"),
                format!("lists more than {MAX_IMPORT_MANIFESTS} distinct manifests"),
            ));
        }
        if let Some(t) = desc
            .annotations
            .get(KEY_REF_NAME)
            .filter(|t| crate::store::validate_tag(t).is_ok())
        {
            if !order[i].1.contains(t) {
                order[i].1.push(t.clone());
            }
        }
    }
    if order.is_empty() {
        return Err(Error::corrupt(&what, "holds no manifest"));
    }
    let mut verified: HashSet<(Digest, Vec<Digest>)> = HashSet::new();
    let mut out = Vec::with_capacity(order.len());
    let mut adds = Vec::with_capacity(order.len());
    let mut sizes = Vec::with_capacity(order.len());
    for (digest, tags) in order {
        let bundle = Bundle::open(&staged, &digest)?;
        let m = &bundle.meta.manifest;
        let key = (m.config.digest, m.layers.iter().map(|l| l.digest).collect());
        if !verified.contains(&key) {
            crate::verify::verify(&staged, &bundle, progress)?;
            verified.insert(key);
        }
        sizes.push(staged.size(&digest)?);
        out.push((bundle, tags));
    }
    // Everything verified: the blobs go into the store, then the manifests into index.json.
    staged.publish()?;
    for ((bundle, tags), size) in out.iter().zip(sizes) {
        // The size of the stored manifest, not the one the archive's index.json claims.
        adds.push((bundle.meta.manifest_digest, size, bundle.id(), tags.clone()));
    }
    store.add_manifests(&adds)?;
    Ok(out)
}
