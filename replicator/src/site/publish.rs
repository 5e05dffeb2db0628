//! Publishing a bundle's files to a website target: [`prepare`], [`stage`], [`switch`].
//!
//! The three steps are separate so a channel move can run them in the same all-or-nothing
//! protocol as bundle targets ([`crate::push`]): every target prepared and staged first (nothing
//! served changes), and only when all succeeded, every channel moved and every website target
//! switched. [`publish`] runs the three for one target.
//!
//! - **prepare**: read the marker and the indexes it names (or list the target: no marker, or
//!   `--reconcile`), compute the [`Plan`], apply `--max-delete`. Nothing is written.
//! - **stage**: store the new index beside the marker, record the publish as pending in the
//!   marker (compare-and-swap on the version read), upload the objects the target does not serve
//!   yet (non-HTML, then pages).
//! - **switch**: upload changed non-HTML objects, then changed pages, then write the marker that
//!   names the new bundle as served (compare-and-swap on the staged version), then delete what
//!   went (unless kept), then drop the finished entries from the marker.
//!
//! The bytes come from a [`Spool`]: the needed contents unpacked once from the local store's
//! layers (checked as `verify` does), shared by every target of one operation. Uploads run at
//! most `jobs` at a time per target and within a memory budget ([`Options::memory`]), each
//! retried with backoff on 5xx / 429 / cut connections.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use bundle::{Digest, FileHash, Index, Store};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::files::SiteFiles;
use super::headers::{Headers, Rules};
use super::marker::{index_key, Marker, Publication, MAX_MARKER_BYTES};
use super::plan::{self, Action, Keep, Known, MaxDelete, Mode, Phase, Plan, Write};
use super::store::{Condition, Requests, Stored, Version};
use super::{invalidate, SiteError, SiteTarget, MARKER_KEY};
use crate::error::{chain, Error, Result};

/// Default parallel object requests per website target (S3 takes 3,500 writes per second per
/// prefix; this stays far below while keeping a link busy with small files).
pub const DEFAULT_JOBS: usize = 16;
/// Default bytes of file content in memory at once, over all uploads of one target.
pub const DEFAULT_MEMORY: u64 = 24 * 1024 * 1024;
/// Largest index read from a target (a site of about a million files).
pub const MAX_INDEX_BYTES: u64 = 128 * 1024 * 1024;
/// Most index bytes read from one target's marker in all: the marker names at most 32
/// publications, and their indexes are held while planning.
pub const MAX_INDEXES_BYTES: u64 = 384 * 1024 * 1024;

/// Knobs of a publish.
#[derive(Clone)]
pub struct Options {
    /// Parallel object requests per target.
    pub jobs: usize,
    /// Attempts per request on retryable errors.
    pub attempts: u32,
    /// When removed objects go.
    pub keep: Keep,
    /// The delete guard.
    pub max_delete: MaxDelete,
    /// Plan from a listing even when a marker exists.
    pub reconcile: bool,
    /// Reconcile only: delete objects no sitebundle publish wrote, too.
    pub delete_foreign: bool,
    /// Who publishes (recorded in the marker).
    pub actor: String,
    /// The channel move this publish follows (recorded in the marker).
    pub channel: Option<String>,
    /// Most CDN invalidation paths before folding into wildcards.
    pub invalidation_budget: usize,
    /// Bytes of file content in memory at once per target.
    pub memory: u64,
    /// Upload progress and warnings.
    pub progress: Arc<dyn bundle::Progress + Send>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("jobs", &self.jobs)
            .field("keep", &self.keep)
            .field("max_delete", &self.max_delete)
            .field("reconcile", &self.reconcile)
            .finish_non_exhaustive()
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            jobs: DEFAULT_JOBS,
            attempts: crate::push::DEFAULT_ATTEMPTS,
            keep: Keep::No,
            max_delete: MaxDelete::default(),
            reconcile: false,
            delete_foreign: false,
            actor: crate::env::actor(),
            channel: None,
            invalidation_budget: invalidate::DEFAULT_BUDGET,
            memory: DEFAULT_MEMORY,
            progress: Arc::new(bundle::NoProgress),
        }
    }
}

