//! `pull`: copy a bundle from a target into the local store, verifying every byte.
//!
//! Blobs are downloaded into temporary files inside the store's blob directory, hashed, and
//! renamed to their digest only when they match; the manifest is stored last, the whole bundle is
//! then verified (every layer's `diff_id`, every file's BLAKE3), and only then recorded in
//! `index.json`. A failed pull leaves at most unreferenced, correct blobs behind.

use bundle::{Digest, Store};
use futures::StreamExt;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::push::manifest_blobs;
use crate::target::{download_blob, Target};

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

/// Resolve `reference` on a target: a manifest digest, a bundle id (looked up among the target's
/// channels), or a channel name.
pub async fn resolve(t: &dyn Target, reference: &str) -> Result<Digest> {
    if let Ok(d) = reference.parse::<Digest>() {
        // A digest is a manifest digest or a bundle id (config digest). On a bucket or directory
        // target a bundle id also names the config blob, so `get_manifest` can succeed with bytes
        // that are not a manifest; a registry may answer 500 rather than 404 for a config digest
        // asked for as a manifest. Either way, fall back to the channels' bundle ids.
        let direct = match t.get_manifest(&d).await {
            Ok(bytes) if bundle::manifest::parse_manifest(&bytes).is_ok() => return Ok(d),
            Ok(_) => None,
            Err(Error::NotFound { .. }) => None,
            Err(e) => Some(e),
        };
        for c in t.list_channels().await? {
            if let Some(r) = t.read_channel(&c).await? {
                if r.id == d {
                    return Ok(r.manifest);
                }
            }
        }
        return Err(direct.unwrap_or_else(|| Error::NotFound {
            target: t.name().to_string(),
            what: format!("bundle {d} (as manifest digest or bundle id of a channel)"),
        }));
    }
    match t.read_channel(reference).await? {
        Some(r) => Ok(r.manifest),
        None => Err(Error::NotFound {
            target: t.name().to_string(),
            what: format!("channel {reference}"),
        }),
    }
}

/// Pull `manifest` from `t` into `store`, tagging it with `tags`.
pub async fn pull(
    t: &dyn Target,
    manifest: &Digest,
    store: &Store,
    tags: &[String],
    jobs: usize,
) -> Result<PullReport> {
    let bytes = t.get_manifest(manifest).await?;
    let blobs = manifest_blobs(t, manifest).await?;
    let dir = store.root().join("blobs/sha256");
    let results: Vec<Result<Option<u64>>> = futures::stream::iter(blobs)
        .map(|(d, size)| {
            let dir = dir.clone();
            let store = store.clone();
            async move {
                if store.has_blob(&d) {
                    return Ok(None);
                }
                let tmp = tempfile::Builder::new()
                    .prefix(".tmp-pull-")
                    .tempfile_in(&dir)
                    .map_err(Error::io("create temporary blob in", &dir))?
                    .into_temp_path();
                download_blob(t, &d, size, &tmp).await?;
                let dest = store.blob_path(&d);
                tmp.persist(&dest)
                    .map_err(|e| Error::io("rename into", &dest)(e.error))?;
                Ok(Some(size))
            }
        })
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    let (mut downloaded, mut skipped, mut total) = (0, 0, 0);
    for r in results {
        match r? {
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
