//! `SitePath`: a path inside a site, checked once.
//!
//! Invariants (checked by [`SitePath::new`]; code past the parser never re-checks):
//! - relative: does not start with `/`, and is not empty;
//! - components are separated by single `/`, with no empty, `.` or `..` component;
//! - valid UTF-8 with no control character (U+0000-U+001F, U+007F): such names cannot be written
//!   in a URL an HTTP server would map to them, and the index uses tab and newline as separators;
//! - at most [`MAX_PATH_BYTES`] bytes, each component at most [`MAX_COMPONENT_BYTES`].
//!
//! Extraction joins a `SitePath` below a destination directory; these rules are what make sure the
//! result stays below it.

use std::fmt;

use crate::error::Error;

/// Longest path accepted, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest single component, in bytes (Linux `NAME_MAX`).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// A validated relative path inside a site.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SitePath(String);

impl SitePath {
    /// Validate `s` as a path inside a site.
    pub fn new(s: impl Into<String>) -> Result<SitePath, Error> {
        let s = s.into();
        SitePath::check(&s)?;
        Ok(SitePath(s))
    }

    /// Check `s` against the rules of a site path without allocating (readers check every
    /// line of an index this way before keeping anything of it).
    pub fn check(s: &str) -> Result<(), Error> {
        let bad = |reason| Error::InvalidPath {
            path: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(bad("empty path"));
        }
        if s.len() > MAX_PATH_BYTES {
            return Err(bad("longer than 4096 bytes"));
        }
        if s.starts_with('/') {
            return Err(bad("absolute path"));
        }
        if s.chars().any(|c| c.is_control()) {
            return Err(bad("contains a control character"));
        }
        for comp in s.split('/') {
            match comp {
                "" => return Err(bad("empty component (double or trailing slash)")),
                "." | ".." => return Err(bad("contains a . or .. component")),
                c if c.len() > MAX_COMPONENT_BYTES => {
                    return Err(bad("a component is longer than 255 bytes"))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A path already checked with [`SitePath::check`].
    pub(crate) fn from_checked(s: String) -> SitePath {
        SitePath(s)
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parent path, or `None` at the top level.
    pub fn parent(&self) -> Option<SitePath> {
        self.0.rfind('/').map(|i| SitePath(self.0[..i].to_string()))
    }

    /// The parent directory's path as a slice of this one (no allocation), if not at the root.
    pub fn parent_str(&self) -> Option<&str> {
        self.0.rfind('/').map(|i| &self.0[..i])
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// Join a validated component-free child name (a single component).
    pub fn join(&self, name: &str) -> Result<SitePath, Error> {
        let mut joined = String::with_capacity(self.0.len() + 1 + name.len());
        joined.push_str(&self.0);
        joined.push('/');
        joined.push_str(name);
        // `self` is checked already: for one component, only it and the length are new (the
        // walk joins every entry of a site; checking the whole path again was 1 % of a rebuild).
        let simple = !name.is_empty()
            && name != "."
            && name != ".."
            && name.len() <= MAX_COMPONENT_BYTES
            && joined.len() <= MAX_PATH_BYTES
            && !name.contains('/')
            && !name.chars().any(|c| c.is_control());
        if simple {
            Ok(SitePath(joined))
        } else {
            SitePath::new(joined)
        }
    }

    /// Resolve a relative symlink target written in the directory of `self`, lexically.
    /// Returns `None` when it climbs above the site root, `Some(None)` when it names the root.
    pub fn resolve_link(&self, target: &str) -> Option<Option<SitePath>> {
        let mut parts: Vec<&str> = match self.0.rfind('/') {
            Some(i) => self.0[..i].split('/').collect(),
            None => Vec::new(),
        };
        for comp in target.split('/') {
            match comp {
                "" | "." => {}
                ".." => {
                    parts.pop()?;
                }
                c => parts.push(c),
            }
        }
        if parts.is_empty() {
            return Some(None);
        }
        SitePath::new(parts.join("/")).ok().map(Some)
    }
}

impl fmt::Display for SitePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SitePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl AsRef<str> for SitePath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for ok in [
            "index.html",
            "a/b/c.css",
            "unicode/café.html",
            "docs/50% off & #1+more.html",
            ".well-known/x",
        ] {
            assert!(SitePath::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_escapes_and_oddities() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "a/",
            "./a",
            "a\nb",
            "a\tb",
            "a\0b",
        ] {
            assert!(SitePath::new(bad).is_err(), "{bad:?}");
        }
        assert!(SitePath::new("x".repeat(256)).is_err());
    }

    #[test]
    fn resolves_links_lexically() {
        let p = SitePath::new("links/inside.html").expect("valid");
        assert_eq!(
            p.resolve_link("../index.html"),
            Some(Some(SitePath::new("index.html").expect("valid")))
        );
        assert_eq!(p.resolve_link("../../etc/passwd"), None);
        assert_eq!(p.resolve_link(".."), Some(None));
    }
}