/// A bundle of the local store, opened for publishing.
#[derive(Debug)]
pub struct SiteBundle {
    /// The local store holding it.
    pub store: Store,
    /// The opened bundle (index checked against the config).
    pub bundle: bundle::Bundle,
    /// Manifest digest.
    pub manifest: Digest,
    /// The index in memory (publishing diffs whole indexes; its size is capped by the format).
    pub index: Index,
    /// The index's canonical bytes (stored beside the marker).
    pub index_bytes: Bytes,
    /// Its objects, with headers from `rules`.
    pub files: SiteFiles,
    /// The header rules.
    pub rules: Rules,
}

impl SiteBundle {
    /// Open `manifest` of `store` and compute its objects under `rules`.
    pub async fn open(store: &Store, manifest: Digest, rules: Rules) -> Result<Arc<SiteBundle>> {
        let store = store.clone();
        crate::blocking::run(move || -> Result<Arc<SiteBundle>> {
            let bundle = bundle::Bundle::open(&store, &manifest)?;
            let index = bundle.index.load(&store)?;
            let files = SiteFiles::from_index(&index, Some(&rules))?;
            let index_bytes = Bytes::from(index.encode());
            Ok(Arc::new(SiteBundle {
                store,
                manifest,
                index,
                index_bytes,
                files,
                rules,
                bundle,
            }))
        })
        .await?
    }

    /// Bundle id.
    pub fn id(&self) -> Digest {
        self.bundle.id()
    }

    /// The index digest.
    pub fn index_digest(&self) -> Digest {
        self.bundle.meta.index_digest
    }

    fn publication(&self, opts: &Options) -> Publication {
        Publication {
            manifest: self.manifest,
            id: self.id(),
            index: self.index_digest(),
            objects: self.files.len() as u64,
            bytes: self.files.bytes(),
            headers: self.rules.spec().clone(),
            channel: opts.channel.clone(),
            at: crate::channel::now_rfc3339(),
            actor: opts.actor.clone(),
        }
    }
}

/// A prepared publish: the plan, and what it needs later.
#[derive(Debug)]
pub struct Prepared {
    /// The plan.
    pub plan: Plan,
    /// CDN paths to invalidate once switched.
    pub invalidate: Vec<String>,
    index_present: bool,
    requests_before: Requests,
}

/// The headers a published object may get on `site`: the rules' where the store keeps headers.
const INDEX_TYPE: &str = "text/plain; charset=utf-8";

fn small_headers(content_type: &str) -> Headers {
    Headers {
        content_type: content_type.to_string(),
        cache_control: Some("no-cache".into()),
        ..Default::default()
    }
}

/// Read the index a marker names, checking its digest.
pub(crate) async fn read_index(site: &SiteTarget, d: &Digest) -> Result<Index> {
    let key = index_key(d);
    let (target, what) = (site.name().to_string(), key.clone());
    let bad = move |reason: String| SiteError::BadMarker {
        target: target.clone(),
        what: what.clone(),
        reason,
    };
    let Some((bytes, _)) = site.store.get_small(&key, MAX_INDEX_BYTES).await? else {
        return Err(bad(
            "missing: the marker names a publication whose index is gone; publish again with \
             --reconcile"
                .into(),
        )
        .into());
    };
    let d = *d;
    crate::blocking::run(move || {
        let found = Digest::of(&bytes);
        if found != d {
            return Err(bad(format!("its sha256 is {found}")));
        }
        Index::decode(&bytes).map_err(|e| bad(e.to_string()))
    })
    .await?
    .map_err(Error::from)
}

pub(crate) fn rules_of(p: &Publication) -> Option<Rules> {
    (p.headers.mime_table == super::mime::TABLE_VERSION)
        .then(|| Rules::new(p.headers.clone()).ok())
        .flatten()
}

