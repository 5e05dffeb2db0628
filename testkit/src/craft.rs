//! Hand-made bundles whose digests are all right, so that only the deep checks (the index rules,
//! the canonical tar, symlink resolution) can refuse them.
//!
//! A test writes the index lines and the layer tars it wants (see [`idx_dir`], [`idx_file`],
//! [`idx_link`], [`dir`], [`file`], [`symlink`], [`tar`]), and [`craft`] compresses the layers,
//! puts the index in layer 0's trailer, writes the config and manifest with every digest computed
//! from those bytes, and stores them. Panics on a store failure: this is test code.

use std::collections::BTreeMap;
use std::io::Write;

use bundle::compress::write_index_trailer;
use bundle::manifest::{
    self, Descriptor, ImageConfig, Manifest, RootFs, RunConfig, KEY_BYTES, KEY_FILES, KEY_FORMAT,
    KEY_INDEX,
};
use bundle::tar::{content_mtime, padding, write_end, write_header, TarHeader, TarKind};
use bundle::{Compression, Digest, FileHash, Store};

/// One tar member: header and content.
pub struct M {
    /// The header as it will be written.
    pub h: TarHeader,
    /// The content.
    pub body: Vec<u8>,
}

/// A directory member (canonical header).
pub fn dir(path: &str) -> M {
    M {
        h: TarHeader {
            path: path.into(),
            kind: TarKind::Dir,
            mode: 0o755,
            size: 0,
            mtime: bundle::tar::EPOCH_BASE,
            link: String::new(),
        },
        body: Vec::new(),
    }
}

/// A regular-file member (canonical header: mode 644, content-derived mtime).
pub fn file(path: &str, body: &[u8]) -> M {
    M {
        h: TarHeader {
            path: path.into(),
            kind: TarKind::File,
            mode: 0o644,
            size: body.len() as u64,
            mtime: content_mtime(&FileHash::of(body).0),
            link: String::new(),
        },
        body: body.to_vec(),
    }
}

/// A symlink member (canonical header).
pub fn symlink(path: &str, target: &str) -> M {
    M {
        h: TarHeader {
            path: path.into(),
            kind: TarKind::Symlink,
            mode: 0o777,
            size: 0,
            mtime: bundle::tar::EPOCH_BASE,
            link: target.into(),
        },
        body: Vec::new(),
    }
}

/// A tar stream of `members`, padded, with the end-of-archive blocks.
pub fn tar(members: &[M]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        write_header(&mut out, &m.h).unwrap();
        out.extend_from_slice(&m.body);
        out.extend(std::iter::repeat_n(0u8, padding(m.body.len() as u64)));
    }
    write_end(&mut out).unwrap();
    out
}

