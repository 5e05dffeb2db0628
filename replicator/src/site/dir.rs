//! A website target in a local directory: the root a web server (nginx) serves.
//!
//! Each object is written to a temporary file beside its final name and renamed over it, so a
//! reader sees the old file or the new one, never a partial one. Directories are created as
//! needed; a path whose existing parent is a symlink is refused (a write must not leave the
//! root). The marker is swapped under an exclusive `flock` on `.well-known/sitebundle/lock`,
//! compared by content digest. A directory keeps no headers (the web server sets them), so
//! header rules do not apply here, and a reconcile computes each file's BLAKE3 itself; it cannot
//! tell which files a sitebundle publish wrote, so without a marker it deletes nothing it did not
//! write unless `--delete-foreign` says so. Files are created 0644 and directories 0755 under the
//! process umask, so a web server running as another user can read them.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bundle::{Digest, FileHash};
use bytes::Bytes;

use super::headers::Headers;
use super::store::{Condition, Features, Op, RequestCounts, Requests, SiteStore, Stored, Version};
use super::SiteError;
use crate::error::{Error, Result};

/// Prefix of temporary files; a listing skips them and a publish removes its own.
const TMP_PREFIX: &str = ".sitebundle-tmp-";
/// The lock serializing marker swaps.
const LOCK_KEY: &str = ".well-known/sitebundle/lock";

/// A directory website target.
#[derive(Debug)]
pub struct DirSite {
    name: String,
    root: PathBuf,
    counts: RequestCounts,
}

impl DirSite {
    /// The directory `root` (created if missing).
    pub fn new(root: &Path) -> Result<DirSite> {
        fs::create_dir_all(root).map_err(Error::io("create directory", root))?;
        Ok(DirSite {
            name: format!("file+site://{}", root.display()),
            root: root.to_path_buf(),
            counts: RequestCounts::default(),
        })
    }

    /// The file a key names, after checking the key and that no existing parent is a symlink;
    /// missing parents are created when `create` is set.
    fn path(&self, key: &str, create: bool) -> Result<PathBuf> {
        let bad = |reason: &str| {
            Error::from(SiteError::BadKey {
                path: key.to_string(),
                reason: reason.to_string(),
            })
        };
        if key.is_empty()
            || key
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(bad("not a relative path of plain names"));
        }
        let mut p = self.root.clone();
        let comps: Vec<&str> = key.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            p.push(c);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(bad(
                        "a parent directory is a symlink; refusing to write through it",
                    ))
                }
                Ok(_) => return Err(bad("a parent is a file, not a directory")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                    match fs::create_dir(&p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(Error::io("create directory", &p)(e)),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("stat", &p)(e)),
            }
        }
        p.push(comps[comps.len() - 1]);
        Ok(p)
    }

    fn write_atomic(
        &self,
        key: &str,
        fill: impl FnOnce(&mut File) -> std::io::Result<()>,
        sync: bool,
    ) -> Result<()> {
        let dest = self.path(key, true)?;
        if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
            return Err(SiteError::BadKey {
                path: key.to_string(),
                reason: "a directory of that name exists; a directory target cannot hold both"
                    .into(),
            }
            .into());
        }
        let parent = dest.parent().unwrap_or(&self.root).to_path_buf();
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .tempfile_in(&parent)
            .map_err(Error::io("create temporary file in", &parent))?;
        let (mut f, tmp_path) = tmp.into_parts();
        fill(&mut f).map_err(Error::io("write", &tmp_path))?;
        if sync {
            f.sync_all().map_err(Error::io("sync", &tmp_path))?;
        }
        drop(f);
        tmp_path
            .persist(&dest)
            .map_err(|e| Error::io("rename into place", &dest)(e.error))?;
        if sync {
            if let Ok(d) = File::open(&parent) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Hard-link `file` beside `key`'s final name and rename it over: `Ok(false)` when the two are
    /// on different filesystems (or links are not allowed), so the caller copies instead.
    fn link_into_place(&self, key: &str, file: &Path) -> Result<bool> {
        let dest = self.path(key, true)?;
        if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
            return Err(SiteError::BadKey {
                path: key.to_string(),
                reason: "a directory of that name exists; a directory target cannot hold both"
                    .into(),
            }
            .into());
        }
        let parent = dest.parent().unwrap_or(&self.root);
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let tmp = parent.join(format!(
            "{TMP_PREFIX}{}-{n:x}-{:x}",
            std::process::id(),
            fastrand_u32(key)
        ));
        match fs::hard_link(file, &tmp) {
            Ok(()) => {}
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error())
                    || e.kind() == std::io::ErrorKind::PermissionDenied
                    || e.raw_os_error() == Some(rustix::io::Errno::MLINK.raw_os_error()) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(Error::io("link", &tmp)(e)),
        }
        fs::rename(&tmp, &dest).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io("rename into place", &dest)(e)
        })?;
        Ok(true)
    }

    fn read_small(&self, key: &str, max: u64) -> Result<Option<Bytes>> {
        use crate::net::LocalFile;
        let p = self.path(key, false)?;
        let bad = |reason: String| {
            Error::from(SiteError::BadMarker {
                target: self.name.clone(),
                what: key.to_string(),
                reason,
            })
        };
        match crate::net::read_local_capped(&p, max).map_err(Error::io("read", &p))? {
            LocalFile::Missing => Ok(None),
            LocalFile::Bytes(b) => Ok(Some(Bytes::from(b))),
            LocalFile::TooLarge => Err(bad(format!("larger than {max} bytes"))),
            LocalFile::NotAFile => Err(bad("not a regular file".into())),
        }
    }

    fn version_of(b: &[u8]) -> Version {
        Version(Digest::of(b).to_string())
    }
}

