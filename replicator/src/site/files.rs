//! The objects a bundle publishes: one per regular file, plus copies for symlinks.
//!
//! Buckets have no links, so a bundle's symlinks are published by what they resolve to, through
//! the bundle's own links ([`bundle::links::Resolver`], the same resolution `extract` relies on):
//! - a link to a regular file becomes a copy of that file's bytes (same BLAKE3, same upload
//!   source; the headers are those of the link's own name);
//! - a link to a directory (or the site root) becomes a copy of that directory's `index.html`
//!   at `<link>/index.html` when it has one, so `/<link>/` answers as it does from nginx; the
//!   other files below the link are not published (each would be a second copy of the site's
//!   bytes), and a warning says so. A link to a directory without `index.html` publishes nothing.
//!
//! Keys are the NFC form of each path (what browsers send); two paths of one bundle with the same
//! NFC form are refused, as are paths the protocol reserves ([`super::is_reserved`]).

use std::collections::BTreeMap;

use bundle::index::EntryKind;
use bundle::links::{Resolver, SliceTree};
use bundle::{FileHash, Index};
use unicode_normalization::UnicodeNormalization;

use super::headers::{Headers, Rules};
use super::SiteError;

/// One object to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteObject {
    /// BLAKE3 of the bytes.
    pub hash: FileHash,
    /// Size in bytes.
    pub size: u64,
    /// Headers; `None` when they cannot be computed again (the rules were applied with an older
    /// MIME table).
    pub headers: Option<Headers>,
}

/// Every object of a bundle, by key.
#[derive(Debug, Clone, Default)]
pub struct SiteFiles {
    /// Key (NFC site path) to object.
    pub objects: BTreeMap<String, SiteObject>,
    /// Links that could not be published in full.
    pub warnings: Vec<String>,
}

impl SiteFiles {
    /// The objects of `index`, with headers from `rules` (`None`: headers unknown).
    pub fn from_index(index: &Index, rules: Option<&Rules>) -> Result<SiteFiles, SiteError> {
        let entries = index.entries();
        let mut out = SiteFiles::default();
        let mut origin: BTreeMap<String, String> = BTreeMap::new();
        let mut add = |out: &mut SiteFiles, path: &str, hash: FileHash, size: u64| {
            let key: String = path.nfc().collect();
            if super::is_reserved(&key) {
                return Err(SiteError::Reserved { path: key });
            }
            if let Some(first) = origin.insert(key.clone(), path.to_string()) {
                if first != path {
                    return Err(SiteError::BadKey {
                        path: path.to_string(),
                        reason: format!("same URL as {first} after Unicode normalization (NFC)"),
                    });
                }
                // A link's `index.html` copy may land on a real file of the same name: keep the file.
                return Ok(());
            }
            let headers = rules.map(|r| r.headers(&key));
            out.objects.insert(
                key,
                SiteObject {
                    hash,
                    size,
                    headers,
                },
            );
            Ok(())
        };
        for e in entries {
            if let EntryKind::File { size, hash, .. } = &e.kind {
                add(&mut out, e.path.as_str(), *hash, *size)?;
            }
        }
        let tree = SliceTree::new(entries);
        let mut resolver = Resolver::new(&tree);
        for (i, e) in entries.iter().enumerate() {
            let EntryKind::Symlink { target } = &e.kind else {
                continue;
            };
            let Some(id) = tree.link_id(i) else {
                continue;
            };
            let (at, _) = resolver.resolve(id).map_err(|p| SiteError::BadKey {
                path: e.path.to_string(),
                reason: format!("symlink to {target}: {p}"),
            })?;
            // Positions are entry indices; `usize::MAX` is the site root.
            let dir = match entries.get(at) {
                Some(x) => match &x.kind {
                    EntryKind::File { size, hash, .. } => {
                        add(&mut out, e.path.as_str(), *hash, *size)?;
                        continue;
                    }
                    _ => x.path.to_string(),
                },
                None => String::new(),
            };
            let index_html = if dir.is_empty() {
                "index.html".to_string()
            } else {
                format!("{dir}/index.html")
            };
            match index.get(&index_html).map(|x| &x.kind) {
                Some(EntryKind::File { size, hash, .. }) => {
                    add(&mut out, &format!("{}/index.html", e.path), *hash, *size)?;
                    out.warnings.push(format!(
                        "{} is a link to the directory {}: only its index.html is published \
                         (as {}/index.html)",
                        e.path,
                        if dir.is_empty() { "/" } else { &dir },
                        e.path
                    ));
                }
                _ => out.warnings.push(format!(
                    "{} is a link to the directory {} without index.html: not published",
                    e.path,
                    if dir.is_empty() { "/" } else { &dir }
                )),
            }
        }
        Ok(out)
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// No objects.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Total bytes.
    pub fn bytes(&self) -> u64 {
        self.objects.values().map(|o| o.size).sum()
    }
}
