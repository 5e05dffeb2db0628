//! The spec's test vectors (`spec/test-vectors/`): each described site must build to exactly the
//! recorded bundle id, index digest, diff_ids and index bytes, with zstd and with gzip. A mismatch
//! means the format changed (see `spec/test-vectors/README.md`).

use std::fs;
use std::path::Path;

mod common;

use bundle::{BuildOptions, Bundle, Compression, NoProgress, Store};
use common::*;

struct Built {
    expected: serde_json::Value,
    index: Vec<u8>,
}

fn build(site: &Path, desc: &serde_json::Value, compression: Compression) -> Built {
    let home = tempfile::tempdir().expect("tempdir");
    let store = Store::open(home.path()).expect("store");
    let opts: BuildOptions = vector_options(desc, compression);
    let r = bundle::build(site, &store, &opts, &NoProgress).expect("build");
    let b = Bundle::open(&store, &r.manifest).expect("open");
    bundle::verify(&store, &b, &NoProgress).expect("verify");
    let config = store
        .read_blob(&r.id, bundle::manifest::MAX_JSON_BYTES)
        .expect("config blob");
    let expected = serde_json::json!({
        "id": r.id.to_string(),
        "config": String::from_utf8(config).expect("config is UTF-8"),
        "index_digest": b.meta.index_digest.to_string(),
        "diff_ids": b.meta.config.rootfs.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "layers": r.layers,
        "files": r.files,
        "bytes": r.bytes,
    });
    Built {
        expected,
        index: b.index.bytes(&store).expect("index bytes"),
    }
}

#[test]
fn vectors_match_recorded_digests() {
    let update = std::env::var_os("SITEBUNDLE_UPDATE_VECTORS").is_some();
    let mut names: Vec<String> = fs::read_dir(vectors_dir())
        .expect("spec/test-vectors")
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".site.json")
                .map(String::from)
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 3,
        "expected at least 3 vectors, found {names:?}"
    );
    for name in names {
        let dir = vectors_dir();
        let desc: serde_json::Value = serde_json::from_slice(
            &fs::read(dir.join(format!("{name}.site.json"))).expect("read site"),
        )
        .expect("json");
        let tmp = tempfile::tempdir().expect("tempdir");
        let site = tmp.path().join("site");
        fs::create_dir(&site).expect("mkdir");
        materialize(&desc, &site);
        let zstd = build(&site, &desc, Compression::Zstd);
        let gzip = build(&site, &desc, Compression::Gzip);
        assert_eq!(
            zstd.expected, gzip.expected,
            "{name}: bundle id must not depend on compression"
        );
        assert_eq!(
            zstd.index, gzip.index,
            "{name}: index must not depend on compression"
        );
        let exp_path = dir.join(format!("{name}.expected.json"));
        let idx_path = dir.join(format!("{name}.index"));
        if update {
            fs::write(
                &exp_path,
                serde_json::to_string_pretty(&zstd.expected).expect("json") + "\n",
            )
            .expect("write");
            fs::write(&idx_path, &zstd.index).expect("write");
            continue;
        }
        let recorded: serde_json::Value = serde_json::from_slice(
            &fs::read(&exp_path).unwrap_or_else(|_| panic!("missing {}", exp_path.display())),
        )
        .expect("json");
        assert_eq!(
            zstd.expected,
            recorded,
            "{name}: digests differ from {}",
            exp_path.display()
        );
        let recorded_index = fs::read(&idx_path).expect("index file");
        assert_eq!(
            String::from_utf8_lossy(&zstd.index),
            String::from_utf8_lossy(&recorded_index),
            "{name}: index bytes differ from {}",
            idx_path.display()
        );
    }
}
