//! Push: make a bundle complete on every target, then (only then) move a channel everywhere.
//!
//! **Phase 1**, on all targets at once: every blob the target lacks is uploaded (blobs first,
//! at most `jobs` uploads in flight per target, bounded by a semaphore; retries with exponential
//! backoff on 5xx, timeouts and cut connections; each upload is checked afterwards), then the
//! manifest. A re-run skips what is already there, so it converges after any failure.
//!
//! **Phase 2**, only if phase 1 succeeded on *every* target: the channel moves on every target by
//! compare-and-swap against the record read once at the start of the operation, and a history
//! event (when, from, to, who, message) is appended on every target that keeps history. A failure
//! here is reported per target ([`ChannelOutcome::Failed`]); the others have moved, `status`
//! shows the disagreement, and a re-run converges.
//!
//! **Website targets** ([`crate::site`]) given to the same operation follow the same two phases
//! ([`Websites`]): each is staged in phase 1 (new objects uploaded, nothing served changes) and
//! switched in phase 2 beside the channel moves, so a failure anywhere in phase 1 moves no
//! channel and switches no website, and `rollback` puts the old site back on the buckets too.
//!
//! Channels are resolved to digests once per operation and only digests are used after that
//! (zarf-dev/zarf#5276 mixed versions by re-reading a tag).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bundle::{Digest, Store};
use bytes::Bytes;
use futures::future::join_all;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::channel::{now_rfc3339, validate_channel, Action, ChannelRecord, HistoryEvent};
use crate::env::{self, var};
use crate::error::{chain, Error, Result};
use crate::site::step::{SiteOutcome, Websites};
use crate::target::Target;

/// Default parallel blob uploads per target.
pub const DEFAULT_JOBS: usize = 4;
/// Default attempts per operation (first try included) on retryable errors.
pub const DEFAULT_ATTEMPTS: u32 = crate::open::DEFAULT_RETRIES as u32 + 1;
/// First backoff delay; doubled after each failed attempt, capped at [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest backoff delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Knobs shared by push, promote and rollback.
#[derive(Clone)]
pub struct Options {
    /// Parallel blob uploads per target.
    pub jobs: usize,
    /// Attempts per operation on retryable errors.
    pub attempts: u32,
    /// Who is moving channels (history).
    pub actor: String,
    /// Message recorded in history.
    pub message: Option<String>,
    /// Where upload progress and retry warnings go (the CLI draws bars; default: nowhere).
    pub progress: Arc<dyn bundle::Progress + Send>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("jobs", &self.jobs)
            .field("attempts", &self.attempts)
            .field("actor", &self.actor)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// From the environment: `SITEBUNDLE_JOBS`, `SITEBUNDLE_RETRIES`, `SITEBUNDLE_ACTOR` (or CI
    /// variables), `SITEBUNDLE_MESSAGE`.
    pub fn from_env() -> Options {
        Options {
            jobs: var(env::SITEBUNDLE_JOBS)
                .and_then(|v| v.parse().ok())
                .filter(|&j| j > 0)
                .unwrap_or(DEFAULT_JOBS),
            attempts: var(env::SITEBUNDLE_RETRIES)
                .and_then(|v| v.parse::<u32>().ok())
                .map_or(DEFAULT_ATTEMPTS, |r| r + 1),
            actor: env::actor(),
            message: var(env::SITEBUNDLE_MESSAGE),
            progress: Arc::new(bundle::NoProgress),
        }
    }

    /// [`with_retry`], with retries reported through [`Options::progress`].
    async fn retry<T, F, Fut>(&self, target: &dyn Target, what: &str, f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        retry_loop(self.attempts, what, f, |msg| {
            self.progress.warn(&format!("{}: {msg}", target.name()))
        })
        .await
    }
}

/// Run `f` up to `attempts` times while it fails with a retryable error, backing off in between.
pub async fn with_retry<T, F, Fut>(attempts: u32, what: &str, f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    retry_loop(attempts, what, f, |msg| tracing::warn!("{msg}")).await
}

