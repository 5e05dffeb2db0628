//! `sitebundle ls REF`: the entries of a bundle, from its index.

use anyhow::Result;
use bundle::index::KindRef;

use super::{open_bundle, open_store};
use crate::args::Global;

pub fn run(g: &Global, reference: &str) -> Result<u8> {
    let store = open_store(g)?;
    let b = open_bundle(&store, reference)?;
    let mut out = crate::Stdout::new();
    use std::io::Write;
    // Streamed from the index, one entry at a time (an index can list millions).
    if g.json {
        // The shape print_json gives every command (`"version"` first), written as it streams.
        writeln!(
            out,
            "{{\n  \"version\": {},\n  \"id\": \"{}\",\n  \"manifest\": \"{}\",\n  \"entries\": [",
            super::JSON_VERSION,
            b.id(),
            b.meta.manifest_digest
        )?;
        let mut first = true;
        b.index.for_each(&store, |e| {
            let mut v = serde_json::json!({
                "path": e.path, "type": type_code(e).to_string(),
                "mode": format!("{:o}", e.mode()), "size": e.size(), "layer": e.layer,
            });
            match e.kind {
                KindRef::File { hash, .. } => v["blake3"] = hash.hex().into(),
                KindRef::Symlink { target } => v["target"] = target.into(),
                KindRef::Dir => {}
            }
            let sep = if first { "" } else { "," };
            first = false;
            writeln!(out, "{sep}    {v}").map_err(|err| bundle::Error::Io {
                op: "write",
                path: "stdout".into(),
                source: err,
            })
        })?;
        writeln!(out, "  ]\n}}")?;
    } else {
        b.index.for_each(&store, |e| {
            let tail = match e.kind {
                KindRef::Symlink { target } => format!(" -> {target}"),
                _ => String::new(),
            };
            writeln!(
                out,
                "{} {:o} {:>10} {}{}",
                type_code(e),
                e.mode(),
                e.size(),
                e.path,
                tail
            )
            .map_err(|err| bundle::Error::Io {
                op: "write",
                path: "stdout".into(),
                source: err,
            })
        })?;
    }
    out.flush()?;
    Ok(0)
}

fn type_code(e: &bundle::index::EntryRef<'_>) -> char {
    match e.kind {
        KindRef::Dir => 'd',
        KindRef::File { .. } => 'f',
        KindRef::Symlink { .. } => 'l',
    }
}
