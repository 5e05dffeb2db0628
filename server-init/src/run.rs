//! One site: resolve what to install, fetch it, install it, swap `current`.
//!
//! Order of work, and why:
//! 1. A pinned digest already installed as a complete tree is activated (if needed) and the run
//!    ends: no network, no origin needs to be up (a restarted pod starts instantly).
//! 2. A channel is resolved once, on the first origin that answers; from then on only its digest
//!    is used. A pinned digest is never replaced by a channel.
//! 3. The manifest, config and layer 0 (the index) are fetched into `DEST/.staging-<manifest>/`
//!    ([`crate::fetch`]); the bundle is opened (manifest → config → index, all checked), and the
//!    layers the `current` tree already holds are found ([`bundle::reuse::plan`]: every file of
//!    the layer checked against the new index). Only the other layers are fetched
//!    ([`fetch::Select::Layers`]). Then [`install::Dest::install_reusing`] extracts and verifies
//!    into `DEST/<id>/`, linking the reused files from the current tree and checking each again;
//!    a file that no longer matches makes its layers fetched and the extraction start over. A
//!    bundle that cannot be opened from its layer 0 alone (a re-compressed copy without the index
//!    trailer) is fetched whole. Then `current` swaps, then older trees are pruned (the last
//!    [`Request::keep`] are kept for rollback).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use bundle::{Bundle, Digest, Store};

use crate::error::{InitError, Result};
use crate::fetch::{self, Origin, Select, Timeouts};
use crate::install::{self, pause_point, Dest};

/// What to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// A bundle id or manifest digest, pinned.
    Digest(Digest),
    /// A channel, resolved once.
    Channel(String),
}

/// One install request.
#[derive(Debug, Clone)]
pub struct Request {
    /// What to install.
    pub want: Want,
    /// Origin URLs, in order.
    pub origins: Vec<String>,
    /// Installation directory.
    pub dest: PathBuf,
    /// Per-origin limits.
    pub timeouts: Timeouts,
    /// Trees kept on disk after a successful run (`current` included; at least 1).
    pub keep: usize,
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// Bundle id now current.
    pub id: Digest,
    /// Manifest digest, when known (always after a fetch or a channel resolution).
    pub manifest: Option<Digest>,
    /// False when it was already current.
    pub changed: bool,
    /// The bundle that was current before, if any.
    pub previous: Option<Digest>,
    /// The origin the bundle came from (None: already installed).
    pub origin: Option<String>,
    /// Bytes downloaded by this run (manifest and blobs; 0 when nothing was fetched).
    pub fetched_bytes: u64,
    /// Layers downloaded by this run.
    pub layers_fetched: usize,
    /// Layers whose files were taken from the installed tree instead (checked against the index).
    pub layers_reused: usize,
}

/// A digest or "none", for logs.
pub fn show(d: Option<Digest>) -> String {
    d.map_or_else(|| "none".to_string(), |d| d.to_string())
}

/// Parse a user-given digest (`sha256:<64 hex>`).
pub fn parse_digest(s: &str) -> Result<Digest> {
    s.trim()
        .parse()
        .map_err(|e: bundle::Error| InitError::Usage(format!("--digest: {e}")))
}

/// Open every origin URL (parsing errors are usage errors, before any network call).
pub fn open_origins(urls: &[String]) -> Result<Vec<Origin>> {
    if urls.is_empty() {
        return Err(InitError::Usage(
            "no origin given: pass --origin URL (or SITEBUNDLE_ORIGINS)".into(),
        ));
    }
    urls.iter()
        .map(|u| {
            let target = fetch::open_target(u)?;
            Ok(Origin {
                name: target.name().to_string(),
                target,
            })
        })
        .collect()
}

/// Blocking part on the blocking pool; DEST locks and `bundle` are synchronous.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| InitError::Usage(format!("internal: task failed: {e}")))?
}

/// If `digest` is installed under `dest`, make it current and return the outcome.
fn already_installed(
    dest: &Dest,
    digest: &Digest,
    manifest: Option<Digest>,
    keep: usize,
) -> Result<Option<Outcome>> {
    let Some(id) = dest.installed_id(digest) else {
        return Ok(None);
    };
    let a = dest.activate(&id)?;
    if a.changed {
        tracing::info!(id = %id, previous = %show(a.previous), "current swapped to installed tree");
    } else if dest.read_only().is_some() {
        tracing::info!(id = %id, "already installed and current (DEST is read-only); nothing to do");
    } else {
        tracing::info!(id = %id, "already installed and current; nothing to do");
    }
    dest.commit();
    // A success: now (only now) the leftovers of killed runs go, and the pruning of a run
    // killed after its swap is finished.
    dest.drop_other_staging(None);
    // Also finishes the pruning of a run killed after its swap (writes nothing when there is
    // nothing to remove, so a no-change pass stays read-only).
    dest.prune_keep(keep);
    Ok(Some(Outcome {
        id,
        manifest,
        changed: a.changed,
        previous: a.previous,
        origin: None,
        fetched_bytes: 0,
        layers_fetched: 0,
        layers_reused: 0,
    }))
}