async fn retry_loop<T, F, Fut>(
    attempts: u32,
    what: &str,
    mut f: F,
    warn: impl Fn(&str),
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut delay = FIRST_BACKOFF;
    let mut n = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && n < attempts => {
                warn(&format!(
                    "{what}: {}; retrying in {delay:?} (attempt {n} of {attempts})",
                    chain(&e)
                ));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
                n += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A blob of a local bundle.
#[derive(Debug, Clone)]
pub struct LocalBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Where it is on disk.
    pub path: PathBuf,
}

/// A bundle of the local store, ready to push.
#[derive(Debug, Clone)]
pub struct LocalBundle {
    /// Manifest digest.
    pub manifest: Digest,
    /// Manifest bytes.
    pub manifest_bytes: Bytes,
    /// Bundle id.
    pub id: Digest,
    /// Config, then layers.
    pub blobs: Vec<LocalBlob>,
}

impl LocalBundle {
    /// Open and check the bundle `manifest` of `store` (on the blocking pool).
    pub async fn open(store: &Store, manifest: Digest) -> Result<LocalBundle> {
        let store = store.clone();
        crate::blocking::run(move || -> Result<LocalBundle> {
            let bytes = store.read_blob(&manifest, bundle::manifest::MAX_JSON_BYTES)?;
            let b = bundle::Bundle::from_manifest_bytes(&store, &bytes)?;
            let m = &b.meta.manifest;
            let blobs = std::iter::once(&m.config)
                .chain(m.layers.iter())
                .map(|d| LocalBlob {
                    digest: d.digest,
                    size: d.size,
                    path: store.blob_path(&d.digest),
                })
                .collect();
            Ok(LocalBundle {
                manifest,
                manifest_bytes: Bytes::from(bytes),
                id: b.id(),
                blobs,
            })
        })
        .await?
    }

    /// The channel record pointing here.
    pub fn record(&self) -> ChannelRecord {
        ChannelRecord {
            manifest: self.manifest,
            id: self.id,
            size: self.manifest_bytes.len() as u64,
        }
    }
}

/// What happened to a channel on one target.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum ChannelOutcome {
    /// Moved from `from` (none: created).
    Moved {
        /// Where it pointed before.
        from: Option<Digest>,
    },
    /// It already pointed there.
    Unchanged,
    /// The move failed; the channel on this target is as it was (or was moved by someone else).
    Failed {
        /// Why.
        error: String,
    },
}

/// Per-target outcome of a push.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// The target.
    pub target: String,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs already present, or mounted from another repository of the same registry.
    pub skipped: usize,
    /// Bytes uploaded.
    pub bytes: u64,
    /// The channel, if one was moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelOutcome>,
    /// History could not be recorded here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_error: Option<String>,
}

/// Outcome of push / promote / rollback.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Manifest digest.
    pub manifest: Digest,
    /// Bundle id.
    pub id: Digest,
    /// The channel moved, if any.
    pub channel: Option<String>,
    /// One entry per target, in the order given.
    pub targets: Vec<TargetReport>,
    /// One entry per website target, in the order given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<SiteOutcome>,
}

impl Report {
    /// True when every channel move (and history append) and every website switch succeeded.
    pub fn is_ok(&self) -> bool {
        self.targets.iter().all(|t| {
            !matches!(t.channel, Some(ChannelOutcome::Failed { .. })) && t.history_error.is_none()
        }) && !self.sites.iter().any(SiteOutcome::failed)
    }
}

/// Refuse read-only targets, and an operation with no target at all. Channels live on bundle
/// targets, so an operation that moves one needs at least one (`channel`).
fn refuse_read_only(targets: &[Arc<dyn Target>], websites: &Websites, channel: bool) -> Result<()> {
    if targets.is_empty() && (websites.is_empty() || channel) {
        return Err(Error::Usage(if websites.is_empty() {
            "no target given".into()
        } else {
            "channels live on bundle targets (registries, buckets with bundles, directories):              give at least one beside the website targets"
                .into()
        }));
    }
    let ro: Vec<&str> = targets
        .iter()
        .filter(|t| !t.capabilities().writable)
        .map(|t| t.name())
        .collect();
    if ro.is_empty() {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "read-only target(s) cannot be written: {} (publish to the directory or bucket they serve)",
            ro.join(", ")
        )))
    }
}

