//! `sitebundle pull REF [--target TARGET] [--tag NAME] [--timeout DUR]`.
//!
//! Bounded like `sitebundle-init` ([`replicator::net`]): every answer within its cap, a minimum
//! transfer rate, and a deadline for the whole pull. A local failure (disk full, I/O error,
//! permissions in the store) stops it at once and is reported as local, not as the target's.

use anyhow::{Context, Result};

use super::{human, open_store, print_json};
use crate::args::{Global, PullArgs};
use crate::targets::{open_targets, runtime};

pub fn run(g: &Global, a: PullArgs) -> Result<u8> {
    let store = open_store(g)?;
    // Refuse bad rate settings before any network call.
    replicator::net::Pace::from_env()?;
    // Held until the pulled manifest is in index.json, so `gc` cannot delete the blobs it
    // downloads or finds already there (see bundle::store).
    let _writing = store.write_lock()?;
    let given: Vec<String> = match (a.target, a.old_from) {
        (Some(t), _) => vec![t],
        (None, Some(t)) => {
            crate::args::deprecated(g, "pull --from TARGET", "pull --target TARGET");
            vec![t]
        }
        (None, None) => Vec::new(),
    };
    // Without --target: the first default target.
    let targets = open_targets(&given)?;
    let t = targets[0].clone();
    let opts = replicator::pull::PullOptions {
        jobs: replicator::push::Options::from_env().jobs,
        deadline: Some(a.timeout),
    };
    let res = runtime()?.block_on(replicator::pull::pull_ref(
        t.as_ref(),
        &a.reference,
        &store,
        &a.tag,
        &opts,
    ));
    let rep = match res {
        Ok(r) => r,
        Err(e) if e.is_local_io() => {
            return Err(e).with_context(|| {
                format!(
                    "pull from {} stopped: writing the local store {} failed (a local problem, \
                     not the target's: check free space and permissions)",
                    t.name(),
                    store.root().display()
                )
            })
        }
        Err(e) => return Err(e.into()),
    };
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
