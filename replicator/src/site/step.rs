//! The website step of a channel move: what `push`, `promote` and `rollback` do with the website
//! targets they are given, in the same all-or-nothing protocol as bundle targets.
//!
//! [`Websites::stage`] runs in phase 1, beside the bundle uploads: every website target is
//! prepared and staged (new index, pending marker, added objects), which changes nothing any of
//! them serves. [`Websites::switch`] runs in phase 2, only if phase 1 succeeded everywhere,
//! beside the channel moves: changed objects, the marker, the deletes. So one website target
//! down means no channel moves and every target keeps serving the old site; a rollback switches
//! the buckets back with the channel. A switch that fails on one target is reported per target,
//! like a channel move that fails; a re-run converges.
//!
//! The bytes come from the local store; a bundle it lacks (a rollback on a fresh CI runner) is
//! pulled into it first from the first bundle target that has it, every byte verified.

use std::sync::Arc;

use bundle::{Digest, Store};
use futures::future::join_all;
use serde::Serialize;

use super::headers::Rules;
use super::publish::{self, Options, SiteBundle, SiteReport, Spool, Staged};
use super::SiteTarget;
use crate::error::{chain, Error, Result};
use crate::target::Target;

/// The website targets of one operation and how to publish to them.
#[derive(Debug, Clone)]
pub struct Websites {
    /// The targets.
    pub sites: Vec<SiteTarget>,
    /// The local store the bytes come from.
    pub store: Option<Store>,
    /// Header rules.
    pub rules: Rules,
    /// Publish options (the channel is filled in by the operation).
    pub opts: Options,
}

/// What happened on one website target.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum SiteOutcome {
    /// It serves the new bundle.
    Switched {
        /// What the publish did.
        report: Box<SiteReport>,
    },
    /// The switch failed; the target may serve a mix until a re-run converges.
    Failed {
        /// The target.
        target: String,
        /// Why.
        error: String,
    },
}

impl SiteOutcome {
    /// Did the switch fail?
    pub fn failed(&self) -> bool {
        matches!(self, SiteOutcome::Failed { .. })
    }
}

/// Phase 1's result, kept for phase 2.
#[derive(Debug)]
pub struct StagedSites {
    bundle: Arc<SiteBundle>,
    spool: Arc<Spool>,
    staged: Vec<(SiteTarget, Staged)>,
}

impl Websites {
    /// No website targets.
    pub fn none() -> Websites {
        Websites {
            sites: Vec::new(),
            store: None,
            rules: Rules::none(),
            opts: Options::default(),
        }
    }

    /// Are there any?
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// Make sure `manifest` is in the local store (pulling it from `sources` if needed).
    async fn local(
        &self,
        manifest: Digest,
        sources: &[Arc<dyn Target>],
    ) -> Result<Arc<SiteBundle>> {
        let store = self.store.clone().ok_or_else(|| {
            Error::Usage("website targets need the local store (--store / SITEBUNDLE_HOME)".into())
        })?;
        if !store.has_blob(&manifest) {
            let mut last = None;
            for t in sources {
                match crate::pull::pull(t.as_ref(), &manifest, &store, &[], 4).await {
                    Ok(_) => {
                        last = None;
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            if let Some(e) = last {
                return Err(e);
            }
        }
        SiteBundle::open(&store, manifest, self.rules.clone()).await
    }

    /// Phase 1: prepare and stage every website target for `manifest`. Failures are returned
    /// per target as `(target, error)`; nothing any target serves has changed.
    pub async fn stage(
        &self,
        manifest: Digest,
        channel: Option<&str>,
        sources: &[Arc<dyn Target>],
    ) -> std::result::Result<Option<StagedSites>, Vec<(String, String)>> {
        if self.sites.is_empty() {
            return Ok(None);
        }
        let all_failed = |e: Error| -> Vec<(String, String)> {
            self.sites
                .iter()
                .map(|s| (s.name().to_string(), chain(&e)))
                .collect()
        };
        let mut opts = self.opts.clone();
        opts.channel = channel.map(str::to_string);
        let bundle = self.local(manifest, sources).await.map_err(all_failed)?;
        let prepared = join_all(
            self.sites
                .iter()
                .map(|s| publish::prepare(s, &bundle, &opts)),
        )
        .await;
        let mut failures = Vec::new();
        let mut ok = Vec::new();
        for (s, p) in self.sites.iter().zip(prepared) {
            match p {
                Ok(p) => ok.push((s.clone(), p)),
                Err(e) => failures.push((s.name().to_string(), chain(&e))),
            }
        }
        if !failures.is_empty() {
            return Err(failures);
        }
        for (s, p) in &ok {
            for w in &p.plan.warnings {
                opts.progress.warn(&format!("{}: {w}", s.name()));
            }
        }
        let plans: Vec<&super::plan::Plan> = ok.iter().map(|(_, p)| &p.plan).collect();
        let near = self.sites.iter().find_map(|s| s.store.spool_near());
        let spool = publish::spool(&bundle, &plans, near.as_deref(), &opts)
            .await
            .map_err(all_failed)?;
        let total: u64 = plans.iter().map(|p| p.upload_bytes()).sum();
        opts.progress.start("publish", total);
        let staged = join_all(ok.into_iter().map(|(s, p)| {
            let (bundle, spool, opts) = (&bundle, &spool, &opts);
            async move {
                let r = publish::stage(&s, bundle, p, spool, opts).await;
                (s, r)
            }
        }))
        .await;
        let mut done = Vec::new();
        for (s, r) in staged {
            match r {
                Ok(st) => done.push((s, st)),
                Err(e) => failures.push((s.name().to_string(), chain(&e))),
            }
        }
        if !failures.is_empty() {
            opts.progress.finish();
            return Err(failures);
        }
        Ok(Some(StagedSites {
            bundle,
            spool,
            staged: done,
        }))
    }

    /// Phase 2: switch every staged target.
    pub async fn switch(
        &self,
        staged: Option<StagedSites>,
        channel: Option<&str>,
    ) -> Vec<SiteOutcome> {
        let Some(st) = staged else {
            return Vec::new();
        };
        let mut opts = self.opts.clone();
        opts.channel = channel.map(str::to_string);
        let _keep = &st.bundle;
        let out = join_all(st.staged.into_iter().map(|(s, staged)| {
            let (spool, opts) = (&st.spool, &opts);
            async move {
                match publish::switch(&s, staged, spool, opts).await {
                    Ok(r) => SiteOutcome::Switched {
                        report: Box::new(r),
                    },
                    Err(e) => SiteOutcome::Failed {
                        target: s.name().to_string(),
                        error: chain(&e),
                    },
                }
            }
        }))
        .await;
        opts.progress.finish();
        out
    }
}