/// Run blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

fn hash_file(p: &Path) -> std::io::Result<(u64, FileHash)> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(p)?;
    let mut h = blake3::Hasher::new();
    let n = std::io::copy(
        &mut std::io::BufReader::with_capacity(256 * 1024, f),
        &mut h,
    )?;
    Ok((n, FileHash::from(h.finalize())))
}

#[async_trait]
impl SiteStore for DirSite {
    fn name(&self) -> &str {
        &self.name
    }

    fn features(&self) -> Features {
        Features {
            headers: false,
            metadata_in_listing: false,
        }
    }

    fn requests(&self) -> Requests {
        self.counts.snapshot()
    }

    async fn get_small(&self, key: &str, max: u64) -> Result<Option<(Bytes, Version)>> {
        self.counts.add(Op::Get, 1);
        Ok(self
            .read_small(key, max)?
            .map(|b| (b.clone(), DirSite::version_of(&b))))
    }

    async fn put_small(
        &self,
        key: &str,
        body: Bytes,
        _headers: &Headers,
        condition: Option<Condition>,
    ) -> Result<Version> {
        self.counts.add(Op::Put, 1);
        let lock_path = self.path(LOCK_KEY, true)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&lock_path)
            .map_err(Error::io("open lock", &lock_path))?;
        let this = DirSite {
            name: self.name.clone(),
            root: self.root.clone(),
            counts: RequestCounts::default(),
        };
        let key = key.to_string();
        blocking(move || {
            rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
                .map_err(|e| Error::io("lock", &lock_path)(std::io::Error::from(e)))?;
            if let Some(cond) = condition {
                let cur = this
                    .read_small(&key, super::marker::MAX_MARKER_BYTES)?
                    .map(|b| DirSite::version_of(&b));
                let ok = match (&cond, &cur) {
                    (Condition::Absent, None) => true,
                    (Condition::Matches(v), Some(c)) => v == c,
                    _ => false,
                };
                if !ok {
                    return Err(SiteError::MarkerConflict {
                        target: this.name.clone(),
                        expected: match cond {
                            Condition::Absent => "no marker".into(),
                            Condition::Matches(v) => v.0,
                        },
                    }
                    .into());
                }
            }
            let version = DirSite::version_of(&body);
            this.write_atomic(&key, |f| f.write_all(&body), true)?;
            Ok(version)
        })
        .await
    }

    async fn put_file(
        &self,
        key: &str,
        file: &Path,
        _size: u64,
        _hash: &FileHash,
        _headers: &Headers,
    ) -> Result<()> {
        self.counts.add(Op::Put, 1);
        let this = DirSite {
            name: self.name.clone(),
            root: self.root.clone(),
            counts: RequestCounts::default(),
        };
        let (key, file) = (key.to_string(), file.to_path_buf());
        blocking(move || {
            // A spool on the same filesystem: link its file in (no copy), then rename over.
            if this.link_into_place(&key, &file)? {
                return Ok(());
            }
            this.write_atomic(
                &key,
                |f| {
                    let mut src = File::open(&file)?;
                    std::io::copy(&mut src, f).map(|_| ())
                },
                false,
            )
        })
        .await
    }

    fn spool_near(&self) -> Option<PathBuf> {
        self.root.parent().map(Path::to_path_buf)
    }

    async fn set_headers(&self, _key: &str, _hash: &FileHash, _headers: &Headers) -> Result<()> {
        // A directory keeps no headers; the plan never asks (Features::headers is false).
        Ok(())
    }

    async fn head(&self, key: &str) -> Result<Option<Stored>> {
        self.counts.add(Op::Head, 1);
        let p = self.path(key, false)?;
        blocking(move || match hash_file(&p) {
            Ok((size, h)) => Ok(Some(Stored {
                size,
                blake3: Some(h),
                ours: false,
                headers: None,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            // A directory or a symlink where a file is expected: not an object.
            Err(e)
                if e.raw_os_error() == Some(libc_eloop())
                    || e.kind() == std::io::ErrorKind::IsADirectory =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::io("read", &p)(e)),
        })
        .await
    }

    async fn list(&self) -> Result<Vec<(String, Stored)>> {
        self.counts.add(Op::List, 1);
        let root = self.root.clone();
        blocking(move || {
            let mut out = Vec::new();
            let mut stack = vec![(root.clone(), String::new())];
            while let Some((dir, rel)) = stack.pop() {
                let rd = fs::read_dir(&dir).map_err(Error::io("read directory", &dir))?;
                for e in rd {
                    let e = e.map_err(Error::io("read directory", &dir))?;
                    let Some(name) = e.file_name().to_str().map(str::to_string) else {
                        continue;
                    };
                    let key = if rel.is_empty() {
                        name.clone()
                    } else {
                        format!("{rel}/{name}")
                    };
                    let ft = e.file_type().map_err(Error::io("stat", e.path()))?;
                    if ft.is_dir() {
                        stack.push((e.path(), key));
                    } else if ft.is_file() && !name.starts_with(TMP_PREFIX) {
                        let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                        out.push((
                            key,
                            Stored {
                                size,
                                blake3: None,
                                ours: false,
                                headers: None,
                            },
                        ));
                    }
                }
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        })
        .await
    }

    async fn delete(&self, keys: &[String]) -> Result<()> {
        self.counts.add(Op::Delete, keys.len() as u64);
        let mut paths = Vec::with_capacity(keys.len());
        for k in keys {
            paths.push(self.path(k, false)?);
        }
        let root = self.root.clone();
        blocking(move || {
            for p in &paths {
                match fs::remove_file(p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("delete", p)(e)),
                }
                // Remove directories the delete emptied (never the root).
                let mut d = p.parent();
                while let Some(dir) = d {
                    if dir == root || !dir.starts_with(&root) || fs::remove_dir(dir).is_err() {
                        break;
                    }
                    d = dir.parent();
                }
            }
            Ok(())
        })
        .await
    }
}

/// A number that differs between keys (temporary names of concurrent writes in one directory).
fn fastrand_u32(key: &str) -> u32 {
    let h = blake3::hash(key.as_bytes());
    u32::from_le_bytes([
        h.as_bytes()[0],
        h.as_bytes()[1],
        h.as_bytes()[2],
        h.as_bytes()[3],
    ])
}

/// `ELOOP`: what `O_NOFOLLOW` gives on a symlink.
fn libc_eloop() -> i32 {
    rustix::io::Errno::LOOP.raw_os_error()
}
