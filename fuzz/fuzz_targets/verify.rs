//! Fuzz `verify` end to end over a bundle whose layer 1 is fuzzer-made, with every digest made
//! to match (so the input reaches the tar checks instead of failing on the blob digest).
//!
//! The first byte picks the mode (mod 3): 0, the rest is layer 1's *uncompressed* tar (the harness
//! compresses it and sets the `diff_id` to its sha256), so the fuzzer mutates tar structure
//! directly; 1, the rest is the compressed blob itself; 2, the rest patches bytes of the canonical
//! tar. Oracle: `verify` may only succeed when layer 1 is exactly the canonical tar of the index.
#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::sync::OnceLock;

use bundle::compress::write_index_trailer;
use bundle::manifest::{
    Descriptor, ImageConfig, Manifest, RootFs, RunConfig, KEY_BYTES, KEY_FILES, KEY_FORMAT,
    KEY_INDEX, MEDIA_CONFIG, MEDIA_MANIFEST,
};
use bundle::store::BlobSource;
use bundle::{
    layout, tar, Bundle, Compression, Digest, Entry, EntryKind, Error, FileHash, Index, NoProgress,
    SitePath,
};
use libfuzzer_sys::fuzz_target;

struct Mem(HashMap<Digest, Vec<u8>>);

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

struct Fixed {
    index: Index,
    index_bytes: Vec<u8>,
    layer0_blob: Vec<u8>,
    layer0_diff: Digest,
    canonical_tar1: Vec<u8>,
}

fn tar_of(index: &Index, n: u32, contents: &HashMap<String, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for m in layout::members(index.entries(), n) {
        tar::write_header(&mut out, &layout::header(&m)).expect("header");
        if let layout::Member::File(e) = m {
            let c = &contents[e.path.as_str()];
            out.extend_from_slice(c);
            out.extend(std::iter::repeat_n(0u8, tar::padding(c.len() as u64)));
        }
    }
    tar::write_end(&mut out).expect("end");
    out
}

fn fixed() -> &'static Fixed {
    static F: OnceLock<Fixed> = OnceLock::new();
    F.get_or_init(|| {
        let p = |s: &str| SitePath::new(s).expect("path");
        let file = |s: &str, c: &[u8], x: bool| Entry {
            path: p(s),
            kind: EntryKind::File {
                size: c.len() as u64,
                hash: FileHash::of(c),
                executable: x,
            },
            layer: 1,
        };
        let a = b"<p>same</p>\n".to_vec();
        let b = b"#!/bin/sh\n".to_vec();
        let index = Index::new(vec![
            Entry {
                path: p("d"),
                kind: EntryKind::Dir,
                layer: 0,
            },
            Entry {
                path: p("l"),
                kind: EntryKind::Symlink {
                    target: "d/a.html".into(),
                },
                layer: 0,
            },
            file("d/a.html", &a, false),
            file("d/b.html", &a, false),
            file("run.js", &b, true),
            file("z.txt", b"", false),
        ])
        .expect("index");
        let mut contents = HashMap::new();
        contents.insert("d/a.html".to_string(), a);
        contents.insert("run.js".to_string(), b);
        contents.insert("z.txt".to_string(), Vec::new());
        let index_bytes = index.encode();
        let tar0 = tar_of(&index, 0, &contents);
        let mut enc = Compression::Zstd.encoder(Vec::new()).expect("enc");
        enc.write_all(&tar0).expect("write");
        let mut layer0_blob = enc.finish().expect("finish");
        let off = layer0_blob.len() as u64;
        write_index_trailer(&mut layer0_blob, Compression::Zstd, off, &index_bytes)
            .expect("trailer");
        Fixed {
            canonical_tar1: tar_of(&index, 1, &contents),
            layer0_diff: Digest::of(&tar0),
            index,
            index_bytes,
            layer0_blob,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let f = fixed();
    let tar1: Option<Vec<u8>> = match sel % 3 {
        0 => Some(rest.to_vec()),
        1 => None,
        _ => {
            // The canonical tar with bytes overwritten: (u16 LE position, byte) triples, so
            // mutations land in a structure that is otherwise right.
            let mut t = f.canonical_tar1.clone();
            for c in rest.chunks_exact(3) {
                let pos = usize::from(u16::from_le_bytes([c[0], c[1]])) % t.len();
                t[pos] = c[2];
            }
            Some(t)
        }
    };
    let (blob1, diff1) = match &tar1 {
        Some(t) => {
            let mut enc = Compression::Zstd.encoder(Vec::new()).expect("enc");
            enc.write_all(t).expect("write");
            (enc.finish().expect("finish"), Digest::of(t))
        }
        // diff_id of the canonical tar: success needs the blob to decode to exactly that.
        None => (rest.to_vec(), Digest::of(&f.canonical_tar1)),
    };
    let mut blobs = HashMap::new();
    let mut layers = Vec::new();
    for b in [f.layer0_blob.clone(), blob1] {
        let d = Digest::of(&b);
        layers.push(Descriptor {
            media_type: Compression::Zstd.media_type().into(),
            digest: d,
            size: b.len() as u64,
            annotations: BTreeMap::new(),
        });
        blobs.insert(d, b);
    }
    let mut labels = BTreeMap::new();
    labels.insert(KEY_FORMAT.to_string(), "1".to_string());
    labels.insert(
        KEY_INDEX.to_string(),
        Digest::of(&f.index_bytes).to_string(),
    );
    labels.insert(KEY_FILES.to_string(), f.index.file_count().to_string());
    labels.insert(KEY_BYTES.to_string(), f.index.total_bytes().to_string());
    let config = ImageConfig {
        architecture: "amd64".into(),
        config: RunConfig { labels },
        os: "linux".into(),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![f.layer0_diff, diff1],
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
    let src = Mem(blobs);
    let b = Bundle::open(&src, &md).expect("the fixed part of the bundle is valid");
    if bundle::verify(&src, &b, &NoProgress).is_ok() {
        if let Some(t) = tar1 {
            assert_eq!(t, f.canonical_tar1, "verify accepted a non-canonical layer");
        }
    }
});
