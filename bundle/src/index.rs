//! The per-file index: path, type, mode, size, layer and BLAKE3 of every entry in a bundle.
//!
//! It is what lets one file be verified, and two bundles be diffed, without reading any layer.
//! The encoding is a line-oriented UTF-8 text, specified in `spec/format.md` ("The index"):
//!
//! ```text
//! sitebundle-index 1\n
//! TYPE \t MODE \t SIZE \t LAYER \t BLAKE3 \t PATH [\t TARGET] \n
//! ```
//!
//! Lines are sorted by path (bytewise) and unique; every parent directory of a listed path is
//! itself listed as a `d` entry. Tab and newline cannot occur in a [`SitePath`], which is why they
//! are safe separators. The encoding is canonical: [`Index::decode`] rejects anything
//! [`Index::encode`] would not have written, so one index has exactly one byte form and one digest.

use std::collections::{BTreeMap, HashSet};

use crate::digest::FileHash;
use crate::error::Error;
use crate::path::SitePath;

/// First line of every index.
pub const INDEX_HEADER: &str = "sitebundle-index 1";

/// What kind of entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory (mode 0755).
    Dir,
    /// A regular file: its size and BLAKE3, and whether it is executable (mode 0755, else 0644).
    File {
        /// Size in bytes.
        size: u64,
        /// BLAKE3 of the bytes.
        hash: FileHash,
        /// Executable bit.
        executable: bool,
    },
    /// A relative symlink whose target stays inside the site.
    Symlink {
        /// The target, as written in the link.
        target: String,
    },
}

/// One entry of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the site.
    pub path: SitePath,
    /// Kind and kind-specific data.
    pub kind: EntryKind,
    /// The layer whose tar stream holds this entry (0 for directories and symlinks).
    pub layer: u32,
}

impl Entry {
    /// The mode written for this entry in the index and in tar headers.
    pub fn mode(&self) -> u32 {
        match &self.kind {
            EntryKind::Dir => 0o755,
            EntryKind::File {
                executable: true, ..
            } => 0o755,
            EntryKind::File { .. } => 0o644,
            EntryKind::Symlink { .. } => 0o777,
        }
    }

    /// Size in bytes (0 for directories and symlinks).
    pub fn size(&self) -> u64 {
        match &self.kind {
            EntryKind::File { size, .. } => *size,
            _ => 0,
        }
    }

    /// The file hash, for files.
    pub fn hash(&self) -> Option<FileHash> {
        match &self.kind {
            EntryKind::File { hash, .. } => Some(*hash),
            _ => None,
        }
    }

    /// One-letter type code used by the index (`d`, `f`, `l`).
    pub fn type_code(&self) -> char {
        match &self.kind {
            EntryKind::Dir => 'd',
            EntryKind::File { .. } => 'f',
            EntryKind::Symlink { .. } => 'l',
        }
    }
}

/// The index of one bundle: entries sorted by path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Index {
    entries: Vec<Entry>,
}

impl Index {
    /// Build an index from entries; sorts them and checks the structural rules.
    pub fn new(mut entries: Vec<Entry>) -> Result<Index, Error> {
        entries.sort_by(|a, b| a.path.as_str().as_bytes().cmp(b.path.as_str().as_bytes()));
        let index = Index { entries };
        index.check_structure()?;
        Ok(index)
    }

    /// Entries already checked (sorted, every rule of spec §4 holds).
    pub(crate) fn from_checked(entries: Vec<Entry>) -> Index {
        Index { entries }
    }

