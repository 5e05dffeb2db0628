//! `sitebundle pull REF --from TARGET [--tag NAME]`.

use anyhow::Result;

use super::{human, open_store, print_json};
use crate::args::{Global, PullArgs};
use crate::targets::{open_targets, runtime};

pub fn run(g: &Global, a: PullArgs) -> Result<u8> {
    let store = open_store(g)?;
    // Held until the pulled manifest is in index.json, so `gc` cannot delete the blobs it
    // downloads or finds already there (see bundle::store).
    let _writing = store.write_lock()?;
    let targets = open_targets(std::slice::from_ref(&a.from))?;
    let t = targets[0].clone();
    let jobs = replicator::push::Options::from_env().jobs;
    let rep = runtime()?.block_on(async {
        let m = replicator::pull::resolve(t.as_ref(), &a.reference).await?;
        replicator::pull::pull(t.as_ref(), &m, &store, &a.tag, jobs).await
    })?;
    if g.json {
        print_json(&rep)?;
    } else {
        println!(
            "pulled from {}: {} blob(s) ({}), {} already here; {} files verified",
            t.name(),
            rep.downloaded,
            human(rep.bytes),
            rep.skipped,
            rep.files
        );
        println!("{}", rep.manifest);
    }
    Ok(0)
}
