//! Next deploys: extract a bundle taking unchanged files from an installed tree, so only the
//! layers the installed version does not have are fetched.
//!
//! Trust does not come from the old tree, nor from the old bundle: it comes from the new one.
//! [`Bundle::open`] has checked the chain manifest → config (the bundle id) → index, so every
//! file of the new bundle is named with its BLAKE3, mode and size. A layer's tar stream is a
//! function of the index (spec §5–6), so a layer whose every file is present with that BLAKE3
//! is, byte for byte, what its blob would give: it need not be fetched.
//!
//! 1. [`plan`] (read-only, before any fetch): for each layer, is every canonical file of it
//!    present in the installed tree at the same path, a regular file of the indexed size whose
//!    mtime is the content mtime of §5 (derived from the BLAKE3, so a changed or touched file is
//!    rejected without reading it), and whose BLAKE3 matches? The first miss stops that layer.
//! 2. [`extract_reusing`]: the extraction of [`crate::extract()`] (same staging, same checks of
//!    the fetched layers, same atomic rename), except that the files of the reused layers are
//!    hard-linked from the installed tree (or copied, by `copy_file_range`, which shares blocks
//!    on filesystems that can, when the mode or mtime differ, or the link is refused), and the
//!    linked or copied file is then hashed again in staging. The file checked is the file
//!    served: a file changed between the plan and the link is caught here. Any mismatch makes
//!    the whole extraction fail with [`Error::ReuseRejected`] naming the layers, with nothing
//!    written; the caller fetches those layers and extracts again.
//!
//! Files of the installed tree are opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//! and `O_NOFOLLOW`: a symlink anywhere on the path (the old version may have had a symlink where
//! the new one has a directory) is never followed, so nothing outside the installed tree is ever
//! read or linked. The link is made from the opened descriptor (`/proc/self/fd/N` with
//! `AT_SYMLINK_FOLLOW`), never by path again, so the inode linked is the one opened; if `/proc` is
//! not there the file is copied from the descriptor.
//!
//! A hard link shares the inode between the two trees, as a layer shared between two images
//! does. That is safe because the trees are only ever read (a web server serves them); a process
//! that can write into DEST can change what is served anyway.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

use crate::check::{run_layers, LayerLines, MemberSink};
use crate::digest::FileHash;
use crate::dirfd;
use crate::error::{Error, Result};
use crate::extract::{ExtractOptions, ExtractReport, Writer};
use crate::index::{EntryRef, KindRef};
use crate::pathkey::PathKey;
use crate::progress::Progress;
use crate::reader::Bundle;
use crate::store::BlobSource;
use crate::tar::content_mtime;
use crate::view::LayerMember;

/// What to take from an installed tree during [`extract_reusing`].
#[derive(Debug)]
pub struct Reuse<'a> {
    /// The installed tree (a complete, earlier extraction: `DEST/<id>`).
    pub tree: &'a Path,
    /// Layer numbers (≥ 1) whose files come from `tree` instead of their blobs.
    pub layers: BTreeSet<usize>,
}

/// Open `rel` below `root` for reading without following any symlink on the way.
fn open_beneath(root: BorrowedFd<'_>, rel: &str) -> io::Result<File> {
    let fd: OwnedFd = rustix::fs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
    )?;
    Ok(File::from(fd))
}

/// BLAKE3 of everything `r` yields, and how many bytes that was (at most `limit` + 1 are read).
fn hash_reader(r: impl Read, limit: u64) -> io::Result<(FileHash, u64)> {
    let mut h = blake3::Hasher::new();
    let n = h.update_reader(&mut r.take(limit + 1))?.count();
    Ok((FileHash::from(h.finalize()), n))
}

/// The installed file for entry `path` (`size` bytes, content `hash`), opened, if it is a regular
/// file of that size; `check_mtime` also requires the content mtime of §5.
fn candidate(
    root: BorrowedFd<'_>,
    path: &str,
    size: u64,
    hash: &FileHash,
    check_mtime: bool,
) -> Option<(File, std::fs::Metadata)> {
    let f = open_beneath(root, path).ok()?;
    let m = f.metadata().ok()?;
    if !m.is_file() || m.len() != size {
        return None;
    }
    if check_mtime && m.mtime() != content_mtime(&hash.0) as i64 {
        return None;
    }
    Some((f, m))
}

/// Which layers of `bundle` (among 1..n, except those `skip` names) the installed `tree` holds
/// in full, checked file by file against the new index (see the module doc). Read-only; an
/// unreadable tree reuses nothing.
pub fn plan(
    source: &dyn BlobSource,
    bundle: &Bundle,
    tree: &Path,
    skip: impl Fn(usize) -> bool,
) -> Result<BTreeSet<usize>> {
    let Ok(root) = dirfd::open_dir_path(tree) else {
        return Ok(BTreeSet::new());
    };
    let n = bundle.meta.manifest.layers.len();
    let layers: Vec<usize> = (1..n).filter(|&k| !skip(k)).collect();
    let view = &bundle.index;
    let ok = run_layers(source, bundle, &layers, |k, lines| {
        let mut good = true;
        let mut visit = |m: LayerMember<'_>| -> Result<()> {
            let LayerMember::Plain(e) = m else {
                return Ok(());
            };
            if !good {
                return Ok(());
            }
            if let KindRef::File { size, hash, .. } = e.kind {
                good = candidate(root.as_fd(), e.path, size, &hash, true)
                    .and_then(|(f, _)| hash_reader(f, size).ok())
                    .is_some_and(|(h, len)| h == hash && len == size);
            }
            Ok(())
        };
        match lines {
            LayerLines::Index => view.for_each_in_layer(source, k as u32, &mut visit)?,
            LayerLines::Buffer(b) => view.for_each_in_buffer(b, &mut visit)?,
        }
        Ok(u64::from(good))
    })?;
    Ok(layers
        .into_iter()
        .zip(ok)
        .filter(|(_, g)| *g == 1)
        .map(|(k, _)| k)
        .collect())
}

