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
        let mut out = String::with_capacity(self.entries.len() * 128);
        out.push_str(INDEX_HEADER);
        out.push('\n');
        for e in &self.entries {
            let hash = e.hash().map(|h| h.hex()).unwrap_or_else(|| "-".to_string());
            out.push_str(&format!(
                "{}\t{:o}\t{}\t{}\t{}\t{}",
                e.type_code(),
                e.mode(),
                e.size(),
                e.layer,
                hash,
                e.path
            ));
            if let EntryKind::Symlink { target } = &e.kind {
                out.push('\t');
                out.push_str(target);
            }
            out.push('\n');
        }
        out.into_bytes()
    }

    /// Parse the canonical encoding, rejecting any deviation from it.
    pub fn decode(bytes: &[u8]) -> Result<Index, Error> {
        let what = "bundle index";
        let text = std::str::from_utf8(bytes).map_err(|_| Error::corrupt(what, "not UTF-8"))?;
        let body = text
            .strip_prefix(INDEX_HEADER)
            .and_then(|t| t.strip_prefix('\n'))
            .ok_or_else(|| Error::corrupt(what, format!("does not start with {INDEX_HEADER:?}")))?;
        if !body.is_empty() && !body.ends_with('\n') {
            return Err(Error::corrupt(what, "last line is not terminated"));
        }
        let mut entries = Vec::new();
        for (n, line) in body.lines().enumerate() {
            let line_no = n + 2;
            let bad = |reason: &str| Error::corrupt(what, format!("line {line_no}: {reason}"));
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() < 6 {
                return Err(bad("too few fields"));
            }
            let path = SitePath::new(fields[5]).map_err(|e| bad(&e.to_string()))?;
            let layer: u32 = parse_canonical_u64(fields[3])
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad("layer is not a canonical number"))?;
            let size = parse_canonical_u64(fields[2])
                .ok_or_else(|| bad("size is not a canonical number"))?;
            let kind = match (fields[0], fields.len()) {
                ("d", 6) => EntryKind::Dir,
                ("f", 6) => {
                    let hash = FileHash::parse_hex(fields[4]).ok_or_else(|| bad("bad blake3"))?;
                    EntryKind::File {
                        size,
                        hash,
                        executable: fields[1] == "755",
                    }
                }
                ("l", 7) => EntryKind::Symlink {
                    target: fields[6].to_string(),
                },
                _ => return Err(bad("unknown type or wrong number of fields")),
            };
            let entry = Entry { path, kind, layer };
            // Canonical form: re-encoding the parsed entry must give the same fields.
            let expect_mode = format!("{:o}", entry.mode());
            let expect_hash = entry
                .hash()
                .map(|h| h.hex())
                .unwrap_or_else(|| "-".to_string());
            if fields[1] != expect_mode || fields[4] != expect_hash || size != entry.size() {
                return Err(bad(
                    "mode, size or hash field is not canonical for this type",
                ));
            }
            if let EntryKind::Symlink { target } = &entry.kind {
                check_link_target(&entry.path, target).map_err(|e| bad(&e.to_string()))?;
            }
            entries.push(entry);
        }
        for w in entries.windows(2) {
            if w[0].path.as_str().as_bytes() >= w[1].path.as_str().as_bytes() {
                return Err(Error::corrupt(
                    what,
                    format!("entries not sorted or duplicated at {}", w[1].path),
                ));
            }
        }
        let index = Index { entries };
        // In a bundle being read, a bad link is a corrupt index (integrity), not a site to fix.
        index.check_structure().map_err(|e| match e {
            Error::BadSymlink { .. } => Error::corrupt(what, e.to_string()),
            other => other,
        })?;
        Ok(index)
    }

    /// Rules every index obeys: unique paths, parents are directories, directories and symlinks in
    /// layer 0, files in a layer >= 1, symlinks resolving inside the site through its own links.
    fn check_structure(&self) -> Result<(), Error> {
        let what = "bundle index";
        let mut dirs: HashSet<&str> = HashSet::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for e in &self.entries {
            if !seen.insert(e.path.as_str()) {
                return Err(Error::corrupt(what, format!("{} is listed twice", e.path)));
            }
            if let Some(parent) = e.path.parent() {
                // Entries are sorted, so a parent (a prefix) always comes first.
                if !dirs.contains(parent.as_str()) {
                    return Err(Error::corrupt(
                        what,
                        format!(
                            "{}: parent {} is not a directory of the index",
                            e.path, parent
                        ),
                    ));
                }
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