/// Index bytes from lines written by hand (so they can claim anything).
pub fn index_text(lines: &[String]) -> Vec<u8> {
    let mut s = String::from("sitebundle-index 1\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s.into_bytes()
}

/// An index line for a directory.
pub fn idx_dir(path: &str) -> String {
    format!("d\t755\t0\t0\t-\t{path}")
}

/// An index line for a non-executable file with `body` in `layer`.
pub fn idx_file(path: &str, body: &[u8], layer: u32) -> String {
    format!(
        "f\t644\t{}\t{layer}\t{}\t{path}",
        body.len(),
        FileHash::of(body).hex()
    )
}

/// An index line for a symlink.
pub fn idx_link(path: &str, target: &str) -> String {
    format!("l\t777\t0\t0\t-\t{path}\t{target}")
}

/// What [`craft`] stored.
#[derive(Debug, Clone)]
pub struct Crafted {
    /// Manifest digest.
    pub manifest: Digest,
    /// Manifest size in bytes.
    pub manifest_size: u64,
    /// Bundle id (config digest).
    pub id: Digest,
}

/// The number of `f` lines of an index and the sum of their sizes (what the config labels carry),
/// read leniently: a forged index may be malformed on purpose.
fn file_totals(index: &[u8]) -> (u64, u64) {
    let text = String::from_utf8_lossy(index);
    text.lines()
        .filter(|l| l.starts_with("f\t"))
        .map(|l| {
            l.split('\t')
                .nth(2)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .fold((0, 0), |(n, b), size| (n + 1, b + size))
}

/// Store a self-consistent bundle (every digest right) from an index and layer tars, zstd.
pub fn craft(store: &Store, index: &[u8], tars: &[Vec<u8>]) -> Crafted {
    craft_with(store, Compression::Zstd, index, tars)
}

/// [`craft`] with a chosen compression.
pub fn craft_with(store: &Store, c: Compression, index: &[u8], tars: &[Vec<u8>]) -> Crafted {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (n, t) in tars.iter().enumerate() {
        let mut enc = c.encoder(Vec::new()).unwrap();
        enc.write_all(t).unwrap();
        let mut blob = enc.finish().unwrap();
        if n == 0 {
            let off = blob.len() as u64;
            write_index_trailer(&mut blob, c, off, index).unwrap();
        }
        let d = store.put_blob(&blob).unwrap();
        layers.push(Descriptor {
            media_type: c.media_type().into(),
            digest: d,
            size: blob.len() as u64,
            annotations: BTreeMap::new(),
        });
        diff_ids.push(Digest::of(t));
    }
    let mut labels = BTreeMap::new();
    labels.insert(KEY_FORMAT.to_string(), "1".to_string());
    labels.insert(KEY_INDEX.to_string(), Digest::of(index).to_string());
    let (files, bytes) = file_totals(index);
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
    let id = store.put_blob(&cb).unwrap();
    let mut annotations = BTreeMap::new();
    annotations.insert(KEY_FORMAT.to_string(), "1".to_string());
    let m = Manifest {
        schema_version: 2,
        media_type: manifest::MEDIA_MANIFEST.into(),
        config: Descriptor {
            media_type: manifest::MEDIA_CONFIG.into(),
            digest: id,
            size: cb.len() as u64,
            annotations: BTreeMap::new(),
        },
        layers,
        annotations,
    };
    let mb = m.to_bytes();
    let manifest = store.put_blob(&mb).unwrap();
    Crafted {
        manifest,
        manifest_size: mb.len() as u64,
        id,
    }
}

/// [`craft`], then record the manifest in the store's `index.json` under `tag`.
pub fn craft_tagged(store: &Store, index: &[u8], tars: &[Vec<u8>], tag: &str) -> Crafted {
    let c = craft(store, index, tars);
    store
        .add_manifest(c.manifest, c.manifest_size, c.id, &[tag.to_string()])
        .unwrap();
    c
}

/// Issue 8 item 1: `a/b/c/d/e/f/up -> ../../../../../..` (the root: legal) and
/// `passwd -> a/b/c/d/e/f/up/../../../../../../../etc/passwd`, lexically inside the site (its seven
/// `..` undo its seven names) but physically seven levels above the root. Returns the index and
/// the layer tars, every member canonical, for [`craft`].
pub fn escape_through_root_link() -> (Vec<u8>, Vec<Vec<u8>>) {
    const BODY: &[u8] = b"<p>site</p>\n";
    let dirs = ["a", "a/b", "a/b/c", "a/b/c/d", "a/b/c/d/e", "a/b/c/d/e/f"];
    let up = ("a/b/c/d/e/f/up", "../../../../../..");
    let passwd = ("passwd", "a/b/c/d/e/f/up/../../../../../../../etc/passwd");
    let mut lines: Vec<String> = dirs.iter().map(|d| idx_dir(d)).collect();
    lines.push(idx_link(up.0, up.1));
    lines.push(idx_file("index.html", BODY, 1));
    lines.push(idx_link(passwd.0, passwd.1));
    let mut l0: Vec<M> = dirs.iter().map(|d| dir(d)).collect();
    l0.push(symlink(up.0, up.1));
    l0.push(symlink(passwd.0, passwd.1));
    (
        index_text(&lines),
        vec![tar(&l0), tar(&[file("index.html", BODY)])],
    )
}