/// Extract `bundle` into `dest` like [`crate::extract()`], taking the layers `reuse.layers` from
/// `reuse.tree` (their blobs need not be in `source`). Fails with [`Error::ReuseRejected`] (and
/// writes nothing) when an installed file of those layers does not match the index.
pub fn extract_reusing(
    source: &dyn BlobSource,
    bundle: &Bundle,
    dest: &Path,
    opts: ExtractOptions,
    reuse: &Reuse<'_>,
    progress: &dyn Progress,
) -> Result<ExtractReport> {
    if reuse.layers.contains(&0) {
        return Err(Error::corrupt(
            "reuse",
            "layer 0 (directories, symlinks, the index) is never reused",
        ));
    }
    crate::extract::extract_with(source, bundle, dest, opts, Some(reuse), progress)
}

/// Write layer `k` into staging (`root`, reached through `root_fd`) from the installed tree.
/// `Ok(None)`: an installed file did not match (the layer is rejected); `Ok(Some(bytes))`: done.
#[allow(clippy::too_many_arguments)]
pub(crate) fn link_layer(
    reuse: &Reuse<'_>,
    source: &dyn BlobSource,
    bundle: &Bundle,
    k: usize,
    lines: &LayerLines<'_>,
    root: &Path,
    root_fd: BorrowedFd<'_>,
    progress: &dyn Progress,
) -> Result<Option<u64>> {
    let old = dirfd::open_dir_path(reuse.tree).map_err(Error::io("open", reuse.tree))?;
    let mut w = Writer {
        root,
        root_fd,
        current: None,
        link_source: HashMap::new(),
    };
    let view = &bundle.index;
    // Canonical paths of this layer by keyed hash, for its hard links (a link's canonical path
    // comes earlier in the same layer: spec §6).
    let mut canon: HashMap<PathKey, String> = HashMap::new();
    let mut bytes = 0u64;
    let mut rejected = false;
    let mut visit = |m: LayerMember<'_>| -> Result<()> {
        if rejected {
            return Ok(());
        }
        match m {
            LayerMember::Plain(e) => {
                let KindRef::File { size, hash, .. } = e.kind else {
                    return Err(Error::corrupt(
                        format!("layer {k}"),
                        format!("index lists {} (not a file) in a file layer", e.path),
                    ));
                };
                if !place(&w, old.as_fd(), &e, size, &hash)? {
                    rejected = true;
                    return Ok(());
                }
                canon.insert(view.hasher().path(e.path), e.path.to_string());
                bytes += size;
                progress.advance(size);
            }
            LayerMember::HardLink(e, key) => {
                let Some(c) = canon.get(&key) else {
                    return Err(Error::corrupt(
                        format!("layer {k}"),
                        format!("hard link {} to a path not earlier in its layer", e.path),
                    ));
                };
                let c = c.clone();
                w.hardlink(&e, &c)?;
            }
        }
        Ok(())
    };
    match lines {
        LayerLines::Index => view.for_each_in_layer(source, k as u32, &mut visit)?,
        LayerLines::Buffer(b) => view.for_each_in_buffer(b, &mut visit)?,
    }
    Ok((!rejected).then_some(bytes))
}

/// Put the installed file of `e` into staging (link, else copy) and check the staged file's
/// BLAKE3 and size. `Ok(false)`: the installed file is missing or does not match.
fn place(
    w: &Writer<'_>,
    old: BorrowedFd<'_>,
    e: &EntryRef<'_>,
    size: u64,
    hash: &FileHash,
) -> Result<bool> {
    let Some((mut from, meta)) = candidate(old, e.path, size, hash, false) else {
        return Ok(false);
    };
    let same_inode_ok =
        meta.mode() & 0o7777 == e.mode() && meta.mtime() == content_mtime(&hash.0) as i64;
    let linked = same_inode_ok && link_fd(&from, w.root_fd, e.path).is_ok();
    if !linked {
        let mut to = w.create(e.path, e.mode())?;
        io::copy(&mut from, &mut to).map_err(Error::io("copy", w.root.join(e.path)))?;
        w.finish_file(&to, e)?;
    }
    // What is checked is the staged file (for a link, the very inode that will be served).
    let staged =
        dirfd::open_file(w.root_fd, e.path).map_err(Error::io("read", w.root.join(e.path)))?;
    let (found, n) = hash_reader(staged, size).map_err(Error::io("read", w.root.join(e.path)))?;
    Ok(found == *hash && n == size)
}

/// Hard-link the inode open as `f` at `rel` below `dir` (through `/proc/self/fd`, so the inode
/// linked is the one opened, whatever happened to its path since).
fn link_fd(f: &File, dir: BorrowedFd<'_>, rel: &str) -> io::Result<()> {
    let proc_path = format!("/proc/self/fd/{}", f.as_raw_fd());
    dirfd::at(dir, rel, |d, p| {
        rustix::fs::linkat(
            rustix::fs::CWD,
            proc_path.as_str(),
            d,
            p,
            AtFlags::SYMLINK_FOLLOW,
        )
        .map_err(io::Error::from)
    })
}