/// Install one site as asked. DEST stays locked for the whole run, so two installers on one
/// DEST (a sync sidecar and a manual run) never see each other's staging. On failure, what the
/// run did to DEST is undone ([`Dest::rollback`]).
pub async fn install_one(req: Request) -> Result<Outcome> {
    let (dd, wait) = (req.dest.clone(), req.timeouts.lock);
    let dest = Arc::new(blocking(move || Dest::open(&dd, wait)).await?);
    match install_locked(&req, dest.clone()).await {
        Ok(o) => Ok(o),
        Err(e) => {
            let d = dest.clone();
            let e = blocking(move || Ok(d.rollback(e)))
                .await
                .unwrap_or_else(|e| e);
            drop(dest);
            Err(e)
        }
    }
}

async fn install_locked(req: &Request, dest: Arc<Dest>) -> Result<Outcome> {
    if let Want::Digest(d) = &req.want {
        let (d, dest, keep) = (*d, dest.clone(), req.keep);
        if let Some(o) = blocking(move || already_installed(&dest, &d, None, keep)).await? {
            return Ok(o);
        }
    }
    if let (Some(reason), Want::Digest(d)) = (dest.read_only(), &req.want) {
        return Err(InitError::ReadOnlyDest {
            path: req.dest.clone(),
            reason: format!("{d} is not installed there, and nothing can be written: {reason}"),
        });
    }
    let origins = open_origins(&req.origins)?;
    let (manifest, expected_id) = match &req.want {
        Want::Digest(d) => (*d, None),
        Want::Channel(c) => {
            let rec = fetch::resolve_channel(&origins, c, req.timeouts).await?;
            let (m, id, d, keep) = (rec.manifest, rec.id, dest.clone(), req.keep);
            if let Some(o) = blocking(move || already_installed(&d, &m, Some(m), keep)).await? {
                return Ok(o);
            }
            if let Some(reason) = dest.read_only() {
                return Err(InitError::ReadOnlyDest {
                    path: req.dest.clone(),
                    reason: format!(
                        "channel {c} names {m}, which is not installed there, and nothing can be \
                         written: {reason}"
                    ),
                });
            }
            (m, Some(id))
        }
    };
    // Staging is keyed by what was asked, so a re-run after a kill resumes in the same store.
    let key = manifest;
    let d = dest.clone();
    let store = blocking(move || d.staging_store(&key)).await?;
    let store = Arc::new(store);
    // 1. Manifest, config, layer 0: enough to open the bundle and see what is already here.
    let sk =
        fetch::fetch_select(&origins, &key, &store, req.timeouts, Select::Skeleton, None).await?;
    let (origin, manifest) = (sk.origin.clone(), sk.manifest);
    // The origin that served the skeleton is tried first for the layers: the ones before it in
    // the list already failed this run (down, slow), and would cost their timeout again.
    let mut origins = origins;
    if let Some(i) = origins.iter().position(|o| o.name == origin) {
        origins.rotate_left(i);
    }
    let mut fetched_bytes = sk.bytes;
    let mut layers_fetched = sk.blobs.saturating_sub(1);
    // A pinned digest that was not a manifest digest was a bundle id: the install must be it.
    let expected_id = expected_id.or((manifest != key).then_some(key));
    let (d, st, mb) = (dest.clone(), store.clone(), sk.manifest_bytes.clone());
    let plan = blocking(move || Ok(plan_reuse(&d, &st, &mb))).await?;
    let (mut reuse, n_layers) = match plan {
        Some((tree, layers, n)) => (Some((tree, layers)), n),
        None => (None, 0),
    };
    let mut select: BTreeSet<usize> = (1..n_layers)
        .filter(|k| !reuse.as_ref().is_some_and(|(_, r)| r.contains(k)))
        .collect();
    loop {
        // 2. The layers not taken from the installed tree (all of them without a plan).
        let f = match &reuse {
            Some(_) => {
                fetch::fetch_select(
                    &origins,
                    &manifest,
                    &store,
                    req.timeouts,
                    Select::Layers(&select),
                    Some(&sk.manifest_bytes),
                )
                .await?
            }
            None => {
                fetch::fetch_select(
                    &origins,
                    &manifest,
                    &store,
                    req.timeouts,
                    Select::All,
                    Some(&sk.manifest_bytes),
                )
                .await?
            }
        };
        fetched_bytes += f.bytes;
        layers_fetched += f.blobs;
        // 3. Extract (reusing), verify, swap.
        let (d, st, ru) = (dest.clone(), store.clone(), reuse.clone());
        let installed = blocking(move || {
            pause_point("fetched");
            let started = std::time::Instant::now();
            let r = ru.as_ref().map(|(tree, layers)| bundle::reuse::Reuse {
                tree: tree.as_path(),
                layers: layers.clone(),
            });
            let out = d.install_reusing(&st, &manifest, expected_id.as_ref(), r.as_ref(), &bundle::NoProgress)?;
            if let install::Installed::Tree(id) = &out {
                tracing::info!(id = %id, manifest = %manifest, ms = started.elapsed().as_millis() as u64, reused_layers = r.as_ref().map_or(0, |r| r.layers.len()), "extracted and verified");
            }
            Ok(out)
        })
        .await?;
        match installed {
            install::Installed::Tree(id) => {
                let layers_reused = reuse.as_ref().map_or(0, |(_, l)| l.len());
                let keep = req.keep;
                return blocking(move || {
                    pause_point("extracted");
                    let a = dest.activate(&id)?;
                    tracing::info!(id = %id, previous = %show(a.previous), link = %dest.root().join(install::CURRENT).display(), "current swapped");
                    pause_point("current-swapped");
                    dest.commit();
                    let pruned = dest.prune_keep(keep);
                    if !pruned.is_empty() {
                        tracing::info!(removed = %pruned.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","), "pruned old trees");
                    }
                    dest.drop_staging(&key);
                    dest.drop_other_staging(None);
                    Ok(Outcome {
                        id,
                        manifest: Some(manifest),
                        changed: a.changed,
                        previous: a.previous,
                        origin: Some(origin),
                        fetched_bytes,
                        layers_fetched,
                        layers_reused,
                    })
                })
                .await;
            }
            install::Installed::Rejected(bad) => {
                // Installed files changed since the plan (or were tampered with): never trusted,
                // their layers are fetched; the set of reused layers only shrinks, so this ends.
                tracing::warn!(layers = ?bad, "installed files do not match the new index: fetching those layers");
                if let Some((_, layers)) = reuse.as_mut() {
                    for k in &bad {
                        layers.remove(k);
                    }
                }
                select = bad.into_iter().collect();
                if reuse.as_ref().is_some_and(|(_, l)| l.is_empty()) {
                    reuse = None;
                }
            }
        }
    }
}

