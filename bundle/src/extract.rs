//! `extract`: materialize a bundle as a directory, atomically.
//!
//! Everything is written into a temporary sibling of the destination (`.<name>.sitebundle-*`),
//! checked as it is written (see `crate::check`), flushed with one `syncfs`, and only then
//! renamed into place: on any failure the staging directory is removed and the destination is as
//! it was. An existing non-empty destination is replaced only when asked, by an atomic
//! `renameat2(RENAME_EXCHANGE)`, so a web server reading it sees the old tree or the new one.
//!
//! Inside staging, files are created with `O_CREAT | O_EXCL | O_NOFOLLOW` below directories this
//! code created, and symlinks are created last, after every file: no write can go through a link.
//! Every path below staging is reached relative to its directory handle (`crate::dirfd`), so
//! paths up to the spec's 4,096 bytes extract wherever DEST is. A hard link that would pass the
//! filesystem's link limit (`EMLINK`) becomes a copy.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::check::{check_layer, run_layers, MemberSink};
use crate::dirfd;
use crate::error::{Error, Result};
use crate::index::{EntryRef, KindRef};
use crate::progress::Progress;
use crate::reader::Bundle;
use crate::store::BlobSource;
use crate::tar::{content_mtime, EPOCH_BASE};
use crate::view::LayerMember;

/// How to extract.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtractOptions {
    /// Replace a non-empty destination (atomically).
    pub replace: bool,
    /// Flush to disk before the rename (on by default in callers that install for serving).
    pub sync: bool,
}

/// What an extraction did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExtractReport {
    /// Bundle id.
    pub id: crate::digest::Digest,
    /// Destination.
    pub dest: PathBuf,
    /// Files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
    /// Whether a previous tree was replaced.
    pub replaced: bool,
}

/// Extract `bundle` from `source` into `dest`.
pub fn extract(
    source: &dyn BlobSource,
    bundle: &Bundle,
    dest: &Path,
    opts: ExtractOptions,
    progress: &dyn Progress,
) -> Result<ExtractReport> {
    extract_with(source, bundle, dest, opts, None, progress)
}

