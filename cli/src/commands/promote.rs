//! `sitebundle promote FROM TO [--target T...]`.

use anyhow::Result;
use replicator::push::Options;

use super::push::print_report;
use crate::args::{Global, PromoteArgs};
use crate::targets::{open_targets, runtime};

pub fn run(g: &Global, a: PromoteArgs) -> Result<u8> {
    let targets = open_targets(&a.targets.get(g))?;
    let mut opts = Options::from_env();
    if let Some(m) = a.message {
        opts.message = Some(m);
    }
    let rep = runtime()?.block_on(replicator::push::promote(
        &targets, &a.from, &a.channel, &opts,
    ))?;
    print_report(g, &rep)
}
