//! The sync service: `sitebundle-init --sync CONFIG --interval 5m --listen 0.0.0.0:8080`.
//!
//! One process keeps every site of a config at its channel ([`crate::sync`] does one pass), and
//! around the passes:
//!
//! - **Triggers.** A pass runs at start, every `--interval`, when the config changes, and when
//!   `POST /sync` or `POST /sync/<site>` asks ([`http`]). Triggers that arrive while a pass runs
//!   are merged into one next pass (a burst of webhooks costs one pass, not one each).
//! - **Config reloads.** The file is read again every [`CONFIG_POLL`] and on SIGHUP; when its
//!   bytes change it is parsed again. A new config that does not parse (a typo, a refused site
//!   name, an allow-list entry that is not a host) is **not** used: the last good one stays, the
//!   error is logged and shown on `/status`, `/metrics` and the page, and the next change is read
//!   again. ConfigMap updates (an atomic symlink swap) are seen the same way.
//! - **Allow-list.** `--allowed-hosts` and the config's `allowed_hosts` are merged and set as the
//!   process-wide [`replicator::allow`] list: every origin URL is checked before it is opened, and
//!   every request and redirect hop the replicator sends is checked again.
//! - **Previews** ([`previews`]): a site with `channels = "pr-*"` gets one folder per matching
//!   channel, removed after a grace period once its channel is gone.
//! - **Shutdown.** SIGTERM or SIGINT stops new sites from starting; the ones running finish
//!   (each swap is atomic), the status file is written, and the process exits 0.
//!
//! Nothing is written outside DEST (the sync root) and the status file: the service runs
//! non-root with a read-only root filesystem.
//!
//! ## `/status` (and the status file): version 1
//! `{"version": 1, "updated_at", "ok", "ready", "config": {"path", "loaded_at", "error"},
//! "config_error", "allowed_hosts", "last_pass": {"started_at", "duration_ms", "sites", "failed",
//! "trigger"}, "passes", "sites": {NAME: {"ok", "channel", "pinned", "preview_of", "id",
//! "bundle_id", "manifest", "digest", "changed", "origin", "error", "last_sync", "last_success",
//! "bytes_fetched", "duration_ms", "syncs", "failures", "swaps"}}, "previews": {SITE: {"pattern",
//! "channels", "error", "pending_removal"}}, "recent_swaps": [{"site", "from", "to", "at"}]}`.
//! `id`/`bundle_id` are the bundle id served, `manifest`/`digest` its manifest digest.
//! `bytes_fetched` is what the last sync downloaded (`null` before the first success).

pub mod http;
pub mod metrics;
pub mod page;
pub mod previews;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::Notify;

use crate::error::{chain, ExitStatus, InitError, Result};
use crate::fetch::Timeouts;
use crate::sync::{self, JobResult, SyncConfig};

/// Version of the `/status` document and the status file.
pub const STATUS_VERSION: u32 = 1;
/// How often the config file is read again to see whether it changed.
pub const CONFIG_POLL: Duration = Duration::from_secs(2);
/// Swaps kept for `/status` and the page.
pub const RECENT_SWAPS: usize = 50;
/// The token variable (or use `--token-file`); listed with the other variables in [`crate::args`].
pub use crate::args::SITEBUNDLE_SYNC_TOKEN;

/// Where the webhook's bearer token comes from.
#[derive(Clone, Default)]
pub enum TokenSource {
    /// No token: the webhook endpoints are off.
    #[default]
    None,
    /// Read from this file at each request (a rotated Secret takes effect at once).
    File(PathBuf),
    /// Given in the environment at start.
    Value(String),
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::None => f.write_str("None"),
            TokenSource::File(p) => write!(f, "File({})", p.display()),
            TokenSource::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

/// How the service runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The config file.
    pub config: PathBuf,
    /// The sync root (DEST).
    pub root: PathBuf,
    /// The status file (default `DEST/status.json`).
    pub status_file: Option<PathBuf>,
    /// Time between full passes; `None` with no `listen`: one pass and exit.
    pub interval: Option<Duration>,
    /// Per-origin limits.
    pub timeouts: Timeouts,
    /// Where the HTTP API listens.
    pub listen: Option<SocketAddr>,
    /// The webhook's token.
    pub token: TokenSource,
    /// `--allowed-hosts` entries (merged with the config's).
    pub allowed_hosts: Vec<String>,
}

/// What asked for a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Every site.
    All(&'static str),
    /// These sites (config names or preview folders).
    Sites(BTreeSet<String>),
}

