//! `extract`: materialize a bundle as a directory, atomically.
//!
//! Everything is written into a temporary sibling of the destination (`.<name>.sitebundle-*`),
//! checked as it is written (see [`crate::check`]), flushed with one `syncfs`, and only then
//! renamed into place: on any failure the staging directory is removed and the destination is as
//! it was. An existing non-empty destination is replaced only when asked, by an atomic
//! `renameat2(RENAME_EXCHANGE)`, so a web server reading it sees the old tree or the new one.
//!
//! Inside staging, files are created with `O_CREAT | O_EXCL | O_NOFOLLOW` below directories this
//! code created, and symlinks are created last, after every file: no write can go through a link.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::check::{check_layer, run_layers, MemberSink};
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
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755))
        .map_err(Error::io("chmod", &root))?;

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
            let p = root.join(e.path);
            fs::create_dir(&p).map_err(Error::io("create directory", &p))?;
            // create_dir's mode is filtered by the umask (077 would give 0700, which a web
            // server running as another user cannot read); set the index's mode exactly.
            fs::set_permissions(&p, fs::Permissions::from_mode(e.mode()))
                .map_err(Error::io("chmod", &p))?;
        }
        Ok(())
    })?;
    let n = bundle.meta.manifest.layers.len();
    let mut order: Vec<usize> = (1..n).collect();
    order.sort_by_key(|&k| std::cmp::Reverse(bundle.meta.manifest.layers[k].size));
    let bytes = run_layers(source, bundle, &order, |k, lines| {
        check_layer(
            source,
            bundle,
            k,
            lines,
            &mut Writer {
                root: &root,
                current: None,
            },
            progress,
        )
    })?;
    layer0(&mut |e| {
        if let KindRef::Symlink { target } = e.kind {
            let p = root.join(e.path);
            std::os::unix::fs::symlink(target, &p).map_err(Error::io("create symlink", &p))?;
        }
        Ok(())
    })?;
    // Directory mtimes last, as tar does, so creating files and links does not disturb them
    // (setting one directory's mtime does not change its parent's, so the order is free).
    layer0(&mut |e| {
        if matches!(e.kind, KindRef::Dir) {
            set_dir_mtime(&root.join(e.path))?;
        }
        Ok(())
    })?;
    progress.finish();
    if opts.sync {
        let d = File::open(&root).map_err(Error::io("open", &root))?;
        rustix::fs::syncfs(&d).map_err(|e| Error::Io {
            op: "sync",
            path: root.clone(),
            source: e.into(),
        })?;
    }
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

fn set_dir_mtime(p: &Path) -> Result<()> {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_BASE);
    let f = File::open(p).map_err(Error::io("open", p))?;
    f.set_modified(t).map_err(Error::io("set mtime of", p))
}

/// Layer 0 holds no file content: check it, write nothing.
struct VerifyAndSkip;

impl MemberSink for VerifyAndSkip {
    fn open_file(&mut self, e: &EntryRef<'_>) -> Result<Box<dyn Write + '_>> {
        Err(Error::corrupt("layer 0", format!("holds file {}", e.path)))
    }
}

/// Writes members under `root`.
struct Writer<'a> {
    root: &'a Path,
    current: Option<(BufWriter<File>, PathBuf)>,
}

impl MemberSink for Writer<'_> {
    fn open_file(&mut self, e: &EntryRef<'_>) -> Result<Box<dyn Write + '_>> {
        let p = self.root.join(e.path);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc_o_nofollow())
            .mode(e.mode())
            .open(&p)
            .map_err(Error::io("create", &p))?;
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
        // The mode given to open() is filtered by the umask; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(e.mode()))
            .map_err(Error::io("chmod", &p))?;
        let mtime = match e.kind {
            KindRef::File { hash, .. } => content_mtime(&hash.0),
            _ => EPOCH_BASE,
        };
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime))
            .map_err(Error::io("set mtime of", &p))?;
        Ok(())
    }

    fn hardlink(&mut self, e: &EntryRef<'_>, canon: &str) -> Result<()> {
        let p = self.root.join(e.path);
        fs::hard_link(self.root.join(canon), &p).map_err(Error::io("create hardlink", &p))
    }
}

fn libc_o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}
