//! `sitebundle publish REF [--to SITE...] [--dry-run] [--keep-removed[=WHEN]] [--max-delete N]`,
//! and the website options shared with push, promote and rollback.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use futures::future::join_all;
use replicator::site::plan::{Action, Keep, MaxDelete, Phase};
use replicator::site::publish::{self, Options, SiteBundle, SiteReport};
use replicator::site::step::{SiteOutcome, Websites};
use replicator::site::SiteTarget;

use super::{bars, human, open_store, print_json};
use crate::args::{Global, PublishArgs, SiteOpts};
use crate::report::EXIT_PARTIAL;
use crate::targets::{load_config, open_all, runtime, Config};

/// Publish options from the command line, the `[site]` section and the environment.
pub fn options(g: &Global, cfg: &Config, a: &SiteOpts) -> Result<Options> {
    let mut o = Options::default();
    let keep = a
        .keep_removed
        .clone()
        .or_else(|| cfg.site.keep_removed.clone());
    if let Some(k) = keep {
        o.keep = k
            .parse::<Keep>()
            .map_err(anyhow::Error::msg)
            .context("--keep-removed")?;
    }
    let max = a.max_delete.clone().or_else(|| cfg.site.max_delete.clone());
    if let Some(m) = max {
        o.max_delete = m
            .parse::<MaxDelete>()
            .map_err(anyhow::Error::msg)
            .context("--max-delete")?;
    }
    if let Some(j) = a.site_jobs.or(cfg.site.jobs) {
        o.jobs = j.max(1);
    }
    if let Some(b) = cfg.site.invalidation_budget {
        o.invalidation_budget = b;
    }
    let retry = replicator::push::Options::from_env();
    o.attempts = retry.attempts;
    o.actor = retry.actor;
    o.progress = Arc::new(bars(g));
    Ok(o)
}

/// The website step for push, promote and rollback.
pub fn websites(
    g: &Global,
    cfg: &Config,
    sites: Vec<SiteTarget>,
    a: &SiteOpts,
) -> Result<Websites> {
    if sites.is_empty() {
        return Ok(Websites::none());
    }
    Ok(Websites {
        sites,
        store: Some(open_store(g)?),
        rules: cfg.site.rules()?,
        opts: options(g, cfg, a)?,
    })
}

/// One line per website outcome (push, promote, rollback).
pub fn print_site_outcomes(outcomes: &[SiteOutcome]) {
    for o in outcomes {
        match o {
            SiteOutcome::Switched { report } => println!("{}", summary(report)),
            SiteOutcome::Failed { target, error } => {
                println!("{target}: NOT SWITCHED: {error}")
            }
        }
    }
}

fn summary(r: &SiteReport) -> String {
    let mut s = format!(
        "{}: serves {}; {} uploaded ({}), {} headers updated, {} deleted, {} kept, {} unchanged; {} requests",
        r.target,
        r.manifest,
        r.written,
        human(r.bytes),
        r.headers_updated,
        r.deleted,
        r.kept,
        r.unchanged,
        r.requests.total()
    );
    if r.already_there > 0 {
        s.push_str(&format!(
            "; {} already there from an interrupted publish",
            r.already_there
        ));
    }
    s
}