impl Trigger {
    fn merge(self, other: Trigger) -> Trigger {
        match (self, other) {
            (Trigger::All(r), _) | (_, Trigger::All(r)) => Trigger::All(r),
            (Trigger::Sites(mut a), Trigger::Sites(b)) => {
                a.extend(b);
                Trigger::Sites(a)
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Trigger::All(r) => (*r).to_string(),
            Trigger::Sites(s) => format!(
                "webhook: {}",
                s.iter().cloned().collect::<Vec<_>>().join(",")
            ),
        }
    }
}

/// One site's state, as `/status` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SiteState {
    /// Whether its last sync succeeded.
    pub ok: bool,
    /// The channel followed.
    pub channel: Option<String>,
    /// Whether it is pinned to a digest.
    pub pinned: bool,
    /// The config entry of a preview.
    pub preview_of: Option<String>,
    /// Bundle id served.
    pub id: Option<String>,
    /// The same, under the name the docs use.
    pub bundle_id: Option<String>,
    /// Manifest digest served, when known.
    pub manifest: Option<String>,
    /// The same, under the name the docs use.
    pub digest: Option<String>,
    /// Whether `current` moved in the last sync.
    pub changed: bool,
    /// The origin of the last fetch.
    pub origin: Option<String>,
    /// The last error (`null` after a success).
    pub error: Option<String>,
    /// When it was last synced (RFC 3339).
    pub last_sync: Option<String>,
    /// When it last succeeded (RFC 3339).
    pub last_success: Option<String>,
    /// Seconds since the epoch of `last_success` (for ages and metrics).
    #[serde(skip)]
    pub last_success_unix: Option<u64>,
    /// Bytes fetched by the last sync (`null`: not reported by the installer).
    pub bytes_fetched: Option<u64>,
    /// Time the last sync took.
    pub duration_ms: u64,
    /// Syncs attempted.
    pub syncs: u64,
    /// Syncs failed.
    pub failures: u64,
    /// Times `current` moved.
    pub swaps: u64,
    /// Sum of `bytes_fetched`.
    #[serde(skip)]
    pub bytes_fetched_total: u64,
}

/// One `current` swap.
#[derive(Debug, Clone, Serialize)]
pub struct Swap {
    /// The site (folder).
    pub site: String,
    /// Bundle id before.
    pub from: Option<String>,
    /// Bundle id after.
    pub to: String,
    /// When (RFC 3339).
    pub at: String,
}

/// A preview set (one config entry with `channels`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PreviewSet {
    /// The glob.
    pub pattern: String,
    /// Channels matched at the last listing.
    pub channels: Vec<String>,
    /// Why the last listing failed, or channels that cannot be folders.
    pub error: Option<String>,
    /// Folders whose channel is gone, with when it was first seen gone (RFC 3339).
    pub pending_removal: BTreeMap<String, String>,
    /// The same, as instants (for the grace period).
    #[serde(skip)]
    pub gone_since: BTreeMap<String, Instant>,
}

/// The last pass.
#[derive(Debug, Clone, Serialize)]
pub struct PassSummary {
    /// When it started (RFC 3339).
    pub started_at: String,
    /// How long it took.
    pub duration_ms: u64,
    /// Sites synced.
    pub sites: usize,
    /// Sites failed.
    pub failed: usize,
    /// What asked for it.
    pub trigger: String,
}

/// Upper bounds (seconds) of the pass-duration histogram.
pub const PASS_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Everything the API shows.
#[derive(Debug, Default)]
pub struct State {
    /// The config file.
    pub config_path: PathBuf,
    /// When the config in use was loaded.
    pub config_loaded_at: Option<String>,
    /// Why the newest config file is not in use.
    pub config_error: Option<String>,
    /// The config in use.
    pub config: Option<SyncConfig>,
    /// The allow-list in use (`None`: none).
    pub allowed_hosts: Option<Vec<String>>,
    /// A first pass has completed.
    pub first_pass_done: bool,
    /// A pass is running.
    pub pass_running: bool,
    /// The last pass.
    pub last_pass: Option<PassSummary>,
    /// Passes run.
    pub passes: u64,
    /// Config reloads that took effect.
    pub config_reloads: u64,
    /// Config reloads refused.
    pub config_errors: u64,
    /// Pass-duration histogram: counts per [`PASS_BUCKETS`] bound (cumulative at render time).
    pub pass_hist: Vec<u64>,
    /// Sum of pass durations, seconds.
    pub pass_seconds: f64,
    /// Per site folder.
    pub sites: BTreeMap<String, SiteState>,
    /// Per preview set.
    pub previews: BTreeMap<String, PreviewSet>,
    /// The latest swaps, newest last.
    pub swaps: VecDeque<Swap>,
}

