//! The layer grouping rule: which layer each file goes into.
//!
//! Goals: a next deploy reuses every layer whose files did not change, and the rule is simple
//! enough for another team to implement from `spec/format.md` ("Layer grouping"). It depends only
//! on the index (paths, sizes, hashes), never on walk order or thread count.
//!
//! 1. Layer 0 holds every directory and symlink (and carries the index trailer).
//! 2. Each distinct content (BLAKE3 and executable bit: hardlinks share one inode, hence one mode)
//!    is stored once, in the layer of its *canonical path*: the smallest path (bytewise) carrying
//!    it. Other paths with that content are hardlinks in the same layer.
//! 3. Canonical files are split into two classes, *text* (pages, styles, scripts, data: what a
//!    generator rewrites, and their precompressed `.gz`/`.br`/`.zst` variants) and *binary*
//!    (images, fonts, archives: what rarely changes), so that a site-wide page rebuild does not
//!    touch the image layers. Text layers come first.
//! 4. Within a class, in path order, a layer is cut after file `f` when
//!    `h(f) mod TARGET < size(f)`, where `h` is the first 8 bytes (LE) of BLAKE3(path). A cut is
//!    thus expected every TARGET bytes, and where it falls depends on the file at the boundary
//!    only, so adding or removing a page disturbs the one layer around it (content-defined
//!    chunking over the sequence of files). A layer is also cut when it reaches 4 x TARGET, and a
//!    file of TARGET bytes or more always gets a layer of its own.
//! 5. TARGET = max(4 MiB, the power of two at or above total canonical bytes / 64); it is doubled
//!    until the bundle has at most [`MAX_LAYERS`](crate::manifest::MAX_LAYERS) layers.

use std::collections::HashMap;

use crate::digest::FileHash;
use crate::index::{Entry, EntryKind};

/// Smallest layer target size.
pub const MIN_TARGET: u64 = 4 * 1024 * 1024;
/// TARGET starts at total / this, rounded up to a power of two.
pub const TARGET_DIVISOR: u64 = 64;
/// Extensions of the text class (lowercase). Everything else is binary.
pub const TEXT_EXTENSIONS: &[&str] = &[
    "atom",
    "css",
    "csv",
    "htm",
    "html",
    "js",
    "json",
    "map",
    "md",
    "mjs",
    "rss",
    "svg",
    "txt",
    "webmanifest",
    "xhtml",
    "xml",
    "xsl",
    "yaml",
    "yml",
];

/// Suffixes of precompressed variants (`sitemap.xml.gz`, `app.js.br`): such a file is classed by
/// the extension before the suffix, because it is regenerated whenever its source is.
pub const PRECOMPRESSED_SUFFIXES: &[&str] = &["br", "gz", "zst"];

/// Is a path in the text class?
///
/// The class is read from the last extension of the file name, or, when that is one of
/// [`PRECOMPRESSED_SUFFIXES`], from the extension before it. Why: a site generator rewrites
/// `sitemap.xml.gz` on every deploy, and in the binary class it would make an otherwise unchanged
/// image layer change every time (measured: medium v2 reused 51 % of layer bytes with it there).
pub fn is_text(path: &crate::path::SitePath) -> bool {
    is_text_name(path.file_name())
}

/// [`is_text`] of a file name (the last component of a path).
pub(crate) fn is_text_name(name: &str) -> bool {
    // As web servers pick a MIME type: whatever follows the last dot, even a leading one
    // (Boost's docs have pages named `.html`).
    let ext_of =
        |n: &str| -> Option<String> { n.rfind('.').map(|dot| n[dot + 1..].to_ascii_lowercase()) };
    let Some(ext) = ext_of(name) else {
        return false;
    };
    let ext = if PRECOMPRESSED_SUFFIXES.contains(&ext.as_str()) {
        match ext_of(&name[..name.len() - ext.len() - 1]) {
            Some(inner) => inner,
            None => return false,
        }
    } else {
        ext
    };
    TEXT_EXTENSIONS.contains(&ext.as_str())
}

#[cfg(test)]
mod class_tests {
    use super::is_text;
    use crate::path::SitePath;

