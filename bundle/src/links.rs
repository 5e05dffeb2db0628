//! Resolving a bundle's symlinks through the bundle itself, as the kernel will once it is on disk.
//!
//! A lexical check ("`..` never climbs above the root") is not enough: with
//! `a/b/c/d/e/f/up -> ../../../../../..` (lexically fine, it names the root) a second link
//! `passwd -> a/b/c/d/e/f/up/../../../../../../../etc/passwd` is lexically fine too (its seven
//! `..` undo its seven names), yet the kernel follows `up` to the root first and then climbs
//! seven levels above it: a web server serving the extracted tree would hand out the host's
//! `/etc/passwd`. So every link is resolved *physically*, the way `path_resolution(7)` does it:
//! component by component from the link's directory, following every link met on the way (to
//! the place it resolves to, so a later `..` climbs from there), refusing a name that does not
//! exist, a name below a regular file, a climb above the site root, and more than
//! [`MAX_LINK_FOLLOWS`] links followed in total (which is also how a loop shows up).
//!
//! The work is bounded whatever the index holds: each link's resolution is memoized, so one
//! index costs O(total length of all targets) lookups; recursion is at most
//! [`MAX_LINK_FOLLOWS`] deep because every nested call spends at least one follow of the
//! caller's budget. The memory is one memo slot per link, never a path: positions are whatever
//! the [`Tree`] uses to name an entry (an index into sorted entries when building, a position in
//! a table of keyed path hashes when reading an index too large to keep, see
//! [`crate::pathkey`]), and `..` is a step to the position's parent.
//!
//! The same rules are `spec/format.md` §3 (writers) and §9 (readers).

use crate::error::{Error, SymlinkProblem};
use crate::index::{Entry, EntryKind};

/// Most symlinks followed while resolving one link, the link itself included. Linux gives up
/// after 40 (`MAXSYMLINKS`); a server usually reaches the site through a few links of its own
/// (`DEST/current`, a `/srv` link), so a bundle keeps a margin below the kernel's limit.
pub const MAX_LINK_FOLLOWS: u32 = 32;

/// What a name looked up in a directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node<P> {
    /// A directory, at this position.
    Dir(P),
    /// A regular file, at this position.
    File(P),
    /// The symlink with this number (links are numbered from 0 in path order).
    Link(u32),
}

/// A site's tree as link resolution sees it: positions (the root, directories, files), names
/// looked up in a directory, and the links.
pub trait Tree {
    /// Names a position (the root, a directory or a file).
    type Pos: Copy + PartialEq;
    /// The site root.
    fn root(&self) -> Self::Pos;
    /// The directory holding `p` (never called with the root).
    fn parent(&self, p: Self::Pos) -> Self::Pos;
    /// What `name` is inside the directory at `p`, if anything.
    fn child(&self, p: Self::Pos, name: &str) -> Option<Node<Self::Pos>>;
    /// Number of symlinks.
    fn link_count(&self) -> usize;
    /// Target of link `id`.
    fn link_target(&self, id: u32) -> &str;
    /// The directory holding link `id`.
    fn link_dir(&self, id: u32) -> Self::Pos;
}

/// A successful resolution and how many links it followed (the link itself included).
#[derive(Debug, Clone, Copy)]
struct Found<P> {
    at: P,
    is_file: bool,
    follows: u32,
}

#[derive(Debug, Clone, Copy)]
enum Memo<P> {
    Unvisited,
    /// Being resolved further up the stack: meeting it again is a loop.
    InProgress,
    Done(Found<P>),
    /// Fails on its own, whatever the budget.
    Bad(SymlinkProblem),
    /// Needs more than this many follows (so it may still work with a larger budget).
    OverBudget(u32),
}

/// Why one resolution failed.
enum Fail {
    Problem(SymlinkProblem),
    /// Ran out of follows: a loop if the budget was the full one.
    Budget,
}

/// Resolves the links of a [`Tree`].
pub struct Resolver<'a, T: Tree> {
    tree: &'a T,
    memo: Vec<Memo<T::Pos>>,
}