    /// The entries, sorted by path.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Look an entry up by path.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.path.as_str().as_bytes().cmp(path.as_bytes()))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Number of regular files.
    pub fn file_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::File { .. }))
            .count()
    }

    /// Sum of the sizes of all regular files (duplicates counted each time).
    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(Entry::size).sum()
    }

    /// The number of layers the entries refer to (highest layer + 1, at least 1).
    pub fn layer_count(&self) -> u32 {
        self.entries.iter().map(|e| e.layer).max().unwrap_or(0) + 1
    }

    /// The canonical byte encoding (see the module docs and `spec/format.md`).
    pub fn encode(&self) -> Vec<u8> {
        use rayon::prelude::*;
        // Chunks of lines written in parallel and joined: the bytes are the same as one pass
        // (each line depends on its entry only), and on a 53,000-entry index this was a serial
        // 25 ms of every rebuild.
        const CHUNK: usize = 4096;
        let parts: Vec<String> = self
            .entries
            .par_chunks(CHUNK)
            .map(|c| {
                let mut out = String::with_capacity(c.len() * 128);
                encode_lines(c, &mut out);
                out
            })
            .collect();
        let mut out = Vec::with_capacity(
            INDEX_HEADER.len() + 1 + parts.iter().map(String::len).sum::<usize>(),
        );
        out.extend_from_slice(INDEX_HEADER.as_bytes());
        out.push(b'\n');
        for p in &parts {
            out.extend_from_slice(p.as_bytes());
        }
        out
    }

    /// Parse the canonical encoding, rejecting any deviation from it (spec §4 rules 1-4 and 6;
    /// rule 5 needs the manifest and is checked by the reader). The same rules the reader applies
    /// while streaming an index ([`Structure`]), over bytes held in memory.
    pub fn decode(bytes: &[u8]) -> Result<Index, Error> {
        let what = "bundle index";
        let body = bytes
            .strip_prefix(INDEX_HEADER.as_bytes())
            .and_then(|t| t.strip_prefix(b"\n"))
            .ok_or_else(|| Error::corrupt(what, format!("does not start with {INDEX_HEADER:?}")))?;
        if !body.is_empty() && !body.ends_with(b"\n") {
            return Err(Error::corrupt(what, "last line is not terminated"));
        }
        if bytes.len() as u64 > crate::limits::MAX_INDEX_BYTES {
            return Err(Error::corrupt(what, "larger than the format allows"));
        }
        let mut structure = Structure::new(None);
        let mut entries = Vec::new();
        for (n, line) in body.split_inclusive(|&b| b == b'\n').enumerate() {
            let line_no = n as u64 + 2;
            let e = parse_line(line)
                .and_then(|e| structure.feed(&e, line.len()).map(|()| e))
                .map_err(|reason| Error::corrupt(what, format!("line {line_no}: {reason}")))?;
            entries.push(e.to_entry());
        }
        structure.finish().map_err(|r| Error::corrupt(what, r))?;
        // In a bundle being read, a bad link is a corrupt index (integrity), not a site to fix.
        crate::links::check_links(&entries).map_err(|e| Error::corrupt(what, e.to_string()))?;
        Ok(Index { entries })
    }

    /// Rules every index obeys: unique paths, parents are directories, directories and symlinks in
    /// layer 0, files in a layer >= 1, symlinks resolving inside the site through its own links.
    fn check_structure(&self) -> Result<(), Error> {
        let what = "bundle index";
        let mut dirs: HashSet<&str> = HashSet::new();
        // Entries are sorted (bytewise), so a path listed twice is listed twice in a row, and
        // the entries of one directory mostly follow each other: the last parent found is
        // remembered instead of hashing it again (on a 53,000-entry site the two hash sets
        // were a serial 10 ms of every build).
        let mut prev: Option<&str> = None;
        let mut last_parent: Option<&str> = None;
        for e in &self.entries {
            if prev == Some(e.path.as_str()) {
                return Err(Error::corrupt(what, format!("{} is listed twice", e.path)));
            }
            prev = Some(e.path.as_str());
            if let Some(parent) = e.path.parent_str() {
                // Entries are sorted, so a parent (a prefix) always comes first.
                if last_parent != Some(parent) && !dirs.contains(parent) {
                    return Err(Error::corrupt(
                        what,
                        format!(
                            "{}: parent {} is not a directory of the index",
                            e.path, parent
                        ),
                    ));
                }
                last_parent = Some(parent);
            }
            match &e.kind {
                EntryKind::Dir => {
                    dirs.insert(e.path.as_str());
                    if e.layer != 0 {
                        return Err(Error::corrupt(
                            what,
                            format!("directory {} not in layer 0", e.path),
                        ));
                    }
                }
                EntryKind::Symlink { target } => {
                    if e.layer != 0 {
                        return Err(Error::corrupt(
                            what,
                            format!("symlink {} not in layer 0", e.path),
                        ));
                    }
                    check_link_target(&e.path, target)?;
                }
                EntryKind::File { .. } => {
                    if e.layer == 0 {
                        return Err(Error::corrupt(what, format!("file {} in layer 0", e.path)));
                    }
                }
            }
        }
        // Lexically inside is not enough: a link must resolve, through the other links of the
        // bundle, to a directory or file of the site (spec §3, §9).
        crate::links::check_links(&self.entries)
    }

    /// For each distinct file content, the paths that carry it, in path order; the first of each
    /// list is the one stored as a regular file, the others are hardlinks to it.
    pub fn content_groups(&self) -> BTreeMap<FileHash, Vec<&Entry>> {
        let mut groups: BTreeMap<FileHash, Vec<&Entry>> = BTreeMap::new();
        for e in &self.entries {
            if let Some(h) = e.hash() {
                groups.entry(h).or_default().push(e);
            }
        }
        groups
    }
}

