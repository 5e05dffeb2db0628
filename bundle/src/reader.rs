//! Opening a bundle: manifest, config and index, each checked against the digest that names it.
//!
//! Trust flows from the manifest digest (or the bundle id) down: the manifest names the config by
//! digest, the config carries the index digest and the `diff_id` of every layer, and the index
//! carries the BLAKE3 of every file. The index is found in layer 0's trailer with one range read
//! (the footer), then streamed and checked against every rule of the spec ([`crate::view`]),
//! without reading any layer. A copy whose layer 0 lost its trailer (re-compressed by a registry
//! tool) has its index rebuilt from the layers ([`crate::rebuild`]); the rebuilt bytes must hash
//! to the config's index label like any other.

use std::io::Read;

use crate::compress::{find_footer, LayerEncoding};
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::manifest::{parse_config, parse_manifest, BundleMeta, MAX_JSON_BYTES};
use crate::store::BlobSource;
use crate::view::{IndexView, Source};

/// An opened, checked bundle: its metadata and index.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Manifest, config and derived facts.
    pub meta: BundleMeta,
    /// The per-file index, checked, streamed from the blobs when used.
    pub index: IndexView,
}

impl Bundle {
    /// Open the bundle whose manifest has digest `manifest_digest`.
    pub fn open(source: &dyn BlobSource, manifest_digest: &Digest) -> Result<Bundle> {
        let manifest_bytes = read_verified(source, manifest_digest, MAX_JSON_BYTES, "manifest")?;
        Bundle::from_manifest_bytes(source, &manifest_bytes)
    }

    /// Open a bundle from manifest bytes already in hand (their digest is computed here).
    pub fn from_manifest_bytes(source: &dyn BlobSource, manifest_bytes: &[u8]) -> Result<Bundle> {
        let manifest = parse_manifest(manifest_bytes)?;
        let manifest_digest = Digest::of(manifest_bytes);
        if manifest.config.size > MAX_JSON_BYTES {
            return Err(Error::corrupt(
                "manifest",
                format!(
                    "its config descriptor says {} bytes, more than 4 MiB",
                    manifest.config.size
                ),
            ));
        }
        let config_bytes =
            read_verified(source, &manifest.config.digest, MAX_JSON_BYTES, "config")?;
        if config_bytes.len() as u64 != manifest.config.size {
            return Err(Error::corrupt(
                "config",
                "size differs from the manifest's descriptor",
            ));
        }
        let (config, labels) = parse_config(&manifest, &config_bytes)?;
        let encodings = manifest
            .layers
            .iter()
            .map(|l| {
                LayerEncoding::from_media_type(&l.media_type).ok_or_else(|| {
                    Error::corrupt(
                        "manifest",
                        format!("unsupported layer media type {:?}", l.media_type),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = BundleMeta {
            manifest_digest,
            manifest,
            config,
            encodings,
            labels,
            index_digest: labels.index,
        };
        let src = match locate_index(source, &meta)? {
            Some(s) => s,
            None => crate::rebuild::rebuild(source, &meta)?,
        };
        let index = IndexView::open(src, source, meta.manifest.layers.len() as u32, &meta.labels)?;
        Ok(Bundle { meta, index })
    }

    /// Bundle id (config digest).
    pub fn id(&self) -> Digest {
        self.meta.id()
    }
}

/// Read a whole blob (at most `max` bytes) and check its digest.
pub fn read_verified(source: &dyn BlobSource, d: &Digest, max: u64, what: &str) -> Result<Vec<u8>> {
    let mut r = HashingReader::new(source.open_blob(d)?.take(max + 1));
    let mut buf = Vec::new();
    r.read_to_end(&mut buf)
        .map_err(|e| Error::corrupt(format!("{what} {d}"), format!("read failed: {e}")))?;
    if buf.len() as u64 > max {
        return Err(Error::corrupt(
            format!("{what} {d}"),
            format!("larger than {max} bytes"),
        ));
    }
    let (found, _) = r.finish();
    if found != *d {
        return Err(Error::DigestMismatch {
            what: what.to_string(),
            expected: *d,
            found,
        });
    }
    Ok(buf)
}

/// Where layer 0's trailer says the index is, or `None` when layer 0 has no trailer (an
/// uncompressed layer never has one: bytes after the tar would change its `diff_id`).
fn locate_index(source: &dyn BlobSource, meta: &BundleMeta) -> Result<Option<Source>> {
    let l0 = &meta.manifest.layers[0];
    let Some(c) = meta.encodings[0].compression() else {
        return Ok(None);
    };
    let flen = c.footer_len() as u64;
    if l0.size < flen {
        return Ok(None);
    }
    let footer = source.read_range(&l0.digest, l0.size - flen, flen)?;
    let Some((offset, len)) = find_footer(c, &footer)? else {
        return Ok(None);
    };
    if offset.checked_add(len) != Some(l0.size - flen) {
        return Err(Error::corrupt(
            "layer 0 index footer",
            "offset and length do not end at the footer",
        ));
    }
    if len > crate::limits::MAX_INDEX_FRAME_BYTES {
        return Err(Error::corrupt(
            "layer 0 index",
            "larger than the format allows",
        ));
    }
    Ok(Some(Source::Trailer {
        layer0: l0.digest,
        compression: c,
        offset,
        len,
    }))
}