/// Read what the target holds and plan the publish of `b`. Writes nothing.
pub async fn prepare(site: &SiteTarget, b: &SiteBundle, opts: &Options) -> Result<Prepared> {
    let store = &site.store;
    let requests_before = store.requests();
    let marker = store.get_small(MARKER_KEY, MAX_MARKER_BYTES).await?;
    let parsed = match &marker {
        Some((bytes, v)) => Some((Marker::parse(site.name(), bytes)?, v.clone())),
        None => None,
    };
    let publication = b.publication(opts);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut files_by_index: HashMap<Digest, SiteFiles> = HashMap::new();
    let listed: BTreeMap<String, Stored>;
    let mut index_present = false;
    let known = match &parsed {
        Some((m, version)) if !opts.reconcile => {
            let mut indexes: HashMap<Digest, Index> = HashMap::new();
            let mut read = 0u64;
            for p in m.publications() {
                let key = plan::files_key(p);
                if files_by_index.contains_key(&key) {
                    continue;
                }
                if p.index == b.index_digest() {
                    index_present = true;
                    indexes.entry(p.index).or_insert_with(|| b.index.clone());
                } else if let std::collections::hash_map::Entry::Vacant(slot) =
                    indexes.entry(p.index)
                {
                    let i = read_index(site, &p.index).await?;
                    read += i.encode().len() as u64;
                    if read > MAX_INDEXES_BYTES {
                        return Err(SiteError::BadMarker {
                            target: site.name().to_string(),
                            what: MARKER_KEY.to_string(),
                            reason: format!(
                                "the indexes it names exceed {MAX_INDEXES_BYTES} bytes in all"
                            ),
                        }
                        .into());
                    }
                    slot.insert(i);
                }
                let index = &indexes[&p.index];
                // One bundle published under two rule sets: each publication's objects carry the
                // headers of its own rules.
                let f = SiteFiles::from_index(index, rules_of(p).as_ref())?;
                files_by_index.insert(key, f);
            }
            Known::Marker {
                marker: m,
                version: version.clone(),
                files: &files_by_index,
            }
        }
        _ => {
            listed = list_with_metadata(site, opts).await?;
            index_present = listed.contains_key(&index_key(&b.index_digest()));
            Known::Listing {
                listed: &listed,
                version: parsed.as_ref().map(|(_, v)| v.clone()),
            }
        }
    };
    let removed_headers: BTreeMap<String, Headers> = match &known {
        Known::Marker { .. } => files_by_index
            .values()
            .flat_map(|f| f.objects.iter())
            .filter_map(|(k, o)| o.headers.clone().map(|h| (k.clone(), h)))
            .collect(),
        Known::Listing { listed, .. } => listed
            .iter()
            .filter_map(|(k, s)| s.headers.clone().map(|h| (k.clone(), h)))
            .collect(),
    };
    let plan = plan::plan(plan::Input {
        target: site.name(),
        prefix: site.url.prefix(),
        features: store.features(),
        new: &b.files,
        publication,
        known,
        keep: opts.keep,
        max_delete: opts.max_delete,
        delete_foreign: opts.delete_foreign,
        now,
    })?;
    let invalidate = invalidate::paths(&plan, &removed_headers, opts.invalidation_budget);
    Ok(Prepared {
        plan,
        invalidate,
        index_present,
        requests_before,
    })
}

/// Every object under the target's prefix, with its BLAKE3 and headers (one HEAD per object
/// where the listing does not carry them: only when reconciling).
async fn list_with_metadata(site: &SiteTarget, opts: &Options) -> Result<BTreeMap<String, Stored>> {
    let store = &site.store;
    let listed = store.list().await?;
    if store.features().metadata_in_listing {
        return Ok(listed.into_iter().collect());
    }
    let heads: Vec<Result<(String, Stored)>> = futures::stream::iter(listed)
        .map(|(k, s)| async move {
            if super::is_reserved(&k) {
                return Ok((k, s));
            }
            let got = with_retry(opts, || store.head(&k)).await?;
            Ok((k, got.unwrap_or(s)))
        })
        .buffer_unordered(opts.jobs.max(1))
        .collect()
        .await;
    heads.into_iter().collect()
}