/// The index lines of `entries` (spec §4), appended to `out`.
fn encode_lines(entries: &[Entry], out: &mut String) {
    use std::fmt::Write as _;
    // Written in place (no string per line): on a 53,000-entry index the per-line `format!`
    // and hex strings were a tenth of a rebuild with nothing changed.
    let mut hex = [0u8; 64];
    for e in entries {
        let hash = match e.hash() {
            Some(h) => match hex::encode_to_slice(h.0, &mut hex) {
                Ok(()) => std::str::from_utf8(&hex).unwrap_or("-"),
                Err(_) => "-",
            },
            None => "-",
        };
        let _ = write!(
            out,
            "{}\t{:o}\t{}\t{}\t{}\t{}",
            e.type_code(),
            e.mode(),
            e.size(),
            e.layer,
            hash,
            e.path
        );
        if let EntryKind::Symlink { target } = &e.kind {
            out.push('\t');
            out.push_str(target);
        }
        out.push('\n');
    }
}

/// A symlink target must be relative, non-empty, free of control characters, and resolve
/// lexically inside the site.
pub(crate) fn check_link_target(path: &SitePath, target: &str) -> Result<(), Error> {
    use crate::error::SymlinkProblem;
    let problem = if target.is_empty() || target.chars().any(|c| c.is_control()) {
        Some(SymlinkProblem::Dangling)
    } else if target.starts_with('/') {
        Some(SymlinkProblem::Absolute)
    } else if path.resolve_link(target).is_none() {
        Some(SymlinkProblem::Escapes)
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Error::BadSymlink {
            path: path.to_string(),
            target: target.to_string(),
            problem,
        }),
        None => Ok(()),
    }
}

/// Parse a decimal number written without sign or leading zeros ("0" itself is fine).
fn parse_canonical_u64(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

/// One index line, parsed and checked but not copied: what readers stream over. The path and
/// target borrow the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// Path inside the site (a valid [`SitePath`]).
    pub path: &'a str,
    /// Kind and kind-specific data.
    pub kind: KindRef<'a>,
    /// The layer whose tar stream holds the entry.
    pub layer: u32,
}

/// What an [`EntryRef`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindRef<'a> {
    /// A directory.
    Dir,
    /// A regular file.
    File {
        /// Size in bytes.
        size: u64,
        /// BLAKE3 of the bytes.
        hash: FileHash,
        /// Executable bit.
        executable: bool,
    },
    /// A symlink and its target.
    Symlink {
        /// The target, as the link holds it.
        target: &'a str,
    },
}

impl EntryRef<'_> {
    /// An owned [`Entry`].
    pub fn to_entry(&self) -> Entry {
        Entry {
            path: SitePath::from_checked(self.path.to_string()),
            kind: match self.kind {
                KindRef::Dir => EntryKind::Dir,
                KindRef::File {
                    size,
                    hash,
                    executable,
                } => EntryKind::File {
                    size,
                    hash,
                    executable,
                },
                KindRef::Symlink { target } => EntryKind::Symlink {
                    target: target.to_string(),
                },
            },
            layer: self.layer,
        }
    }

    /// Size in bytes (0 for directories and symlinks).
    pub fn size(&self) -> u64 {
        match self.kind {
            KindRef::File { size, .. } => size,
            _ => 0,
        }
    }

    /// The mode written for this entry in the index and in tar headers.
    pub fn mode(&self) -> u32 {
        match self.kind {
            KindRef::Dir => 0o755,
            KindRef::File {
                executable: true, ..
            } => 0o755,
            KindRef::File { .. } => 0o644,
            KindRef::Symlink { .. } => 0o777,
        }
    }
}

