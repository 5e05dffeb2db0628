//! Resolving a digest a user was shown, on any target, in a bounded number of requests.
//!
//! A user holds one of two digests of a bundle (`spec/format.md` §2): the **manifest digest**
//! (`push`, `inspect`, registries and Kubernetes image references) or the **bundle id** (the
//! config digest, content-only: what `build` prints and a pipeline compares). Every reader
//! (`sitebundle-init --digest`, `pull`, `status --digest`, `rollback --digest`) accepts either.
//!
//! ## The id record
//!
//! A push records, on every target and **before any channel moves**, which manifest carries the
//! bundle id ([`Target::record_id`], called by [`crate::push`] right after the manifest):
//! - object stores, directories (and HTTP origins serving them): the object
//!   `ids/sha256/<hex of the id>.json`, `{"manifest","id","size","compression"}` ([`IdRecord`]);
//! - registries: the tag `sitebundle-id-<hex of the id>` ([`id_tag`]) on that manifest.
//!
//! One small object per id, not an entry in `index.json`: `index.json` is read whole (capped at
//! 4 MiB, so a few thousand bundles would make a target unreadable), and every push would rewrite
//! it under compare-and-swap, so concurrent pushes of *different* bundles would contend on it.
//!
//! ## When several manifests carry one id: zstd wins
//!
//! The zstd and gzip builds of one site share the bundle id (and two zstd builds made by
//! different zstd versions can differ in their bytes). A record names one manifest, chosen by
//! [`replaces`]: a manifest whose layers are all zstd replaces any record; any other manifest
//! replaces only a record that is not zstd. Within one encoding the most recent push wins, so a
//! push always leaves the id naming a manifest it just completed. Why zstd: sitebundle's readers
//! read both, zstd is smaller and faster to decode, and the rule depends on which manifests are
//! on a target, not on the order they arrived in, so two targets holding both builds agree (which
//! `rollback --digest ID` on several targets needs). gzip exists for runtimes without zstd; those
//! address the gzip manifest by its own digest. The local store applies the same rule
//! (`bundle::Store::resolve`).
//!
//! ## Lookup order and request bound ([`resolve_digest`])
//!
//! 1. the id record of `D` (1 request; on a registry the tag answer *is* the manifest);
//! 2. `D` as a manifest digest (1 request);
//! 3. targets written before id records existed: the channel entries of `index.json`, each
//!    annotated `dev.sitebundle.id` (1 request, object stores, directories and HTTP origins only).
//!
//! Then the manifest named by a record is fetched (1 request). So a digest resolves in at most
//! **2 requests on a registry** and **4 on any other target** (2 unless the target predates id
//! records), whatever the number of channels or bundles there; nothing lists or reads every
//! channel. Every answer is checked: the manifest against its digest, and its config digest
//! against the bundle id asked for.

use std::time::Duration;

use bundle::manifest::{Manifest, KEY_REF_NAME, MEDIA_LAYER_GZIP, MEDIA_LAYER_ZSTD};
use bundle::store::{LayoutIndex, KEY_ID};
use bundle::Digest;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{chain, Error, Result};
use crate::target::Target;

/// Tag prefix of the id record on registries (under the reserved `sitebundle-` prefix).
pub const ID_TAG_PREFIX: &str = "sitebundle-id-";

/// Directory of the id records on object stores and directories.
pub const ID_RECORD_DIR: &str = "ids/sha256";

/// The registry tag recording which manifest carries bundle id `id`.
pub fn id_tag(id: &Digest) -> String {
    format!("{ID_TAG_PREFIX}{}", id.hex())
}

/// The key (under a target's prefix) of the id record of `id` on object stores and directories.
pub fn id_record_key(id: &Digest) -> String {
    format!("{ID_RECORD_DIR}/{}.json", id.hex())
}

/// How a manifest's layers are encoded, for the preference rule ([`replaces`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Every layer is `tar+zstd`.
    Zstd,
    /// Every layer is `tar+gzip`.
    Gzip,
    /// Anything else: uncompressed or mixed layers (a copy re-compressed by another tool).
    Other,
}

impl Encoding {
    /// The encoding of a manifest's layers.
    pub fn of(m: &Manifest) -> Encoding {
        let all = |mt: &str| !m.layers.is_empty() && m.layers.iter().all(|l| l.media_type == mt);
        if all(MEDIA_LAYER_ZSTD) {
            Encoding::Zstd
        } else if all(MEDIA_LAYER_GZIP) {
            Encoding::Gzip
        } else {
            Encoding::Other
        }
    }
}

