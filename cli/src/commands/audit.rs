//! `sitebundle audit URL... (--digest REF | --channel NAME [--target T]) [--sample N] [--wait D]`.

use anyhow::{bail, Context, Result};
use replicator::site::audit::{audit, AuditOptions, Expected, HeaderCheck, MarkerState};
use replicator::site::fetch::FetchOptions;
use replicator::site::publish::SiteBundle;
use replicator::Target;

use super::{open_store, print_json};
use crate::args::{AuditArgs, Global};
use crate::report::EXIT_DIFFERENT;
use crate::targets::{load_config, open_all, resolve_with, runtime, Resolved};

/// `90s`, `10m`, `2h`.
fn duration(s: &str) -> Result<std::time::Duration> {
    match s.parse::<replicator::site::plan::Keep>() {
        Ok(replicator::site::plan::Keep::For(d)) => Ok(d),
        _ => bail!("--wait {s:?}: expected a duration such as 90s, 10m or 1h"),
    }
}

pub fn run(g: &Global, a: AuditArgs) -> Result<u8> {
    let cfg = load_config()?;
    let mut origins = Vec::new();
    for raw in a.urls.iter().chain(&a.origin) {
        let mut u = url::Url::parse(raw)
            .with_context(|| format!("origin {}", replicator::url::redact(raw)))?;
        if !u.path().ends_with('/') {
            let p = format!("{}/", u.path());
            u.set_path(&p);
        }
        origins.push(u);
    }
    if origins.is_empty() {
        bail!("no origin given: sitebundle audit https://www.example.com/ --digest REF");
    }
    let headers: HeaderCheck = a.headers.parse().map_err(anyhow::Error::msg)?;
    let store = open_store(g)?;
    let rt = runtime()?;
    let needs_targets = a.channel.is_some() || !a.target.is_empty();
    let bundles: Vec<std::sync::Arc<dyn Target>> = if needs_targets {
        open_all(&cfg, &a.target)?.0
    } else {
        Vec::new()
    };
    let manifest = rt.block_on(async {
        if let Some(c) = &a.channel {
            if bundles.is_empty() {
                bail!("--channel needs a bundle target to read it from: pass --target");
            }
            let mut last = None;
            for t in &bundles {
                match replicator::pull::resolve(t.as_ref(), c).await {
                    Ok(m) => return ensure_local(&store, &bundles, m).await,
                    Err(e) => last = Some(e),
                }
            }
            return Err(last
                .map(anyhow::Error::from)
                .unwrap_or_else(|| anyhow::anyhow!("channel {c} not found")));
        }
        let r = a.digest.as_deref().unwrap_or_default();
        match store.resolve(r) {
            Ok(m) => Ok(m),
            Err(e) if !bundles.is_empty() => {
                let d: bundle::Digest = r.parse().map_err(|_| e)?;
                let m = replicator::pull::resolve(bundles[0].as_ref(), &d.to_string()).await?;
                ensure_local(&store, &bundles, m).await
            }
            Err(e) => Err(e.into()),
        }
    })?;
    let rules = cfg.site.rules()?;
    let b = rt.block_on(SiteBundle::open(&store, manifest, rules))?;
    let mut listing = Vec::new();
    for (i, r) in resolve_with(&cfg, &a.list)
        .map(|v| if a.list.is_empty() { Vec::new() } else { v })
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match r {
            Resolved::Site { url, public_url } => {
                listing.push(Some(replicator::site::open(&url, public_url)?))
            }
            Resolved::Bundle(u) => bail!("--list {u}: not a website target (+site URL)"),
        }
        if i >= origins.len() {
            bail!("more --list targets than origins");
        }
    }
    while listing.len() < origins.len() {
        listing.push(None);
    }
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let opts = AuditOptions {
        jobs: a
            .jobs
            .unwrap_or(replicator::site::audit::DEFAULT_JOBS)
            .max(1),
        fetch: FetchOptions {
            rate: a.rate,
            cache_bust: !a.no_cache_bust,
        },
        sample: a.sample,
        seed,
        headers,
        wait: a.wait.as_deref().map(duration).transpose()?,
        require_marker: !a.no_marker,
    };
    let expected = Expected {
        manifest: b.manifest,
        id: b.id(),
        files: b.files.clone(),
    };
    let rep = rt.block_on(audit(&origins, &listing, &expected, &opts))?;
    if g.json {
        print_json(&rep)?;
    } else {
        for o in &rep.origins {
            let marker = match &o.marker {
                MarkerState::Ok => format!("marker ok ({})", rep.manifest),
                MarkerState::Unfinished => "marker: a publish is unfinished".to_string(),
                MarkerState::Other { serving } => format!(
                    "MARKER NAMES {}",
                    serving
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "nothing".into())
                ),
                MarkerState::Missing => "no marker".to_string(),
                MarkerState::Unreadable { reason } => format!("marker unreadable: {reason}"),
            };
            println!(
                "{}: {marker}; {} checked: {} ok, {} missing, {} different, {} header drift, {} extra, {} errors",
                o.origin,
                o.checked,
                o.ok,
                o.missing_count,
                o.different_count,
                o.header_count,
                o.extra_count,
                o.error_count
            );
            for k in &o.missing {
                println!("  missing    {k}");
            }
            for p in &o.different {
                println!("  different  {}: {}", p.key, p.reason);
            }
            for p in &o.headers {
                println!("  headers    {}: {}", p.key, p.reason);
            }
            for k in &o.extra {
                println!("  extra      {k}");
            }
            for p in &o.errors {
                println!("  error      {}: {}", p.key, p.reason);
            }
        }
        if let Some(s) = rep.seed {
            eprintln!(
                "sample of {} file(s), seed {s} (--seed {s} repeats it)",
                rep.sampled
            );
        }
        if rep.origins.len() > 1 {
            println!(
                "markers agree: {}",
                if rep.markers_agree { "yes" } else { "NO" }
            );
        }
        println!(
            "{}",
            if rep.clean {
                "clean"
            } else {
                "DIFFERENCES FOUND"
            }
        );
    }
    Ok(if rep.clean { 0 } else { EXIT_DIFFERENT })
}

/// `manifest` in the local store, pulled (and verified) from the first target that has it.
async fn ensure_local(
    store: &bundle::Store,
    targets: &[std::sync::Arc<dyn Target>],
    manifest: bundle::Digest,
) -> Result<bundle::Digest> {
    if store.has_blob(&manifest) && store.resolve(&manifest.to_string()).is_ok() {
        return Ok(manifest);
    }
    let mut last = None;
    for t in targets {
        match replicator::pull::pull(t.as_ref(), &manifest, store, &[], 4).await {
            Ok(r) => return Ok(r.manifest),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .map(anyhow::Error::from)
        .unwrap_or_else(|| anyhow::anyhow!("bundle {manifest} is in no target given")))
}
