//! `sitebundle extract REF DEST`.

use anyhow::Result;
use bundle::ExtractOptions;

use super::{bars, human, open_bundle, open_store, print_json};
use crate::args::{ExtractArgs, Global};

pub fn run(g: &Global, a: ExtractArgs) -> Result<u8> {
    let store = open_store(g)?;
    let b = open_bundle(&store, &a.reference)?;
    let opts = ExtractOptions {
        replace: a.replace,
        sync: !a.no_sync,
    };
    let r = bundle::extract(&store, &b, &a.dest, opts, &bars(g))?;
    if g.json {
        print_json(&r)?;
    } else {
        println!(
            "extracted {} ({} files, {}) into {}",
            r.id,
            r.files,
            human(r.bytes),
            r.dest.display()
        );
    }
    Ok(0)
}
