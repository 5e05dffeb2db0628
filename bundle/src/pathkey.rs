//! Short, keyed stand-ins for site paths, so a reader can look paths up and compare them without
//! keeping them in memory.
//!
//! An index can hold two million paths of up to 4096 bytes (spec §9 limits): far more than a
//! reader may keep. What the reader needs from them after the first pass is small: "does this
//! path exist, and what is it" (symlink resolution) and "is this hard link's name the canonical
//! path" (the tar check). A [`PathKey`] is 96 bits of a keyed hash of the path's components,
//! chained from the root (`key(a/b) = H(key(a), "b")`), so the key of a child is computed from its
//! parent's key and one name, and `..` is a step back to a remembered parent, never string work.
//!
//! The hash is SipHash keyed with per-process random keys (std's `RandomState`): a bundle's author
//! cannot know the key, so cannot build two paths with equal keys; by chance, two paths of one
//! index collide with probability below 2^-55 at the maximum index size, and a reader that finds
//! two equal keys among an index's entries starts again with a fresh key
//! ([`PathHasher::new`]) rather than guessing.

use std::hash::{BuildHasher, Hasher};

/// The keyed hash of a site path (or of the root: [`PathKey::ROOT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PathKey(pub [u32; 3]);

impl PathKey {
    /// The key of the site root (the empty path).
    pub const ROOT: PathKey = PathKey([0; 3]);
}

/// Computes [`PathKey`]s with one random key.
#[derive(Debug, Clone)]
pub struct PathHasher {
    state: std::collections::hash_map::RandomState,
}

impl Default for PathHasher {
    fn default() -> Self {
        PathHasher::new()
    }
}

impl PathHasher {
    /// A hasher with fresh random keys.
    pub fn new() -> PathHasher {
        PathHasher {
            state: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The key of `name` (one component) inside the directory whose key is `parent`.
    pub fn child(&self, parent: PathKey, name: &[u8]) -> PathKey {
        let word = |tag: u8| {
            let mut h = self.state.build_hasher();
            h.write_u8(tag);
            for w in parent.0 {
                h.write_u32(w);
            }
            h.write(name);
            h.finish()
        };
        let (a, b) = (word(0), word(1));
        PathKey([a as u32, (a >> 32) as u32, b as u32])
    }

    /// The key of a whole path (`a/b/c`), component by component from the root.
    pub fn path(&self, path: &str) -> PathKey {
        path.split('/')
            .fold(PathKey::ROOT, |k, c| self.child(k, c.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chained_keys_agree_with_whole_paths() {
        let h = PathHasher::new();
        let a = h.child(PathKey::ROOT, b"a");
        let ab = h.child(a, b"b");
        assert_eq!(h.path("a/b"), ab);
        assert_ne!(h.path("a/b"), h.path("ab"));
        assert_ne!(h.path("a/b"), h.path("b/a"));
        assert_ne!(
            PathHasher::new().path("a/b"),
            ab,
            "keys differ between hashers"
        );
    }
}