/// Parse one index line (with its `\n`) in the canonical form of spec §4 rule 4: the right number
/// of fields for its type, the mode, size and hash fields exactly as [`Index::encode`] writes
/// them, a valid site path, a symlink target that is not empty, absolute, longer than
/// [`crate::limits::MAX_LINK_TARGET`] or holding a control character. A line ending in `\r\n`
/// is refused (the `\r` is a control character in the last field).
pub fn parse_line(line: &[u8]) -> Result<EntryRef<'_>, String> {
    if line.len() > crate::limits::MAX_LINE_BYTES {
        return Err("longer than any valid line".into());
    }
    let line = line
        .strip_suffix(b"\n")
        .ok_or("not terminated by a newline")?;
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8")?;
    let mut f = text.split('\t');
    let mut next = || f.next().ok_or("too few fields");
    let (t, mode, size, layer, hash, path) = (next()?, next()?, next()?, next()?, next()?, next()?);
    let target = f.next();
    if f.next().is_some() {
        return Err("too many fields".into());
    }
    SitePath::check(path).map_err(|e| e.to_string())?;
    let layer = parse_canonical_u64(layer)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or("layer is not a canonical number")?;
    let size = parse_canonical_u64(size).ok_or("size is not a canonical number")?;
    let kind = match (t, target) {
        ("d", None) => KindRef::Dir,
        ("f", None) => KindRef::File {
            size,
            hash: FileHash::parse_hex(hash).ok_or("bad blake3")?,
            executable: mode == "755",
        },
        ("l", Some(target)) => {
            if target.is_empty() || target.chars().any(|c| c.is_control()) {
                return Err(format!(
                    "symlink target {target:?} is empty or has a control character"
                ));
            }
            if target.starts_with('/') {
                return Err(format!("symlink target {target:?} is absolute"));
            }
            if target.len() > crate::limits::MAX_LINK_TARGET {
                return Err("symlink target longer than 4096 bytes".into());
            }
            KindRef::Symlink { target }
        }
        _ => return Err("unknown type or wrong number of fields".into()),
    };
    let e = EntryRef { path, kind, layer };
    let canonical_hash = matches!(kind, KindRef::File { .. }) || hash == "-";
    if mode != format!("{:o}", e.mode()) || !canonical_hash || size != e.size() {
        return Err("mode, size or hash field is not canonical for this type".into());
    }
    Ok(e)
}

/// Counts of one layer's entries, from the index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LayerStats {
    /// Entries (directories and symlinks in layer 0; files and their other paths above).
    pub entries: u64,
    /// `f` entries.
    pub files: u64,
    /// Sum of the sizes of the `f` entries.
    pub bytes: u64,
    /// Bytes of the index lines of these entries.
    pub line_bytes: u64,
}

/// What one pass over an index counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Entries (lines after the header).
    pub entries: u64,
    /// `f` entries.
    pub files: u64,
    /// Sum of the sizes of all `f` entries.
    pub bytes: u64,
    /// Symlinks.
    pub links: u64,
    /// Bytes of all symlink targets.
    pub link_target_bytes: u64,
    /// Per layer, up to the highest layer named.
    pub layers: Vec<LayerStats>,
}

/// One entry of the path table built while links are checked: its key, its parent's key (turned
/// into the parent's position once the table is sorted) and what it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TableRec {
    pub key: crate::pathkey::PathKey,
    /// The parent's key while the table is built; then `parent.0[0]` is the parent's position
    /// in the sorted table (`u32::MAX` for the root).
    pub parent: crate::pathkey::PathKey,
    /// `TABLE_DIR`, `TABLE_FILE`, or `TABLE_LINK | (link number << 2)`.
    pub info: u32,
}

/// [`TableRec::info`] of a directory.
pub(crate) const TABLE_DIR: u32 = 0;
/// [`TableRec::info`] of a regular file.
pub(crate) const TABLE_FILE: u32 = 1;
/// [`TableRec::info`] of a symlink (the link's number among the index's links is above bit 2).
pub(crate) const TABLE_LINK: u32 = 2;

