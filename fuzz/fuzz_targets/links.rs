//! Fuzz symlink resolution (spec §3, §4 rule 6) differentially: the same entries resolved over
//! sorted entries (`links::check_links`, what the builder uses) and through the reader's table
//! of keyed path hashes (inside `Bundle::open`) must agree. The input is a small program: each
//! byte pair adds a directory, a file or a link whose target is made of components from a tiny
//! alphabet (`a`, `b`, `c`, `..`, `.`, empty), so loops, chains, escapes and `..` after links are
//! frequent.
#![no_main]

#[path = "harness.rs"]
mod harness;

use std::collections::BTreeMap;

use bundle::{layout, Entry, EntryKind, FileHash, SitePath};
use harness::{assemble, Blob};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 3] = ["a", "b", "c"];
const COMPS: [&str; 6] = ["a", "b", "c", "..", ".", ""];

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut s = String::from("sitebundle-index 1\n");
    for e in entries {
        match &e.kind {
            EntryKind::Dir => s.push_str(&format!("d\t755\t0\t0\t-\t{}\n", e.path)),
            EntryKind::File { size, hash, .. } => {
                s.push_str(&format!("f\t644\t{size}\t{}\t{}\t{}\n", e.layer, hash.hex(), e.path))
            }
            EntryKind::Symlink { target } => {
                s.push_str(&format!("l\t777\t0\t0\t-\t{}\t{target}\n", e.path))
            }
        }
    }
    s.into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let mut tree: BTreeMap<String, Entry> = BTreeMap::new();
    let body = b"x".to_vec();
    for op in data.chunks(2).take(64) {
        let (a, b) = (op[0], *op.get(1).unwrap_or(&0));
        // The parent: an existing directory picked by `a`, or the root.
        let dirs: Vec<String> = tree
            .values()
            .filter(|e| matches!(e.kind, EntryKind::Dir))
            .map(|e| e.path.to_string())
            .collect();
        let parent = match usize::from(a >> 2) % (dirs.len() + 1) {
            0 => None,
            i => Some(dirs[i - 1].clone()),
        };
        let name = NAMES[usize::from(a & 3) % 3];
        let path = match &parent {
            Some(p) => format!("{p}/{name}"),
            None => name.to_string(),
        };
        if tree.contains_key(&path) || path.len() > 200 {
            continue;
        }
        let Ok(sp) = SitePath::new(path.clone()) else {
            continue;
        };
        let kind = match b % 4 {
            0 => EntryKind::Dir,
            1 => EntryKind::File {
                size: 1,
                hash: FileHash::of(&body),
                executable: false,
            },
            _ => {
                let n = 1 + usize::from(b >> 5);
                let target: Vec<&str> = (0..n)
                    .map(|i| COMPS[usize::from((b >> 2).wrapping_add(i as u8 * 7)) % COMPS.len()])
                    .collect();
                let t = target.join("/");
                if t.is_empty() {
                    continue;
                }
                EntryKind::Symlink { target: t }
            }
        };
        tree.insert(path, Entry { path: sp, kind, layer: 0 });
    }
    let mut entries: Vec<Entry> = tree.into_values().collect();
    if !entries.iter().any(|e| matches!(e.kind, EntryKind::File { .. })) {
        return;
    }
    entries.sort_by(|x, y| x.path.as_str().as_bytes().cmp(y.path.as_str().as_bytes()));
    let layers = layout::assign_layers(&mut entries) as usize;
    let by_entries = bundle::links::check_links(&entries).is_ok();
    let index = encode(&entries);
    let (src, md) = assemble(&index, &vec![vec![0u8; 1024]; layers], Blob::Compressed(bundle::Compression::Zstd), true);
    let by_table = bundle::Bundle::open(&src, &md);
    assert_eq!(
        by_entries,
        by_table.is_ok(),
        "resolution over entries and through the path table disagree: {:?}\n{}",
        by_table.err().map(|e| e.to_string()),
        String::from_utf8_lossy(&index)
    );
});