impl State {
    /// Ready: a config is loaded and a first pass is done.
    pub fn ready(&self) -> bool {
        self.config.is_some() && self.first_pass_done
    }

    /// Every site and the config are fine.
    pub fn ok(&self) -> bool {
        self.config_error.is_none() && self.sites.values().all(|s| s.ok)
    }

    /// The `/status` document (see the module doc).
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::json!({
            "version": STATUS_VERSION,
            "updated_at": replicator::channel::now_rfc3339(),
            "ok": self.ok(),
            "ready": self.ready(),
            "config": {
                "path": self.config_path.display().to_string(),
                "loaded_at": self.config_loaded_at,
                "error": self.config_error,
            },
            "config_error": self.config_error,
            "allowed_hosts": self.allowed_hosts,
            "last_pass": self.last_pass,
            "passes": self.passes,
            "sites": self.sites,
            "previews": self.previews,
            "recent_swaps": self.swaps,
        })
    }

    /// Names `POST /sync/<site>` accepts: config entries and known folders.
    pub fn knows(&self, site: &str) -> bool {
        self.sites.contains_key(site)
            || self
                .config
                .as_ref()
                .is_some_and(|c| c.sites.contains_key(site))
    }

    fn record(&mut self, r: &JobResult) {
        let Some(result) = &r.result else { return };
        let now = replicator::channel::now_rfc3339();
        let s = self.sites.entry(r.job.name.clone()).or_default();
        s.channel = r.job.channel.clone();
        s.pinned = r.job.channel.is_none() && r.job.preview_of.is_none();
        s.preview_of = r.job.preview_of.clone();
        s.syncs += 1;
        s.last_sync = Some(now.clone());
        s.duration_ms = r.duration.as_millis() as u64;
        match result {
            Ok(o) => {
                let id = o.id.to_string();
                if s.id.as_deref() != Some(&id) {
                    s.manifest = None;
                }
                if let Some(m) = o.manifest {
                    s.manifest = Some(m.to_string());
                }
                s.ok = true;
                s.error = None;
                s.changed = o.changed;
                s.origin = o.origin.clone().or(s.origin.take());
                s.last_success = Some(now.clone());
                s.last_success_unix = Some(unix_now());
                // What this sync downloaded (0 when nothing changed; a delta install fetches
                // only the layers the installed tree lacks).
                s.bytes_fetched = Some(o.fetched_bytes);
                s.bytes_fetched_total += o.fetched_bytes;
                if o.changed {
                    s.swaps += 1;
                    self.swaps.push_back(Swap {
                        site: r.job.name.clone(),
                        from: o.previous.map(|d| d.to_string()),
                        to: id.clone(),
                        at: now,
                    });
                    while self.swaps.len() > RECENT_SWAPS {
                        self.swaps.pop_front();
                    }
                }
                s.id = Some(id);
            }
            Err((e, _)) => {
                s.ok = false;
                s.failures += 1;
                s.changed = false;
                s.error = Some(e.clone());
            }
        }
        s.bundle_id = s.id.clone();
        s.digest = s.manifest.clone();
    }
}

/// The state shared by the loop and the HTTP API.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<State>,
    pending: Mutex<Option<Trigger>>,
    wake: Notify,
    /// The webhook's token.
    pub token: TokenSource,
}