impl<'a, T: Tree> Resolver<'a, T> {
    /// A resolver over `tree`.
    pub fn new(tree: &'a T) -> Resolver<'a, T> {
        Resolver {
            tree,
            memo: vec![Memo::Unvisited; tree.link_count()],
        }
    }

    /// Resolve link `id`: where it ends (and whether that is a regular file), or why it is bad.
    pub fn resolve(&mut self, id: u32) -> Result<(T::Pos, bool), SymlinkProblem> {
        match self.resolve_within(id, MAX_LINK_FOLLOWS) {
            Ok(found) => Ok((found.at, found.is_file)),
            Err(Fail::Problem(p)) => Err(p),
            Err(Fail::Budget) => Err(SymlinkProblem::Loop),
        }
    }

    fn resolve_within(&mut self, id: u32, budget: u32) -> Result<Found<T::Pos>, Fail> {
        if budget == 0 {
            return Err(Fail::Budget);
        }
        let slot = id as usize;
        match self.memo[slot] {
            Memo::InProgress => return Err(Fail::Problem(SymlinkProblem::Loop)),
            Memo::Done(f) if f.follows <= budget => return Ok(f),
            Memo::Done(_) => return Err(Fail::Budget),
            Memo::Bad(p) => return Err(Fail::Problem(p)),
            Memo::OverBudget(b) if b >= budget => return Err(Fail::Budget),
            _ => {}
        }
        self.memo[slot] = Memo::InProgress;
        let result = self.walk_target(id, budget);
        self.memo[slot] = match &result {
            Ok(f) => Memo::Done(*f),
            Err(Fail::Problem(p)) => Memo::Bad(*p),
            Err(Fail::Budget) if budget >= MAX_LINK_FOLLOWS => Memo::Bad(SymlinkProblem::Loop),
            Err(Fail::Budget) => Memo::OverBudget(budget),
        };
        match result {
            Err(Fail::Budget) if budget >= MAX_LINK_FOLLOWS => {
                Err(Fail::Problem(SymlinkProblem::Loop))
            }
            other => other,
        }
    }

    /// Walk the target of link `id` from the link's directory.
    fn walk_target(&mut self, id: u32, budget: u32) -> Result<Found<T::Pos>, Fail> {
        let tree = self.tree;
        let target = tree.link_target(id);
        if target.is_empty() {
            return Err(Fail::Problem(SymlinkProblem::Dangling));
        }
        if target.starts_with('/') {
            return Err(Fail::Problem(SymlinkProblem::Absolute));
        }
        // The current position, a place with no link in it, and whether it is a regular file
        // (then nothing may follow it, not even `.` or `/`).
        let mut here = tree.link_dir(id);
        let mut at_file = false;
        let mut follows = 1u32;
        for comp in target.split('/') {
            if at_file {
                return Err(Fail::Problem(SymlinkProblem::NotADirectory));
            }
            match comp {
                "" | "." => {}
                ".." => {
                    if here == tree.root() {
                        return Err(Fail::Problem(SymlinkProblem::Escapes));
                    }
                    here = tree.parent(here);
                }
                name => match tree.child(here, name) {
                    None => return Err(Fail::Problem(SymlinkProblem::Dangling)),
                    Some(Node::Dir(p)) => here = p,
                    Some(Node::File(p)) => {
                        here = p;
                        at_file = true;
                    }
                    Some(Node::Link(j)) => {
                        let found = self.resolve_within(j, budget - follows)?;
                        follows += found.follows;
                        if follows > budget {
                            return Err(Fail::Budget);
                        }
                        here = found.at;
                        at_file = found.is_file;
                    }
                },
            }
        }
        Ok(Found {
            at: here,
            is_file: at_file,
            follows,
        })
    }
}

/// Sorted index entries as a [`Tree`]: positions are indices into the entries (`usize::MAX` is
/// the root), names are found by binary search. What the builder and [`crate::Index`] use.
pub struct SliceTree<'a> {
    entries: &'a [Entry],
    /// Entry index of each link, in path order.
    links: Vec<usize>,
}