/// The preference rule: does a manifest encoded `new` replace a record naming one encoded
/// `current`? zstd replaces anything; anything else replaces only what is not zstd (so within
/// one encoding, the most recent push wins). See the module docs for why.
pub fn replaces(current: Encoding, new: Encoding) -> bool {
    current != Encoding::Zstd || new == Encoding::Zstd
}

/// The id record kept on object stores and directories (`ids/sha256/<hex>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRecord {
    /// The manifest that carries the id.
    pub manifest: Digest,
    /// The bundle id (its config digest).
    pub id: Digest,
    /// Manifest size in bytes.
    pub size: u64,
    /// Its layers' encoding.
    pub compression: Encoding,
}

impl IdRecord {
    /// The record for manifest `manifest` whose bytes are `bytes` (parsed and checked here).
    pub fn of_manifest(manifest: Digest, bytes: &[u8]) -> Result<IdRecord> {
        let m = bundle::manifest::parse_manifest(bytes)?;
        Ok(IdRecord {
            manifest,
            id: m.config.digest,
            size: bytes.len() as u64,
            compression: Encoding::of(&m),
        })
    }

    /// Should this record be replaced by `new` (same id)? Not when it already names `new`'s
    /// manifest (nothing to write), nor when the rule keeps it.
    pub fn yields_to(&self, new: &IdRecord) -> bool {
        self.manifest != new.manifest && replaces(self.compression, new.compression)
    }
}

/// What a target's id record names ([`Target::lookup_id`]).
#[derive(Debug, Clone)]
pub struct Found {
    /// The manifest digest recorded.
    pub manifest: Digest,
    /// Its bytes, when the lookup already returned them (a registry tag), checked against
    /// `manifest`.
    pub bytes: Option<Bytes>,
}

/// The manifest named by the first channel entry of an OCI layout `index.json` annotated
/// `dev.sitebundle.id = id` (targets written before id records: step 3 of the lookup).
pub fn id_in_layout_index(
    index_json: &[u8],
    id: &Digest,
) -> std::result::Result<Option<Digest>, String> {
    let idx: LayoutIndex = serde_json::from_slice(index_json).map_err(|e| e.to_string())?;
    let want = id.to_string();
    let mut hits: Vec<(&str, Digest)> = idx
        .manifests
        .iter()
        .filter(|d| d.annotations.get(KEY_ID) == Some(&want))
        .map(|d| {
            (
                d.annotations.get(KEY_REF_NAME).map_or("", String::as_str),
                d.digest,
            )
        })
        .collect();
    // Deterministic whatever order the writer left: by channel name.
    hits.sort();
    Ok(hits.first().map(|(_, d)| *d))
}

/// How a digest was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// It is a manifest digest.
    Manifest,
    /// A bundle id, through its id record.
    IdRecord,
    /// A bundle id, through a channel entry of `index.json` (a target written before id records).
    ChannelIndex,
}

/// A digest resolved on one target: the manifest, its checked bytes, and the bundle id.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Manifest digest.
    pub manifest: Digest,
    /// Bundle id (the manifest's config digest).
    pub id: Digest,
    /// The manifest bytes (checked against `manifest`, parsed as a sitebundle manifest).
    pub bytes: Bytes,
    /// How it was found.
    pub via: Via,
}

/// Run `f` within `step` (if any): one request of the lookup.
async fn step<T>(
    t: &dyn Target,
    what: &str,
    limit: Option<Duration>,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match limit {
        None => f.await,
        Some(d) => tokio::time::timeout(d, f)
            .await
            .map_err(|_| Error::Timeout {
                target: t.name().to_string(),
                what: what.to_string(),
                after: d,
                hint: "raise it with --connect-timeout or SITEBUNDLE_CONNECT_TIMEOUT",
            })?,
    }
}

/// Parse `bytes` as the manifest `manifest` and check that it carries bundle id `id` (when given).
fn checked(
    t: &dyn Target,
    manifest: Digest,
    bytes: Bytes,
    id: Option<&Digest>,
    via: Via,
) -> Result<Resolved> {
    let m = bundle::manifest::parse_manifest(&bytes)?;
    if let Some(id) = id {
        if m.config.digest != *id {
            return Err(Error::DigestMismatch {
                target: t.name().to_string(),
                what: format!("bundle id of manifest {manifest} (named by the id record of {id})"),
                expected: *id,
                found: m.config.digest,
            });
        }
    }
    Ok(Resolved {
        manifest,
        id: m.config.digest,
        bytes,
        via,
    })
}

