//! `status`: for every target and channel, the digest it points to and whether the bundle is
//! complete there (`verify`: every blob downloaded and hashed); and whether targets agree.
//!
//! Website targets ([`crate::site`]) report the bundle their marker says they serve, whether a
//! publish is unfinished there, and whether that bundle is the one the channel they follow points
//! to on the bundle targets; `verify` audits each one's public URL ([`crate::site::audit`]),
//! every file fetched and hashed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bundle::Digest;
use futures::future::join_all;
use futures::StreamExt;
use serde::Serialize;

use crate::channel::ChannelRecord;
use crate::error::{chain, Result};
use crate::push::{manifest_blobs, missing_blobs};
use crate::target::{download_blob, Target};

/// One channel on one target.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelState {
    /// Manifest digest.
    pub manifest: Digest,
    /// Bundle id.
    pub id: Digest,
    /// Every blob present.
    pub complete: bool,
    /// Every blob hashed to its digest (only with `verify`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// What is wrong, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// One target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetState {
    /// The target.
    pub target: String,
    /// Channels found (or asked for), by name; `None` where the channel is absent.
    pub channels: BTreeMap<String, Option<ChannelState>>,
    /// The target could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One website target.
#[derive(Debug, Clone, Serialize)]
pub struct SiteState {
    /// The target.
    pub target: String,
    /// What its marker says it serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving: Option<crate::site::marker::Publication>,
    /// It serves a bundle and no publish is unfinished.
    pub complete: bool,
    /// Manifests of unfinished publishes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Digest>,
    /// The public URL audited with `verify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// The audit found no difference (only with `verify`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// The audit's findings (only with `verify`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<crate::site::audit::OriginReport>,
    /// What is wrong, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The whole picture.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Per target, in the order given.
    pub targets: Vec<TargetState>,
    /// Per website target, in the order given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<SiteState>,
    /// Channels on which targets disagree, are incomplete or failed to read.
    pub problems: Vec<String>,
}

impl Status {
    /// True when every target answered, every channel points to the same complete (and, with
    /// verify, verified) bundle on every target.
    pub fn agrees(&self) -> bool {
        self.problems.is_empty()
    }
}

async fn channel_state(
    t: &dyn Target,
    rec: ChannelRecord,
    verify: bool,
    jobs: usize,
) -> ChannelState {
    let mut st = ChannelState {
        manifest: rec.manifest,
        id: rec.id,
        complete: false,
        verified: None,
        problem: None,
    };
    match missing_blobs(t, &rec.manifest, jobs).await {
        Ok(m) if m.is_empty() => st.complete = true,
        Ok(m) => st.problem = Some(format!("{} blob(s) missing, first {}", m.len(), m[0])),
        Err(e) => st.problem = Some(chain(&e)),
    }
    if verify && st.complete {
        st.verified = Some(match verify_blobs(t, &rec.manifest, jobs).await {
            Ok(()) => true,
            Err(e) => {
                st.problem = Some(chain(&e));
                false
            }
        });
    }
    st
}

