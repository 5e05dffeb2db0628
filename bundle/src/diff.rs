//! `diff`: what changed between two bundles, from their indexes alone (no layer is read).
//!
//! A path present in both is *changed* when its type, mode or content differs. A removed file and
//! an added file with the same content are reported as a *rename* (paired in path order when
//! several share one content).

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::digest::FileHash;
use crate::index::{Entry, EntryKind, Index};

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Path (the new path for renames).
    pub path: String,
    /// For renames: the old path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Type code in A (`d`, `f`, `l`), for removed and changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_type: Option<char>,
    /// Type code in B, for added and changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_type: Option<char>,
    /// Size in A.
    pub old_size: u64,
    /// Size in B.
    pub new_size: u64,
    /// Only the mode differs.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mode_only: bool,
}

/// The difference between two indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// In B only.
    pub added: Vec<Change>,
    /// In A only.
    pub removed: Vec<Change>,
    /// In both, different.
    pub changed: Vec<Change>,
    /// Moved without changing content.
    pub renamed: Vec<Change>,
    /// Paths identical in both.
    pub unchanged: usize,
}

impl Diff {
    /// Bytes of content in B that a deploy of B over A has to send at the whole-file level:
    /// added and changed files whose content is not anywhere in A.
    pub fn new_content_bytes(&self, a: &Index, b: &Index) -> u64 {
        let in_a: std::collections::HashSet<FileHash> =
            a.entries().iter().filter_map(Entry::hash).collect();
        let mut seen = std::collections::HashSet::new();
        b.entries()
            .iter()
            .filter_map(|e| e.hash().map(|h| (h, e.size())))
            .filter(|(h, _)| !in_a.contains(h) && seen.insert(*h))
            .map(|(_, s)| s)
            .sum()
    }

    /// True when nothing differs.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.renamed.is_empty()
    }
}

fn change(path: &str, a: Option<&Entry>, b: Option<&Entry>) -> Change {
    Change {
        path: path.to_string(),
        from: None,
        old_type: a.map(Entry::type_code),
        new_type: b.map(Entry::type_code),
        old_size: a.map(Entry::size).unwrap_or(0),
        new_size: b.map(Entry::size).unwrap_or(0),
        mode_only: false,
    }
}

/// Compare A (old) with B (new).
pub fn diff(a: &Index, b: &Index) -> Diff {
    let mut d = Diff::default();
    let (ae, be) = (a.entries(), b.entries());
    let (mut i, mut j) = (0, 0);
    let mut removed_files: Vec<&Entry> = Vec::new();
    let mut added_files: Vec<&Entry> = Vec::new();
    while i < ae.len() || j < be.len() {
        let ord = match (ae.get(i), be.get(j)) {
            (Some(x), Some(y)) => x.path.as_str().as_bytes().cmp(y.path.as_str().as_bytes()),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                removed_files.push(&ae[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                added_files.push(&be[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (&ae[i], &be[j]);
                if x.kind != y.kind {
                    let mut c = change(x.path.as_str(), Some(x), Some(y));
                    c.mode_only = matches!((&x.kind, &y.kind),
                        (EntryKind::File { hash: h1, size: s1, .. }, EntryKind::File { hash: h2, size: s2, .. }) if h1 == h2 && s1 == s2);
                    d.changed.push(c);
                } else {
                    d.unchanged += 1;
                }
                i += 1;
                j += 1;
            }
        }
    }
    // Pair removed and added files with the same content as renames.
    let mut by_hash: BTreeMap<FileHash, VecDeque<&Entry>> = BTreeMap::new();
    for e in &added_files {
        if let Some(h) = e.hash() {
            by_hash.entry(h).or_default().push_back(e);
        }
    }
    let mut renamed_to = std::collections::HashSet::new();
    for r in &removed_files {
        let target = r
            .hash()
            .and_then(|h| by_hash.get_mut(&h))
            .and_then(|q| q.pop_front());
        match target {
            Some(t) => {
                let mut c = change(t.path.as_str(), Some(r), Some(t));
                c.from = Some(r.path.to_string());
                renamed_to.insert(t.path.as_str());
                d.renamed.push(c);
            }
            None => d.removed.push(change(r.path.as_str(), Some(r), None)),
        }
    }
    for e in added_files {
        if !renamed_to.contains(e.path.as_str()) {
            d.added.push(change(e.path.as_str(), None, Some(e)));
        }
    }
    d
}