impl<'a> SliceTree<'a> {
    /// A tree over `entries`, which must be sorted by path bytewise (as [`crate::Index`] keeps
    /// them).
    pub fn new(entries: &'a [Entry]) -> SliceTree<'a> {
        let links = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e.kind, EntryKind::Symlink { .. }))
            .map(|(i, _)| i)
            .collect();
        SliceTree { entries, links }
    }

    fn lookup(&self, path: &str) -> Option<usize> {
        self.entries
            .binary_search_by(|e| e.path.as_str().as_bytes().cmp(path.as_bytes()))
            .ok()
    }

    fn dir_of(&self, i: usize) -> usize {
        match self.entries[i].path.as_str().rfind('/') {
            Some(cut) => self
                .lookup(&self.entries[i].path.as_str()[..cut])
                .unwrap_or(usize::MAX),
            None => usize::MAX,
        }
    }

    /// Link number of the entry at `i`, if it is a link.
    pub fn link_id(&self, i: usize) -> Option<u32> {
        self.links.binary_search(&i).ok().map(|n| n as u32)
    }
}

impl Tree for SliceTree<'_> {
    type Pos = usize;

    fn root(&self) -> usize {
        usize::MAX
    }

    fn parent(&self, p: usize) -> usize {
        self.dir_of(p)
    }

    fn child(&self, p: usize, name: &str) -> Option<Node<usize>> {
        let path = if p == usize::MAX {
            name.to_string()
        } else {
            format!("{}/{name}", self.entries[p].path)
        };
        let i = self.lookup(&path)?;
        Some(match &self.entries[i].kind {
            EntryKind::Dir => Node::Dir(i),
            EntryKind::File { .. } => Node::File(i),
            EntryKind::Symlink { .. } => Node::Link(self.link_id(i)?),
        })
    }

    fn link_count(&self) -> usize {
        self.links.len()
    }

    fn link_target(&self, id: u32) -> &str {
        match &self.entries[self.links[id as usize]].kind {
            EntryKind::Symlink { target } => target,
            _ => "",
        }
    }

    fn link_dir(&self, id: u32) -> usize {
        self.dir_of(self.links[id as usize])
    }
}

/// Check every symlink of `entries` (sorted by path): each must resolve, through the bundle's
/// own links, to a directory or regular file of the site (or its root).
pub fn check_links(entries: &[Entry]) -> Result<(), Error> {
    let tree = SliceTree::new(entries);
    let mut resolver = Resolver::new(&tree);
    for (id, &i) in tree.links.iter().enumerate() {
        resolver
            .resolve(id as u32)
            .map_err(|problem| Error::BadSymlink {
                path: entries[i].path.to_string(),
                target: tree.link_target(id as u32).to_string(),
                problem,
            })?;
    }
    Ok(())
}

