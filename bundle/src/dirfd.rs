//! Filesystem calls relative to directory handles, for paths longer than `PATH_MAX`.
//!
//! A site path may be 4,096 bytes long (spec §3), and the site or the destination sits somewhere
//! below `/`: joined into one absolute path it can pass the kernel's `PATH_MAX` (4,096 bytes with
//! its NUL), where every call by full path fails with `ENAMETOOLONG` (issue 8). So the walk, the
//! build and extraction open the site root or the staging directory once and reach everything
//! below it with `*at()` calls relative to that handle. A relative path up to [`STEP`] bytes is
//! handed to the kernel as it is (the common case: one call, as cheap as before); a longer one is
//! walked a few components at a time, each step relative to the directory opened by the one
//! before. Paths are site paths (checked by [`crate::path::SitePath`]): no `..`, no empty
//! component.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

/// The longest relative path given to one `*at()` call (half of `PATH_MAX`, so there is room for
/// what the kernel adds while resolving).
pub(crate) const STEP: usize = 2048;

/// Open the directory `rel` below `base` (`""` is `base` itself), following no symlink in its
/// last component.
pub(crate) fn open_dir(base: BorrowedFd<'_>, rel: &str) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let rel = if rel.is_empty() { "." } else { rel };
    let mut rest = rel;
    let mut cur: Option<OwnedFd> = None;
    loop {
        let (step, more) = split_step(rest);
        let dir = cur.as_ref().map(|f| f.as_fd()).unwrap_or(base);
        let fd = rustix::fs::openat(dir, step, flags, Mode::empty())?;
        match more {
            None => return Ok(fd),
            Some(m) => {
                cur = Some(fd);
                rest = m;
            }
        }
    }
}

/// Run `f` with a directory handle and a path relative to it that together name `rel` below
/// `base`, the path short enough for one call. The handle is `base` itself when `rel` is short.
pub(crate) fn at<T>(
    base: BorrowedFd<'_>,
    rel: &str,
    f: impl FnOnce(BorrowedFd<'_>, &str) -> io::Result<T>,
) -> io::Result<T> {
    if rel.len() <= STEP {
        return f(base, rel);
    }
    let (parent, leaf) = rel.rsplit_once('/').unwrap_or(("", rel));
    let dir = open_dir(base, parent)?;
    f(dir.as_fd(), leaf)
}

/// The first piece of `rel` of at most [`STEP`] bytes ending at a component boundary, and the
/// rest (None when `rel` fits).
fn split_step(rel: &str) -> (&str, Option<&str>) {
    if rel.len() <= STEP {
        return (rel, None);
    }
    // A component is at most 255 bytes, so a `/` exists in the first STEP bytes.
    match rel[..=STEP].rfind('/') {
        Some(i) if i > 0 => (&rel[..i], Some(&rel[i + 1..])),
        _ => (rel, None),
    }
}

/// Open regular file `rel` below `base` for reading, not following a symlink.
pub(crate) fn open_file(base: BorrowedFd<'_>, rel: &str) -> io::Result<std::fs::File> {
    at(base, rel, |d, p| {
        rustix::fs::openat(
            d,
            p,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map(std::fs::File::from)
        .map_err(io::Error::from)
    })
}

/// Open the directory at `path` (a user-given path, not below a handle).
pub(crate) fn open_dir_path(path: &std::path::Path) -> io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_split_at_component_boundaries() {
        let comp = "c".repeat(200);
        let rel = vec![comp.as_str(); 20].join("/");
        let (first, rest) = split_step(&rel);
        assert!(first.len() <= STEP && !first.ends_with('/'));
        let rest = rest.expect("a rest");
        assert_eq!(format!("{first}/{rest}"), rel);
        assert_eq!(split_step("a/b"), ("a/b", None));
    }

    #[test]
    fn opens_below_path_max() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = open_dir_path(t.path()).expect("open root");
        let comp = "d".repeat(250);
        let mut rel = String::new();
        for _ in 0..18 {
            if !rel.is_empty() {
                rel.push('/');
            }
            rel.push_str(&comp);
            at(root.as_fd(), &rel, |d, p| {
                rustix::fs::mkdirat(d, p, Mode::from_raw_mode(0o755)).map_err(io::Error::from)
            })
            .expect("mkdirat");
        }
        assert!(t.path().join(&rel).as_os_str().len() > 4096);
        open_dir(root.as_fd(), &rel).expect("open a directory 4,500 bytes deep");
    }
}
