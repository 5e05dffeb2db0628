//! `export` / `import`: a bundle as one `oci-archive` file (a tar of an OCI image layout), the
//! form `skopeo copy oci-archive:FILE ...` reads and writes.
//!
//! Export writes canonical tar headers (see [`crate::tar`]). Import accepts archives written by
//! other tools too (it reads with the `tar` crate), stores each blob only after its bytes hash to
//! the digest its name claims, then opens and fully verifies every sitebundle manifest before it
//! is listed in the store: a bad archive adds no bundle.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use crate::digest::Digest;
use crate::error::{Error, Result};
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
    let tmp = tempfile::Builder::new()
        .prefix(".sitebundle-export-")
        .tempfile_in(dir)
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

/// Import every sitebundle in the oci-archive at `path` into `store`, verifying each fully.
/// Returns the manifest digests and tags added.
pub fn import(
    store: &Store,
    path: &Path,
    progress: &dyn Progress,
) -> Result<Vec<(Bundle, Vec<String>)>> {
    let f = File::open(path).map_err(Error::io("open", path))?;
    let mut ar = tar::Archive::new(io::BufReader::new(f));
    let what = path.display().to_string();
    let mut index_bytes = None;
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
            if store.has_blob(&d) {
                continue;
            }
            let mut bw = store.blob_writer()?;
            io::copy(&mut entry, &mut bw)
                .map_err(|e| Error::corrupt(&what, format!("reading {name}: {e}")))?;
            bw.finish_verified(&d, &format!("{what}: {name}"))?;
        }
    }
    let index_bytes =
        index_bytes.ok_or_else(|| Error::corrupt(&what, "no index.json: not an OCI archive"))?;
    let index: LayoutIndex = serde_json::from_slice(&index_bytes)
        .map_err(|e| Error::corrupt(format!("{what}: index.json"), e.to_string()))?;
    let mut out = Vec::new();
    for desc in index.manifests {
        let bundle = Bundle::open(store, &desc.digest)?;
        crate::verify::verify(store, &bundle, progress)?;
        let tags: Vec<String> = desc
            .annotations
            .get(KEY_REF_NAME)
            .filter(|t| crate::store::validate_tag(t).is_ok())
            .cloned()
            .into_iter()
            .collect();
        store.add_manifest(desc.digest, desc.size, bundle.id(), &tags)?;
        out.push((bundle, tags));
    }
    if out.is_empty() {
        return Err(Error::corrupt(&what, "holds no manifest"));
    }
    Ok(out)
}
