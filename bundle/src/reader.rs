//! Opening a bundle: manifest, config and index, each checked against the digest that names it.
//!
//! Trust flows from the manifest digest (or the bundle id) down: the manifest names the config by
//! digest, the config carries the index digest and the `diff_id` of every layer, and the index
//! carries the BLAKE3 of every file. The index is read from layer 0's trailer with two range reads
//! (footer, then index frame), without reading any layer.

use std::io::{self, Read};

use crate::compress::{decode_index_frame, parse_footer, Compression};
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::manifest::{parse_config, parse_manifest, BundleMeta, MAX_JSON_BYTES};
use crate::store::BlobSource;

/// An opened, checked bundle: its metadata and index.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Manifest, config and derived facts.
    pub meta: BundleMeta,
    /// The per-file index.
    pub index: Index,
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
        let config_bytes =
            read_verified(source, &manifest.config.digest, MAX_JSON_BYTES, "config")?;
        if config_bytes.len() as u64 != manifest.config.size {
            return Err(Error::corrupt(
                "config",
                "size differs from the manifest's descriptor",
            ));
        }
        let (config, index_digest) = parse_config(&manifest, &config_bytes)?;
        let compression = Compression::from_media_type(&manifest.layers[0].media_type)
            .ok_or_else(|| Error::corrupt("manifest", "unsupported layer media type"))?;
        let meta = BundleMeta {
            manifest_digest,
            manifest,
            config,
            compression,
            index_digest,
        };
        let index = read_index(source, &meta)?;
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

/// Read and check the index from layer 0's trailer.
fn read_index(source: &dyn BlobSource, meta: &BundleMeta) -> Result<Index> {
    let l0 = &meta.manifest.layers[0];
    let c = meta.compression;
    let flen = c.footer_len() as u64;
    if l0.size < flen {
        return Err(Error::corrupt("layer 0", "too small to carry the index"));
    }
    let footer = source.read_range(&l0.digest, l0.size - flen, flen)?;
    let (off, len) = parse_footer(c, &footer)?;
    if off.checked_add(len) != Some(l0.size - flen) {
        return Err(Error::corrupt(
            "layer 0 index footer",
            "offset and length do not end at the footer",
        ));
    }
    if len > crate::compress::MAX_INDEX_BYTES {
        return Err(Error::corrupt(
            "layer 0 index",
            "larger than the format allows",
        ));
    }
    let frame = source.read_range(&l0.digest, off, len)?;
    let bytes = decode_index_frame(c, &frame)?;
    let found = Digest::of(&bytes);
    if found != meta.index_digest {
        return Err(Error::DigestMismatch {
            what: "index".into(),
            expected: meta.index_digest,
            found,
        });
    }
    let index = Index::decode(&bytes)?;
    let n = meta.manifest.layers.len() as u32;
    if index.layer_count() > n {
        return Err(Error::corrupt(
            "bundle index",
            format!("refers to layer {} of {n}", index.layer_count() - 1),
        ));
    }
    for k in 1..n {
        if !index.entries().iter().any(|e| e.layer == k) {
            return Err(Error::corrupt(
                "bundle index",
                format!("layer {k} holds no entry"),
            ));
        }
    }
    Ok(index)
}

/// A layer decoder whose underlying reader can be recovered, so the rest of the blob (the index
/// trailer on layer 0) is hashed too.
pub(crate) enum LayerDecoder<R: io::BufRead> {
    Zstd(zstd::stream::read::Decoder<'static, R>),
    Gzip(flate2::bufread::MultiGzDecoder<R>),
}

impl<R: io::BufRead> LayerDecoder<R> {
    pub(crate) fn new(c: Compression, r: R) -> io::Result<Self> {
        Ok(match c {
            Compression::Zstd => LayerDecoder::Zstd(zstd::stream::read::Decoder::with_buffer(r)?),
            Compression::Gzip => LayerDecoder::Gzip(flate2::bufread::MultiGzDecoder::new(r)),
        })
    }

    pub(crate) fn into_inner(self) -> R {
        match self {
            LayerDecoder::Zstd(d) => d.finish(),
            LayerDecoder::Gzip(d) => d.into_inner(),
        }
    }
}

impl<R: io::BufRead> Read for LayerDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            LayerDecoder::Zstd(d) => d.read(buf),
            LayerDecoder::Gzip(d) => d.read(buf),
        }
    }
}
