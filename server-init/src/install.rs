//! Installing a bundle under DEST, atomically, keeping the previous version for rollback.
//!
//! ## Layout of DEST
//! ```text
//! DEST/
//!   current -> <id-hex>          symlink; the web server's root is DEST/current
//!   previous -> <id-hex>         the version before (instant rollback; kept while N >= 2)
//!   <id-hex>/                    complete, verified trees, named by bundle id (the last N)
//!   .history                     ids made current, oldest first (which N trees to keep)
//!   .meta/<manifest-hex>         "sha256:<id-hex>": which bundle a manifest digest installed
//!   .staging-<manifest-hex>/     blob staging store (an OCI layout) while fetching
//!   .<id-hex>.sitebundle-*/      `bundle::extract`'s own staging while extracting
//!   .trash-*                     trees being removed
//!   .lock                        flock: one installer at a time per DEST
//! ```
//!
//! ## A failed run leaves DEST as it was
//! Everything a run creates or changes in DEST is written in a journal as it happens (DEST itself
//! and its parents when missing, the `.lock` file, the staging store or the blobs added to a
//! leftover one, the new tree, its `.meta` record, the `current`/`previous` links). If the run
//! fails, [`Dest::rollback`] undoes the journal in reverse order, so DEST is byte-for-byte as
//! before (a listing with modes, sizes, hashes and link targets compares equal); what could not
//! be undone is reported. Leftovers of *other* runs (a killed one) are cleaned only by a run that
//! succeeds. Before any network access, DEST/`current` and DEST/`previous` must be symlinks (or
//! absent): a real directory there is refused at once, with nothing written.
//!
//! ## The lock
//! `DEST/.lock` is taken with `flock`, waiting at most the configured time (and logging who holds
//! it, as the holder wrote into the file). A run that created the file removes it when done, while
//! still holding it; a waiter that then gets the lock on the removed file notices (the path no
//! longer names the inode it locked) and tries again, so two runs never both hold "the" lock.
//!
//! ## A read-only DEST
//! When DEST cannot be written (a read-only mount, or a directory this user may not write), the
//! run continues without a lock and succeeds only if what is asked is already installed and
//! current (nothing to write); anything else fails with exit 4, naming the reason.
//!
//! ## Keeping the last N versions
//! Every time `current` moves, the new id is appended to `.history` (bounded to
//! [`HISTORY_LINES`] lines). After a successful run, [`Dest::prune_keep`] keeps `current`,
//! `previous` (when N >= 2) and the most recently current other trees up to N in all, and removes
//! the rest; `current` is never removed, whatever N is. N = 1 also removes the `previous` link.
//! Rolling back to any kept tree is a symlink swap, without network.
//!
//! ## Next deploys
//! [`Dest::install_reusing`] extracts the new bundle taking the files of the layers the `current`
//! tree already holds from it ([`bundle::reuse`]: each file checked against the new index, linked
//! or copied, checked again), so only the other layers are fetched.
//!
//! ## Why a SIGKILL at any point is harmless
//! - A name `DEST/<id-hex>` comes into existence only by `rename` of a fully extracted, verified
//!   and `syncfs`-ed staging tree (done by [`bundle::extract()`]), and leaves only by `rename` to a
//!   `.trash-*` name before it is deleted. So if `DEST/<id-hex>` exists, it is complete.
//! - `current` and `previous` only ever point at such names, and are only changed by creating a
//!   temporary symlink and renaming it over the old one (`rename(2)` replaces atomically), followed
//!   by an fsync of DEST. A reader (nginx) resolves `current` to the old tree or to the new one.
//! - `previous` is moved before `current`, and pruning runs after both, and never removes their
//!   targets. A kill between the steps leaves `current` on a complete tree (old or new).
//! - Leftovers of a killed run (`.staging-*`, extract staging, `.trash-*`, temporary symlinks) are
//!   removed by the next run, under the lock. Blobs in a leftover staging store are kept: a blob
//!   file is named by its digest only after its bytes were verified, so a re-run resumes.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bundle::{Bundle, Digest, ExtractOptions, Progress, Store};

use crate::error::{InitError, Result};

