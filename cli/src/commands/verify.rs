//! `sitebundle verify REF`.

use anyhow::Result;

use super::{bars, human, open_bundle, open_store, print_json};
use crate::args::Global;

pub fn run(g: &Global, reference: &str) -> Result<u8> {
    let store = open_store(g)?;
    let b = open_bundle(&store, reference)?;
    let r = bundle::verify(&store, &b, &bars(g))?;
    if g.json {
        print_json(&r)?;
    } else {
        println!(
            "ok: {} ({} layers, {} files, {} hashed)",
            r.id,
            r.layers,
            r.files,
            human(r.bytes)
        );
    }
    Ok(0)
}
