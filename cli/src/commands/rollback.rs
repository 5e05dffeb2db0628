//! `sitebundle rollback CHANNEL [--digest DIGEST | --steps N] [--target T...]`.

use anyhow::Result;
use replicator::push::{Options, RollbackTo};

use super::publish::websites;
use super::push::print_report;
use crate::args::{Global, RollbackArgs};
use crate::targets::{load_config, open_all, runtime};

pub fn run(g: &Global, a: RollbackArgs) -> Result<u8> {
    let cfg = load_config()?;
    let (targets, sites) = open_all(&cfg, &a.target)?;
    let web = websites(g, &cfg, sites, &a.site)?;
    let mut opts = Options::from_env();
    if let Some(m) = a.message {
        opts.message = Some(m);
    }
    let digest = match (a.digest, a.old_to) {
        (Some(d), _) => Some(d),
        (None, Some(d)) => {
            crate::args::deprecated(g, "rollback --to DIGEST", "rollback --digest DIGEST");
            Some(d)
        }
        (None, None) => None,
    };
    let to = match digest {
        Some(d) => RollbackTo::Digest(d.parse()?),
        None => RollbackTo::Steps(a.steps.unwrap_or(1)),
    };
    let rep = runtime()?.block_on(replicator::push::rollback_with(
        &targets, &web, &a.channel, to, &opts,
    ))?;
    print_report(g, &rep)
}