async fn with_retry<T, F, Fut>(opts: &Options, f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    crate::push::with_retry(opts.attempts, "website request", f).await
}

/// The contents a publish uploads, unpacked once from the local store and checked.
#[derive(Debug)]
pub struct Spool {
    dir: tempfile::TempDir,
    /// Contents spooled.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

impl Spool {
    fn path(&self, h: &FileHash) -> PathBuf {
        bundle::spool::spooled_path(self.dir.path(), h)
    }
}

/// Unpack the contents the plans upload from `b`'s layers, into `near` when given and writable
/// (beside a directory target, so its uploads are hard links), else into `$TMPDIR`.
pub async fn spool(
    b: &Arc<SiteBundle>,
    plans: &[&Plan],
    near: Option<&std::path::Path>,
    opts: &Options,
) -> Result<Arc<Spool>> {
    let wanted: HashSet<FileHash> = plans
        .iter()
        .flat_map(|p| p.writes.iter())
        .filter(|w| w.action == Action::Upload)
        .map(|w| w.hash)
        .collect();
    let builder = || {
        let mut t = tempfile::Builder::new();
        t.prefix(".sitebundle-spool-");
        t
    };
    let dir = match near.and_then(|n| builder().tempdir_in(n).ok()) {
        Some(d) => d,
        None => builder().tempdir().map_err(Error::io(
            "create temporary directory",
            std::env::temp_dir(),
        ))?,
    };
    let path = dir.path().to_path_buf();
    let b = Arc::clone(b);
    let progress = Arc::clone(&opts.progress);
    let rep = crate::blocking::run(move || {
        bundle::spool::spool(&b.store, &b.bundle, &path, &wanted, progress.as_ref())
    })
    .await??;
    Ok(Arc::new(Spool {
        dir,
        files: rep.files,
        bytes: rep.bytes,
    }))
}

/// What publishing to one target did.
#[derive(Debug, Clone, Serialize)]
pub struct SiteReport {
    /// The target.
    pub target: String,
    /// Manifest digest published.
    pub manifest: Digest,
    /// Bundle id.
    pub id: Digest,
    /// How the plan was made.
    pub mode: Mode,
    /// Objects uploaded.
    pub written: usize,
    /// Objects given new headers without re-upload.
    pub headers_updated: usize,
    /// Objects an interrupted publish had already written (found by HEAD, not re-sent).
    pub already_there: usize,
    /// Objects deleted.
    pub deleted: usize,
    /// Objects of replaced publications kept for later (or foreign objects left alone).
    pub kept: usize,
    /// Objects already right.
    pub unchanged: usize,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Requests made to the target.
    pub requests: Requests,
    /// CDN paths to invalidate.
    pub invalidate: Vec<String>,
    /// Notes (links not published in full, keys kept).
    pub warnings: Vec<String>,
}

/// What [`stage`] leaves for [`switch`].
#[derive(Debug)]
pub struct Staged {
    prepared: Prepared,
    version: Option<Version>,
    written: usize,
    headers_updated: usize,
    already_there: usize,
    bytes: u64,
}

impl Staged {
    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.prepared.plan
    }
}

#[derive(Default)]
struct Counts {
    written: usize,
    headers_updated: usize,
    already_there: usize,
    bytes: u64,
}

