//! `sitebundle list` and `sitebundle tag`.

use anyhow::Result;

use super::{human, open_store, print_json};
use crate::args::{Global, RmArgs, TagArgs};

pub fn list(g: &Global) -> Result<u8> {
    let store = open_store(g)?;
    let bundles = store.list()?;
    if g.json {
        print_json(&serde_json::json!({ "bundles": bundles }))?;
    } else {
        for b in bundles {
            let id = b.id.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
            println!("{id}  manifest {}  {}", b.manifest, b.tags.join(","));
        }
    }
    Ok(0)
}

pub fn tag(g: &Global, a: TagArgs) -> Result<u8> {
    let store = open_store(g)?;
    // A tag makes the bundle reachable again: gc must not run between the check and the write.
    let _writing = store.write_lock()?;
    let m = store.resolve(&a.reference)?;
    let b = bundle::Bundle::open(&store, &m)?;
    store.add_manifest(
        m,
        store.blob_size(&m)?,
        b.id(),
        std::slice::from_ref(&a.tag),
    )?;
    if g.json {
        print_json(
            &serde_json::json!({"id": b.id().to_string(), "manifest": m.to_string(), "tag": a.tag}),
        )?;
    } else if !g.quiet {
        eprintln!("tagged {} as {}", b.id(), a.tag);
    }
    Ok(0)
}

pub fn rm(g: &Global, a: RmArgs) -> Result<u8> {
    let store = open_store(g)?;
    // Resolve every reference first: a typo removes nothing.
    let digests = a
        .references
        .iter()
        .map(|r| store.resolve(r))
        .collect::<Result<Vec<_>, _>>()?;
    for d in &digests {
        store.remove_manifest(d)?;
        if !g.quiet && !g.json {
            eprintln!("removed {d}");
        }
    }
    if g.json {
        let removed: Vec<String> = digests.iter().map(|d| d.to_string()).collect();
        print_json(&serde_json::json!({ "removed": removed }))?;
    }
    Ok(0)
}

pub fn gc(g: &Global) -> Result<u8> {
    let store = open_store(g)?;
    let quiet = g.quiet || g.json;
    let (n, bytes) = store.gc(|| {
        if !quiet {
            eprintln!(
                "gc: a build, pull, import or tag is running on {}; waiting for it to finish",
                store.root().display()
            );
        }
    })?;
    if g.json {
        print_json(&serde_json::json!({"removed": n, "freed_bytes": bytes}))?;
    } else {
        println!("removed {n} blobs, freed {}", human(bytes));
    }
    Ok(0)
}
