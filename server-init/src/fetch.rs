//! Fetching a bundle's blobs from the first origin that delivers them intact.
//!
//! Origins are [`replicator::Target`]s (the replicator's read side: registries, object stores,
//! directories, HTTP origins), tried in the order given. For each origin:
//! 1. the manifest is fetched by digest and its digest checked again here;
//! 2. the config and every layer blob the staging store does not hold yet are streamed into the
//!    staging store ([`bundle::Store`]), hashed while written; a blob file gets its digest name
//!    only once its bytes match ([`bundle::store::BlobWriter::finish_verified`]);
//! 3. any failure of the origin (connect timeout, a read that stalls or runs below the minimum
//!    rate, the origin's overall deadline, an answer above its size cap, a refused redirect, a
//!    missing object, bytes that do not match) ends that origin's turn with a logged reason, and
//!    the next origin continues: blobs already verified are kept, so it only fetches what is
//!    missing;
//! 4. a **local** failure (disk full, I/O error, permission denied while staging) stops the
//!    whole fetch at once: no other origin can help, and none is blamed ([`InitError::Staging`],
//!    exit 4).
//!
//! Nothing here makes anything visible: [`crate::install`] does, after [`bundle::extract()`] has
//! checked every file against the index.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bundle::{Digest, Store};
use futures::{StreamExt, TryStreamExt};
use replicator::{ChannelRead, ChannelRecord, Target, Validator};

use crate::error::{chain, Attempt, InitError, Result};
use crate::logging::redact;

/// Blobs fetched at once from one origin.
pub const PARALLEL_BLOBS: usize = 4;

/// One origin: a target and the redacted URL it was given as.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The URL, redacted, for logs.
    pub name: String,
    /// The replicator target.
    pub target: Arc<dyn Target>,
}

/// Time limits for each origin.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// The whole fetch from one origin.
    pub total: Duration,
    /// Each request's answer, and each read's progress.
    pub io: Duration,
    /// How long to wait for another installer's DEST lock.
    pub lock: Duration,
}

/// What was fetched.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Manifest digest.
    pub manifest: Digest,
    /// The manifest's bytes (checked against `manifest`).
    pub manifest_bytes: Vec<u8>,
    /// The origin that completed the fetch.
    pub origin: String,
    /// Blobs downloaded (not counting those already staged).
    pub blobs: usize,
    /// Bytes downloaded: the manifest and the blobs that were not staged already.
    pub bytes: u64,
}

/// Why one origin's attempt failed.
#[derive(Debug)]
struct OriginFailure {
    reason: String,
    integrity: bool,
    /// A local failure: stop, do not try another origin.
    local: Option<InitError>,
}

impl From<replicator::Error> for OriginFailure {
    fn from(e: replicator::Error) -> Self {
        if e.is_local_io() {
            return local_failure("a blob", e);
        }
        OriginFailure {
            integrity: e.is_integrity(),
            reason: chain(&e),
            local: None,
        }
    }
}

impl From<bundle::Error> for OriginFailure {
    fn from(e: bundle::Error) -> Self {
        if crate::error::is_local_io(&e) {
            return local_failure("a blob", e);
        }
        OriginFailure {
            integrity: e.is_integrity(),
            reason: chain(&e),
            local: None,
        }
    }
}

/// A failure of the staging store (ours, not the origin's).
fn local_failure(
    what: &str,
    e: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
) -> OriginFailure {
    let e = InitError::Staging {
        what: what.to_string(),
        source: e.into(),
    };
    OriginFailure {
        reason: chain(&e),
        integrity: false,
        local: Some(e),
    }
}

fn timed_out(what: &str, d: Duration) -> OriginFailure {
    OriginFailure {
        reason: format!("{what}: no answer within {d:?}"),
        integrity: false,
        local: None,
    }
}

/// Channel records read before, with what revalidates them (per origin and channel), so a
/// sync pass over unchanged sites costs one conditional request each (`304`, no body).
/// Bounded: when [`MAX_CACHED_CHANNELS`] entries are reached the cache starts over.
static CHANNEL_CACHE: std::sync::LazyLock<std::sync::Mutex<ChannelCache>> =
    std::sync::LazyLock::new(Default::default);