    #[test]
    fn precompressed_variants_follow_their_source() {
        let t = |p: &str| is_text(&SitePath::new(p).expect("valid"));
        assert!(t("sitemap.xml.gz"));
        assert!(t("a/app.JS.br"));
        assert!(t("index.html"));
        assert!(!t("img/logo.png"));
        assert!(!t("img/logo.png.gz"));
        assert!(!t("archive.gz"));
        assert!(!t(".gz"));
        assert!(t("x/.xml.gz"));
        assert!(t("boost/doc/html/boost/yap/operator/.html"));
        assert!(!t(".nojekyll"));
        assert!(!t("noext"));
    }
}

/// What makes two files one stored content: same bytes and same executable bit.
type ContentKey = (FileHash, bool);

fn content_key(e: &Entry) -> Option<ContentKey> {
    match &e.kind {
        EntryKind::File {
            hash, executable, ..
        } => Some((*hash, *executable)),
        _ => None,
    }
}

pub(crate) fn cut_hash(path: &str) -> u64 {
    let h = blake3::hash(path.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

/// Assign `layer` on every entry of `entries` (which must be sorted by path). Returns the number
/// of layers, layer 0 included.
pub fn assign_layers(entries: &mut [Entry]) -> u32 {
    use rayon::prelude::*;
    let all = &*entries;
    // Two passes at once: the canonical path of each content (entries are sorted, so the first
    // seen is the smallest; `canon_of[i]` is the index of entry i's canonical entry, files
    // only), and every file's class and cut hash (a BLAKE3 of its path) in parallel. Serial,
    // they were most of the layout's time on a 53,000-file site.
    let (canon_of, classes) = rayon::join(
        || {
            let mut canonical: KeyMap<usize> =
                KeyMap::with_capacity_and_hasher(all.len(), Default::default());
            all.iter()
                .enumerate()
                .map(|(i, e)| content_key(e).map(|k| *canonical.entry(k).or_insert(i)))
                .collect::<Vec<Option<usize>>>()
        },
        || {
            all.par_iter()
                .map(|e| match e.kind {
                    EntryKind::File { .. } => (cut_hash(e.path.as_str()), is_text(&e.path)),
                    _ => (0, false),
                })
                .collect::<Vec<(u64, bool)>>()
        },
    );
    let classed = (0..all.len())
        .filter(|&i| canon_of[i] == Some(i))
        .map(|i| ((i, all[i].size(), classes[i].0), classes[i].1));
    let mut text = Vec::new();
    let mut binary = Vec::new();
    for (item, t) in classed {
        if t {
            text.push(item);
        } else {
            binary.push(item);
        }
    }
    let total: u64 = text.iter().chain(binary.iter()).map(|&(_, s, _)| s).sum();
    let mut target = (total / TARGET_DIVISOR)
        .max(1)
        .next_power_of_two()
        .max(MIN_TARGET);
    let groups = loop {
        let mut groups = cut(&text, target);
        groups.extend(cut(&binary, target));
        if groups.len() < crate::manifest::MAX_LAYERS {
            break groups;
        }
        target = target.saturating_mul(2);
    };
    let mut layer_of = vec![1u32; entries.len()];
    for (n, g) in groups.iter().enumerate() {
        for &i in g {
            layer_of[i] = n as u32 + 1;
        }
    }
    for (e, c) in entries.iter_mut().zip(&canon_of) {
        e.layer = match c {
            Some(c) => layer_of[*c],
            None => 0,
        };
    }
    groups.len() as u32 + 1
}

/// A map keyed by content ([`ContentKey`]) hashed by the first bytes of the BLAKE3 it holds:
/// the key is already a cryptographic hash, so SipHash over its 33 bytes (a quarter of a
/// rebuild's CPU in `assign_layers` on a 53,000-file site) buys nothing.
type KeyMap<V> = HashMap<ContentKey, V, std::hash::BuildHasherDefault<PrefixHasher>>;

/// See [`KeyMap`]: keeps the first 8 bytes written (the BLAKE3's), ignores the rest, and
/// ignores the length prefix a `[u8; 32]` writes first (otherwise every key would hash alike).
#[derive(Default)]
struct PrefixHasher(u64, u8);

impl std::hash::Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write_usize(&mut self, _: usize) {}
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.1 < 8 {
                self.0 |= u64::from(b) << (8 * self.1);
                self.1 += 1;
            }
        }
    }
}