/// The rules of spec §4 that hold line by line, checked incrementally over a stream of entries in
/// index order, in memory bounded by the longest path (never by the number of entries): sorted
/// unique paths, parents listed as directories, directories and symlinks in layer 0 and files
/// above it (and below the manifest's layer count when known), the limits of
/// [`crate::limits`], and the counts the config declares.
///
/// Parents: paths that start with one prefix form one run in byte order, so the directories that
/// can still be the parent of a later entry are exactly those that are byte prefixes of the
/// current path: a stack, each entry a prefix of the next.
pub(crate) struct Structure {
    layers: Option<u32>,
    prev: String,
    have_prev: bool,
    /// The deepest directory of the stack; each stack entry is a prefix of it.
    dir_top: String,
    /// (length, key) of each directory of the stack.
    dir_stack: Vec<(usize, crate::pathkey::PathKey)>,
    stats: IndexStats,
    table: Option<(crate::pathkey::PathHasher, Vec<TableRec>)>,
}

impl Structure {
    /// A checker for an index of a bundle with `layers` layers (`None`: not known).
    pub(crate) fn new(layers: Option<u32>) -> Structure {
        Structure {
            layers,
            prev: String::new(),
            have_prev: false,
            dir_top: String::new(),
            dir_stack: Vec::new(),
            stats: IndexStats::default(),
            table: None,
        }
    }

    /// Also record a [`TableRec`] for every entry, keyed with `hasher`.
    pub(crate) fn with_table(mut self, hasher: crate::pathkey::PathHasher, capacity: u64) -> Self {
        let cap = usize::try_from(capacity.min(crate::limits::MAX_ENTRIES)).unwrap_or(0);
        self.table = Some((hasher, Vec::with_capacity(cap)));
        self
    }

    /// Check the next entry (its line was `line_len` bytes).
    pub(crate) fn feed(&mut self, e: &EntryRef<'_>, line_len: usize) -> Result<(), String> {
        let st = &mut self.stats;
        st.entries += 1;
        if st.entries > crate::limits::MAX_ENTRIES {
            return Err(format!(
                "more than {} entries, the most the format allows",
                crate::limits::MAX_ENTRIES
            ));
        }
        if self.have_prev && self.prev.as_bytes() >= e.path.as_bytes() {
            return Err(format!("entries not sorted or duplicated at {}", e.path));
        }
        self.prev.clear();
        self.prev.push_str(e.path);
        self.have_prev = true;
        while let Some(&(len, _)) = self.dir_stack.last() {
            if e.path
                .as_bytes()
                .starts_with(&self.dir_top.as_bytes()[..len])
            {
                break;
            }
            self.dir_stack.pop();
            let keep = self.dir_stack.last().map(|&(l, _)| l).unwrap_or(0);
            self.dir_top.truncate(keep);
        }
        let parent_key = match e.path.rfind('/') {
            None => crate::pathkey::PathKey::ROOT,
            Some(i) => match self.dir_stack.iter().rev().find(|&&(len, _)| len == i) {
                Some(&(_, k)) => k,
                None => {
                    return Err(format!(
                        "{}: parent {} is not a directory of the index",
                        e.path,
                        &e.path[..i]
                    ))
                }
            },
        };
        let name = e.path.rsplit('/').next().unwrap_or(e.path);
        let key = match &self.table {
            Some((h, _)) => h.child(parent_key, name.as_bytes()),
            None => crate::pathkey::PathKey::ROOT,
        };
        let info = match e.kind {
            KindRef::Dir => {
                if e.layer != 0 {
                    return Err(format!("directory {} not in layer 0", e.path));
                }
                self.dir_stack.push((e.path.len(), key));
                self.dir_top.clear();
                self.dir_top.push_str(e.path);
                TABLE_DIR
            }
            KindRef::Symlink { target } => {
                if e.layer != 0 {
                    return Err(format!("symlink {} not in layer 0", e.path));
                }
                let n = st.links;
                st.links += 1;
                st.link_target_bytes += target.len() as u64;
                if st.links > crate::limits::MAX_LINKS {
                    return Err(format!(
                        "more than {} symlinks, the most the format allows",
                        crate::limits::MAX_LINKS
                    ));
                }
                if st.link_target_bytes > crate::limits::MAX_LINK_TARGET_BYTES {
                    return Err(format!(
                        "symlink targets total more than {} bytes, the most the format allows",
                        crate::limits::MAX_LINK_TARGET_BYTES
                    ));
                }
                TABLE_LINK | ((n as u32) << 2)
            }
            KindRef::File { size, .. } => {
                if e.layer == 0 {
                    return Err(format!("file {} in layer 0", e.path));
                }
                st.files += 1;
                st.bytes = st
                    .bytes
                    .checked_add(size)
                    .ok_or("file sizes add up to more than 2^64 bytes")?;
                TABLE_FILE
            }
        };
        if let Some(n) = self.layers {
            if e.layer >= n {
                return Err(format!(
                    "{} names layer {}, the manifest has {n}",
                    e.path, e.layer
                ));
            }
        } else if e.layer as usize >= crate::manifest::MAX_LAYERS {
            return Err(format!("{} names layer {}", e.path, e.layer));
        }
        let k = e.layer as usize;
        if st.layers.len() <= k {
            st.layers.resize(k + 1, LayerStats::default());
        }
        let l = &mut st.layers[k];
        l.entries += 1;
        l.line_bytes += line_len as u64;
        if let KindRef::File { size, .. } = e.kind {
            l.files += 1;
            l.bytes += size;
        }
        if let Some((_, recs)) = &mut self.table {
            recs.push(TableRec {
                key,
                parent: parent_key,
                info,
            });
        }
        Ok(())
    }

