//! Installing a bundle under DEST, atomically, keeping the previous version for rollback.
//!
//! ## Layout of DEST
//! ```text
//! DEST/
//!   current -> <id-hex>          symlink; the web server's root is DEST/current
//!   previous -> <id-hex>         the version before (instant rollback, never pruned)
//!   <id-hex>/                    complete, verified trees, named by bundle id
//!   .meta/<manifest-hex>         "sha256:<id-hex>": which bundle a manifest digest installed
//!   .staging-<manifest-hex>/     blob staging store (an OCI layout) while fetching
//!   .<id-hex>.sitebundle-*/      `bundle::extract`'s own staging while extracting
//!   .trash-*                     trees being removed
//!   .lock                        flock: one installer at a time per DEST
//! ```
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

use std::fs::{self, File};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use bundle::{Bundle, Digest, ExtractOptions, Progress, Store};

use crate::error::{InitError, Result};

/// Name of the symlink the web server serves.
pub const CURRENT: &str = "current";
/// Name of the symlink to the version before `current`.
pub const PREVIOUS: &str = "previous";
const META_DIR: &str = ".meta";
const LOCK_FILE: &str = ".lock";
const STAGING_PREFIX: &str = ".staging-";
const TRASH_PREFIX: &str = ".trash-";
const LINK_TMP_PREFIX: &str = ".link-";

/// Test hook: `SITEBUNDLE_INIT_PAUSE_AT=<step>` makes the installer log `pause point <step>` and
/// sleep for a minute at that step, so a test can SIGKILL it at a precise point. Steps:
/// `fetched`, `extracted`, `previous-swapped`, `current-swapped`, `pruning`. Has no effect when
/// unset; it never changes what is written.
pub const PAUSE_ENV: &str = "SITEBUNDLE_INIT_PAUSE_AT";

/// Sleep at `step` if the test hook asks for it.
pub fn pause_point(step: &str) {
    if std::env::var(PAUSE_ENV).ok().as_deref() == Some(step) {
        tracing::warn!(step, "pause point {step}");
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// An installation directory, locked for this process.
#[derive(Debug)]
pub struct Dest {
    root: PathBuf,
    _lock: File,
}

/// What [`Dest::activate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activation {
    /// What `current` pointed at before.
    pub previous: Option<Digest>,
    /// False when `current` already pointed at the id.
    pub changed: bool,
}

impl Dest {
    /// Open DEST (creating it if needed) and take its lock, waiting for another installer.
    pub fn open(root: &Path) -> Result<Dest> {
        fs::create_dir_all(root).map_err(InitError::local("create directory", root))?;
        let lock_path = root.join(LOCK_FILE);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(InitError::local("create", &lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            InitError::Local {
                op: "lock",
                path: lock_path.clone(),
                source: e.into(),
            }
        })?;
        Ok(Dest {
            root: root.to_path_buf(),
            _lock: lock,
        })
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
        let id: Digest = fs::read_to_string(meta).ok()?.trim().parse().ok()?;
        self.tree(&id).is_dir().then_some(id)
    }

    /// The blob staging store for a fetch of `manifest` (kept across a killed run, see module doc).
    pub fn staging_store(&self, key: &Digest) -> Result<Store> {
        let dir = self.root.join(format!("{STAGING_PREFIX}{}", key.hex()));
        Store::open(&dir).map_err(|e| InitError::Bundle {
            digest: *key,
            source: e,
        })
    }

    /// Remove the staging store for `key`.
    pub fn drop_staging(&self, key: &Digest) {
        let dir = self.root.join(format!("{STAGING_PREFIX}{}", key.hex()));
        self.remove_tree(&dir);
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
            bundle::extract(
                store,
                &bundle,
                &tree,
                ExtractOptions {
                    replace: false,
                    sync: true,
                },
                progress,
            )
            .map_err(|e| InitError::from_bundle(id, e))?;
        }
        self.record_manifest(manifest, &id)?;
        self.sync_dir()?;
        Ok(id)
    }

    fn record_manifest(&self, manifest: &Digest, id: &Digest) -> Result<()> {
        let dir = self.root.join(META_DIR);
        fs::create_dir_all(&dir).map_err(InitError::local("create directory", &dir))?;
        let path = dir.join(manifest.hex());
        bundle::store::write_atomic(&path, id.to_string().as_bytes()).map_err(|e| {
            InitError::Bundle {
                digest: *manifest,
                source: e,
            }
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
        if let Some(old) = old {
            self.swap_link(PREVIOUS, &old)?;
        }
        pause_point("previous-swapped");
        self.swap_link(CURRENT, id)?;
        Ok(Activation {
            previous: old,
            changed: true,
        })
    }

    /// Replace symlink `name` by one pointing at `<id-hex>`: temporary link, rename, fsync DEST.
    fn swap_link(&self, name: &str, id: &Digest) -> Result<()> {
        let tmp = self
            .root
            .join(format!("{LINK_TMP_PREFIX}{name}-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        symlink(id.hex(), &tmp).map_err(InitError::local("create symlink", &tmp))?;
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

    /// Remove every tree but `current` and `previous`, their stale manifest records, and the
    /// leftovers of killed runs. Returns the ids removed. Errors are logged, not returned: a
    /// failed prune leaves extra files, never a broken install.
    pub fn prune(&self) -> Vec<Digest> {
        let keep: Vec<Digest> = [self.current(), self.previous()]
            .into_iter()
            .flatten()
            .collect();
        let mut removed = Vec::new();
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
                let gone = fs::read_to_string(entry.path())
                    .ok()
                    .and_then(|s| s.trim().parse::<Digest>().ok())
                    .is_none_or(|id| !self.tree(&id).is_dir());
                if gone {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        removed
    }

    /// Remove staging stores other than `keep` (leftovers of runs for other digests).
    pub fn drop_other_staging(&self, keep: Option<&Digest>) {
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
        let r = match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(path),
            Ok(_) => fs::remove_file(path),
            Err(_) => return,
        };
        if let Err(e) = r {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove");
        }
    }
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
        let dest = Dest::open(&t.path().join("dest")).unwrap();
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
        let dest = Dest::open(&t.path().join("dest")).unwrap();
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
