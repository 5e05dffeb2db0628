//! `sitebundle ls REF`: the entries of a bundle, from its index.

use anyhow::Result;
use bundle::EntryKind;

use super::{open_bundle, open_store};
use crate::args::Global;

pub fn run(g: &Global, reference: &str) -> Result<u8> {
    let store = open_store(g)?;
    let b = open_bundle(&store, reference)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    use std::io::Write;
    if g.json {
        let items: Vec<serde_json::Value> = b
            .index
            .entries()
            .iter()
            .map(|e| {
                let mut v = serde_json::json!({
                    "path": e.path.as_str(), "type": e.type_code().to_string(),
                    "mode": format!("{:o}", e.mode()), "size": e.size(), "layer": e.layer,
                });
                if let Some(h) = e.hash() {
                    v["blake3"] = h.hex().into();
                }
                if let EntryKind::Symlink { target } = &e.kind {
                    v["target"] = target.clone().into();
                }
                v
            })
            .collect();
        drop(out);
        return super::print_json(&serde_json::json!({
            "id": b.id().to_string(),
            "manifest": b.meta.manifest_digest.to_string(),
            "entries": items,
        }))
        .map(|()| 0);
    } else {
        for e in b.index.entries() {
            let tail = match &e.kind {
                EntryKind::Symlink { target } => format!(" -> {target}"),
                _ => String::new(),
            };
            writeln!(
                out,
                "{} {:o} {:>10} {}{}",
                e.type_code(),
                e.mode(),
                e.size(),
                e.path,
                tail
            )?;
        }
    }
    out.flush()?;
    Ok(0)
}
