//! `sitebundle status [--target T...] [--channel C...] [--digest D...] [--verify]`.

use anyhow::Result;
use bundle::Digest;
use replicator::resolve::Located;

use super::print_json;
use crate::args::{Global, StatusArgs};
use crate::report::EXIT_PARTIAL;
use crate::targets::{load_config, open_all, runtime};

/// Where one digest asked with `--digest` stands on every target.
#[derive(serde::Serialize)]
struct DigestStatus {
    digest: Digest,
    targets: Vec<Located>,
}

pub fn run(g: &Global, a: StatusArgs) -> Result<u8> {
    let cfg = load_config()?;
    let (targets, sites) = open_all(&cfg, &a.targets.get(g))?;
    let digests = a
        .digest
        .iter()
        .map(|d| d.trim().parse::<Digest>())
        .collect::<Result<Vec<_>, _>>()?;
    let jobs = replicator::push::Options::from_env().jobs * 2;
    let rt = runtime()?;
    // With only --digest, channels are not listed (a pipeline asking "is my bundle everywhere?").
    let channels_wanted = digests.is_empty() || !a.channel.is_empty();
    let only = (!a.channel.is_empty()).then_some(a.channel.as_slice());
    let mut st = if channels_wanted {
        rt.block_on(replicator::status::status_with_sites(
            &targets, &sites, only, a.verify, jobs,
        ))
    } else {
        rt.block_on(replicator::status::status(
            &targets,
            Some(&[]),
            a.verify,
            jobs,
        ))
    };
    let mut by_digest = Vec::new();
    for d in &digests {
        let located = rt.block_on(replicator::resolve::locate(&targets, d, a.verify, jobs));
        let manifests: std::collections::BTreeSet<Option<Digest>> =
            located.iter().map(|l| l.manifest).collect();
        if manifests.len() > 1 {
            st.problems.push(format!(
                "digest {d}: targets resolve it to different manifests"
            ));
        }
        for l in &located {
            if let Some(p) = &l.problem {
                st.problems.push(format!("digest {d} on {}: {p}", l.target));
            }
        }
        by_digest.push(DigestStatus {
            digest: *d,
            targets: located,
        });
    }
    if g.json {
        let mut v = serde_json::to_value(&st)?;
        v["digests"] = serde_json::to_value(&by_digest)?;
        print_json(&v)?;
    } else {
        for t in &st.targets {
            if !channels_wanted && t.error.is_none() {
                continue;
            }
            println!("{}", t.target);
            if let Some(e) = &t.error {
                println!("  error: {e}");
            }
            for (c, s) in &t.channels {
                match s {
                    None => println!("  {c:<16} (absent)"),
                    Some(s) => {
                        let state = match (s.complete, s.verified) {
                            (true, Some(true)) => "complete, verified",
                            (true, None) => "complete",
                            (true, Some(false)) => "VERIFY FAILED",
                            (false, _) => "INCOMPLETE",
                        };
                        println!("  {c:<16} {}  id {}  {state}", s.manifest, s.id);
                    }
                }
            }
        }
        for s in &st.sites {
            println!("{}", s.target);
            match &s.serving {
                None => println!("  (serves nothing)"),
                Some(p) => {
                    let state = match (s.complete, s.verified) {
                        (true, Some(true)) => "complete, verified",
                        (true, None) => "complete",
                        (_, Some(false)) => "VERIFY FAILED",
                        (false, _) => "PUBLISH UNFINISHED",
                    };
                    let ch = p
                        .channel
                        .as_deref()
                        .map(|c| format!("  channel {c}"))
                        .unwrap_or_default();
                    println!("  serves {}  id {}{ch}  {state}", p.manifest, p.id);
                }
            }
        }
        for d in &by_digest {
            println!("{}", d.digest);
            for l in &d.targets {
                let state = match (l.manifest, l.complete, l.verified) {
                    (None, ..) => "NOT FOUND".to_string(),
                    (Some(_), true, Some(true)) => "complete, verified".into(),
                    (Some(_), true, _) => "complete".into(),
                    (Some(_), false, Some(false)) => "VERIFY FAILED".into(),
                    (Some(_), false, _) => "INCOMPLETE".into(),
                };
                match (l.manifest, l.id) {
                    (Some(m), Some(id)) => {
                        println!("  {}  manifest {m}  id {id}  {state}", l.target)
                    }
                    _ => println!("  {}  {state}", l.target),
                }
            }
        }
        if st.agrees() {
            println!("ok: {} target(s) agree", st.targets.len() + st.sites.len());
        }
    }
    for p in &st.problems {
        eprintln!("problem: {p}");
    }
    Ok(if st.problems.is_empty() {
        0
    } else {
        EXIT_PARTIAL
    })
}
