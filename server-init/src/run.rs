//! One site: resolve what to install, fetch it, install it, swap `current`.
//!
//! Order of work, and why:
//! 1. A pinned digest already installed as a complete tree is activated (if needed) and the run
//!    ends: no network, no origin needs to be up (a restarted pod starts instantly).
//! 2. A channel is resolved once, on the first origin that answers; from then on only its digest
//!    is used. A pinned digest is never replaced by a channel.
//! 3. Blobs are fetched into `DEST/.staging-<manifest>/` ([`crate::fetch`]), then
//!    [`install::Dest::install`] extracts and verifies into `DEST/<id>/`, then `current` swaps,
//!    then older trees are pruned (the previous one is kept for rollback).

use std::path::PathBuf;
use std::sync::Arc;

use bundle::Digest;

use crate::error::{InitError, Result};
use crate::fetch::{self, Origin, Timeouts};
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
    dest.prune();
    Ok(Some(Outcome {
        id,
        manifest,
        changed: a.changed,
        previous: a.previous,
        origin: None,
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
        let (d, dest) = (*d, dest.clone());
        if let Some(o) = blocking(move || already_installed(&dest, &d, None)).await? {
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
            let (m, id, d) = (rec.manifest, rec.id, dest.clone());
            if let Some(o) = blocking(move || already_installed(&d, &m, Some(m))).await? {
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
    let fetched = fetch::fetch(&origins, &key, &store, req.timeouts).await?;
    let origin = fetched.origin.clone();
    let manifest = fetched.manifest;
    // A pinned digest that was not a manifest digest was a bundle id: the install must be it.
    let expected_id = expected_id.or((manifest != key).then_some(key));
    blocking(move || {
        pause_point("fetched");
        let started = std::time::Instant::now();
        let id = dest.install(&store, &manifest, expected_id.as_ref(), &bundle::NoProgress)?;
        tracing::info!(id = %id, manifest = %manifest, ms = started.elapsed().as_millis() as u64, "extracted and verified");
        pause_point("extracted");
        let a = dest.activate(&id)?;
        tracing::info!(id = %id, previous = %show(a.previous), link = %dest.root().join(install::CURRENT).display(), "current swapped");
        pause_point("current-swapped");
        dest.commit();
        let pruned = dest.prune();
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
        })
    })
    .await
}