pub fn run(g: &Global, a: PublishArgs) -> Result<u8> {
    let cfg = load_config()?;
    let mut given = a.target.clone();
    if !a.old_to.is_empty() {
        crate::args::deprecated(g, "--to TARGET", "--target TARGET");
        given.extend(a.old_to.iter().cloned());
    }
    let (bundles, sites) = open_all(&cfg, &given)?;
    if !bundles.is_empty() {
        let names: Vec<&str> = bundles.iter().map(|t| t.name()).collect();
        if given.is_empty() {
            // [defaults] to mixes both kinds; publish takes the website targets.
        } else {
            bail!(
                "{} is a bundle target; publish writes website targets (s3+site://, gs+site://, \
                 az+site://, file+site://): use `sitebundle push` for bundle targets",
                names.join(", ")
            );
        }
    }
    if sites.is_empty() {
        bail!("no website target given: pass --target s3+site://bucket/prefix (or a name from sitebundle.toml)");
    }
    let store = open_store(g)?;
    let manifest = store.resolve(&a.reference)?;
    let rules = cfg.site.rules()?;
    let mut opts = options(g, &cfg, &a.site)?;
    opts.reconcile = a.reconcile;
    opts.delete_foreign = a.delete_foreign;
    if let Some(b) = a.invalidation_budget {
        opts.invalidation_budget = b;
    }
    let rt = runtime()?;
    let b = rt.block_on(SiteBundle::open(&store, manifest, rules))?;
    if a.dry_run {
        return dry_run(g, &rt, &sites, &b, &opts);
    }
    let results: Vec<Result<SiteReport, replicator::Error>> = rt.block_on(async {
        let prepared = join_all(sites.iter().map(|s| publish::prepare(s, &b, &opts))).await;
        let mut ok = Vec::new();
        let mut out: Vec<Option<Result<SiteReport, replicator::Error>>> = Vec::new();
        for (i, p) in prepared.into_iter().enumerate() {
            match p {
                Ok(p) => {
                    for w in &p.plan.warnings {
                        opts.progress.warn(&format!("{}: {w}", sites[i].name()));
                    }
                    ok.push((i, p));
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(e))),
            }
        }
        let plans: Vec<&replicator::site::plan::Plan> = ok.iter().map(|(_, p)| &p.plan).collect();
        let near = sites.iter().find_map(|s| s.store.spool_near());
        let spool = match publish::spool(&b, &plans, near.as_deref(), &opts).await {
            Ok(s) => s,
            Err(e) => {
                let msg = replicator::error::chain(&e);
                return out
                    .into_iter()
                    .map(|o| o.unwrap_or_else(|| Err(replicator::Error::Usage(msg.clone()))))
                    .collect();
            }
        };
        let total: u64 = plans.iter().map(|p| p.upload_bytes()).sum();
        opts.progress.start("publish", total);
        let done = join_all(ok.into_iter().map(|(i, p)| {
            let (b, spool, opts, sites) = (&b, &spool, &opts, &sites);
            async move {
                let r = match publish::stage(&sites[i], b, p, spool, opts).await {
                    Ok(st) => publish::switch(&sites[i], st, spool, opts).await,
                    Err(e) => Err(e),
                };
                (i, r)
            }
        }))
        .await;
        opts.progress.finish();
        for (i, r) in done {
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Err(replicator::Error::Task("not run".into()))))
            .collect()
    });
    let failed = results.iter().filter(|r| r.is_err()).count();
    let reports: Vec<&SiteReport> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    if let Some(p) = &a.invalidation_paths {
        let mut all: Vec<&str> = reports
            .iter()
            .flat_map(|r| r.invalidate.iter().map(String::as_str))
            .collect();
        all.sort();
        all.dedup();
        let mut text = all.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(p, text).with_context(|| format!("write {}", p.display()))?;
    }
    if g.json {
        let v: Vec<serde_json::Value> = sites
            .iter()
            .zip(&results)
            .map(|(s, r)| match r {
                Ok(rep) => serde_json::json!({"outcome": "published", "report": rep}),
                Err(e) => serde_json::json!({
                    "outcome": "failed",
                    "target": s.name(),
                    "error": replicator::error::chain(e),
                }),
            })
            .collect();
        print_json(&serde_json::json!({ "manifest": b.manifest, "id": b.id(), "targets": v }))?;
    } else {
        for r in &reports {
            println!("{}", summary(r));
        }
        println!("{}", b.manifest);
    }
    if failed == 0 {
        return Ok(0);
    }
    if sites.len() == 1 {
        // One target, one error: report it as an error (with its hint and exit code).
        if let Some(Err(e)) = results.into_iter().next() {
            return Err(e.into());
        }
        return Ok(0);
    }
    let errs: Vec<(&SiteTarget, &replicator::Error)> = sites
        .iter()
        .zip(&results)
        .filter_map(|(s, r)| r.as_ref().err().map(|e| (s, e)))
        .collect();
    for (s, e) in errs {
        eprintln!("error: {}: {}", s.name(), replicator::error::chain(e));
    }
    eprintln!("hint: run the same command again: a re-run completes an interrupted publish");
    Ok(EXIT_PARTIAL)
}

fn dry_run(
    g: &Global,
    rt: &tokio::runtime::Runtime,
    sites: &[SiteTarget],
    b: &Arc<SiteBundle>,
    opts: &Options,
) -> Result<u8> {
    let prepared = rt.block_on(join_all(sites.iter().map(|s| publish::prepare(s, b, opts))));
    let mut plans = Vec::new();
    for p in prepared {
        plans.push(p?);
    }
    if g.json {
        let v: Vec<serde_json::Value> = plans
            .iter()
            .map(|p| {
                serde_json::json!({
                    "plan": p.plan,
                    "upload_bytes": p.plan.upload_bytes(),
                    "invalidate": p.invalidate,
                })
            })
            .collect();
        print_json(
            &serde_json::json!({ "manifest": b.manifest, "id": b.id(), "dry_run": true, "targets": v }),
        )?;
        return Ok(0);
    }
    for p in &plans {
        let plan = &p.plan;
        println!(
            "{} ({:?}): {} upload(s) ({}), {} header update(s), {} delete(s), {} kept, {} unchanged",
            plan.target,
            plan.mode,
            plan.uploads(),
            human(plan.upload_bytes()),
            plan.header_changes(),
            plan.deletes.len(),
            plan.kept,
            plan.unchanged
        );
        for w in &plan.writes {
            let tag = match (w.action, w.phase) {
                (Action::Upload, Phase::Stage) => "+",
                (Action::Upload, Phase::Switch) => "M",
                (Action::SetHeaders, _) => "H",
            };
            println!("{tag} {} ({})", w.key, human(w.size));
        }
        for k in &plan.deletes {
            println!("- {k}");
        }
        for w in &plan.warnings {
            eprintln!("warning: {}: {w}", plan.target);
        }
    }
    Ok(0)
}