/// Resolve `channel` on every target, once. A failure on any target is returned as
/// [`Error::Incomplete`] (nothing has been changed yet).
async fn resolve_all(
    targets: &[Arc<dyn Target>],
    channel: &str,
    attempts: u32,
) -> Result<Vec<Option<ChannelRecord>>> {
    let res = join_all(targets.iter().map(|t| async move {
        with_retry(attempts, "read channel", || t.read_channel(channel)).await
    }))
    .await;
    let mut failures = Vec::new();
    let mut out = Vec::new();
    for (t, r) in targets.iter().zip(res) {
        match r {
            Ok(r) => out.push(r),
            Err(e) => failures.push((t.name().to_string(), chain(&e))),
        }
    }
    if failures.is_empty() {
        Ok(out)
    } else {
        Err(Error::Incomplete { failures })
    }
}

/// Phase 1 on one target: upload missing blobs (or mount them from `mount_from`, a repository
/// of the same registry completed just before), then the manifest.
async fn complete_on(
    t: &dyn Target,
    b: &LocalBundle,
    opts: &Options,
    mount_from: Option<&dyn Target>,
) -> Result<(usize, usize, u64)> {
    let sem = Semaphore::new(opts.jobs.max(1));
    let results: Vec<Result<Option<u64>>> = futures::stream::iter(b.blobs.iter())
        .map(|blob| {
            let sem = &sem;
            async move {
                let _permit = sem
                    .acquire()
                    .await
                    .map_err(|e| Error::Task(e.to_string()))?;
                if opts
                    .retry(t, "check blob", || t.has_blob(&blob.digest))
                    .await?
                {
                    opts.progress.advance(blob.size);
                    return Ok(None);
                }
                if let Some(src) = mount_from {
                    if t.mount_blob(&blob.digest, src).await.unwrap_or(false) {
                        opts.progress.advance(blob.size);
                        return Ok(None);
                    }
                }
                opts.retry(t, "upload blob", || {
                    t.put_blob(&blob.digest, blob.size, &blob.path)
                })
                .await?;
                opts.progress.advance(blob.size);
                Ok(Some(blob.size))
            }
        })
        .buffer_unordered(opts.jobs.max(1))
        .collect()
        .await;
    let (mut up, mut skip, mut bytes) = (0, 0, 0);
    for r in results {
        match r? {
            Some(n) => {
                up += 1;
                bytes += n;
            }
            None => skip += 1,
        }
    }
    opts.retry(t, "upload manifest", || {
        t.put_manifest(&b.manifest, b.manifest_bytes.clone())
    })
    .await?;
    // Which manifest carries the bundle id, before any channel (crate::resolve).
    opts.retry(t, "record bundle id", || {
        crate::resolve::record(t, &b.manifest, &b.manifest_bytes)
    })
    .await?;
    Ok((up, skip, bytes))
}

/// Phase 1 on every target. Targets that are the first repository of their registry in the list
/// (and all non-registry targets) go first, in parallel; further repositories of the same
/// registry follow and mount blobs from the first one instead of uploading them again.
async fn phase_one(
    targets: &[Arc<dyn Target>],
    bundle: &LocalBundle,
    opts: &Options,
) -> Vec<Result<(usize, usize, u64)>> {
    let source: Vec<Option<usize>> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (reg, _) = t.registry_repository()?;
            targets[..i]
                .iter()
                .position(|o| o.registry_repository().is_some_and(|(r, _)| r == reg))
        })
        .collect();
    let first = join_all(targets.iter().zip(&source).map(|(t, s)| async move {
        match s {
            None => Some(complete_on(t.as_ref(), bundle, opts, None).await),
            Some(_) => None,
        }
    }))
    .await;
    let second = join_all(targets.iter().zip(&source).map(|(t, s)| {
        let first = &first;
        async move {
            let j = (*s)?;
            // Mount only from a source that completed.
            let src = matches!(first[j], Some(Ok(_))).then(|| targets[j].as_ref());
            Some(complete_on(t.as_ref(), bundle, opts, src).await)
        }
    }))
    .await;
    first
        .into_iter()
        .zip(second)
        .map(|(a, b)| {
            a.or(b)
                .unwrap_or_else(|| Err(Error::Task("phase 1 skipped a target".into())))
        })
        .collect()
}