/// Every bad symlink of `entries`, not only the first: what `--drop-bad-symlinks` removes.
pub fn bad_links(entries: &[Entry]) -> Vec<(usize, SymlinkProblem)> {
    let tree = SliceTree::new(entries);
    let mut resolver = Resolver::new(&tree);
    (0..tree.links.len())
        .filter_map(|id| {
            resolver
                .resolve(id as u32)
                .err()
                .map(|p| (tree.links[id], p))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::FileHash;
    use crate::path::SitePath;

    fn d(p: &str) -> Entry {
        Entry {
            path: SitePath::new(p).expect("valid"),
            kind: EntryKind::Dir,
            layer: 0,
        }
    }
    fn f(p: &str) -> Entry {
        Entry {
            path: SitePath::new(p).expect("valid"),
            kind: EntryKind::File {
                size: 1,
                hash: FileHash::of(b"x"),
                executable: false,
            },
            layer: 1,
        }
    }
    fn l(p: &str, t: &str) -> Entry {
        Entry {
            path: SitePath::new(p).expect("valid"),
            kind: EntryKind::Symlink { target: t.into() },
            layer: 0,
        }
    }
    fn sorted(mut v: Vec<Entry>) -> Vec<Entry> {
        v.sort_by(|a, b| a.path.as_str().as_bytes().cmp(b.path.as_str().as_bytes()));
        v
    }
    fn problem(v: Vec<Entry>) -> Option<SymlinkProblem> {
        match check_links(&sorted(v)) {
            Ok(()) => None,
            Err(Error::BadSymlink { problem, .. }) => Some(problem),
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    fn chain(depth: usize) -> Vec<Entry> {
        let mut v = Vec::new();
        let mut p = String::new();
        for c in ["a", "b", "c", "d", "e", "f"].iter().take(depth) {
            p = if p.is_empty() {
                c.to_string()
            } else {
                format!("{p}/{c}")
            };
            v.push(d(&p));
        }
        v
    }

    #[test]
    fn issue_8_symlink_escape_through_a_link_to_the_root() {
        let mut v = chain(6);
        v.push(l("a/b/c/d/e/f/up", "../../../../../.."));
        v.push(l(
            "passwd",
            "a/b/c/d/e/f/up/../../../../../../../etc/passwd",
        ));
        v.push(f("index.html"));
        assert_eq!(problem(v), Some(SymlinkProblem::Escapes));
    }

    #[test]
    fn a_link_to_the_root_alone_is_fine() {
        let mut v = chain(6);
        v.push(l("a/b/c/d/e/f/up", "../../../../../.."));
        v.push(l("home", "a/b/c/d/e/f/up/index.html"));
        v.push(f("index.html"));
        assert_eq!(problem(v), None);
    }

    #[test]
    fn dot_dot_after_a_directory_link_climbs_from_the_target() {
        // `x/y/up` names the root; lexically `x/esc -> y/up/../..` is `x`, physically `..` of
        // the root escapes.
        let v = vec![
            d("x"),
            d("x/y"),
            l("x/y/up", "../.."),
            l("x/esc", "y/up/../.."),
            f("x/y/page.html"),
        ];
        assert_eq!(problem(v), Some(SymlinkProblem::Escapes));
        // `..` after a link to `deep/er` climbs to `deep`, not back to `x`.
        let ok = vec![
            d("deep"),
            d("deep/er"),
            d("x"),
            l("x/to-deep", "../deep/er"),
            l("x/sib", "to-deep/../er/page.html"),
            f("deep/er/page.html"),
        ];
        assert_eq!(problem(ok), None);
    }

    #[test]
    fn dangling_and_not_a_directory() {
        assert_eq!(
            problem(vec![f("a.html"), l("b", "missing.html")]),
            Some(SymlinkProblem::Dangling)
        );
        assert_eq!(
            problem(vec![f("a.html"), l("b", "a.html/x")]),
            Some(SymlinkProblem::NotADirectory)
        );
        assert_eq!(
            problem(vec![f("a.html"), l("b", "a.html/")]),
            Some(SymlinkProblem::NotADirectory)
        );
        assert_eq!(
            problem(vec![f("a.html"), l("b", "a.html/..")]),
            Some(SymlinkProblem::NotADirectory)
        );
    }

    #[test]
    fn loops_and_long_chains() {
        assert_eq!(
            problem(vec![f("a.html"), l("x", "x")]),
            Some(SymlinkProblem::Loop)
        );
        assert_eq!(
            problem(vec![f("a.html"), l("x", "y"), l("y", "x")]),
            Some(SymlinkProblem::Loop)
        );
        // A chain of exactly MAX_LINK_FOLLOWS links resolves; one more does not.
        let mk = |n: u32| {
            let mut v = vec![f("a.html")];
            v.push(l("l0", "a.html"));
            for i in 1..n {
                v.push(l(&format!("l{i}"), &format!("l{}", i - 1)));
            }
            v
        };
        assert_eq!(problem(mk(MAX_LINK_FOLLOWS)), None);
        assert_eq!(
            problem(mk(MAX_LINK_FOLLOWS + 1)),
            Some(SymlinkProblem::Loop)
        );
    }

    #[test]
    fn follows_add_up_across_components() {
        // Each `s` is one follow; a target naming 40 of them in a row is over the budget even
        // though no chain is deep.
        let mut v = vec![d("d"), f("d/a.html"), l("s", "d/..")];
        let many = "s/".repeat(MAX_LINK_FOLLOWS as usize) + "d/a.html";
        v.push(l("z", &many));
        assert_eq!(problem(v), Some(SymlinkProblem::Loop));
        let mut ok = vec![d("d"), f("d/a.html"), l("s", "d/..")];
        ok.push(l("z", &("s/".repeat(10) + "d/a.html")));
        assert_eq!(problem(ok), None);
    }

    #[test]
    fn bad_links_lists_all() {
        let v = sorted(vec![
            f("a.html"),
            l("x", "nope"),
            l("y", "x"),
            l("z", "a.html"),
        ]);
        let bad: Vec<usize> = bad_links(&v).into_iter().map(|(i, _)| i).collect();
        let names: Vec<&str> = bad.iter().map(|&i| v[i].path.as_str()).collect();
        assert_eq!(names, vec!["x", "y"]);
    }
}
