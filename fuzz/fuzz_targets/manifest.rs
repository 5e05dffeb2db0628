//! Fuzz the manifest and config parsers (the strict manifest and the canonical config checks): any
//! bytes must give `Ok` or `Err`, never a panic, and an accepted config must be exactly its
//! canonical re-encoding.
//! The input is split at the first NUL: manifest bytes before it, config bytes after it, so the
//! config parser is reached with manifests the fuzzer has already made acceptable.
#![no_main]

use bundle::manifest::{parse_config, parse_manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (m, c) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[..0]),
    };
    if let Ok(manifest) = parse_manifest(m) {
        // What was accepted must survive a round trip through the canonical encoding.
        let again = parse_manifest(&manifest.to_bytes()).expect("re-encoded manifest parses");
        assert_eq!(again, manifest);
        if let Ok((config, labels)) = parse_config(&manifest, c) {
            assert_eq!(config.rootfs.diff_ids.len(), manifest.layers.len());
            // The config has one byte form: what was accepted is exactly its re-encoding.
            assert_eq!(config.to_bytes(), c, "accepted a config that is not canonical");
            let again =
                parse_config(&manifest, &config.to_bytes()).expect("re-encoded config parses");
            assert_eq!(again, (config, labels));
        }
    }
});
