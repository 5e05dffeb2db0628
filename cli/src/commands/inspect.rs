//! `sitebundle inspect REF`: ids, layers, sizes.

use anyhow::Result;

use super::{human, open_bundle, open_store, print_json};
use crate::args::Global;

pub fn run(g: &Global, reference: &str) -> Result<u8> {
    let store = open_store(g)?;
    let b = open_bundle(&store, reference)?;
    let m = &b.meta.manifest;
    let tags: Vec<String> = store
        .list()?
        .into_iter()
        .filter(|s| s.manifest == b.meta.manifest_digest)
        .flat_map(|s| s.tags)
        .collect();
    let layers: Vec<serde_json::Value> = m
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let st = b.index.layer_stats(i);
            let (files, bytes) = (st.files, st.bytes);
            serde_json::json!({
                "digest": l.digest.to_string(), "diff_id": b.meta.config.rootfs.diff_ids[i].to_string(),
                "size": l.size, "files": files, "bytes": bytes,
            })
        })
        .collect();
    let v = serde_json::json!({
        "id": b.id().to_string(),
        "manifest": b.meta.manifest_digest.to_string(),
        "tags": tags,
        "format": bundle::manifest::FORMAT_VERSION,
        "compression": b.meta.compression_name(),
        "encodings": b.meta.encodings,
        "platform": match &b.meta.config.variant {
            Some(variant) => format!("{}/{}/{variant}", b.meta.config.os, b.meta.config.architecture),
            None => format!("{}/{}", b.meta.config.os, b.meta.config.architecture),
        },
        "files": b.index.file_count(),
        "bytes": b.index.total_bytes(),
        "entries": b.index.len(),
        "index": b.meta.index_digest.to_string(),
        "compressed_bytes": m.layers.iter().map(|l| l.size).sum::<u64>(),
        "layers": layers,
    });
    if g.json {
        print_json(&v)?;
        return Ok(0);
    }
    println!("id:          {}", b.id());
    println!("manifest:    {}", b.meta.manifest_digest);
    if !tags.is_empty() {
        println!("tags:        {}", tags.join(", "));
    }
    println!(
        "format:      sitebundle {} ({}, {})",
        bundle::manifest::FORMAT_VERSION,
        b.meta.compression_name(),
        v["platform"].as_str().unwrap_or_default(),
    );
    println!(
        "files:       {} ({}), {} entries",
        b.index.file_count(),
        human(b.index.total_bytes()),
        b.index.len()
    );
    println!(
        "compressed:  {}",
        human(m.layers.iter().map(|l| l.size).sum())
    );
    println!("layers:");
    for (i, l) in v["layers"].as_array().into_iter().flatten().enumerate() {
        println!(
            "  {i:>3} {} {:>10} {:>6} files {:>10}",
            l["digest"].as_str().unwrap_or_default(),
            human(l["size"].as_u64().unwrap_or(0)),
            l["files"],
            human(l["bytes"].as_u64().unwrap_or(0)),
        );
    }
    Ok(0)
}