/// Cut one class into groups of entry indices (see rule 4).
fn cut(files: &[(usize, u64, u64)], target: u64) -> Vec<Vec<usize>> {
    let mut groups = Vec::new();
    let mut current = Vec::new();
    let mut cutter = Cutter::default();
    for &(i, size, h) in files {
        if cutter.before(size, target) {
            groups.push(std::mem::take(&mut current));
        }
        current.push(i);
        if cutter.after(size, h, target) {
            groups.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// The state of rule 4 for one class and one TARGET: the running size of the open group and
/// how many groups were closed. Shared by the writer ([`assign_layers`]) and the reader's check
/// ([`GroupingCheck`]) so both cut at the same files.
#[derive(Debug, Clone, Copy, Default)]
struct Cutter {
    /// Groups closed so far.
    closed: u32,
    /// Bytes in the open group.
    acc: u64,
    /// Whether the open group holds a file.
    open: bool,
}

impl Cutter {
    /// Before adding a file of `size`: close the open group if the file is TARGET or larger.
    /// Returns whether a group was closed.
    fn before(&mut self, size: u64, target: u64) -> bool {
        if size >= target && self.open {
            self.close();
            return true;
        }
        false
    }

    /// Add the file (`h` = [`cut_hash`] of its path), then close the group if rule 4 says so.
    fn after(&mut self, size: u64, h: u64, target: u64) -> bool {
        self.open = true;
        self.acc = self.acc.saturating_add(size);
        if self.acc >= target.saturating_mul(4) || h % target < size {
            self.close();
            return true;
        }
        false
    }

    fn close(&mut self) {
        self.closed += 1;
        self.acc = 0;
        self.open = false;
    }

    /// Groups at the end of the class.
    fn total(&self) -> u32 {
        self.closed + u32::from(self.open)
    }
}

/// Checks, over the canonical files of an index streamed in path order, that their layers are
/// the ones rule 4-5 gives (spec §6). The TARGET the writer settled on depends on the total size
/// (known only at the end) and on how many groups each TARGET gives, so every TARGET a writer
/// can reach (4 MiB, doubled up to 2^63) is followed at once, each with its own [`Cutter`]s and
/// a flag saying whether every file so far sat in the layer that TARGET gives it; at the end the
/// TARGET the writer would have chosen must be one whose flag held. Memory: a few words per
/// TARGET, whatever the index holds.
pub(crate) struct GroupingCheck {
    candidates: Vec<Candidate>,
    total: u64,
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    target: u64,
    text: Cutter,
    binary: Cutter,
    /// Every file so far is where this TARGET puts it.
    ok: bool,
    /// `layer - group` of the binary files: the number of text groups + 1 when `ok`.
    binary_base: Option<i64>,
}

impl Default for GroupingCheck {
    fn default() -> Self {
        let mut candidates = Vec::new();
        let mut t = MIN_TARGET;
        loop {
            candidates.push(Candidate {
                target: t,
                text: Cutter::default(),
                binary: Cutter::default(),
                ok: true,
                binary_base: None,
            });
            if t > u64::MAX / 2 {
                break;
            }
            t *= 2;
        }
        GroupingCheck {
            candidates,
            total: 0,
        }
    }
}

impl GroupingCheck {
    /// The next canonical file (first path of its content, a checked site path), in path
    /// order, with its layer.
    pub(crate) fn feed(&mut self, path: &str, size: u64, layer: u32) {
        self.total = self.total.saturating_add(size);
        let text = is_text_name(path.rsplit('/').next().unwrap_or(path));
        let h = cut_hash(path);
        // Every candidate keeps cutting even once it disagrees: `finish` needs its true number of
        // groups to know whether a writer would have chosen it.
        for c in &mut self.candidates {
            let cutter = if text { &mut c.text } else { &mut c.binary };
            cutter.before(size, c.target);
            let group = i64::from(cutter.closed);
            cutter.after(size, h, c.target);
            let layer = i64::from(layer);
            let here = if text {
                layer == group + 1
            } else {
                let base = layer - group;
                *c.binary_base.get_or_insert(base) == base
            };
            c.ok &= here;
        }
    }

    /// After the last file: the layering must be the one of the TARGET a writer settles on, and
    /// the bundle must have exactly its groups as layers 1 to `layers - 1`.
    pub(crate) fn finish(self, layers: u32) -> Result<(), String> {
        let start = (self.total / TARGET_DIVISOR)
            .max(1)
            .next_power_of_two()
            .max(MIN_TARGET);
        let Some(c) = self
            .candidates
            .iter()
            .filter(|c| c.target >= start)
            .find(|c| ((c.text.total() + c.binary.total()) as usize) < crate::manifest::MAX_LAYERS)
        else {
            return Err("no layer size gives fewer than 100 layers".into());
        };
        let text_groups = c.text.total();
        let groups = text_groups + c.binary.total();
        let binary_ok = c
            .binary_base
            .is_none_or(|b| b == i64::from(text_groups) + 1);
        if !c.ok || !binary_ok {
            return Err(format!(
                "files are not in the layers spec §6 gives them (layer size {} for {} bytes of \
                 content)",
                c.target, self.total
            ));
        }
        if groups + 1 != layers {
            return Err(format!(
                "the grouping rule gives {} layers, the bundle has {layers}",
                groups + 1
            ));
        }
        Ok(())
    }
}

/// What goes into one layer's tar stream, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member<'a> {
    /// A directory (layer 0).
    Dir(&'a Entry),
    /// A symlink (layer 0).
    Symlink(&'a Entry),
    /// A regular file: the canonical path of its content.
    File(&'a Entry),
    /// A hardlink to the canonical path of the same content, stored earlier in this layer.
    HardLink(&'a Entry, &'a Entry),
}

/// The members of layer `n`, in tar order (path order), derived from the index alone.
pub fn members(entries: &[Entry], n: u32) -> Vec<Member<'_>> {
    let mut first: KeyMap<&Entry> = KeyMap::default();
    entries
        .iter()
        .filter(|e| e.layer == n)
        .filter_map(|e| member(e, &mut first))
        .collect()
}

/// The members of every layer (`layers` of them), in one pass over the index: the same lists
/// as [`members`] for each `n`.
pub fn all_members(entries: &[Entry], layers: u32) -> Vec<Vec<Member<'_>>> {
    use rayon::prelude::*;
    // One pass to split the entries by layer, then the layers in parallel (each with its own
    // map of contents already stored): serial, this was 20 ms of a 53,000-file rebuild.
    let mut of_layer: Vec<Vec<&Entry>> = (0..layers).map(|_| Vec::new()).collect();
    for e in entries {
        if let Some(list) = of_layer.get_mut(e.layer as usize) {
            list.push(e);
        }
    }
    of_layer
        .into_par_iter()
        .map(|list| {
            let mut first: KeyMap<&Entry> =
                KeyMap::with_capacity_and_hasher(list.len(), Default::default());
            list.into_iter()
                .filter_map(|e| member(e, &mut first))
                .collect()
        })
        .collect()
}

/// Entry `e` as a member of its layer, given the contents already stored in it.
fn member<'a>(e: &'a Entry, first: &mut KeyMap<&'a Entry>) -> Option<Member<'a>> {
    match (&e.kind, content_key(e)) {
        (EntryKind::Dir, _) => Some(Member::Dir(e)),
        (EntryKind::Symlink { .. }, _) => Some(Member::Symlink(e)),
        (_, Some(k)) => Some(match first.get(&k) {
            Some(canon) => Member::HardLink(e, canon),
            None => {
                first.insert(k, e);
                Member::File(e)
            }
        }),
        (_, None) => None,
    }
}

/// The canonical tar header of a member.
pub fn header(m: &Member<'_>) -> crate::tar::TarHeader {
    use crate::tar::{content_mtime, TarHeader, TarKind, EPOCH_BASE};
    match m {
        Member::Dir(e) => TarHeader {
            path: e.path.to_string(),
            kind: TarKind::Dir,
            mode: e.mode(),
            size: 0,
            mtime: EPOCH_BASE,
            link: String::new(),
        },
        Member::Symlink(e) => TarHeader {
            path: e.path.to_string(),
            kind: TarKind::Symlink,
            mode: e.mode(),
            size: 0,
            mtime: EPOCH_BASE,
            link: match &e.kind {
                EntryKind::Symlink { target } => target.clone(),
                _ => String::new(),
            },
        },
        Member::File(e) => TarHeader {
            path: e.path.to_string(),
            kind: TarKind::File,
            mode: e.mode(),
            size: e.size(),
            mtime: e.hash().map(|h| content_mtime(&h.0)).unwrap_or(EPOCH_BASE),
            link: String::new(),
        },
        Member::HardLink(e, canon) => TarHeader {
            path: e.path.to_string(),
            kind: TarKind::HardLink,
            mode: e.mode(),
            size: 0,
            mtime: e.hash().map(|h| content_mtime(&h.0)).unwrap_or(EPOCH_BASE),
            link: canon.path.to_string(),
        },
    }
}

#[cfg(test)]
mod grouping_check_tests {
    use super::*;
    use crate::path::SitePath;

    fn files(n: usize, seed: u64) -> Vec<Entry> {
        let mut x = seed | 1;
        let mut v: Vec<Entry> = (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly small files, some of several MiB, so cuts, own-layer files and (with
                // many) the doubling of TARGET all happen.
                let size = match x % 50 {
                    0 => 5 * 1024 * 1024 + x % 1000,
                    1..=3 => 600_000 + x % 100_000,
                    _ => x % 20_000,
                };
                let ext = if x.is_multiple_of(3) { "png" } else { "html" };
                Entry {
                    path: SitePath::new(format!("p/{i:05}.{ext}")).expect("path"),
                    kind: EntryKind::File {
                        size,
                        hash: FileHash::of(&(i as u64 % (n as u64 - 3)).to_le_bytes()),
                        executable: false,
                    },
                    layer: 0,
                }
            })
            .collect();
        v.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
        v
    }

    fn check(entries: &[Entry], layers: u32) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        let mut g = GroupingCheck::default();
        for e in entries {
            if let Some(k) = content_key(e) {
                if seen.insert(k) {
                    g.feed(e.path.as_str(), e.size(), e.layer);
                }
            }
        }
        g.finish(layers)
    }

    #[test]
    fn the_reader_check_accepts_exactly_the_writer_grouping() {
        for (n, seed) in [(10, 1), (400, 2), (3000, 3), (20_000, 4)] {
            let mut v = files(n, seed);
            let layers = assign_layers(&mut v);
            assert_eq!(check(&v, layers), Ok(()), "{n} files");
            // Any one canonical file moved to another layer is refused.
            let i = n / 2;
            let before = v[i].layer;
            v[i].layer = if before > 1 { before - 1 } else { before + 1 };
            assert!(
                check(&v, layers.max(v[i].layer + 1)).is_err(),
                "{n} files, moved"
            );
            v[i].layer = before;
            // A wrong layer count is refused.
            assert!(check(&v, layers + 1).is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::path::SitePath;
    use std::hash::BuildHasher;

    fn file(path: &str, content: &[u8], executable: bool) -> Entry {
        Entry {
            path: SitePath::new(path).unwrap(),
            kind: EntryKind::File {
                size: content.len() as u64,
                hash: FileHash(*blake3::hash(content).as_bytes()),
                executable,
            },
            layer: 0,
        }
    }

    #[test]
    fn content_keys_hash_apart() {
        // A `[u8; 32]` writes its length first: a hasher keeping the first 8 bytes written
        // would give every key the same hash.
        let b = std::hash::BuildHasherDefault::<PrefixHasher>::default();
        let keys: std::collections::HashSet<u64> = (0..1000u32)
            .map(|i| b.hash_one((FileHash(*blake3::hash(&i.to_le_bytes()).as_bytes()), false)))
            .collect();
        assert_eq!(keys.len(), 1000);
    }

    #[test]
    fn all_members_is_members_of_each_layer() {
        let mut entries = vec![
            Entry {
                path: SitePath::new("a").unwrap(),
                kind: EntryKind::Dir,
                layer: 0,
            },
            file("a/copy.png", b"png", false),
            file("a/index.html", b"<p>hi</p>", false),
            file("a/run.sh", b"png", true),
            file("b.png", b"png", false),
            file("c.css", b"<p>hi</p>", false),
            Entry {
                path: SitePath::new("latest").unwrap(),
                kind: EntryKind::Symlink {
                    target: "a/index.html".into(),
                },
                layer: 0,
            },
        ];
        let n = assign_layers(&mut entries);
        // Same content, same layer; the executable copy is other content.
        assert_eq!(entries[1].layer, entries[4].layer);
        assert_eq!(entries[2].layer, entries[5].layer);
        let all = all_members(&entries, n);
        assert_eq!(all.len(), n as usize);
        for (i, m) in all.iter().enumerate() {
            assert_eq!(m, &members(&entries, i as u32), "layer {i}");
        }
        let hardlinks = all
            .iter()
            .flatten()
            .filter(|m| matches!(m, Member::HardLink(..)))
            .count();
        assert_eq!(hardlinks, 2, "b.png and c.css are stored once each");
    }
}