/// (origin, channel) → the validator and the record it names.
type ChannelCache = std::collections::HashMap<(String, String), (Validator, ChannelRecord)>;

/// Most channel records remembered for revalidation (a record is under 1 KiB).
pub const MAX_CACHED_CHANNELS: usize = 16_384;

fn cached(origin: &str, channel: &str) -> Option<(Validator, ChannelRecord)> {
    let c = CHANNEL_CACHE.lock().ok()?;
    c.get(&(origin.to_string(), channel.to_string())).cloned()
}

fn remember(origin: &str, channel: &str, entry: Option<(Validator, ChannelRecord)>) {
    let Ok(mut c) = CHANNEL_CACHE.lock() else {
        return;
    };
    let key = (origin.to_string(), channel.to_string());
    match entry {
        Some(e) => {
            if c.len() >= MAX_CACHED_CHANNELS && !c.contains_key(&key) {
                c.clear();
            }
            c.insert(key, e);
        }
        None => {
            c.remove(&key);
        }
    }
}

/// Read `channel` on `o`, revalidating the record read last time when the origin offers
/// validators (HTTP: `ETag` / `Last-Modified`).
async fn read_channel_cached(
    o: &Origin,
    channel: &str,
) -> replicator::Result<Option<ChannelRecord>> {
    let prev = cached(&o.name, channel);
    match o
        .target
        .read_channel_if_changed(channel, prev.as_ref().map(|(v, _)| v))
        .await?
    {
        ChannelRead::Unchanged => match prev {
            Some((_, rec)) => {
                tracing::debug!(origin = %o.name, channel, "channel unchanged (304)");
                Ok(Some(rec))
            }
            // Not asked conditionally, so not a real answer: read it plainly.
            None => o.target.read_channel(channel).await,
        },
        ChannelRead::Record { record, validator } => {
            remember(&o.name, channel, validator.zip(record.clone()));
            Ok(record)
        }
    }
}

/// Resolve `channel` on the first origin that answers (once: only the digest is used after).
pub async fn resolve_channel(
    origins: &[Origin],
    channel: &str,
    t: Timeouts,
) -> Result<ChannelRecord> {
    replicator::channel::validate_channel(channel).map_err(|e| InitError::Usage(chain(&e)))?;
    let mut attempts = Vec::new();
    for o in origins {
        let r = tokio::time::timeout(t.io, read_channel_cached(o, channel)).await;
        let reason = match r {
            Ok(Ok(Some(rec))) => {
                tracing::info!(origin = %o.name, channel, manifest = %rec.manifest, id = %rec.id, "channel resolved");
                return Ok(rec);
            }
            Ok(Ok(None)) => format!("channel {channel} does not exist"),
            Ok(Err(e)) => chain(&e),
            Err(_) => format!("read channel {channel}: no answer within {:?}", t.io),
        };
        tracing::warn!(origin = %o.name, channel, reason = %reason, "origin skipped");
        attempts.push(Attempt {
            origin: o.name.clone(),
            reason,
            integrity: false,
        });
    }
    Err(InitError::AllOriginsFailed {
        what: format!("channel {channel}"),
        attempts,
    })
}

/// Which blobs a fetch brings into the staging store (those already there are never fetched).
#[derive(Debug, Clone, Copy)]
pub enum Select<'a> {
    /// The config and every layer.
    All,
    /// The config and layer 0 only (the directories, symlinks and the index trailer): enough to
    /// open the bundle and plan a delta install ([`bundle::reuse::plan`]).
    Skeleton,
    /// The config, layer 0 and the layers with these numbers.
    Layers(&'a std::collections::BTreeSet<usize>),
}

impl Select<'_> {
    fn wants_layer(&self, k: usize) -> bool {
        match self {
            Select::All => true,
            Select::Skeleton => k == 0,
            Select::Layers(set) => k == 0 || set.contains(&k),
        }
    }
}

/// Fetch the bundle `want` (manifest digest or bundle id) and all its blobs into `store`, trying
/// origins in order.
pub async fn fetch(
    origins: &[Origin],
    want: &Digest,
    store: &Store,
    t: Timeouts,
) -> Result<Fetched> {
    fetch_select(origins, want, store, t, Select::All, None).await
}