/// Name of the symlink the web server serves.
pub const CURRENT: &str = "current";
/// Name of the symlink to the version before `current`.
pub const PREVIOUS: &str = "previous";
/// Directory of manifest records.
pub const META_DIR: &str = ".meta";
/// The lock file.
pub const LOCK_FILE: &str = ".lock";
/// Prefix of blob staging stores.
pub const STAGING_PREFIX: &str = ".staging-";
/// Prefix of trees being removed.
pub const TRASH_PREFIX: &str = ".trash-";
/// Prefix of temporary symlinks.
pub const LINK_TMP_PREFIX: &str = ".link-";
/// The history file (ids made current, oldest first).
pub const HISTORY_FILE: &str = ".history";
/// Lines kept in the history file.
pub const HISTORY_LINES: usize = 64;
/// Trees kept by default: `current` and `previous`.
pub const DEFAULT_KEEP: usize = 2;
/// Most trees a run may be asked to keep (each is a full copy of a site, less hard links).
pub const MAX_KEEP: usize = 32;
/// Default time a run waits for another installer's lock.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(600);
/// How often a waiting run says it is still waiting.
const LOCK_LOG_EVERY: Duration = Duration::from_secs(15);

/// Test hook: `SITEBUNDLE_INIT_PAUSE_AT=<step>` makes the installer log `pause point <step>` and
/// sleep for a minute at that step, so a test can SIGKILL it at a precise point. Steps:
/// `locked`, `fetched`, `extracted`, `previous-swapped`, `current-swapped`, `pruning`. Has no
/// effect when unset; it never changes what is written.
pub const PAUSE_ENV: &str = "SITEBUNDLE_INIT_PAUSE_AT";

/// Sleep at `step` if the test hook asks for it.
pub fn pause_point(step: &str) {
    if std::env::var(PAUSE_ENV).ok().as_deref() == Some(step) {
        tracing::warn!(step, "pause point {step}");
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// One thing a run did to DEST, and how to undo it.
#[derive(Debug)]
enum Undo {
    /// A directory that did not exist (DEST, a parent of it, `.meta`): removed if empty.
    Dir(PathBuf),
    /// A file that did not exist: removed.
    File(PathBuf),
    /// A file that held `old`: written back.
    Replaced(PathBuf, Vec<u8>),
    /// A tree that did not exist (a new `DEST/<id>`, a new staging store): removed.
    Tree(PathBuf),
    /// A staging store left by a killed run: blob files not in the set are removed.
    StagingBlobs(PathBuf, BTreeSet<std::ffi::OsString>),
    /// Symlink `name` pointed at `old` (None: did not exist).
    Link(String, Option<PathBuf>),
}

/// The lock, held for the life of the [`Dest`].
#[derive(Debug)]
struct Lock {
    file: File,
    path: PathBuf,
    /// This run created the file, and removes it when done.
    created: bool,
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.created {
            // Still holding the lock: a waiter that gets it next sees the file gone and retries.
            let _ = fs::remove_file(&self.path);
        }
        // Closing `file` (after this) releases the flock.
    }
}

/// An installation directory, locked for this process (or opened read-only, see the module doc).
#[derive(Debug)]
pub struct Dest {
    root: PathBuf,
    read_only: Option<String>,
    journal: Mutex<Vec<Undo>>,
    // Dropped last (fields drop in order): the lock outlives every other use of DEST. Taken
    // early only by a rollback that removes DEST itself.
    lock: Mutex<Option<Lock>>,
}

/// What [`Dest::activate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activation {
    /// What `current` pointed at before.
    pub previous: Option<Digest>,
    /// False when `current` already pointed at the id.
    pub changed: bool,
}

/// True for the errors that mean "this user cannot write here" rather than a failure.
fn is_not_writable(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_codes::EROFS | libc_codes::EACCES | libc_codes::EPERM)
    )
}

/// The errno values we look at (Linux), without a libc dependency.
mod libc_codes {
    pub const EPERM: i32 = 1;
    pub const EACCES: i32 = 13;
    pub const EROFS: i32 = 30;
}

/// Who holds a lock, as its holder wrote it into the file (bounded read).
fn holder(path: &Path) -> String {
    let mut buf = Vec::new();
    let _ = File::open(path).and_then(|f| f.take(512).read_to_end(&mut buf));
    let s = String::from_utf8_lossy(&buf).trim().to_string();
    if s.is_empty() {
        "another process (it did not say who: an older version, or another pod)".to_string()
    } else {
        s.chars().filter(|c| !c.is_control()).collect()
    }
}