    /// The counts, once every entry was fed: checks that every layer from 1 to the last holds an
    /// entry (spec §4 rule 5).
    pub(crate) fn finish(self) -> Result<(IndexStats, Option<Vec<TableRec>>), String> {
        let mut stats = self.stats;
        if let Some(n) = self.layers {
            stats.layers.resize(n as usize, LayerStats::default());
        }
        for (k, l) in stats.layers.iter().enumerate().skip(1) {
            if l.entries == 0 {
                return Err(format!("layer {k} holds no entry"));
            }
        }
        Ok((stats, self.table.map(|(_, t)| t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> SitePath {
        SitePath::new(s).expect("valid path")
    }

    fn sample() -> Index {
        Index::new(vec![
            Entry {
                path: p("a"),
                kind: EntryKind::Dir,
                layer: 0,
            },
            Entry {
                path: p("a/x.html"),
                kind: EntryKind::File {
                    size: 3,
                    hash: FileHash::of(b"abc"),
                    executable: false,
                },
                layer: 1,
            },
            Entry {
                path: p("a/l"),
                kind: EntryKind::Symlink {
                    target: "x.html".into(),
                },
                layer: 0,
            },
            Entry {
                path: p("run.sh"),
                kind: EntryKind::File {
                    size: 0,
                    hash: FileHash::of(b""),
                    executable: true,
                },
                layer: 1,
            },
        ])
        .expect("valid index")
    }

    #[test]
    fn encode_decode_round_trip() {
        let idx = sample();
        let bytes = idx.encode();
        assert_eq!(Index::decode(&bytes).expect("decodes"), idx);
    }

    #[test]
    fn decode_rejects_non_canonical() {
        let text = String::from_utf8(sample().encode()).expect("utf8");
        let variants = [
            text.replace("\t644\t", "\t0644\t"),
            text.replace("\t3\t1\t", "\t03\t1\t"),
            text.replacen("sitebundle-index 1", "sitebundle-index 2", 1),
            text.trim_end().to_string(),
            text.replace("a/l", "a/../l"),
            text.replace("x.html\n", "../../x.html\n"),
        ];
        for v in variants {
            assert!(Index::decode(v.as_bytes()).is_err(), "accepted: {v}");
        }
    }

    #[test]
    fn missing_parent_is_rejected() {
        let r = Index::new(vec![Entry {
            path: p("a/b"),
            kind: EntryKind::File {
                size: 0,
                hash: FileHash::of(b""),
                executable: false,
            },
            layer: 1,
        }]);
        assert!(r.is_err());
    }
}