/// Fetch the bundle `want` (manifest digest or bundle id) and the blobs `select` names into
/// `store`, trying origins in order. The manifest itself is put into the store only when every
/// blob it names is there (not for [`Select::Skeleton`]); its checked bytes are returned.
///
/// `known`: the manifest's bytes when an earlier fetch of this run already resolved and checked
/// them (the skeleton); they are used again (after checking they hash to `want`) instead of
/// resolving `want` on the origin a second time.
pub async fn fetch_select(
    origins: &[Origin],
    want: &Digest,
    store: &Store,
    t: Timeouts,
    select: Select<'_>,
    known: Option<&[u8]>,
) -> Result<Fetched> {
    let mut attempts = Vec::new();
    for o in origins {
        tracing::info!(origin = %o.name, digest = %want, select = ?select, "fetching");
        let r = tokio::time::timeout(t.total, fetch_from(o, want, store, t, select, known)).await;
        let failure = match r {
            Ok(Ok((manifest, manifest_bytes, blobs, bytes))) => {
                tracing::info!(origin = %o.name, manifest = %manifest, blobs, bytes, "fetched");
                return Ok(Fetched {
                    manifest,
                    manifest_bytes,
                    origin: o.name.clone(),
                    blobs,
                    bytes,
                });
            }
            Ok(Err(OriginFailure { local: Some(e), .. })) => {
                tracing::error!(
                    origin = %o.name,
                    digest = %want,
                    error = %chain(&e),
                    "local failure while staging: not the origin's fault; no other origin is tried"
                );
                return Err(e);
            }
            Ok(Err(f)) => f,
            Err(_) => timed_out("whole fetch", t.total),
        };
        tracing::warn!(
            origin = %o.name,
            digest = %want,
            integrity = failure.integrity,
            reason = %failure.reason,
            "origin skipped"
        );
        attempts.push(Attempt {
            origin: o.name.clone(),
            reason: failure.reason,
            integrity: failure.integrity,
        });
    }
    Err(InitError::AllOriginsFailed {
        what: format!("bundle {want}"),
        attempts,
    })
}

/// Which manifest `want` (a manifest digest or a bundle id) names on this origin, with its
/// checked bytes: the replicator's bounded lookup ([`replicator::resolve::resolve_digest`]: the
/// id record, then the digest as a manifest, then an old layout's `index.json`; at most 2 requests
/// on a registry, 4 elsewhere, never one per channel), each request within `t.io`.
async fn resolve_on(
    o: &Origin,
    want: &Digest,
    t: Timeouts,
) -> std::result::Result<replicator::resolve::Resolved, OriginFailure> {
    let r = replicator::resolve::resolve_digest(o.target.as_ref(), want, Some(t.io)).await?;
    if r.via != replicator::resolve::Via::Manifest {
        tracing::info!(origin = %o.name, bundle_id = %want, manifest = %r.manifest, via = ?r.via, "bundle id resolved");
    }
    Ok(r)
}

