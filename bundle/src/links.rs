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
//! index costs O(total length of all targets × log(entries)); recursion is at most
//! [`MAX_LINK_FOLLOWS`] deep because every nested call spends at least one follow of the
//! caller's budget.
//!
//! The same rules are `spec/format.md` §3 (writers) and §9 (readers).

use std::collections::HashMap;

use crate::error::{Error, SymlinkProblem};
use crate::index::{Entry, EntryKind};

/// Most symlinks followed while resolving one link, the link itself included. Linux gives up
/// after 40 (`MAXSYMLINKS`); a server usually reaches the site through a few links of its own
/// (`DEST/current`, a `/srv` link), so a bundle keeps a margin below the kernel's limit.
pub const MAX_LINK_FOLLOWS: u32 = 32;

/// Where a link (or a path) ends up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// The site root itself.
    Root,
    /// The entry at this position of the index (a directory or a regular file, never a link).
    Entry(usize),
}

/// A successful resolution and how many links it followed (the link itself included).
#[derive(Debug, Clone, Copy)]
struct Found {
    at: Resolved,
    follows: u32,
}

#[derive(Debug, Clone, Copy)]
enum Memo {
    /// Being resolved further up the stack: meeting it again is a loop.
    InProgress,
    Done(Found),
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

/// Resolves links over sorted index entries.
pub struct Resolver<'a> {
    entries: &'a [Entry],
    memo: HashMap<usize, Memo>,
}

impl<'a> Resolver<'a> {
    /// A resolver over `entries`, which must be sorted by path bytewise (as [`crate::Index`]
    /// keeps them).
    pub fn new(entries: &'a [Entry]) -> Resolver<'a> {
        Resolver {
            entries,
            memo: HashMap::new(),
        }
    }

    /// Resolve the symlink at position `link` of the entries: where it ends, or why it is bad.
    pub fn resolve(&mut self, link: usize) -> Result<Resolved, SymlinkProblem> {
        match self.resolve_within(link, MAX_LINK_FOLLOWS) {
            Ok(found) => Ok(found.at),
            Err(Fail::Problem(p)) => Err(p),
            Err(Fail::Budget) => Err(SymlinkProblem::Loop),
        }
    }

    fn lookup(&self, path: &str) -> Option<usize> {
        self.entries
            .binary_search_by(|e| e.path.as_str().as_bytes().cmp(path.as_bytes()))
            .ok()
    }

    fn resolve_within(&mut self, link: usize, budget: u32) -> Result<Found, Fail> {
        if budget == 0 {
            return Err(Fail::Budget);
        }
        match self.memo.get(&link) {
            Some(Memo::InProgress) => return Err(Fail::Problem(SymlinkProblem::Loop)),
            Some(Memo::Done(f)) if f.follows <= budget => return Ok(*f),
            Some(Memo::Done(_)) => return Err(Fail::Budget),
            Some(Memo::Bad(p)) => return Err(Fail::Problem(*p)),
            Some(Memo::OverBudget(b)) if *b >= budget => return Err(Fail::Budget),
            _ => {}
        }
        self.memo.insert(link, Memo::InProgress);
        let result = self.walk_target(link, budget);
        let memo = match &result {
            Ok(f) => Memo::Done(*f),
            Err(Fail::Problem(p)) => Memo::Bad(*p),
            Err(Fail::Budget) if budget >= MAX_LINK_FOLLOWS => Memo::Bad(SymlinkProblem::Loop),
            Err(Fail::Budget) => Memo::OverBudget(budget),
        };
        self.memo.insert(link, memo);
        match result {
            Err(Fail::Budget) if budget >= MAX_LINK_FOLLOWS => {
                Err(Fail::Problem(SymlinkProblem::Loop))
            }
            other => other,
        }
    }

    /// Walk the target of the link at `link` from the link's directory.
    fn walk_target(&mut self, link: usize, budget: u32) -> Result<Found, Fail> {
        let entries = self.entries;
        let e = &entries[link];
        let EntryKind::Symlink { target } = &e.kind else {
            return Ok(Found {
                at: Resolved::Entry(link),
                follows: 0,
            });
        };
        if target.is_empty() {
            return Err(Fail::Problem(SymlinkProblem::Dangling));
        }
        if target.starts_with('/') {
            return Err(Fail::Problem(SymlinkProblem::Absolute));
        }
        // The current position: a physical path with no link in it ("" is the root), and
        // whether it names a regular file (then nothing may follow it, not even `.` or `/`).
        let mut here: String = e.path.parent().map(|p| p.to_string()).unwrap_or_default();
        let mut at = match self.lookup(&here) {
            Some(i) if !here.is_empty() => Resolved::Entry(i),
            _ => Resolved::Root,
        };
        let mut at_file = false;
        let mut follows = 1u32;
        for comp in target.split('/') {
            if at_file {
                return Err(Fail::Problem(SymlinkProblem::NotADirectory));
            }
            match comp {
                "" | "." => {}
                ".." => {
                    if here.is_empty() {
                        return Err(Fail::Problem(SymlinkProblem::Escapes));
                    }
                    here.truncate(here.rfind('/').unwrap_or(0));
                    at = match self.lookup(&here) {
                        Some(i) if !here.is_empty() => Resolved::Entry(i),
                        _ => Resolved::Root,
                    };
                }
                name => {
                    let candidate = if here.is_empty() {
                        name.to_string()
                    } else {
                        format!("{here}/{name}")
                    };
                    let Some(i) = self.lookup(&candidate) else {
                        return Err(Fail::Problem(SymlinkProblem::Dangling));
                    };
                    match &entries[i].kind {
                        EntryKind::Dir => {
                            here = candidate;
                            at = Resolved::Entry(i);
                        }
                        EntryKind::File { .. } => {
                            here = candidate;
                            at = Resolved::Entry(i);
                            at_file = true;
                        }
                        EntryKind::Symlink { .. } => {
                            let found = self.resolve_within(i, budget - follows)?;
                            follows += found.follows;
                            if follows > budget {
                                return Err(Fail::Budget);
                            }
                            at = found.at;
                            (here, at_file) = match found.at {
                                Resolved::Root => (String::new(), false),
                                Resolved::Entry(j) => (
                                    entries[j].path.to_string(),
                                    matches!(entries[j].kind, EntryKind::File { .. }),
                                ),
                            };
                        }
                    }
                }
            }
        }
        Ok(Found { at, follows })
    }
}

/// Check every symlink of `entries` (sorted by path): each must resolve, through the bundle's
/// own links, to a directory or regular file of the site (or its root).
pub fn check_links(entries: &[Entry]) -> Result<(), Error> {
    let mut resolver = Resolver::new(entries);
    for (i, e) in entries.iter().enumerate() {
        if let EntryKind::Symlink { target } = &e.kind {
            resolver.resolve(i).map_err(|problem| Error::BadSymlink {
                path: e.path.to_string(),
                target: target.clone(),
                problem,
            })?;
        }
    }
    Ok(())
}

/// Every bad symlink of `entries`, not only the first: what `--drop-bad-symlinks` removes.
pub fn bad_links(entries: &[Entry]) -> Vec<(usize, SymlinkProblem)> {
    let mut resolver = Resolver::new(entries);
    entries
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e.kind, EntryKind::Symlink { .. }))
        .filter_map(|(i, _)| resolver.resolve(i).err().map(|p| (i, p)))
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
