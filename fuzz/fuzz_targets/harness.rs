//! Shared by the fuzz targets: an in-memory blob source and a bundle assembled around fuzzed
//! parts with every digest made to match, so the input reaches the deep checks.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};

use bundle::compress::write_index_trailer;
use bundle::manifest::{
    Descriptor, ImageConfig, Manifest, RootFs, RunConfig, KEY_BYTES, KEY_FILES, KEY_FORMAT,
    KEY_INDEX, MEDIA_CONFIG, MEDIA_MANIFEST,
};
use bundle::store::BlobSource;
use bundle::{Compression, Digest, Error};

/// Blobs in memory.
pub struct Mem(pub HashMap<Digest, Vec<u8>>);

impl BlobSource for Mem {
    fn open_blob(&self, d: &Digest) -> Result<Box<dyn Read + Send + '_>, Error> {
        match self.0.get(d) {
            Some(b) => Ok(Box::new(&b[..])),
            None => Err(Error::BlobMissing { digest: *d }),
        }
    }
    fn read_range(&self, d: &Digest, offset: u64, len: u64) -> Result<Vec<u8>, Error> {
        let b = self.0.get(d).ok_or(Error::BlobMissing { digest: *d })?;
        let (o, l) = (offset as usize, len as usize);
        b.get(o..o.saturating_add(l))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::corrupt("blob", "short"))
    }
}

/// How one layer blob is made from its tar.
pub enum Blob {
    /// Compressed with this; layer 0 gets the index trailer when `trailer` is set.
    Compressed(Compression),
    /// The tar itself (media type `application/vnd.oci.image.layer.v1.tar`).
    Tar,
}

/// `f` lines and the sum of their sizes, read leniently.
pub fn totals(index: &[u8]) -> (u64, u64) {
    String::from_utf8_lossy(index)
        .lines()
        .filter(|l| l.starts_with("f\t"))
        .map(|l| l.split('\t').nth(2).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0))
        .fold((0, 0), |(n, b), s| (n + 1, b.saturating_add(s)))
}

/// A bundle of `tars` whose config labels say `index` (its digest and counts), layer 0 carrying
/// `index` in its trailer when `trailer`. Returns the blobs and the manifest digest.
pub fn assemble(index: &[u8], tars: &[Vec<u8>], blob: Blob, trailer: bool) -> (Mem, Digest) {
    let mut blobs = HashMap::new();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (n, t) in tars.iter().enumerate() {
        let (bytes, media) = match blob {
            Blob::Compressed(c) => {
                let mut enc = c.encoder(Vec::new()).expect("encoder");
                enc.write_all(t).expect("write");
                let mut b = enc.finish().expect("finish");
                if n == 0 && trailer {
                    let off = b.len() as u64;
                    write_index_trailer(&mut b, c, off, index).expect("trailer");
                }
                (b, c.media_type())
            }
            Blob::Tar => (t.clone(), bundle::manifest::MEDIA_LAYER_TAR),
        };
        let d = Digest::of(&bytes);
        layers.push(Descriptor {
            media_type: media.into(),
            digest: d,
            size: bytes.len() as u64,
            annotations: BTreeMap::new(),
        });
        diff_ids.push(Digest::of(t));
        blobs.insert(d, bytes);
    }
    let (files, bytes) = totals(index);
    let mut labels = BTreeMap::new();
    labels.insert(KEY_FORMAT.to_string(), "1".to_string());
    labels.insert(KEY_INDEX.to_string(), Digest::of(index).to_string());
    labels.insert(KEY_FILES.to_string(), files.to_string());
    labels.insert(KEY_BYTES.to_string(), bytes.to_string());
    let config = ImageConfig {
        architecture: "amd64".into(),
        config: RunConfig { labels },
        os: "linux".into(),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids,
        },
        variant: None,
    };
    let cb = config.to_bytes();
    let id = Digest::of(&cb);
    blobs.insert(id, cb.clone());
    let mut annotations = BTreeMap::new();
    annotations.insert(KEY_FORMAT.to_string(), "1".to_string());
    let m = Manifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST.into(),
        config: Descriptor {
            media_type: MEDIA_CONFIG.into(),
            digest: id,
            size: cb.len() as u64,
            annotations: BTreeMap::new(),
        },
        layers,
        annotations,
    };
    let mb = m.to_bytes();
    let md = Digest::of(&mb);
    blobs.insert(md, mb);
    (Mem(blobs), md)
}