/// Run `writes` (one phase): non-HTML first, then pages, each group in parallel.
async fn run_writes(
    site: &SiteTarget,
    writes: &[&Write],
    spool: &Spool,
    opts: &Options,
) -> Result<Counts> {
    let mut counts = Counts::default();
    for pages in [false, true] {
        let group: Vec<&&Write> = writes.iter().filter(|w| w.page == pages).collect();
        if group.is_empty() {
            continue;
        }
        let budget_kib = (opts.memory / 1024).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        let memory = Semaphore::new(budget_kib as usize);
        let results: Vec<Result<(u8, u64)>> = futures::stream::iter(group)
            .map(|w| {
                let memory = &memory;
                async move { write_one(site, w, spool, opts, memory, budget_kib).await }
            })
            .buffer_unordered(opts.jobs.max(1))
            .collect()
            .await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok((0, n)) => {
                    counts.written += 1;
                    counts.bytes += n;
                }
                Ok((1, _)) => counts.headers_updated += 1,
                Ok(_) => counts.already_there += 1,
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
        // A page goes up only once every non-HTML object of its phase is there.
        if let Some(e) = first_err {
            return Err(e);
        }
    }
    Ok(counts)
}

/// One write: `(0, bytes)` uploaded, `(1, 0)` headers updated, `(2, 0)` already there.
async fn write_one(
    site: &SiteTarget,
    w: &Write,
    spool: &Spool,
    opts: &Options,
    memory: &Semaphore,
    budget_kib: u32,
) -> Result<(u8, u64)> {
    let store = &site.store;
    let mut action = w.action;
    if w.check_first {
        if let Some(s) = with_retry(opts, || store.head(&w.key)).await? {
            if s.blake3 == Some(w.hash) {
                let same = !store.features().headers || s.headers.as_ref() == Some(&w.headers);
                if same {
                    opts.progress.advance(w.size);
                    return Ok((2, 0));
                }
                action = Action::SetHeaders;
            }
        }
    }
    match action {
        Action::SetHeaders => {
            with_retry(opts, || store.set_headers(&w.key, &w.hash, &w.headers)).await?;
            opts.progress.advance(w.size);
            Ok((1, 0))
        }
        Action::Upload => {
            // A single PUT holds the file; a multipart upload holds one part being filled and
            // the parts in flight.
            let held = if w.size > super::cloud::SINGLE_PUT_MAX {
                (super::cloud::PART_SIZE as u64) * 3
            } else {
                w.size
            };
            let need = ((held / 1024) as u32 + 1).min(budget_kib);
            let _permit = memory
                .acquire_many(need)
                .await
                .map_err(|e| Error::Task(e.to_string()))?;
            let path = spool.path(&w.hash);
            with_retry(opts, || {
                store.put_file(&w.key, &path, w.size, &w.hash, &w.headers)
            })
            .await?;
            opts.progress.advance(w.size);
            Ok((0, w.size))
        }
    }
}

/// Store the index, record the publish as pending, upload what the target does not serve yet.
pub async fn stage(
    site: &SiteTarget,
    b: &SiteBundle,
    prepared: Prepared,
    spool: &Spool,
    opts: &Options,
) -> Result<Staged> {
    let store = &site.store;
    if !prepared.index_present {
        let key = index_key(&b.index_digest());
        let headers = small_headers(INDEX_TYPE);
        with_retry(opts, || {
            store.put_small(&key, b.index_bytes.clone(), &headers, None)
        })
        .await?;
    }
    let plan = &prepared.plan;
    let mut version = plan.marker_version.clone();
    if let Some(m) = &plan.stage_marker {
        let cond = match &plan.marker_version {
            Some(v) => Condition::Matches(v.clone()),
            None => Condition::Absent,
        };
        version = Some(put_marker(site, m, cond, opts).await?);
    }
    let writes: Vec<&Write> = plan
        .writes
        .iter()
        .filter(|w| w.phase == Phase::Stage)
        .collect();
    let c = run_writes(site, &writes, spool, opts).await?;
    Ok(Staged {
        version,
        written: c.written,
        headers_updated: c.headers_updated,
        already_there: c.already_there,
        bytes: c.bytes,
        prepared,
    })
}