/// Which layers of the bundle with manifest bytes `manifest_bytes` (config and layer 0 staged in
/// `store`) the `current` tree of `dest` holds: the tree, those layers, and the layer count.
/// `None` (fetch everything) when there is no current tree, or the bundle cannot be opened from
/// layer 0 alone (no index trailer: a re-compressed copy), or nothing is reusable; the full
/// fetch then reports any real fault.
fn plan_reuse(
    dest: &Dest,
    store: &Store,
    manifest_bytes: &[u8],
) -> Option<(PathBuf, BTreeSet<usize>, usize)> {
    let bundle = match Bundle::from_manifest_bytes(store, manifest_bytes) {
        Ok(b) => b,
        Err(e) => {
            tracing::info!(reason = %crate::error::chain(&e), "bundle not readable from layer 0 alone: fetching every layer");
            return None;
        }
    };
    let n = bundle.meta.manifest.layers.len();
    let cur = dest.current()?;
    let tree = dest.tree(&cur);
    if cur == bundle.id() {
        return None;
    }
    let started = std::time::Instant::now();
    let layers = bundle::reuse::plan(store, &bundle, &tree, |k| {
        store.has_blob(&bundle.meta.manifest.layers[k].digest)
    });
    match layers {
        Ok(l) => {
            tracing::info!(from = %cur, reusable = l.len(), layers = n, ms = started.elapsed().as_millis() as u64, "delta plan");
            (!l.is_empty()).then_some((tree, l, n))
        }
        Err(e) => {
            tracing::info!(reason = %crate::error::chain(&e), "delta plan failed: fetching every layer");
            None
        }
    }
}
