//! Fuzz the index decoder. The encoding is canonical, so whatever decodes must re-encode to the
//! exact input bytes.
#![no_main]

use bundle::Index;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = Index::decode(data) {
        assert_eq!(
            index.encode(),
            data,
            "decode accepted a non-canonical index"
        );
        let _ = index.content_groups();
        let _ = index.layer_count();
    }
});