impl Shared {
    /// The state (a poisoned lock is taken over: the state is plain data).
    pub fn state(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Ask for a pass; merged with any not yet started.
    pub fn trigger(&self, t: Trigger) {
        let mut p = match self.pending.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *p = Some(match p.take() {
            Some(old) => old.merge(t),
            None => t,
        });
        drop(p);
        self.wake.notify_one();
    }

    fn take_trigger(&self) -> Option<Trigger> {
        match self.pending.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Merge `--allowed-hosts` and the config's list and make it the process-wide list. `None`
/// when neither gives one.
fn apply_allow_list(flag: &[String], config: &SyncConfig) -> Result<Option<Vec<String>>> {
    let mut all: Vec<String> = flag
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let given = !all.is_empty() || config.allowed_hosts.is_some();
    all.extend(config.allowed_hosts.iter().flatten().cloned());
    if !given {
        replicator::allow::set(None);
        return Ok(None);
    }
    let list = replicator::allow::AllowList::parse(&all)
        .map_err(|e| InitError::Usage(format!("--allowed-hosts: {e}")))?;
    if list.allows_any() {
        tracing::warn!("allow-list is \"*\": origins may reach any host");
    }
    replicator::allow::set(Some(list));
    Ok(Some(all))
}

/// Read the config if its bytes changed since `last` (or `force`). `Ok(None)`: unchanged.
fn reload(
    opts: &Options,
    status_path: &Path,
    last: &mut Option<String>,
    force: bool,
) -> Option<Result<SyncConfig>> {
    let text = match sync::read_config(&opts.config) {
        Ok(t) => t,
        Err(e) => {
            if last.as_deref() == Some("") && !force {
                return None;
            }
            *last = Some(String::new());
            return Some(Err(e));
        }
    };
    if !force && last.as_deref() == Some(text.as_str()) {
        return None;
    }
    *last = Some(text.clone());
    Some(SyncConfig::parse_for(
        &opts.config,
        &text,
        &opts.root,
        status_path,
    ))
}

/// Run the service (or one pass, without `--interval` and `--listen`). Returns the exit status:
/// of the pass in one-pass mode (the worst site's; 1 when the config was refused), 0 after a
/// signal in service mode.
pub async fn run(opts: Options) -> Result<ExitStatus> {
    let status_path = sync::default_status_file(&opts.root, opts.status_file.clone());
    let service = opts.interval.is_some() || opts.listen.is_some();
    let mut last_text = None;
    // Without a good config yet it is a usage error (exit 1): nothing to keep serving.
    let mut config = match reload(&opts, &status_path, &mut last_text, true) {
        Some(r) => r?,
        None => return Err(InitError::Usage("sync config: not read".into())),
    };
    let allowed = apply_allow_list(&opts.allowed_hosts, &config)?;
    if opts.listen.is_some() && allowed.is_none() {
        return Err(InitError::Usage(
            "--listen needs an allow-list: pass --allowed-hosts (or allowed_hosts in the config) \
             naming the hosts origins may reach, or \"*\" to allow any"
                .into(),
        ));
    }
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            config_path: opts.config.clone(),
            config_loaded_at: Some(replicator::channel::now_rfc3339()),
            config: Some(config.clone()),
            allowed_hosts: allowed,
            pass_hist: vec![0; PASS_BUCKETS.len()],
            ..State::default()
        }),
        pending: Mutex::new(None),
        wake: Notify::new(),
        token: opts.token.clone(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(Notify::new());
    let hup = Arc::new(AtomicBool::new(false));
    if service {
        spawn_signals(stop.clone(), stopped.clone(), hup.clone(), shared.clone());
    }
    if let Some(addr) = opts.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| InitError::Usage(format!("--listen {addr}: {e}")))?;
        if matches!(opts.token, TokenSource::None) {
            tracing::warn!(
                "no webhook token (--token-file or {SITEBUNDLE_SYNC_TOKEN}): POST /sync is off and answers 404"
            );
        }
        tracing::info!(listen = %addr, "HTTP API listening");
        tokio::spawn(http::serve(listener, shared.clone()));
    }
    let mut next_full = Instant::now();
    let mut pending_trigger: Option<Trigger> = None;
    loop {
        let due = Instant::now() >= next_full;
        let trigger = match (due, pending_trigger.take()) {
            (true, _) => Some(Trigger::All(if shared.state().passes == 0 {
                "start"
            } else {
                "interval"
            })),
            (false, t) => t,
        };
        if let Some(t) = trigger {
            let code = run_pass(&opts, &config, &shared, &stop, &t).await;
            let status = shared.state().status_json();
            sync::write_status(&status_path, &status)?;
            if due {
                next_full = match opts.interval {
                    Some(every) => Instant::now() + every,
                    None => Instant::now() + Duration::from_secs(365 * 86_400),
                };
            }
            if !service {
                let refused = shared.state().config_error.is_some();
                return Ok(if refused && code == ExitStatus::Ok {
                    ExitStatus::Usage
                } else {
                    code
                });
            }
        }
        if stop.load(Ordering::SeqCst) {
            tracing::info!("stopping on signal; every site is complete");
            return Ok(ExitStatus::Ok);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next_full.into()) => {}
            _ = shared.wake.notified() => {}
            _ = stopped.notified() => {}
            _ = tokio::time::sleep(CONFIG_POLL) => {}
        }
        if stop.load(Ordering::SeqCst) {
            tracing::info!("stopping on signal; every site is complete");
            return Ok(ExitStatus::Ok);
        }
        let force = hup.swap(false, Ordering::SeqCst);
        if let Some(r) = reload(&opts, &status_path, &mut last_text, force) {
            let applied = r.and_then(|c| apply_allow_list(&opts.allowed_hosts, &c).map(|a| (c, a)));
            let mut st = shared.state();
            match applied {
                Ok((c, allowed)) => {
                    let changed = c != config;
                    st.config_error = None;
                    if changed {
                        tracing::info!(config = %opts.config.display(), sites = c.sites.len(), "sync config reloaded");
                        st.config_reloads += 1;
                        st.config_loaded_at = Some(replicator::channel::now_rfc3339());
                        st.config = Some(c.clone());
                        st.allowed_hosts = allowed;
                        // Sites gone from the config leave the status (their folders stay).
                        st.sites.retain(|name, s| {
                            c.sites.contains_key(name)
                                || s.preview_of
                                    .as_ref()
                                    .is_some_and(|p| c.sites.contains_key(p))
                        });
                        config = c;
                        pending_trigger = Some(Trigger::All("config changed"));
                    }
                }
                Err(e) => {
                    tracing::error!(
                        config = %opts.config.display(),
                        error = %chain(&e),
                        "sync config refused: keeping the last good one"
                    );
                    st.config_errors += 1;
                    st.config_error = Some(chain(&e));
                    // The allow-list of the config in use stays in force.
                    let _ = apply_allow_list(&opts.allowed_hosts, &config);
                }
            }
            drop(st);
            let status = shared.state().status_json();
            sync::write_status(&status_path, &status)?;
        }
        if let Some(t) = shared.take_trigger() {
            pending_trigger = Some(match pending_trigger.take() {
                Some(p) => p.merge(t),
                None => t,
            });
        }
    }
}

