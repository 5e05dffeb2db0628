//! Fuzz the manifest and config parsers: any bytes must give `Ok` or `Err`, never a panic.
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
        if let Ok((config, _index)) = parse_config(&manifest, c) {
            assert_eq!(config.rootfs.diff_ids.len(), manifest.layers.len());
            let again =
                parse_config(&manifest, &config.to_bytes()).expect("re-encoded config parses");
            assert_eq!(again.0, config);
        }
    }
});
