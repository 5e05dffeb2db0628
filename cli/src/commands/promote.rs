//! `sitebundle promote FROM TO [--target T...]`.

use anyhow::Result;
use replicator::push::Options;

use super::publish::websites;
use super::push::print_report;
use crate::args::{Global, PromoteArgs};
use crate::targets::{load_config, open_all, runtime};

pub fn run(g: &Global, a: PromoteArgs) -> Result<u8> {
    let cfg = load_config()?;
    let (targets, sites) = open_all(&cfg, &a.targets.get(g))?;
    let web = websites(g, &cfg, sites, &a.site)?;
    let mut opts = Options::from_env();
    if let Some(m) = a.message {
        opts.message = Some(m);
    }
    let rep = runtime()?.block_on(replicator::push::promote_with(
        &targets, &web, &a.from, &a.channel, &opts,
    ))?;
    print_report(g, &rep)
}
