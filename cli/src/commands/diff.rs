//! `sitebundle diff A B`.

use anyhow::Result;

use super::{human, open_bundle, open_store, print_json};
use crate::args::{DiffArgs, Global};
use crate::report::EXIT_DIFFERENT;

pub fn run(g: &Global, a: DiffArgs) -> Result<u8> {
    let store = open_store(g)?;
    let (old, new) = (open_bundle(&store, &a.a)?, open_bundle(&store, &a.b)?);
    // diff pairs renames by content, so it holds both indexes in memory.
    let (old_index, new_index) = (old.index.load(&store)?, new.index.load(&store)?);
    let d = bundle::diff(&old_index, &new_index);
    let new_bytes = d.new_content_bytes(&old_index, &new_index);
    if g.json {
        let mut v = serde_json::to_value(&d)?;
        v["new_content_bytes"] = new_bytes.into();
        v["a"] = old.id().to_string().into();
        v["b"] = new.id().to_string().into();
        print_json(&v)?;
    } else {
        for c in &d.removed {
            println!("- {} ({})", c.path, human(c.old_size));
        }
        for c in &d.added {
            println!("+ {} ({})", c.path, human(c.new_size));
        }
        for c in &d.changed {
            let what = if c.mode_only {
                " mode only".to_string()
            } else {
                format!(" {} -> {}", human(c.old_size), human(c.new_size))
            };
            println!("M {}{}", c.path, what);
        }
        for c in &d.renamed {
            println!(
                "R {} -> {} ({})",
                c.from.as_deref().unwrap_or("?"),
                c.path,
                human(c.new_size)
            );
        }
        eprintln!(
            "{} added, {} removed, {} changed, {} renamed, {} unchanged; {} of new content",
            d.added.len(),
            d.removed.len(),
            d.changed.len(),
            d.renamed.len(),
            d.unchanged,
            human(new_bytes)
        );
    }
    Ok(if a.exit_code && !d.is_empty() {
        EXIT_DIFFERENT
    } else {
        0
    })
}