async fn put_marker(
    site: &SiteTarget,
    m: &Marker,
    cond: Condition,
    opts: &Options,
) -> Result<Version> {
    let body = Bytes::from(m.to_bytes());
    let headers = small_headers("application/json");
    // A retry after a cut connection may find its own write already there: compare the content.
    let mut n = 1;
    let mut delay = crate::push::FIRST_BACKOFF;
    loop {
        match site
            .store
            .put_small(MARKER_KEY, body.clone(), &headers, Some(cond.clone()))
            .await
        {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && n < opts.attempts => {
                if let Ok(Some((now, v))) = site.store.get_small(MARKER_KEY, MAX_MARKER_BYTES).await
                {
                    if now == body {
                        return Ok(v);
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(crate::push::MAX_BACKOFF);
                n += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Upload the changed objects (non-HTML, then pages), switch the marker, delete what went.
pub async fn switch(
    site: &SiteTarget,
    staged: Staged,
    spool: &Spool,
    opts: &Options,
) -> Result<SiteReport> {
    let store = &site.store;
    let plan = &staged.prepared.plan;
    let writes: Vec<&Write> = plan
        .writes
        .iter()
        .filter(|w| w.phase == Phase::Switch)
        .collect();
    let c = run_writes(site, &writes, spool, opts).await?;
    let cond = |v: &Option<Version>| match v {
        Some(v) => Condition::Matches(v.clone()),
        None => Condition::Absent,
    };
    let delete = |keys: Vec<String>| async move {
        for chunk in keys.chunks(1000) {
            with_retry(opts, || store.delete(chunk)).await?;
        }
        Ok::<(), Error>(())
    };
    match plan.mode {
        Mode::Marker if plan.marker_current && plan.is_noop() => {}
        Mode::Marker => {
            let v = put_marker(site, &plan.switch_marker, cond(&staged.version), opts).await?;
            if !plan.deletes.is_empty() || !plan.delete_indexes.is_empty() {
                delete(plan.deletes.clone()).await?;
                delete(plan.delete_indexes.iter().map(index_key).collect()).await?;
            }
            if let Some(f) = &plan.final_marker {
                put_marker(site, f, Condition::Matches(v), opts).await?;
            }
        }
        Mode::Reconcile => {
            delete(plan.deletes.clone()).await?;
            put_marker(site, &plan.switch_marker, cond(&staged.version), opts).await?;
        }
    }
    let mut warnings = plan.warnings.clone();
    if plan.kept > 0 && plan.mode == Mode::Reconcile && !opts.delete_foreign {
        warnings.push(format!(
            "{} object(s) no sitebundle publish wrote were left alone (--delete-foreign removes them)",
            plan.kept
        ));
    }
    Ok(SiteReport {
        target: site.name().to_string(),
        manifest: plan.publication.manifest,
        id: plan.publication.id,
        mode: plan.mode,
        written: staged.written + c.written,
        headers_updated: staged.headers_updated + c.headers_updated,
        already_there: staged.already_there + c.already_there,
        deleted: plan
            .deletes
            .iter()
            .filter(|k| !super::is_reserved(k))
            .count(),
        kept: plan.kept,
        unchanged: plan.unchanged,
        bytes: staged.bytes + c.bytes,
        requests: store.requests().since(&staged.prepared.requests_before),
        invalidate: staged.prepared.invalidate.clone(),
        warnings,
    })
}

/// Publish `b` to one target: prepare, spool, stage, switch.
pub async fn publish(site: &SiteTarget, b: &Arc<SiteBundle>, opts: &Options) -> Result<SiteReport> {
    let prepared = prepare(site, b, opts).await?;
    for w in &prepared.plan.warnings {
        opts.progress.warn(&format!("{}: {w}", site.name()));
    }
    let near = site.store.spool_near();
    let spool = spool(b, &[&prepared.plan], near.as_deref(), opts).await?;
    opts.progress.start("publish", prepared.plan.upload_bytes());
    let staged = stage(site, b, prepared, &spool, opts).await;
    let res = match staged {
        Ok(s) => switch(site, s, &spool, opts).await,
        Err(e) => Err(e),
    };
    opts.progress.finish();
    res
}

/// A failure on one website target, for reports.
pub fn describe(e: &Error) -> String {
    chain(e)
}