/// Resolve `d`, a manifest digest or a bundle id, on `t` (module docs: at most 2 requests on a
/// registry, 4 elsewhere). `step_timeout` bounds each request. A missing bundle is
/// [`Error::NotFound`]; an answer that breaks the digest chain is an integrity error.
pub async fn resolve_digest(
    t: &dyn Target,
    d: &Digest,
    step_timeout: Option<Duration>,
) -> Result<Resolved> {
    // A failure other than "not there" is kept and reported if nothing else finds the bundle.
    let mut first_err: Option<Error> = None;
    let keep = |e: Error, first: &mut Option<Error>| {
        if first.is_none() {
            *first = Some(e);
        }
    };
    // 1. The id record.
    match step(
        t,
        &format!("read the id record of {d}"),
        step_timeout,
        t.lookup_id(d),
    )
    .await
    {
        Ok(Some(found)) => {
            let bytes = match found.bytes {
                Some(b) => Ok(b),
                None => {
                    step(
                        t,
                        &format!("get manifest {}", found.manifest),
                        step_timeout,
                        t.get_manifest(&found.manifest),
                    )
                    .await
                }
            };
            // A record naming a missing or foreign manifest is kept as the error, and the
            // other steps still get their chance.
            match bytes.and_then(|b| checked(t, found.manifest, b, Some(d), Via::IdRecord)) {
                Ok(r) => return Ok(r),
                Err(e) if e.is_local_io() => return Err(e),
                Err(e) => keep(e, &mut first_err),
            }
        }
        Ok(None) => {}
        Err(e) if e.is_local_io() => return Err(e),
        Err(e) => keep(e, &mut first_err),
    }
    // 2. A manifest digest. On a bucket or directory a bundle id also names the config blob, so
    // bytes that do not parse as a manifest mean "not a manifest digest", not corruption; a
    // registry may answer 500 rather than 404 for a digest that is not a manifest.
    match step(
        t,
        &format!("get manifest {d}"),
        step_timeout,
        t.get_manifest(d),
    )
    .await
    {
        Ok(bytes) if bundle::manifest::parse_manifest(&bytes).is_ok() => {
            return checked(t, *d, bytes, None, Via::Manifest)
        }
        Ok(_) | Err(Error::NotFound { .. }) => {}
        Err(e) if e.is_local_io() => return Err(e),
        Err(e) => keep(e, &mut first_err),
    }
    // 3. Targets written before id records: one read of index.json.
    match step(t, "read index.json", step_timeout, t.lookup_id_legacy(d)).await {
        Ok(Some(m)) => {
            let bytes = step(
                t,
                &format!("get manifest {m}"),
                step_timeout,
                t.get_manifest(&m),
            )
            .await?;
            return checked(t, m, bytes, Some(d), Via::ChannelIndex);
        }
        Ok(None) => {}
        Err(e) if e.is_local_io() => return Err(e),
        Err(e) => keep(e, &mut first_err),
    }
    Err(first_err.unwrap_or_else(|| Error::NotFound {
        target: t.name().to_string(),
        what: format!(
            "bundle {d} (neither a manifest here nor a bundle id recorded here; a bundle pushed \
             by a sitebundle older than its id records is found by id once pushed again)"
        ),
    }))
}

/// Record the id of `manifest` (whose bytes are `bytes`) on `t`: the tail of phase 1 of a push,
/// and of every channel move to a manifest pushed before id records existed.
pub async fn record(t: &dyn Target, manifest: &Digest, bytes: &Bytes) -> Result<()> {
    t.record_id(manifest, bytes).await
}

/// Record `manifest`'s id on every target (reading the manifest from each), as promote and
/// rollback do before they move a channel. A failure anywhere is [`Error::Incomplete`]: nothing
/// has moved yet.
pub async fn record_all(
    targets: &[std::sync::Arc<dyn Target>],
    manifest: &Digest,
    attempts: u32,
) -> Result<()> {
    let res = futures::future::join_all(targets.iter().map(|t| async move {
        crate::push::with_retry(attempts, "record bundle id", || async {
            let bytes = t.get_manifest(manifest).await?;
            t.record_id(manifest, &bytes).await
        })
        .await
    }))
    .await;
    let failures: Vec<(String, String)> = targets
        .iter()
        .zip(res)
        .filter_map(|(t, r)| r.err().map(|e| (t.name().to_string(), chain(&e))))
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Incomplete { failures })
    }
}