async fn fetch_from(
    o: &Origin,
    want: &Digest,
    store: &Store,
    t: Timeouts,
    select: Select<'_>,
    known: Option<&[u8]>,
) -> std::result::Result<(Digest, Vec<u8>, usize, u64), OriginFailure> {
    let (manifest, bytes) = match known.filter(|b| Digest::of(b) == *want) {
        Some(b) => (*want, b.to_vec()),
        None => {
            let resolved = resolve_on(o, want, t).await?;
            (resolved.manifest, resolved.bytes.to_vec())
        }
    };
    let manifest = &manifest;
    // Checked against the manifest digest by the target; check again, it costs nothing and
    // trusts no one.
    let found = Digest::of(&bytes);
    if found != *manifest {
        return Err(bundle::Error::DigestMismatch {
            what: "manifest".into(),
            expected: *manifest,
            found,
        }
        .into());
    }
    let m = bundle::manifest::parse_manifest(&bytes)?;
    if manifest != want && m.config.digest != *want {
        // `want` was taken as a bundle id: the manifest must be that bundle's.
        return Err(bundle::Error::DigestMismatch {
            what: format!("bundle id of manifest {manifest}"),
            expected: *want,
            found: m.config.digest,
        }
        .into());
    }
    // The config is read whole into memory later: refuse an oversized one before fetching it.
    if m.config.size > replicator::net::MAX_CONFIG {
        return Err(OriginFailure {
            reason: format!(
                "manifest {manifest}: its config descriptor declares {} bytes, above the {} a \
                 config may have",
                m.config.size,
                replicator::net::MAX_CONFIG
            ),
            integrity: true,
            local: None,
        });
    }
    let mut wanted: Vec<(Digest, u64)> = vec![(m.config.digest, m.config.size)];
    wanted.extend(
        m.layers
            .iter()
            .enumerate()
            .filter(|(k, _)| select.wants_layer(*k))
            .map(|(_, l)| (l.digest, l.size)),
    );
    wanted.retain(|(d, _)| !store.has_blob(d));
    wanted.dedup();
    let n = wanted.len();
    let total: u64 = futures::stream::iter(wanted)
        .map(|(d, size)| fetch_blob(o, d, size, store, t))
        .buffer_unordered(PARALLEL_BLOBS)
        .try_fold(0u64, |acc, b| async move { Ok(acc + b) })
        .await?;
    // The manifest goes in last: a staged manifest means every blob it needs was staged before
    // it (a delta install needs only some layers: those it does not take from the installed
    // tree).
    if !matches!(select, Select::Skeleton) {
        store
            .put_blob(&bytes)
            .map_err(|e| local_failure("the manifest", e))?;
    }
    let total = total + bytes.len() as u64;
    Ok((*manifest, bytes, n, total))
}

async fn fetch_blob(
    o: &Origin,
    digest: Digest,
    size: u64,
    store: &Store,
    t: Timeouts,
) -> std::result::Result<u64, OriginFailure> {
    let what = format!("blob {digest}");
    let s = tokio::time::timeout(t.io, o.target.get_blob(&digest))
        .await
        .map_err(|_| timed_out(&what, t.io))??;
    // Slower than the minimum rate over a window: cut (the overall deadline bounds the rest).
    let pace = replicator::net::Pace::from_env()?;
    let mut s = replicator::net::paced(s, pace, o.name.clone(), what.clone());
    let mut w = store.blob_writer().map_err(|e| local_failure(&what, e))?;
    let mut n = 0u64;
    loop {
        let chunk = tokio::time::timeout(t.io, s.next())
            .await
            .map_err(|_| timed_out(&format!("{what} (stalled after {n} bytes)"), t.io))?;
        let Some(chunk) = chunk else { break };
        let chunk = chunk?;
        n += chunk.len() as u64;
        if n > size {
            return Err(OriginFailure {
                reason: format!("{what}: longer than the {size} bytes the manifest says"),
                integrity: true,
                local: None,
            });
        }
        w.write_all(&chunk)
            .map_err(|e| local_failure(&what, bundle::Error::io("write", store.root())(e)))?;
    }
    if n != size {
        return Err(OriginFailure {
            reason: format!("{what}: {n} bytes, the manifest says {size}"),
            integrity: true,
            local: None,
        });
    }
    // Hashing happened while writing; finishing renames the file to its digest if it matches.
    // A digest mismatch is the origin's; a failure to flush or rename is ours.
    w.finish_verified(&digest, &what)?;
    tracing::debug!(origin = %o.name, blob = %digest, size, "blob staged");
    Ok(n)
}

/// Open the replicator target for an origin URL (the replicator's [`replicator::open()`]: clients,
/// endpoints and credentials from the environment). A bad URL is a usage error.
pub fn open_target(url: &str) -> Result<Arc<dyn Target>> {
    let parsed: replicator::TargetUrl = url
        .parse()
        .map_err(|e: replicator::Error| InitError::Usage(format!("--origin: {}", chain(&e))))?;
    replicator::open(&parsed)
        .map_err(|e| InitError::Usage(format!("origin {}: {}", redact(url), chain(&e))))
}
