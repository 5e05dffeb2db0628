//! `sitebundle push REF [--target T...] [--channel NAME]`.

use anyhow::Result;
use replicator::push::{ChannelOutcome, LocalBundle, Options, Report};

use super::publish::{print_site_outcomes, websites};
use super::{bars, human, open_store, print_json};
use crate::args::{Global, PushArgs};
use crate::report::EXIT_PARTIAL;
use crate::targets::{load_config, open_all, runtime};

pub fn run(g: &Global, a: PushArgs) -> Result<u8> {
    let store = open_store(g)?;
    let manifest = store.resolve(&a.reference)?;
    let cfg = load_config()?;
    let (targets, sites) = open_all(&cfg, &a.targets.get(g))?;
    let web = websites(g, &cfg, sites, &a.site)?;
    let mut opts = Options::from_env();
    if let Some(m) = a.message {
        opts.message = Some(m);
    }
    if let Some(j) = a.jobs {
        opts.jobs = j.max(1);
    }
    opts.progress = std::sync::Arc::new(bars(g));
    let rep = runtime()?.block_on(async {
        let b = LocalBundle::open(&store, manifest).await?;
        replicator::push::push_with(&b, &targets, &web, a.channel.as_deref(), &opts).await
    })?;
    print_report(g, &rep)
}

/// Print a push / promote / rollback report; exit 5 when a channel move failed somewhere.
pub fn print_report(g: &Global, rep: &Report) -> Result<u8> {
    if g.json {
        print_json(rep)?;
    } else {
        for t in &rep.targets {
            let mut line = format!("{}: ", t.target);
            if t.uploaded + t.skipped > 0 {
                line.push_str(&format!(
                    "{} blob(s) uploaded ({}), {} already there",
                    t.uploaded,
                    human(t.bytes),
                    t.skipped
                ));
            } else {
                line.push_str("complete");
            }
            if let (Some(c), Some(o)) = (&rep.channel, &t.channel) {
                line.push_str(&match o {
                    ChannelOutcome::Moved { from: Some(f) } => {
                        format!("; {c}: {f} -> {}", rep.manifest)
                    }
                    ChannelOutcome::Moved { from: None } => {
                        format!("; {c}: created -> {}", rep.manifest)
                    }
                    ChannelOutcome::Unchanged => format!("; {c}: already {}", rep.manifest),
                    ChannelOutcome::Failed { error } => format!("; {c}: NOT MOVED: {error}"),
                });
            }
            if let Some(h) = &t.history_error {
                line.push_str(&format!("; history not recorded: {h}"));
            }
            println!("{line}");
        }
        print_site_outcomes(&rep.sites);
        println!("{}", rep.manifest);
    }
    if rep.is_ok() {
        Ok(0)
    } else {
        eprintln!(
            "error: the channel did not move (or a website target did not switch) on every target; \
             run the same command again to converge, and check `sitebundle status`"
        );
        Ok(EXIT_PARTIAL)
    }
}
