//! Helpers shared by the spec-vector tests: materializing a `spec/test-vectors/*.site.json`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// `spec/test-vectors/`.
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/test-vectors")
}

/// Write the site a vector describes under `root` (see `spec/test-vectors/README.md`).
pub fn materialize(desc: &serde_json::Value, root: &Path) {
    for e in desc["entries"].as_array().expect("entries") {
        let path = root.join(e["path"].as_str().expect("path"));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir parent");
        }
        match e["type"].as_str().expect("type") {
            "d" => fs::create_dir_all(&path).expect("mkdir"),
            "l" => std::os::unix::fs::symlink(e["target"].as_str().expect("target"), &path)
                .expect("symlink"),
            "f" => {
                let bytes = match e["text"].as_str() {
                    Some(t) => t.as_bytes().to_vec(),
                    None => {
                        let x = &e["xof"];
                        let mut out = vec![0u8; x["len"].as_u64().expect("len") as usize];
                        let mut h = blake3::Hasher::new();
                        h.update(x["seed"].as_str().expect("seed").as_bytes());
                        h.finalize_xof().fill(&mut out);
                        out
                    }
                };
                fs::write(&path, bytes).expect("write");
                let exec = e["executable"].as_bool().unwrap_or(false);
                let mode = if exec { 0o755 } else { 0o644 };
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            }
            other => panic!("unknown entry type {other}"),
        }
    }
}

/// The build options a vector asks for: its `platform` (`OS/ARCH[/VARIANT]`, default
/// linux/amd64), with `compression`, no cache.
pub fn vector_options(
    desc: &serde_json::Value,
    compression: bundle::Compression,
) -> bundle::BuildOptions {
    let platform: bundle::manifest::Platform = desc["platform"]
        .as_str()
        .unwrap_or("linux/amd64")
        .parse()
        .expect("a valid platform");
    bundle::BuildOptions {
        compression,
        use_cache: false,
        os: platform.os,
        architecture: platform.architecture,
        variant: platform.variant,
        ..bundle::BuildOptions::default()
    }
}