/// Where a digest stands on one target (`sitebundle status --digest`).
#[derive(Debug, Clone, Serialize)]
pub struct Located {
    /// The target.
    pub target: String,
    /// The manifest it resolved to (absent when it did not resolve).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Digest>,
    /// Its bundle id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Digest>,
    /// How it resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
    /// Every blob present.
    pub complete: bool,
    /// Every blob hashed to its digest (only when asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// What is wrong, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Resolve `d` on every target and check the bundle is complete (and, with `verify`, that every
/// blob hashes to its digest) there.
pub async fn locate(
    targets: &[std::sync::Arc<dyn Target>],
    d: &Digest,
    verify: bool,
    jobs: usize,
) -> Vec<Located> {
    futures::future::join_all(targets.iter().map(|t| async move {
        let t = t.as_ref();
        let mut out = Located {
            target: t.name().to_string(),
            manifest: None,
            id: None,
            via: None,
            complete: false,
            verified: None,
            problem: None,
        };
        let r = match resolve_digest(t, d, None).await {
            Ok(r) => r,
            Err(e) => {
                out.problem = Some(chain(&e));
                return out;
            }
        };
        out.manifest = Some(r.manifest);
        out.id = Some(r.id);
        out.via = Some(r.via);
        match crate::push::missing_blobs(t, &r.manifest, jobs).await {
            Ok(m) if m.is_empty() => out.complete = true,
            Ok(m) => out.problem = Some(format!("{} blob(s) missing, first {}", m.len(), m[0])),
            Err(e) => out.problem = Some(chain(&e)),
        }
        if verify && out.complete {
            out.verified = Some(
                match crate::status::verify_blobs(t, &r.manifest, jobs).await {
                    Ok(()) => true,
                    Err(e) => {
                        out.problem = Some(chain(&e));
                        false
                    }
                },
            );
        }
        out
    }))
    .await
}

/// The one manifest `d` names on every target, for an operation that moves a channel to it
/// (`rollback --digest`). Targets that resolve it to different manifests (one holds only the gzip
/// build) are a [`Error::Disagree`]: pass the manifest digest instead.
pub async fn resolve_everywhere(
    targets: &[std::sync::Arc<dyn Target>],
    d: &Digest,
) -> Result<Resolved> {
    let res =
        futures::future::join_all(targets.iter().map(|t| resolve_digest(t.as_ref(), d, None)))
            .await;
    let mut failures = Vec::new();
    let mut found: Vec<(String, Resolved)> = Vec::new();
    for (t, r) in targets.iter().zip(res) {
        match r {
            Ok(r) => found.push((t.name().to_string(), r)),
            Err(e) => failures.push((t.name().to_string(), chain(&e))),
        }
    }
    if !failures.is_empty() {
        return Err(Error::Incomplete { failures });
    }
    let Some((_, first)) = found.first().cloned() else {
        return Err(Error::Usage("no target given".into()));
    };
    if found.iter().all(|(_, r)| r.manifest == first.manifest) {
        return Ok(first);
    }
    Err(Error::Disagree {
        channel: format!("the manifest of {d} (give the manifest digest to choose one)"),
        details: found
            .into_iter()
            .map(|(t, r)| (t, r.manifest.to_string()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_wins_and_the_latest_push_wins_within_an_encoding() {
        use Encoding::*;
        assert!(replaces(Gzip, Zstd));
        assert!(!replaces(Zstd, Gzip));
        assert!(!replaces(Zstd, Other));
        assert!(replaces(Zstd, Zstd));
        assert!(replaces(Gzip, Gzip));
        assert!(replaces(Other, Gzip));
        assert!(replaces(Gzip, Other));
    }

    #[test]
    fn id_tag_is_reserved_and_a_valid_tag() {
        let id = Digest::of(b"x");
        let t = id_tag(&id);
        assert!(t.starts_with(crate::channel::RESERVED_PREFIX));
        assert!(t.len() <= crate::channel::MAX_CHANNEL_LEN);
        assert!(crate::channel::validate_channel(&t).is_err());
        assert!(bundle::store::validate_tag(&t).is_ok());
    }
}