/// Download and hash every blob of `manifest` on `t`.
pub async fn verify_blobs(t: &dyn Target, manifest: &Digest, jobs: usize) -> Result<()> {
    let blobs = manifest_blobs(t, manifest).await?;
    let dir =
        tempfile::tempdir().map_err(crate::error::Error::io("create temporary directory", "."))?;
    let results: Vec<Result<()>> = futures::stream::iter(blobs)
        .map(|(d, size)| {
            let path = dir.path().join(d.hex());
            async move {
                let r = download_blob(t, &d, size, &path).await;
                let _ = tokio::fs::remove_file(&path).await;
                r
            }
        })
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

async fn target_state(
    t: &dyn Target,
    only: Option<&[String]>,
    verify: bool,
    jobs: usize,
) -> TargetState {
    let mut out = TargetState {
        target: t.name().to_string(),
        channels: BTreeMap::new(),
        error: None,
    };
    let names = match only {
        Some(c) => c.to_vec(),
        None => match t.list_channels().await {
            Ok(c) => c,
            Err(e) => {
                out.error = Some(chain(&e));
                return out;
            }
        },
    };
    let states = join_all(names.iter().map(|c| async move {
        match t.read_channel(c).await {
            Ok(Some(rec)) => Ok(Some(channel_state(t, rec, verify, jobs).await)),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        }
    }))
    .await;
    for (c, s) in names.into_iter().zip(states) {
        match s {
            Ok(s) => {
                out.channels.insert(c, s);
            }
            Err(e) => {
                out.error = Some(chain(&e));
            }
        }
    }
    out
}

/// The status of `channels` (all channels found, if `None`) on every target.
pub async fn status(
    targets: &[Arc<dyn Target>],
    channels: Option<&[String]>,
    verify: bool,
    jobs: usize,
) -> Status {
    let mut states: Vec<TargetState> = join_all(
        targets
            .iter()
            .map(|t| target_state(t.as_ref(), channels, verify, jobs)),
    )
    .await;
    let all: BTreeSet<String> = states
        .iter()
        .flat_map(|s| s.channels.keys().cloned())
        .collect();
    for s in states.iter_mut() {
        for c in &all {
            s.channels.entry(c.clone()).or_insert(None);
        }
    }
    let mut problems = Vec::new();
    for s in &states {
        if let Some(e) = &s.error {
            problems.push(format!("{}: {e}", s.target));
        }
    }
    for c in &all {
        let digests: BTreeSet<Option<Digest>> = states
            .iter()
            .filter(|s| s.error.is_none())
            .map(|s| s.channels.get(c).cloned().flatten().map(|x| x.manifest))
            .collect();
        if digests.len() > 1 {
            problems.push(format!("channel {c}: targets point to different bundles"));
        }
        for s in &states {
            if let Some(Some(st)) = s.channels.get(c) {
                if let Some(p) = &st.problem {
                    problems.push(format!("channel {c} on {}: {p}", s.target));
                }
            }
        }
    }
    Status {
        targets: states,
        sites: Vec::new(),
        problems,
    }
}

/// [`status`], with website targets: each one's marker, and (with `verify`) an audit of its
/// public URL.
pub async fn status_with_sites(
    targets: &[Arc<dyn Target>],
    sites: &[crate::site::SiteTarget],
    channels: Option<&[String]>,
    verify: bool,
    jobs: usize,
) -> Status {
    let mut st = status(targets, channels, verify, jobs).await;
    let states = join_all(
        sites
            .iter()
            .map(|s| site_state(s, &st, targets, verify, jobs)),
    )
    .await;
    for s in &states {
        if let Some(p) = &s.problem {
            st.problems.push(format!("{}: {p}", s.target));
        }
    }
    st.sites = states;
    st
}

async fn site_state(
    s: &crate::site::SiteTarget,
    st: &Status,
    targets: &[Arc<dyn Target>],
    verify: bool,
    jobs: usize,
) -> SiteState {
    use crate::site::marker::{Marker, MAX_MARKER_BYTES};
    let mut out = SiteState {
        target: s.name().to_string(),
        serving: None,
        complete: false,
        pending: Vec::new(),
        public_url: s.public_url.as_ref().map(|u| u.to_string()),
        verified: None,
        audit: None,
        problem: None,
    };
    let marker = match s
        .store
        .get_small(crate::site::MARKER_KEY, MAX_MARKER_BYTES)
        .await
    {
        Ok(Some((b, _))) => match Marker::parse(s.name(), &b) {
            Ok(m) => m,
            Err(e) => {
                out.problem = Some(e.to_string());
                return out;
            }
        },
        Ok(None) => {
            out.problem = Some("no marker: nothing published here yet".into());
            return out;
        }
        Err(e) => {
            out.problem = Some(chain(&e));
            return out;
        }
    };
    out.complete = marker.is_complete();
    out.pending = marker.pending.iter().map(|p| p.manifest).collect();
    out.serving = marker.serving.clone();
    let Some(serving) = marker.serving else {
        out.problem = Some("the first publish is unfinished: run it again".into());
        return out;
    };
    if !out.pending.is_empty() {
        out.problem = Some(format!(
            "a publish of {} is unfinished: run it again (or publish another bundle)",
            out.pending[0]
        ));
    }
    // The channel it follows, as the bundle targets see it.
    if let Some(c) = &serving.channel {
        let there: BTreeSet<Digest> = st
            .targets
            .iter()
            .filter_map(|t| t.channels.get(c).cloned().flatten().map(|x| x.manifest))
            .collect();
        if there.len() == 1 && !there.contains(&serving.manifest) {
            out.problem = Some(format!(
                "serves {} but channel {c} points to {}",
                serving.manifest,
                there
                    .iter()
                    .next()
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            ));
        }
    }
    if verify {
        match verify_site(s, &serving, targets, jobs).await {
            Ok(rep) => {
                let clean = rep.is_clean(true);
                out.verified = Some(clean);
                if !clean && out.problem.is_none() {
                    out.problem = Some(format!(
                        "audit of {}: {} missing, {} different, {} header drift, {} extra, {} errors",
                        rep.origin,
                        rep.missing_count,
                        rep.different_count,
                        rep.header_count,
                        rep.extra_count,
                        rep.error_count
                    ));
                }
                out.audit = Some(rep);
            }
            Err(e) => {
                out.verified = Some(false);
                out.problem = Some(chain(&e));
            }
        }
    }
    out
}

/// Audit a website target's public URL against what its marker says it serves. The index is
/// the one stored beside the marker, checked against its digest, and that digest against the
/// bundle's config on a bundle target when one has the bundle.
async fn verify_site(
    s: &crate::site::SiteTarget,
    serving: &crate::site::marker::Publication,
    targets: &[Arc<dyn Target>],
    jobs: usize,
) -> Result<crate::site::audit::OriginReport> {
    use crate::site::audit::{audit, AuditOptions, Expected, HeaderCheck};
    let Some(public) = &s.public_url else {
        return Err(crate::error::Error::Usage(
            "no public URL to audit: set public_url for this target in sitebundle.toml".into(),
        ));
    };
    for t in targets {
        if let Ok(bytes) = t.get_manifest(&serving.manifest).await {
            let m =
                crate::blocking::run(move || bundle::manifest::parse_manifest(&bytes)).await??;
            let cfg = crate::target::read_blob_verified(
                t.as_ref(),
                &m.config.digest,
                bundle::manifest::MAX_JSON_BYTES,
            )
            .await?;
            let (_, labels) = bundle::manifest::parse_config(&m, &cfg)?;
            let index = labels.index;
            if index != serving.index || m.config.digest != serving.id {
                return Err(crate::site::SiteError::BadMarker {
                    target: s.name().to_string(),
                    what: crate::site::MARKER_KEY.into(),
                    reason: format!(
                        "names index {} for bundle {}, whose config says {index}",
                        serving.index, serving.manifest
                    ),
                }
                .into());
            }
            break;
        }
    }
    let index = crate::site::publish::read_index(s, &serving.index).await?;
    let rules = crate::site::publish::rules_of(serving);
    let files = crate::site::files::SiteFiles::from_index(&index, rules.as_ref())?;
    let headers = if s.store.features().headers && rules.is_some() {
        HeaderCheck::All
    } else {
        HeaderCheck::None
    };
    let expected = Expected {
        manifest: serving.manifest,
        id: serving.id,
        files,
    };
    let opts = AuditOptions {
        jobs,
        headers,
        ..AuditOptions::default()
    };
    let rep = audit(
        std::slice::from_ref(public),
        &[Some(s.clone())],
        &expected,
        &opts,
    )
    .await?;
    rep.origins
        .into_iter()
        .next()
        .ok_or_else(|| crate::error::Error::Task("audit returned no origin".into()))
}
