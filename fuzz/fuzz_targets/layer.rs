//! Fuzz the layer readers: the strict tar reader over raw bytes, and the same reader behind the
//! zstd or gzip decoder (what `verify` and `extract` run over a layer blob). Contents are drained into a
//! sink with a cap, so a decompression bomb in the input costs bounded time.
#![no_main]

use std::io::{self, Read};

use bundle::tar::TarReader;
use bundle::Compression;
use libfuzzer_sys::fuzz_target;

/// Most decompressed bytes one run reads (keeps each run fast).
const MAX_OUT: u64 = 16 * 1024 * 1024;
/// Most entries one run reads.
const MAX_ENTRIES: usize = 10_000;

fn drain(r: impl Read) {
    let mut t = TarReader::new(r.take(MAX_OUT), "fuzz");
    for _ in 0..MAX_ENTRIES {
        match t.next_header() {
            Ok(Some(h)) => {
                if h.size > 0 && t.copy_content(&mut io::sink()).is_err() {
                    return;
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the path so all get coverage from one corpus.
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 3 {
        0 => drain(rest),
        1 => {
            if let Ok(dec) = Compression::Zstd.decoder(rest) {
                drain(dec);
            }
        }
        _ => {
            if let Ok(dec) = Compression::Gzip.decoder(rest) {
                drain(dec);
            }
        }
    }
});
