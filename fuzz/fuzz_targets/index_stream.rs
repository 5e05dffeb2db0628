//! Fuzz the streamed index checks a reader runs when it opens a bundle (`bundle::view`): the
//! fuzzed bytes are the index in layer 0's trailer (zstd or gzip, by the first byte), the config
//! labels match them, so every rule of spec §4 and §6 and the link resolution through the path
//! table run on them. Oracle: the view accepts exactly what the in-memory decoder
//! (`Index::decode`, which resolves links over sorted entries) accepts among indexes whose
//! layers follow the grouping, and an accepted index is canonical (re-encodes to its bytes).
#![no_main]

#[path = "harness.rs"]
mod harness;

use bundle::{Bundle, Compression, Index};
use harness::{assemble, Blob};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, index)) = data.split_first() else {
        return;
    };
    let c = if sel & 1 == 0 {
        Compression::Zstd
    } else {
        Compression::Gzip
    };
    // As many (empty) layers as the index names, at most the format's 100.
    let layers = String::from_utf8_lossy(index)
        .lines()
        .filter_map(|l| l.split('\t').nth(3)?.parse::<usize>().ok())
        .max()
        .unwrap_or(0)
        .min(99)
        + 1;
    let tars = vec![vec![0u8; 1024]; layers];
    let (src, md) = assemble(index, &tars, Blob::Compressed(c), true);
    let opened = Bundle::open(&src, &md);
    let decoded = Index::decode(index);
    if let Ok(b) = &opened {
        let idx = decoded.expect("the view accepted an index Index::decode refuses");
        assert_eq!(idx.encode(), index, "accepted a non-canonical index");
        assert_eq!(b.index.len(), idx.entries().len() as u64);
        let loaded = b.index.load(&src).expect("an opened index loads");
        assert_eq!(loaded, idx);
    } else if let (Ok(idx), Err(e)) = (&decoded, &opened) {
        // Index::decode does not check the grouping (§6) nor rule 5 (empty layers): those may
        // refuse what it accepts, nothing else.
        let msg = e.to_string();
        assert!(
            msg.contains("layer") || msg.contains("grouping") || idx.entries().is_empty(),
            "the view refused an index Index::decode accepts: {msg}"
        );
    }
});
