//! `status`: for every target and channel, the digest it points to and whether the bundle is
//! complete there (`verify`: every blob downloaded and hashed); and whether targets agree.

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

/// The whole picture.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Per target, in the order given.
    pub targets: Vec<TargetState>,
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
        problems,
    }
}
