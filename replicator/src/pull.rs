//! `pull`: copy a bundle from a target into the local store, verifying every byte.
//!
//! Blobs are downloaded into temporary files inside the store's blob directory, hashed, and
//! renamed to their digest only when they match; the manifest is stored last, the whole bundle is
//! then verified (every layer's `diff_id`, every file's BLAKE3), and only then recorded in
//! `index.json`. A failed pull leaves at most unreferenced, correct blobs behind.
//!
//! Bounds ([`crate::net`]): every answer is read within its cap and paced; a config descriptor
//! above [`crate::net::MAX_CONFIG`] is refused before anything is downloaded; the whole pull from
//! one target has a deadline ([`PullOptions::deadline`], `sitebundle pull --timeout`). A local
//! failure (disk full, I/O error, permission denied in the store) stops the pull at once, with
//! every download in flight cancelled, and is reported as such ([`Error::is_local_io`]), never
//! as the target's fault.

use std::time::Duration;

use bundle::{Digest, Store};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::target::{download_blob, Target};

/// Default deadline for one pull from one target.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// How a pull runs.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Blobs downloaded at once.
    pub jobs: usize,
    /// Time allowed for the whole pull (resolving included); `None`: no deadline.
    pub deadline: Option<Duration>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            jobs: crate::push::DEFAULT_JOBS,
            deadline: Some(DEFAULT_DEADLINE),
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    /// Manifest digest.
    pub manifest: Digest,
    /// Bundle id.
    pub id: Digest,
    /// Blobs downloaded.
    pub downloaded: usize,
    /// Blobs already in the store.
    pub skipped: usize,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Files verified.
    pub files: usize,
}

/// Resolve `reference` on a target: a manifest digest or a bundle id (in a bounded number of
/// requests, [`crate::resolve::resolve_digest`]), or a channel name.
pub async fn resolve(t: &dyn Target, reference: &str) -> Result<Digest> {
    Ok(resolve_ref(t, reference).await?.0)
}

/// [`resolve`], with the manifest bytes when the lookup already read them (checked).
async fn resolve_ref(t: &dyn Target, reference: &str) -> Result<(Digest, Option<bytes::Bytes>)> {
    if let Ok(d) = reference.parse::<Digest>() {
        let r = crate::resolve::resolve_digest(t, &d, None).await?;
        return Ok((r.manifest, Some(r.bytes)));
    }
    match t.read_channel(reference).await? {
        Some(r) => Ok((r.manifest, None)),
        None => Err(Error::NotFound {
            target: t.name().to_string(),
            what: format!("channel {reference}"),
        }),
    }
}

/// Pull `manifest` from `t` into `store`, tagging it with `tags` (no deadline; see [`pull_ref`]).
pub async fn pull(
    t: &dyn Target,
    manifest: &Digest,
    store: &Store,
    tags: &[String],
    jobs: usize,
) -> Result<PullReport> {
    pull_manifest(t, manifest, None, store, tags, jobs.max(1)).await
}

/// Resolve `reference` on `t` ([`resolve`]) and pull it, all within `opts.deadline`.
pub async fn pull_ref(
    t: &dyn Target,
    reference: &str,
    store: &Store,
    tags: &[String],
    opts: &PullOptions,
) -> Result<PullReport> {
    let work = async {
        let (m, bytes) = resolve_ref(t, reference).await?;
        pull_manifest(t, &m, bytes, store, tags, opts.jobs.max(1)).await
    };
    match opts.deadline {
        None => work.await,
        Some(d) => tokio::time::timeout(d, work)
            .await
            .map_err(|_| Error::Timeout {
                target: t.name().to_string(),
                what: format!("pull of {reference}"),
                after: d,
                hint: "raise it with --timeout or SITEBUNDLE_TIMEOUT",
            })?,
    }
}

async fn pull_manifest(
    t: &dyn Target,
    manifest: &Digest,
    known: Option<bytes::Bytes>,
    store: &Store,
    tags: &[String],
    jobs: usize,
) -> Result<PullReport> {
    // Bytes from the resolution were checked against `manifest` already: no second request.
    let bytes = match known {
        Some(b) => b,
        None => t.get_manifest(manifest).await?,
    };
    let b = bytes.clone();
    let m = crate::blocking::run(move || bundle::manifest::parse_manifest(&b)).await??;
    // A config is read whole into memory later: refuse an oversized one before downloading it.
    if m.config.size > crate::net::MAX_CONFIG {
        return Err(Error::Corrupt {
            target: t.name().to_string(),
            what: format!("manifest {manifest}"),
            reason: format!(
                "its config descriptor declares {} bytes, above the {} a config may have",
                m.config.size,
                crate::net::MAX_CONFIG
            ),
        });
    }
    let blobs: Vec<(Digest, u64)> = std::iter::once(&m.config)
        .chain(m.layers.iter())
        .map(|d| (d.digest, d.size))
        .collect();
    let dir = store.root().join("blobs/sha256");
    // try_collect stops at the first error and drops the downloads still in flight.
    let results: Vec<Option<u64>> = futures::stream::iter(blobs)
        .map(|(d, size)| {
            let dir = dir.clone();
            let store = store.clone();
            async move {
                if store.has_blob(&d) {
                    return Ok(None);
                }
                // Mode from the umask, like every other blob of the store (not tempfile's 0600).
                let tmp = bundle::store::temp_file_in(&dir, ".tmp-pull-")
                    .map_err(Error::io("create temporary blob in", &dir))?
                    .into_temp_path();
                download_blob(t, &d, size, &tmp).await?;
                let dest = store.blob_path(&d);
                tmp.persist(&dest)
                    .map_err(|e| Error::io("rename into", &dest)(e.error))?;
                Ok::<_, Error>(Some(size))
            }
        })
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    let (mut downloaded, mut skipped, mut total) = (0, 0, 0);
    for r in results {
        match r {
            Some(n) => {
                downloaded += 1;
                total += n;
            }
            None => skipped += 1,
        }
    }
    let store2 = store.clone();
    let manifest = *manifest;
    let tags = tags.to_vec();
    let (id, files) = crate::blocking::run(move || -> Result<(Digest, usize)> {
        let stored = store2.put_blob(&bytes)?;
        if stored != manifest {
            return Err(Error::Bundle(bundle::Error::DigestMismatch {
                what: "manifest".into(),
                expected: manifest,
                found: stored,
            }));
        }
        let b = bundle::Bundle::open(&store2, &manifest)?;
        let rep = bundle::verify(&store2, &b, &bundle::NoProgress)?;
        store2.add_manifest(manifest, bytes.len() as u64, b.id(), &tags)?;
        Ok((b.id(), rep.files))
    })
    .await??;
    Ok(PullReport {
        manifest,
        id,
        downloaded,
        skipped,
        bytes: total,
        files,
    })
}