/// One pass for `trigger`; returns the worst exit status of the sites it ran.
async fn run_pass(
    opts: &Options,
    config: &SyncConfig,
    shared: &Arc<Shared>,
    stop: &AtomicBool,
    trigger: &Trigger,
) -> ExitStatus {
    let started = Instant::now();
    let started_at = replicator::channel::now_rfc3339();
    shared.state().pass_running = true;
    let mut jobs = sync::plain_jobs(config, &opts.root, opts.timeouts);
    let (preview_jobs, sets) = previews::expand(config, &opts.root, opts.timeouts).await;
    jobs.extend(preview_jobs);
    if let Trigger::Sites(only) = trigger {
        jobs.retain(|j| {
            only.contains(&j.name) || j.preview_of.as_ref().is_some_and(|p| only.contains(p))
        });
    }
    let results = sync::pass(jobs, config.concurrency(), config.site_timeout(), stop).await;
    let mut worst = ExitStatus::Ok;
    let mut st = shared.state();
    for r in &results {
        if let Some(Err((_, code))) = &r.result {
            if *code as u8 > worst as u8 {
                worst = *code;
            }
        }
        st.record(r);
        if let Some(Err(_)) = &r.result {
            let served = sync::served_id(&opts.root.join(&r.job.name));
            if let Some(s) = st.sites.get_mut(&r.job.name) {
                if s.id.is_none() || served.is_some() {
                    s.id = served.clone();
                    s.bundle_id = served;
                }
            }
        }
    }
    previews::update(&mut st, sets, config, &opts.root, Instant::now());
    let duration = started.elapsed();
    let secs = duration.as_secs_f64();
    for (i, b) in PASS_BUCKETS.iter().enumerate() {
        if secs <= *b {
            st.pass_hist[i] += 1;
            break;
        }
    }
    st.pass_seconds += secs;
    st.passes += 1;
    st.first_pass_done = true;
    st.pass_running = false;
    let ran = results.iter().filter(|r| r.result.is_some()).count();
    let failed = results
        .iter()
        .filter(|r| matches!(r.result, Some(Err(_))))
        .count();
    st.last_pass = Some(PassSummary {
        started_at,
        duration_ms: duration.as_millis() as u64,
        sites: ran,
        failed,
        trigger: trigger.describe(),
    });
    tracing::info!(
        sites = ran,
        failed,
        skipped = results.len() - ran,
        ms = duration.as_millis() as u64,
        trigger = %trigger.describe(),
        "sync pass done"
    );
    worst
}

fn spawn_signals(
    stop: Arc<AtomicBool>,
    stopped: Arc<Notify>,
    hup: Arc<AtomicBool>,
    shared: Arc<Shared>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hangup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!(
                "cannot listen for signals: SIGTERM will not stop the service gracefully"
            );
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reading the config again");
                    hup.store(true, Ordering::SeqCst);
                    shared.wake.notify_one();
                }
            }
        }
        tracing::info!("signal: no new site starts; the ones running finish");
        stop.store(true, Ordering::SeqCst);
        stopped.notify_one();
    });
}