impl Dest {
    /// Open DEST (creating it if needed) and take its lock, waiting at most `wait` for another
    /// installer. Nothing is left behind by a run that fails ([`Dest::rollback`]).
    pub fn open(root: &Path, wait: Duration) -> Result<Dest> {
        // The missing directories, outermost first, so a failed run can remove what it made.
        let mut missing = Vec::new();
        let mut p = root.to_path_buf();
        while fs::symlink_metadata(&p).is_err() {
            missing.push(p.clone());
            match p.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => p = parent.to_path_buf(),
                _ => break,
            }
        }
        missing.reverse();
        fs::create_dir_all(root).map_err(InitError::local("create directory", root))?;
        let journal: Vec<Undo> = missing.into_iter().map(Undo::Dir).collect();
        let dest = match Dest::lock(root, wait) {
            Ok(lock) => Dest {
                root: root.to_path_buf(),
                read_only: None,
                journal: Mutex::new(journal),
                lock: Mutex::new(Some(lock)),
            },
            Err(LockError::NotWritable(reason)) => {
                tracing::warn!(dest = %root.display(), reason = %reason, "DEST is not writable: only an installed, current bundle can be accepted");
                Dest {
                    root: root.to_path_buf(),
                    read_only: Some(reason),
                    journal: Mutex::new(journal),
                    lock: Mutex::new(None),
                }
            }
            Err(LockError::Failed(e)) => {
                let e = *e;
                let d = Dest {
                    root: root.to_path_buf(),
                    read_only: None,
                    journal: Mutex::new(journal),
                    lock: Mutex::new(None),
                };
                return Err(d.rollback(e));
            }
        };
        pause_point("locked");
        if let Err(e) = dest.check_links() {
            return Err(dest.rollback(e));
        }
        Ok(dest)
    }

    fn lock(root: &Path, wait: Duration) -> std::result::Result<Lock, LockError> {
        let path = root.join(LOCK_FILE);
        let started = Instant::now();
        let mut logged: Option<Instant> = None;
        loop {
            let (file, created) = match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(f) => (f, true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    match fs::OpenOptions::new().write(true).open(&path) {
                        Ok(f) => (f, false),
                        // Removed between the two opens by a finishing run: try again.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) if is_not_writable(&e) => {
                            return Err(LockError::NotWritable(format!(
                                "cannot open {}: {e}",
                                path.display()
                            )))
                        }
                        Err(e) => {
                            return Err(LockError::Failed(Box::new(InitError::local(
                                "open", &path,
                            )(
                                e
                            ))))
                        }
                    }
                }
                Err(e) if is_not_writable(&e) => {
                    return Err(LockError::NotWritable(format!(
                        "cannot create {}: {e}",
                        path.display()
                    )))
                }
                Err(e) => {
                    return Err(LockError::Failed(Box::new(InitError::local(
                        "create", &path,
                    )(e))))
                }
            };
            let mut lock = Lock {
                file,
                path: path.clone(),
                created,
            };
            // Wait on this open file: if we created it, we stay the one that removes it.
            loop {
                match rustix::fs::flock(
                    &lock.file,
                    rustix::fs::FlockOperation::NonBlockingLockExclusive,
                ) {
                    Ok(()) => break,
                    Err(rustix::io::Errno::WOULDBLOCK) => {
                        if started.elapsed() >= wait {
                            lock.created = false;
                            return Err(LockError::Failed(Box::new(InitError::Locked {
                                holder: holder(&path),
                                path,
                                waited: wait,
                            })));
                        }
                        if logged.is_none_or(|t| t.elapsed() >= LOCK_LOG_EVERY) {
                            tracing::warn!(
                                lock = %path.display(),
                                holder = %holder(&path),
                                waited_s = started.elapsed().as_secs(),
                                limit_s = wait.as_secs(),
                                "DEST is locked by another installer; waiting"
                            );
                            logged = Some(Instant::now());
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Err(e) => {
                        lock.created = false;
                        return Err(LockError::Failed(Box::new(InitError::Local {
                            op: "lock",
                            path,
                            source: e.into(),
                        })));
                    }
                }
            }
            // Is the file we locked still the one at the path (not removed by its last holder)?
            let same = match (lock.file.metadata(), fs::symlink_metadata(&path)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if !same {
                // Its last holder removed it: ours is a stale inode. Not ours to remove.
                lock.created = false;
                continue;
            }
            if lock.created {
                // Tell a waiter who we are (the file goes away with us).
                let who = format!(
                    "sitebundle-init pid {} on {} since {}",
                    std::process::id(),
                    hostname(),
                    replicator::channel::now_rfc3339()
                );
                let _ = (&lock.file).write_all(who.as_bytes());
            }
            if logged.is_some() {
                tracing::info!(lock = %path.display(), waited_ms = started.elapsed().as_millis() as u64, "got the DEST lock");
            }
            return Ok(lock);
        }
    }

    /// `current` and `previous` are symlinks (or absent): anything else is refused before any
    /// work, since replacing it would destroy what someone put there.
    fn check_links(&self) -> Result<()> {
        for name in [CURRENT, PREVIOUS] {
            let p = self.root.join(name);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {}
                Ok(m) => {
                    let kind = if m.is_dir() { "a directory" } else { "a file" };
                    return Err(InitError::DestLayout {
                        path: p,
                        reason: format!(
                            "is {kind}, not a symlink: sitebundle-init keeps DEST/{name} as a                              symlink to a verified tree and never replaces anything else there;                              move it away, or use another --dest"
                        ),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(InitError::local("inspect", &p)(e)),
            }
        }
        Ok(())
    }

    /// Why DEST cannot be written, when it cannot.
    pub fn read_only(&self) -> Option<&str> {
        self.read_only.as_deref()
    }

    fn note(&self, u: Undo) {
        if let Ok(mut j) = self.journal.lock() {
            j.push(u);
        }
    }

    /// The run succeeded: forget the journal (what it did stays).
    pub fn commit(&self) {
        if let Ok(mut j) = self.journal.lock() {
            j.clear();
        }
    }

    /// The run failed with `err`: undo everything it did to DEST, newest first. Returns `err`, or
    /// [`InitError::NotRestored`] around it naming what could not be undone.
    pub fn rollback(&self, err: InitError) -> InitError {
        let undo: Vec<Undo> = match self.journal.lock() {
            Ok(mut j) => std::mem::take(&mut *j),
            Err(_) => Vec::new(),
        };
        let mut left = Vec::new();
        for u in undo.into_iter().rev() {
            if matches!(&u, Undo::Dir(p) if p == &self.root) {
                // DEST itself goes: release (and remove) our lock file first.
                if let Ok(mut l) = self.lock.lock() {
                    drop(l.take());
                }
            }
            if let Err(e) = self.undo(&u) {
                left.push(e);
            }
        }
        if left.is_empty() {
            err
        } else {
            InitError::NotRestored {
                source: Box::new(err),
                leftovers: left,
            }
        }
    }

    fn undo(&self, u: &Undo) -> std::result::Result<(), String> {
        let fail = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
        match u {
            Undo::Dir(p) => match fs::remove_dir(p) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(fail("remove directory", p, e)),
            },
            Undo::File(p) => match fs::remove_file(p) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(fail("remove", p, e)),
            },
            Undo::Replaced(p, old) => bundle::store::write_atomic(p, old)
                .map_err(|e| format!("restore {}: {}", p.display(), crate::error::chain(&e))),
            Undo::Tree(p) => self.remove_tree_checked(p),
            Undo::StagingBlobs(dir, keep) => {
                let blobs = dir.join("blobs/sha256");
                let rd = match fs::read_dir(&blobs) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(fail("list", &blobs, e)),
                };
                for e in rd.flatten() {
                    if !keep.contains(&e.file_name()) {
                        fs::remove_file(e.path()).map_err(|er| fail("remove", &e.path(), er))?;
                    }
                }
                Ok(())
            }
            Undo::Link(name, old) => {
                let p = self.root.join(name);
                match old {
                    Some(target) => self.put_link(name, target).map_err(|e| {
                        format!("restore {}: {}", p.display(), crate::error::chain(&e))
                    }),
                    None => match fs::remove_file(&p) {
                        Ok(()) => Ok(()),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                        Err(e) => Err(fail("remove", &p, e)),
                    },
                }
            }
        }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the tree of bundle `id` lives.
    pub fn tree(&self, id: &Digest) -> PathBuf {
        self.root.join(id.hex())
    }

    /// The bundle `current` points at, if any.
    pub fn current(&self) -> Option<Digest> {
        self.link_target(CURRENT)
    }

    /// The bundle `previous` points at, if any.
    pub fn previous(&self) -> Option<Digest> {
        self.link_target(PREVIOUS)
    }

    fn link_target(&self, name: &str) -> Option<Digest> {
        let t = fs::read_link(self.root.join(name)).ok()?;
        let hex = t.to_str()?;
        let d: Digest = format!("sha256:{hex}").parse().ok()?;
        self.tree(&d).is_dir().then_some(d)
    }

    /// If `digest` (a bundle id or a manifest digest) is installed as a complete tree, its id.
    pub fn installed_id(&self, digest: &Digest) -> Option<Digest> {
        if self.tree(digest).is_dir() {
            return Some(*digest);
        }
        let meta = self.root.join(META_DIR).join(digest.hex());
        let id: Digest = read_small(&meta)?.trim().parse().ok()?;
        self.tree(&id).is_dir().then_some(id)
    }

    fn staging_dir(&self, key: &Digest) -> PathBuf {
        self.root.join(format!("{STAGING_PREFIX}{}", key.hex()))
    }

    /// The blob staging store for a fetch of `key` (kept across a killed run, see module doc).
    /// A failed run removes it, or, when it was left by a killed run, the blobs added to it.
    pub fn staging_store(&self, key: &Digest) -> Result<Store> {
        let dir = self.staging_dir(key);
        match fs::symlink_metadata(&dir) {
            Ok(_) => {
                let blobs = dir.join("blobs/sha256");
                let names = fs::read_dir(&blobs)
                    .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
                    .unwrap_or_default();
                self.note(Undo::StagingBlobs(dir.clone(), names));
            }
            Err(_) => self.note(Undo::Tree(dir.clone())),
        }
        Store::open(&dir).map_err(|e| InitError::Bundle {
            digest: *key,
            source: e,
        })
    }

    /// Remove the staging store for `key` (after a successful install).
    pub fn drop_staging(&self, key: &Digest) {
        self.remove_tree(&self.staging_dir(key));
    }

    /// Extract the bundle with manifest `manifest` from `store` into `DEST/<id>` (verifying every
    /// blob and every file) unless a complete tree is already there. Does not touch `current`.
    /// `expected_id`, when the user pinned a bundle id, must match.
    pub fn install(
        &self,
        store: &Store,
        manifest: &Digest,
        expected_id: Option<&Digest>,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        match self.install_reusing(store, manifest, expected_id, None, progress)? {
            Installed::Tree(id) => Ok(id),
            Installed::Rejected(layers) => Err(InitError::from_bundle(
                *manifest,
                bundle::Error::ReuseRejected { layers },
            )),
        }
    }

    /// [`Dest::install`], taking the files of the layers in `reuse` from an installed tree
    /// ([`bundle::reuse::extract_reusing`]); their blobs need not be staged. When an installed
    /// file does not match the new index, nothing is written and the layers to fetch are
    /// returned ([`Installed::Rejected`]).
    pub fn install_reusing(
        &self,
        store: &Store,
        manifest: &Digest,
        expected_id: Option<&Digest>,
        reuse: Option<&bundle::reuse::Reuse<'_>>,
        progress: &dyn Progress,
    ) -> Result<Installed> {
        let bundle =
            Bundle::open(store, manifest).map_err(|e| InitError::from_bundle(*manifest, e))?;
        let id = bundle.id();
        if let Some(want) = expected_id {
            if *want != id {
                return Err(InitError::Integrity {
                    digest: *manifest,
                    source: bundle::Error::DigestMismatch {
                        what: format!("bundle id of manifest {manifest}"),
                        expected: *want,
                        found: id,
                    },
                });
            }
        }
        let tree = self.tree(&id);
        if !tree.is_dir() {
            // Noted first: extract removes its own staging on failure, we remove the tree if it
            // appeared and a later step fails.
            self.note(Undo::Tree(tree.clone()));
            let opts = ExtractOptions {
                replace: false,
                sync: true,
            };
            let r = match reuse {
                Some(r) if !r.layers.is_empty() => {
                    bundle::reuse::extract_reusing(store, &bundle, &tree, opts, r, progress)
                }
                _ => bundle::extract(store, &bundle, &tree, opts, progress),
            };
            match r {
                Ok(_) => {}
                Err(bundle::Error::ReuseRejected { layers }) => {
                    return Ok(Installed::Rejected(layers))
                }
                Err(e) => return Err(InitError::from_bundle(id, e)),
            }
        }
        self.record_manifest(manifest, &id)?;
        self.sync_dir()?;
        Ok(Installed::Tree(id))
    }

    fn record_manifest(&self, manifest: &Digest, id: &Digest) -> Result<()> {
        let dir = self.root.join(META_DIR);
        if fs::symlink_metadata(&dir).is_err() {
            self.note(Undo::Dir(dir.clone()));
            fs::create_dir_all(&dir).map_err(InitError::local("create directory", &dir))?;
        }
        let path = dir.join(manifest.hex());
        let body = id.to_string();
        match fs::read(&path) {
            Ok(old) if old == body.as_bytes() => return Ok(()),
            Ok(old) => self.note(Undo::Replaced(path.clone(), old)),
            Err(_) => self.note(Undo::File(path.clone())),
        }
        bundle::store::write_atomic(&path, body.as_bytes()).map_err(|e| InitError::Bundle {
            digest: *manifest,
            source: e,
        })
    }

    /// Point `current` at the installed tree of `id` (and `previous` at what `current` was).
    pub fn activate(&self, id: &Digest) -> Result<Activation> {
        let tree = self.tree(id);
        if !tree.is_dir() {
            return Err(InitError::Local {
                op: "activate (not installed)",
                path: tree,
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let old = self.current();
        if old == Some(*id) {
            return Ok(Activation {
                previous: self.previous(),
                changed: false,
            });
        }
        if let Some(reason) = &self.read_only {
            return Err(InitError::ReadOnlyDest {
                path: self.root.clone(),
                reason: format!(
                    "{id} is installed there but not current, and current cannot be moved: {reason}"
                ),
            });
        }
        if let Some(old) = old {
            self.swap_link(PREVIOUS, &old)?;
        }
        pause_point("previous-swapped");
        self.swap_link(CURRENT, id)?;
        self.append_history(id)?;
        Ok(Activation {
            previous: old,
            changed: true,
        })
    }

    /// Ids made current, oldest first (bounded read; unreadable lines are skipped).
    pub fn history(&self) -> Vec<Digest> {
        let mut buf = Vec::new();
        let limit = (HISTORY_LINES as u64 + 1) * 80;
        let _ = File::open(self.root.join(HISTORY_FILE))
            .and_then(|f| f.take(limit).read_to_end(&mut buf));
        String::from_utf8_lossy(&buf)
            .lines()
            .filter_map(|l| format!("sha256:{}", l.trim()).parse().ok())
            .collect()
    }

    /// Append `id` to the history (noted for [`Dest::rollback`]), keeping the last lines.
    fn append_history(&self, id: &Digest) -> Result<()> {
        let path = self.root.join(HISTORY_FILE);
        let mut ids = self.history();
        ids.retain(|d| d != id);
        ids.push(*id);
        let skip = ids.len().saturating_sub(HISTORY_LINES);
        let body: String = ids[skip..]
            .iter()
            .map(|d| format!("{}\n", d.hex()))
            .collect();
        match fs::read(&path) {
            Ok(old) => self.note(Undo::Replaced(path.clone(), old)),
            Err(_) => self.note(Undo::File(path.clone())),
        }
        bundle::store::write_atomic(&path, body.as_bytes()).map_err(|e| InitError::Local {
            op: "write history",
            path: path.clone(),
            source: std::io::Error::other(crate::error::chain(&e)),
        })
    }

    /// Replace symlink `name` by one pointing at `<id-hex>` (noted for [`Dest::rollback`]).
    fn swap_link(&self, name: &str, id: &Digest) -> Result<()> {
        let old = fs::read_link(self.root.join(name)).ok();
        self.note(Undo::Link(name.to_string(), old));
        self.put_link(name, Path::new(&id.hex()))
    }

    /// Make symlink `name` point at `target`: temporary link, rename, fsync DEST.
    fn put_link(&self, name: &str, target: &Path) -> Result<()> {
        let tmp = self
            .root
            .join(format!("{LINK_TMP_PREFIX}{name}-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        symlink(target, &tmp).map_err(InitError::local("create symlink", &tmp))?;
        let dst = self.root.join(name);
        fs::rename(&tmp, &dst).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            InitError::Local {
                op: "rename symlink over",
                path: dst.clone(),
                source: e,
            }
        })?;
        self.sync_dir()
    }

    fn sync_dir(&self) -> Result<()> {
        File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(InitError::local("sync", &self.root))
    }

    /// [`Dest::prune_keep`] with [`DEFAULT_KEEP`] (`current` and `previous`).
    pub fn prune(&self) -> Vec<Digest> {
        self.prune_keep(DEFAULT_KEEP)
    }

    /// The trees [`Dest::prune_keep`] keeps: `current`, `previous` (when `n` >= 2), then the most
    /// recently current others, `n` in all (at least `current`).
    pub fn kept(&self, n: usize) -> Vec<Digest> {
        let mut keep: Vec<Digest> = Vec::new();
        let add = |d: Option<Digest>, keep: &mut Vec<Digest>| {
            if let Some(d) = d {
                if !keep.contains(&d) && self.tree(&d).is_dir() {
                    keep.push(d);
                }
            }
        };
        add(self.current(), &mut keep);
        if n >= 2 {
            add(self.previous(), &mut keep);
        }
        for d in self.history().into_iter().rev() {
            if keep.len() >= n {
                break;
            }
            add(Some(d), &mut keep);
        }
        keep
    }

    /// Remove every tree but the last `n` ([`Dest::kept`]; `current` always stays), their stale
    /// manifest records, and the leftovers of killed runs. Returns the ids removed. Errors are
    /// logged, not returned: a failed prune leaves extra files, never a broken install. Only
    /// after a successful run.
    pub fn prune_keep(&self, n: usize) -> Vec<Digest> {
        let mut removed = Vec::new();
        if self.read_only.is_some() {
            return removed;
        }
        let keep = self.kept(n.max(1));
        if n <= 1 && self.previous().is_some() && self.previous() != self.current() {
            // Keeping one tree: `previous` would point at nothing.
            let _ = fs::remove_file(self.root.join(PREVIOUS));
        }
        let Ok(rd) = fs::read_dir(&self.root) else {
            return removed;
        };
        for entry in rd.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if let Ok(id) = format!("sha256:{name}").parse::<Digest>() {
                if keep.contains(&id) {
                    continue;
                }
                pause_point("pruning");
                // Rename first: a tree named by an id must always be complete.
                let trash = self
                    .root
                    .join(format!("{TRASH_PREFIX}{name}-{}", std::process::id()));
                match fs::rename(&path, &trash) {
                    Ok(()) => {
                        self.remove_tree(&trash);
                        removed.push(id);
                    }
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot prune"),
                }
            } else if name.starts_with(TRASH_PREFIX)
                || name.starts_with(LINK_TMP_PREFIX)
                || is_extract_staging(name)
            {
                self.remove_tree(&path);
            }
        }
        // Manifest records of trees that are gone.
        if let Ok(rd) = fs::read_dir(self.root.join(META_DIR)) {
            for entry in rd.flatten() {
                let gone = read_small(&entry.path())
                    .and_then(|s| s.trim().parse::<Digest>().ok())
                    .is_none_or(|id| !self.tree(&id).is_dir());
                if gone {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        removed
    }

    /// Remove staging stores other than `keep` (leftovers of runs for other digests; after a
    /// successful run only).
    pub fn drop_other_staging(&self, keep: Option<&Digest>) {
        if self.read_only.is_some() {
            return;
        }
        let Ok(rd) = fs::read_dir(&self.root) else {
            return;
        };
        let keep = keep.map(|k| format!("{STAGING_PREFIX}{}", k.hex()));
        for entry in rd.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(STAGING_PREFIX) && Some(name) != keep.as_deref() {
                self.remove_tree(&entry.path());
            }
        }
    }

    fn remove_tree(&self, path: &Path) {
        if let Err(e) = self.remove_tree_checked(path) {
            tracing::warn!(error = %e, "cannot remove");
        }
    }

    fn remove_tree_checked(&self, path: &Path) -> std::result::Result<(), String> {
        // Rename first (a tree named by an id must always be complete, even if we are killed
        // while deleting it), then delete.
        let path = match (path.file_name(), fs::symlink_metadata(path)) {
            (Some(name), Ok(m))
                if m.is_dir() && !name.to_string_lossy().starts_with(TRASH_PREFIX) =>
            {
                let trash = self.root.join(format!(
                    "{TRASH_PREFIX}{}-{}",
                    name.to_string_lossy(),
                    std::process::id()
                ));
                match fs::rename(path, &trash) {
                    Ok(()) => trash,
                    Err(_) => path.to_path_buf(),
                }
            }
            _ => path.to_path_buf(),
        };
        let path = path.as_path();
        let r = match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(path),
            Ok(_) => fs::remove_file(path),
            Err(_) => return Ok(()),
        };
        r.map_err(|e| format!("remove {}: {e}", path.display()))
    }
}

/// What [`Dest::install_reusing`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// The tree of this bundle id is installed (now or before).
    Tree(Digest),
    /// Installed files of these layers did not match the new index: nothing was written; fetch
    /// them and install again.
    Rejected(Vec<usize>),
}

/// Why [`Dest::lock`] failed.
enum LockError {
    /// DEST cannot be written by this user: continue read-only.
    NotWritable(String),
    /// Anything else.
    Failed(Box<InitError>),
}

/// A `.meta` record (`sha256:<hex>`, 71 bytes): at most 256 bytes are read.
fn read_small(p: &Path) -> Option<String> {
    let mut buf = Vec::new();
    File::open(p).ok()?.take(256).read_to_end(&mut buf).ok()?;
    String::from_utf8(buf).ok()
}

/// This machine's name, for the lock file.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `bundle::extract` stages in `.<name>.sitebundle-<random>` beside the destination.
fn is_extract_staging(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|rest| rest.split_once(".sitebundle-"))
        .is_some_and(|(hex, _)| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bundle::{BuildOptions, NoProgress};

    fn site(dir: &Path, text: &str) {
        fs::create_dir_all(dir.join("a")).unwrap();
        fs::write(dir.join("index.html"), text).unwrap();
        fs::write(dir.join("a/page.html"), format!("{text} page")).unwrap();
    }

    #[test]
    fn install_activate_prune_keeps_two() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path().join("store")).unwrap();
        let mut reports = Vec::new();
        for v in ["one", "two", "three"] {
            let s = t.path().join(v);
            site(&s, v);
            let o = BuildOptions {
                use_cache: false,
                ..Default::default()
            };
            reports.push(bundle::build(&s, &store, &o, &NoProgress).unwrap());
        }
        let dest = Dest::open(&t.path().join("dest"), DEFAULT_LOCK_WAIT).unwrap();
        for r in &reports {
            let id = dest
                .install(&store, &r.manifest, None, &NoProgress)
                .unwrap();
            assert_eq!(id, r.id);
            dest.activate(&id).unwrap();
            dest.prune();
            assert_eq!(dest.installed_id(&r.manifest), Some(r.id));
        }
        assert_eq!(dest.current(), Some(reports[2].id));
        assert_eq!(dest.previous(), Some(reports[1].id));
        assert!(!dest.tree(&reports[0].id).exists());
        assert_eq!(dest.installed_id(&reports[0].manifest), None);
        let served = fs::read_to_string(t.path().join("dest/current/index.html")).unwrap();
        assert_eq!(served, "three");
        // Rolling back to the previous version is a symlink swap.
        let a = dest.activate(&reports[1].id).unwrap();
        assert!(a.changed);
        assert_eq!(dest.previous(), Some(reports[2].id));
    }

    #[test]
    fn pinned_id_must_match() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path().join("store")).unwrap();
        let s = t.path().join("s");
        site(&s, "x");
        let r = bundle::build(&s, &store, &BuildOptions::default(), &NoProgress).unwrap();
        let dest = Dest::open(&t.path().join("dest"), DEFAULT_LOCK_WAIT).unwrap();
        let err = dest
            .install(&store, &r.manifest, Some(&r.manifest), &NoProgress)
            .unwrap_err();
        assert_eq!(err.exit_status(), crate::error::ExitStatus::Integrity);
        assert!(!dest.tree(&r.id).exists());
    }

    #[test]
    fn staging_names() {
        assert!(is_extract_staging(&format!(
            ".{}.sitebundle-abc",
            "a".repeat(64)
        )));
        assert!(!is_extract_staging(".meta"));
    }
}
