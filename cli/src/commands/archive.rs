//! `sitebundle export` and `sitebundle import`.

use anyhow::Result;

use super::{bars, human, open_bundle, open_store, print_json};
use crate::args::{ExportArgs, Global, ImportArgs};

pub fn export(g: &Global, a: ExportArgs) -> Result<u8> {
    let store = open_store(g)?;
    let b = open_bundle(&store, &a.reference)?;
    let name = match a.name {
        Some(n) => n,
        None => export_name(&store, &a.reference, &b)?,
    };
    let len = bundle::archive::export(&store, &b, &name, &a.output)?;
    if g.json {
        print_json(
            &serde_json::json!({"id": b.id().to_string(), "manifest": b.meta.manifest_digest.to_string(), "file": a.output, "size": len}),
        )?;
    } else {
        println!(
            "wrote {} ({}) to {}",
            b.id(),
            human(len),
            a.output.display()
        );
    }
    Ok(0)
}

/// The name an export records when `--name` is not given: the reference itself when it is one of
/// the store's tags, else the bundle's only tag, else `latest`. So `podman load` and `ctr import`
/// of exports of different bundles keep distinct names.
fn export_name(store: &bundle::Store, reference: &str, b: &bundle::Bundle) -> Result<String> {
    let mut tags: Vec<String> = store
        .list()?
        .into_iter()
        .filter(|s| s.manifest == b.meta.manifest_digest)
        .flat_map(|s| s.tags)
        .collect();
    if tags.iter().any(|t| t == reference) {
        return Ok(reference.to_string());
    }
    tags.sort();
    tags.dedup();
    Ok(match tags.as_slice() {
        [only] => only.clone(),
        _ => "latest".to_string(),
    })
}

pub fn import(g: &Global, a: ImportArgs) -> Result<u8> {
    let store = open_store(g)?;
    let got = bundle::archive::import(&store, &a.file, &bars(g))?;
    if g.json {
        let v: Vec<_> = got
            .iter()
            .map(|(b, t)| serde_json::json!({"id": b.id().to_string(), "manifest": b.meta.manifest_digest.to_string(), "tags": t}))
            .collect();
        print_json(&serde_json::json!({ "bundles": v }))?;
    } else {
        for (b, t) in &got {
            eprintln!(
                "imported and verified {} (manifest {}) {}",
                b.id(),
                b.meta.manifest_digest,
                t.join(" ")
            );
            println!("{}", b.id());
        }
    }
    Ok(0)
}