/// [`extract`], taking the files of the layers `reuse` names from an installed tree instead of
/// their blobs (which `source` need not hold): see [`crate::reuse`].
pub(crate) fn extract_with(
    source: &dyn BlobSource,
    bundle: &Bundle,
    dest: &Path,
    opts: ExtractOptions,
    reuse: Option<&crate::reuse::Reuse<'_>>,
    progress: &dyn Progress,
) -> Result<ExtractReport> {
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::InvalidPath {
            path: dest.display().to_string(),
            reason: "destination needs a final UTF-8 name",
        })?
        .to_string();
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let existing = match fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => {
            let empty = fs::read_dir(dest)
                .map_err(Error::io("read directory", dest))?
                .next()
                .is_none();
            Some(empty)
        }
        Ok(_) => {
            return Err(Error::DestExists {
                path: dest.to_path_buf(),
            })
        }
        Err(_) => None,
    };
    if existing == Some(false) && !opts.replace {
        return Err(Error::DestExists {
            path: dest.to_path_buf(),
        });
    }
    fs::create_dir_all(&parent).map_err(Error::io("create directory", &parent))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.sitebundle-"))
        .tempdir_in(&parent)
        .map_err(Error::io("create staging directory in", &parent))?;
    let root = staging.path().to_path_buf();
    // Everything below staging is created relative to this handle: a site path joined to DEST's
    // path may be longer than PATH_MAX (see `crate::dirfd`).
    let root_fd = dirfd::open_dir_path(&root).map_err(Error::io("open", &root))?;
    let rootd = root_fd.as_fd();
    rustix::fs::fchmod(rootd, Mode::from_raw_mode(0o755))
        .map_err(|e| Error::io("chmod", &root)(e.into()))?;

    // Layer 0 is checked first (it holds the directories the other layers write into).
    progress.start("extract", bundle.index.total_bytes());
    run_layers(source, bundle, &[0], |k, lines| {
        check_layer(source, bundle, k, lines, &mut VerifyAndSkip, progress)
    })?;
    // Layer 0's entries are streamed from the index (it can list millions of directories).
    let layer0 = |f: &mut dyn FnMut(&EntryRef<'_>) -> Result<()>| {
        bundle.index.for_each_in_layer(source, 0, |m| match m {
            LayerMember::Plain(e) => f(&e),
            LayerMember::HardLink(e, _) => f(&e),
        })
    };
    layer0(&mut |e| {
        if matches!(e.kind, KindRef::Dir) {
            let rel = e.path;
            // mkdirat's mode is filtered by the umask (077 would give 0700, which a web server
            // running as another user cannot read); set the index's mode exactly.
            dirfd::at(rootd, rel, |d, p| {
                rustix::fs::mkdirat(d, p, Mode::from_raw_mode(0o700))?;
                rustix::fs::chmodat(d, p, Mode::from_raw_mode(e.mode()), AtFlags::empty())?;
                Ok(())
            })
            .map_err(Error::io("create directory", root.join(rel)))?;
        }
        Ok(())
    })?;
    let n = bundle.meta.manifest.layers.len();
    let mut order: Vec<usize> = (1..n).collect();
    order.sort_by_key(|&k| std::cmp::Reverse(bundle.meta.manifest.layers[k].size));
    let rejected = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let bytes = run_layers(source, bundle, &order, |k, lines| {
        if let Some(r) = reuse.filter(|r| r.layers.contains(&k)) {
            return crate::reuse::link_layer(r, source, bundle, k, lines, &root, rootd, progress)
                .map(|outcome| match outcome {
                    Some(n) => n,
                    None => {
                        if let Ok(mut set) = rejected.lock() {
                            set.insert(k);
                        }
                        0
                    }
                });
        }
        check_layer(
            source,
            bundle,
            k,
            lines,
            &mut Writer {
                root: &root,
                root_fd: rootd,
                current: None,
                link_source: HashMap::new(),
            },
            progress,
        )
    })?;
    let rejected = rejected.into_inner().unwrap_or_default();
    if !rejected.is_empty() {
        // `staging` is dropped here: nothing of this attempt remains.
        return Err(Error::ReuseRejected {
            layers: rejected.into_iter().collect(),
        });
    }
    layer0(&mut |e| {
        if let KindRef::Symlink { target } = e.kind {
            let rel = e.path;
            dirfd::at(rootd, rel, |d, p| {
                rustix::fs::symlinkat(target, d, p).map_err(io::Error::from)
            })
            .map_err(Error::io("create symlink", root.join(rel)))?;
        }
        Ok(())
    })?;
    // Directory mtimes last, as tar does, so creating files and links does not disturb them
    // (setting one directory's mtime does not change its parent's, so the order is free).
    layer0(&mut |e| {
        if matches!(e.kind, KindRef::Dir) {
            set_dir_mtime(rootd, &root, e.path)?;
        }
        Ok(())
    })?;
    progress.finish();
    if opts.sync {
        rustix::fs::syncfs(rootd).map_err(|e| Error::Io {
            op: "sync",
            path: root.clone(),
            source: e.into(),
        })?;
    }
    drop(root_fd);
    let staged = staging.keep();
    let replaced = match existing {
        Some(false) => {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &staged,
                rustix::fs::CWD,
                dest,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .map_err(|e| {
                let _ = fs::remove_dir_all(&staged);
                Error::Io {
                    op: "swap into place",
                    path: dest.to_path_buf(),
                    source: e.into(),
                }
            })?;
            // `staged` now holds the previous tree.
            fs::remove_dir_all(&staged).map_err(Error::io("remove previous tree", &staged))?;
            true
        }
        Some(true) => {
            let _ = fs::remove_dir(dest);
            rename_into_place(&staged, dest)?;
            false
        }
        None => {
            rename_into_place(&staged, dest)?;
            false
        }
    };
    if let Ok(p) = File::open(&parent) {
        let _ = p.sync_all();
    }
    Ok(ExtractReport {
        id: bundle.id(),
        dest: dest.to_path_buf(),
        files: bundle.index.file_count(),
        bytes: bytes.iter().sum(),
        replaced,
    })
}

fn rename_into_place(staged: &Path, dest: &Path) -> Result<()> {
    fs::rename(staged, dest).map_err(|e| {
        let _ = fs::remove_dir_all(staged);
        Error::Io {
            op: "rename into place",
            path: dest.to_path_buf(),
            source: e,
        }
    })
}

fn set_dir_mtime(root_fd: BorrowedFd<'_>, root: &Path, rel: &str) -> Result<()> {
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: EPOCH_BASE as i64,
            tv_nsec: 0,
        },
    };
    dirfd::at(root_fd, rel, |d, p| {
        rustix::fs::utimensat(d, p, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
    })
    .map_err(Error::io("set mtime of", root.join(rel)))
}

/// Layer 0 holds no file content: check it, write nothing.
struct VerifyAndSkip;