/// Move `channel` on one target from `expected` to `new`, then record history there.
async fn move_on(
    t: &dyn Target,
    channel: &str,
    expected: Option<&ChannelRecord>,
    new: &ChannelRecord,
    action: Action,
    opts: &Options,
) -> (ChannelOutcome, Option<String>) {
    if expected.map(|r| r.manifest) == Some(new.manifest) {
        // Already there. Write it again anyway: the swap is idempotent and rewrites what is
        // derived from the channel (index.json on object stores), so a run that failed after
        // moving the channel but before updating those converges on the next run.
        return match t.swap_channel(channel, expected, new).await {
            Ok(()) => (ChannelOutcome::Unchanged, None),
            Err(e) => (ChannelOutcome::Failed { error: chain(&e) }, None),
        };
    }
    let mut n = 1;
    let mut delay = FIRST_BACKOFF;
    loop {
        match t.swap_channel(channel, expected, new).await {
            Ok(()) => break,
            Err(e) if e.is_retryable() && n < opts.attempts => {
                // The swap may have landed before the connection broke: look before retrying.
                if let Ok(Some(now)) = t.read_channel(channel).await {
                    if now.manifest == new.manifest {
                        break;
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
                n += 1;
            }
            Err(e) => return (ChannelOutcome::Failed { error: chain(&e) }, None),
        }
    }
    let mut history_error = None;
    if t.capabilities().history {
        let ev = HistoryEvent {
            seq: 0,
            at: now_rfc3339(),
            channel: channel.to_string(),
            action,
            from: expected.map(|r| r.manifest),
            to: new.manifest,
            to_id: new.id,
            actor: opts.actor.clone(),
            message: opts.message.clone(),
        };
        if let Err(e) = opts
            .retry(t, "append history", || t.append_history(&ev))
            .await
        {
            history_error = Some(chain(&e));
        }
    }
    (
        ChannelOutcome::Moved {
            from: expected.map(|r| r.manifest),
        },
        history_error,
    )
}

/// Phase 2 on every target.
async fn move_all(
    targets: &[Arc<dyn Target>],
    channel: &str,
    expected: &[Option<ChannelRecord>],
    new: &ChannelRecord,
    action: Action,
    opts: &Options,
) -> Vec<(ChannelOutcome, Option<String>)> {
    join_all(
        targets
            .iter()
            .zip(expected)
            .map(|(t, exp)| move_on(t.as_ref(), channel, exp.as_ref(), new, action, opts)),
    )
    .await
}

/// Push `bundle` to every target; then, if `channel` is given and every target is complete, move
/// the channel everywhere. See the module docs.
pub async fn push(
    bundle: &LocalBundle,
    targets: &[Arc<dyn Target>],
    channel: Option<&str>,
    opts: &Options,
) -> Result<Report> {
    push_with(bundle, targets, &Websites::none(), channel, opts).await
}

/// [`push`], with website targets following the channel move (or published, without a channel).
pub async fn push_with(
    bundle: &LocalBundle,
    targets: &[Arc<dyn Target>],
    websites: &Websites,
    channel: Option<&str>,
    opts: &Options,
) -> Result<Report> {
    refuse_read_only(targets, websites, channel.is_some())?;
    let expected = match channel {
        Some(c) => {
            validate_channel(c)?;
            Some(resolve_all(targets, c, opts.attempts).await?)
        }
        None => None,
    };
    let total: u64 = bundle.blobs.iter().map(|b| b.size).sum::<u64>() * targets.len() as u64;
    opts.progress.start("upload", total);
    let phase1 = phase_one(targets, bundle, opts).await;
    opts.progress.finish();
    let mut failures = Vec::new();
    let mut reports = Vec::new();
    for (t, r) in targets.iter().zip(phase1) {
        match r {
            Ok((uploaded, skipped, bytes)) => reports.push(TargetReport {
                target: t.name().to_string(),
                uploaded,
                skipped,
                bytes,
                channel: None,
                history_error: None,
            }),
            Err(e) => failures.push((t.name().to_string(), chain(&e))),
        }
    }
    // Website targets stage only once the bundle is complete everywhere: their objects come
    // from the same bytes, and a failed bundle target must leave the buckets as they were.
    let staged = if failures.is_empty() {
        match websites.stage(bundle.manifest, channel, targets).await {
            Ok(s) => s,
            Err(f) => {
                failures.extend(f);
                None
            }
        }
    } else {
        None
    };
    if !failures.is_empty() {
        return Err(Error::Incomplete { failures });
    }
    let sites;
    if let (Some(c), Some(expected)) = (channel, expected) {
        let record = bundle.record();
        let (outcomes, s) = futures::join!(
            move_all(targets, c, &expected, &record, Action::Push, opts),
            websites.switch(staged, channel)
        );
        for (r, (o, h)) in reports.iter_mut().zip(outcomes) {
            r.channel = Some(o);
            r.history_error = h;
        }
        sites = s;
    } else {
        sites = websites.switch(staged, None).await;
    }
    Ok(Report {
        manifest: bundle.manifest,
        id: bundle.id,
        channel: channel.map(String::from),
        targets: reports,
        sites,
    })
}

/// The blobs a manifest names (config, then layers), read from a target.
pub async fn manifest_blobs(t: &dyn Target, manifest: &Digest) -> Result<Vec<(Digest, u64)>> {
    let bytes = t.get_manifest(manifest).await?;
    let m = crate::blocking::run(move || bundle::manifest::parse_manifest(&bytes)).await??;
    Ok(std::iter::once(&m.config)
        .chain(m.layers.iter())
        .map(|d| (d.digest, d.size))
        .collect())
}

/// Which blobs of `manifest` a target lacks (empty: complete). The manifest itself missing is
/// reported as an error.
pub async fn missing_blobs(t: &dyn Target, manifest: &Digest, jobs: usize) -> Result<Vec<Digest>> {
    let blobs = manifest_blobs(t, manifest).await?;
    let present: Vec<(Digest, bool)> = futures::stream::iter(blobs)
        .map(|(d, _)| async move { t.has_blob(&d).await.map(|p| (d, p)) })
        .buffered(jobs.max(1))
        .try_collect()
        .await?;
    Ok(present
        .into_iter()
        .filter(|(_, p)| !p)
        .map(|(d, _)| d)
        .collect())
}

/// Check that `manifest` is complete on every target, naming each one where it is not.
async fn require_complete(
    targets: &[Arc<dyn Target>],
    manifest: &Digest,
    opts: &Options,
) -> Result<()> {
    let res = join_all(targets.iter().map(|t| async move {
        with_retry(opts.attempts, "check bundle", || {
            missing_blobs(t.as_ref(), manifest, opts.jobs)
        })
        .await
    }))
    .await;
    let mut failures = Vec::new();
    for (t, r) in targets.iter().zip(res) {
        match r {
            Ok(m) if m.is_empty() => {}
            Ok(m) => failures.push((
                t.name().to_string(),
                format!(
                    "{} blob(s) of {manifest} missing (first {}); push the bundle again",
                    m.len(),
                    m[0]
                ),
            )),
            Err(e) => failures.push((t.name().to_string(), chain(&e))),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Incomplete { failures })
    }
}

/// Point channel `to` at what channel `from` points to, on every target. `from` must resolve to
/// the same manifest everywhere.
pub async fn promote(
    targets: &[Arc<dyn Target>],
    from: &str,
    to: &str,
    opts: &Options,
) -> Result<Report> {
    promote_with(targets, &Websites::none(), from, to, opts).await
}

/// [`promote`], with website targets following channel `to`.
pub async fn promote_with(
    targets: &[Arc<dyn Target>],
    websites: &Websites,
    from: &str,
    to: &str,
    opts: &Options,
) -> Result<Report> {
    refuse_read_only(targets, websites, true)?;
    validate_channel(from)?;
    validate_channel(to)?;
    let src = resolve_all(targets, from, opts.attempts).await?;
    let first = agree(targets, from, &src)?;
    let expected = resolve_all(targets, to, opts.attempts).await?;
    require_complete(targets, &first.manifest, opts).await?;
    finish_move(
        targets,
        websites,
        to,
        &expected,
        &first,
        Action::Promote,
        opts,
    )
    .await
}

/// All targets hold the same record for `channel`; return it.
fn agree(
    targets: &[Arc<dyn Target>],
    channel: &str,
    recs: &[Option<ChannelRecord>],
) -> Result<ChannelRecord> {
    let first = recs.first().cloned().flatten();
    let all_same = recs
        .iter()
        .all(|r| r.as_ref().map(|r| r.manifest) == first.as_ref().map(|r| r.manifest));
    match first {
        Some(f) if all_same => Ok(f),
        _ => Err(Error::Disagree {
            channel: channel.to_string(),
            details: targets
                .iter()
                .zip(recs)
                .map(|(t, r)| (t.name().to_string(), ChannelRecord::describe(r.as_ref())))
                .collect(),
        }),
    }
}

/// Stage the website targets, then move the channel on every target and switch them.
async fn finish_move(
    targets: &[Arc<dyn Target>],
    websites: &Websites,
    channel: &str,
    expected: &[Option<ChannelRecord>],
    new: &ChannelRecord,
    action: Action,
    opts: &Options,
) -> Result<Report> {
    // A manifest pushed before id records existed gets its record now, before the channel moves
    // (and before any website target is staged).
    crate::resolve::record_all(targets, &new.manifest, opts.attempts).await?;
    let staged = websites
        .stage(new.manifest, Some(channel), targets)
        .await
        .map_err(|failures| Error::Incomplete { failures })?;
    let (outcomes, sites) = futures::join!(
        move_all(targets, channel, expected, new, action, opts),
        websites.switch(staged, Some(channel))
    );
    Ok(Report {
        manifest: new.manifest,
        id: new.id,
        channel: Some(channel.to_string()),
        targets: targets
            .iter()
            .zip(outcomes)
            .map(|(t, (o, h))| TargetReport {
                target: t.name().to_string(),
                uploaded: 0,
                skipped: 0,
                bytes: 0,
                channel: Some(o),
                history_error: h,
            })
            .collect(),
        sites,
    })
}

/// Where a rollback goes.
#[derive(Debug, Clone)]
pub enum RollbackTo {
    /// A manifest digest or bundle id: the manifest the channel had with it (history), else what
    /// it resolves to on every target ([`crate::resolve::resolve_everywhere`]).
    Digest(Digest),
    /// The digest the channel pointed to this many moves ago.
    Steps(usize),
}

/// A channel's history from the first target that keeps it (in the order given).
pub async fn history(
    targets: &[Arc<dyn Target>],
    channel: &str,
) -> Result<(String, Vec<HistoryEvent>)> {
    validate_channel(channel)?;
    let mut last_err = None;
    for t in targets.iter().filter(|t| t.capabilities().history) {
        match t.history(channel).await {
            Ok(h) => return Ok((t.name().to_string(), h)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| Error::Usage("none of the targets keeps history".into())))
}

/// Move `channel` back on every target, to a digest or N moves back in its history.
pub async fn rollback(
    targets: &[Arc<dyn Target>],
    channel: &str,
    to: RollbackTo,
    opts: &Options,
) -> Result<Report> {
    rollback_with(targets, &Websites::none(), channel, to, opts).await
}

/// [`rollback`], with website targets switched back too.
pub async fn rollback_with(
    targets: &[Arc<dyn Target>],
    websites: &Websites,
    channel: &str,
    to: RollbackTo,
    opts: &Options,
) -> Result<Report> {
    refuse_read_only(targets, websites, true)?;
    validate_channel(channel)?;
    let expected = resolve_all(targets, channel, opts.attempts).await?;
    let events = history(targets, channel)
        .await
        .map(|(_, h)| h)
        .unwrap_or_default();
    let manifest = match to {
        RollbackTo::Steps(_) if events.is_empty() => {
            return Err(Error::Usage(format!(
                "no history of channel {channel} on these targets: use --digest DIGEST"
            )))
        }
        RollbackTo::Steps(n) => {
            if n == 0 || n > events.len() {
                return Err(Error::Usage(format!(
                    "channel {channel} has {} recorded move(s); --steps must be 1..={}",
                    events.len(),
                    events.len()
                )));
            }
            events[events.len() - n].from.ok_or_else(|| {
                Error::Usage(format!(
                    "{n} move(s) back, channel {channel} did not exist yet"
                ))
            })?
        }
        // The manifest the channel was on with that id; else whatever `d` names on every target
        // (crate::resolve: the same manifest everywhere, or a disagreement to settle by digest).
        RollbackTo::Digest(d) => match events.iter().rev().find(|e| e.to_id == d || e.to == d) {
            Some(e) => e.to,
            None => {
                crate::resolve::resolve_everywhere(targets, &d)
                    .await?
                    .manifest
            }
        },
    };
    require_complete(targets, &manifest, opts).await?;
    // The record needs the bundle id and manifest size: read them from the first target.
    let bytes = targets[0].get_manifest(&manifest).await?;
    let size = bytes.len() as u64;
    let m = crate::blocking::run(move || bundle::manifest::parse_manifest(&bytes)).await??;
    let new = ChannelRecord {
        manifest,
        id: m.config.digest,
        size,
    };
    finish_move(
        targets,
        websites,
        channel,
        &expected,
        &new,
        Action::Rollback,
        opts,
    )
    .await
}