impl MemberSink for VerifyAndSkip {
    fn open_file(&mut self, e: &EntryRef<'_>) -> Result<Box<dyn Write + '_>> {
        Err(Error::corrupt("layer 0", format!("holds file {}", e.path)))
    }
}

/// Writes members under `root` (reached through `root_fd`).
pub(crate) struct Writer<'a> {
    pub(crate) root: &'a Path,
    pub(crate) root_fd: BorrowedFd<'a>,
    pub(crate) current: Option<(BufWriter<File>, PathBuf)>,
    /// For a canonical file that reached the filesystem's link limit: the copy new links go to.
    pub(crate) link_source: HashMap<String, String>,
}

impl Writer<'_> {
    /// Create `rel` for writing: `O_CREAT | O_EXCL | O_NOFOLLOW`, so nothing already there (and
    /// no symlink) is ever written through.
    pub(crate) fn create(&self, rel: &str, mode: u32) -> Result<File> {
        dirfd::at(self.root_fd, rel, |d, p| {
            rustix::fs::openat(
                d,
                p,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(mode),
            )
            .map(File::from)
            .map_err(io::Error::from)
        })
        .map_err(Error::io("create", self.root.join(rel)))
    }

    /// The index's exact mode (open's was filtered by the umask) and the content mtime of §5.
    pub(crate) fn finish_file(&self, f: &File, e: &EntryRef<'_>) -> Result<()> {
        let p = || self.root.join(e.path);
        f.set_permissions(fs::Permissions::from_mode(e.mode()))
            .map_err(|err| Error::io("chmod", p())(err))?;
        let mtime = match e.kind {
            KindRef::File { hash, .. } => content_mtime(&hash.0),
            _ => EPOCH_BASE,
        };
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime))
            .map_err(|err| Error::io("set mtime of", p())(err))
    }

    /// `e` as a copy of the (already extracted and verified) file `src`: `copy_file_range`,
    /// which shares the blocks (a reflink) on filesystems that can.
    fn copy_of(&self, src: &str, e: &EntryRef<'_>) -> Result<()> {
        let mut from =
            dirfd::open_file(self.root_fd, src).map_err(Error::io("read", self.root.join(src)))?;
        let mut to = self.create(e.path, e.mode())?;
        let n = io::copy(&mut from, &mut to).map_err(Error::io("write", self.root.join(e.path)))?;
        let size = match e.kind {
            KindRef::File { size, .. } => size,
            _ => 0,
        };
        if n != size {
            return Err(Error::Io {
                op: "copy",
                path: self.root.join(e.path),
                source: io::Error::other(format!("copied {n} bytes of {size}")),
            });
        }
        self.finish_file(&to, e)
    }
}

impl MemberSink for Writer<'_> {
    fn open_file(&mut self, e: &EntryRef<'_>) -> Result<Box<dyn Write + '_>> {
        let f = self.create(e.path, e.mode())?;
        let p = self.root.join(e.path);
        self.current = Some((BufWriter::with_capacity(256 * 1024, f), p));
        match self.current.as_mut() {
            Some((w, _)) => Ok(Box::new(w)),
            None => Err(Error::corrupt("extract", "internal: no current file")),
        }
    }

    fn file_done(&mut self, e: &EntryRef<'_>) -> Result<()> {
        let Some((w, p)) = self.current.take() else {
            return Ok(());
        };
        let f = w.into_inner().map_err(|err| Error::Io {
            op: "write",
            path: p.clone(),
            source: err.into_error(),
        })?;
        self.finish_file(&f, e)
    }

    fn location(&self, e: &EntryRef<'_>) -> PathBuf {
        self.root.join(e.path)
    }

    /// A hard link, as the layer says; past the filesystem's link limit (ext4: 65,000 per inode,
    /// which a site with that many copies of one file reaches: issue 8) a copy, to which the
    /// next links then go.
    fn hardlink(&mut self, e: &EntryRef<'_>, canon: &str) -> Result<()> {
        let src = self
            .link_source
            .get(canon)
            .cloned()
            .unwrap_or_else(|| canon.to_string());
        let dst = e.path;
        let linked = dirfd::at(self.root_fd, &src, |d1, p1| {
            dirfd::at(self.root_fd, dst, |d2, p2| {
                rustix::fs::linkat(d1, p1, d2, p2, AtFlags::empty()).map_err(io::Error::from)
            })
        });
        match linked {
            Ok(()) => Ok(()),
            Err(err) if err.raw_os_error() == Some(rustix::io::Errno::MLINK.raw_os_error()) => {
                self.copy_of(&src, e)?;
                self.link_source
                    .insert(canon.to_string(), e.path.to_string());
                Ok(())
            }
            Err(err) => Err(Error::io("create hardlink", self.root.join(dst))(err)),
        }
    }
}
