//! `spec/reference/read_bundle.py` is a second implementation of the format, written from
//! `spec/format.md` alone (it regenerates every layer's canonical tar and the layer grouping in
//! Python). Every test-vector site, built here with zstd and with gzip, must be accepted by it,
//! with the same bundle id and an identical extracted tree. This keeps the spec true to the code.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use bundle::{BuildOptions, Compression, NoProgress, Store};
use common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (path, kind, mode, content or link target) for every entry below `root`.
fn tree(root: &Path) -> Vec<(String, char, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p
                .strip_prefix(root)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            let md = fs::symlink_metadata(&p).expect("lstat");
            if md.is_dir() {
                out.push((rel, 'd', 0, Vec::new()));
                stack.push(p);
            } else if md.file_type().is_symlink() {
                out.push((
                    rel,
                    'l',
                    0,
                    fs::read_link(&p)
                        .expect("readlink")
                        .into_os_string()
                        .into_encoded_bytes(),
                ));
            } else {
                out.push((
                    rel,
                    'f',
                    md.permissions().mode() & 0o111,
                    fs::read(&p).expect("read"),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn reference_reader_accepts_what_we_write() {
    let probe = Command::new("python3")
        .args(["-c", "import blake3"])
        .status();
    assert!(
        probe.map(|s| s.success()).unwrap_or(false),
        "python3 with the blake3 module is needed (pip install blake3; scripts/test installs it)"
    );
    let reader = repo().join("spec/reference/read_bundle.py");
    let vectors = vectors_dir();
    let mut checked = 0;
    for entry in fs::read_dir(&vectors).expect("vectors") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let Some(stem) = name.strip_suffix(".site.json") else {
            continue;
        };
        let desc: serde_json::Value =
            serde_json::from_slice(&fs::read(vectors.join(&name)).expect("read")).expect("json");
        let tmp = tempfile::tempdir().expect("tempdir");
        let site = tmp.path().join("site");
        fs::create_dir(&site).expect("mkdir");
        materialize(&desc, &site);
        for compression in [Compression::Zstd, Compression::Gzip] {
            let home = tmp.path().join(format!("store-{compression:?}"));
            let store = Store::open(&home).expect("store");
            let opts = BuildOptions {
                tags: vec!["t".into()],
                ..vector_options(&desc, compression)
            };
            let r = bundle::build(&site, &store, &opts, &NoProgress).expect("build");
            let out = tmp.path().join(format!("ref-{compression:?}"));
            let run = Command::new("python3")
                .arg(&reader)
                .arg(&home)
                .arg("t")
                .arg("--extract")
                .arg(&out)
                .output()
                .expect("run reader");
            assert!(
                run.status.success(),
                "{stem} ({compression:?}): reference reader refused it: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&run.stdout).trim(),
                r.id.to_string(),
                "{stem}: bundle id"
            );
            assert_eq!(
                tree(&out),
                tree(&site),
                "{stem} ({compression:?}): extracted tree differs"
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "checked only {checked} builds");
}

#[test]
fn reference_reader_rejects_a_tampered_layer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = tmp.path().join("site");
    fs::create_dir(&site).expect("mkdir");
    fs::write(site.join("index.html"), "<p>one</p>").expect("write");
    let home = tmp.path().join("store");
    let store = Store::open(&home).expect("store");
    let opts = BuildOptions {
        tags: vec!["t".into()],
        ..BuildOptions::default()
    };
    let r = bundle::build(&site, &store, &opts, &NoProgress).expect("build");
    let b = bundle::Bundle::open(&store, &r.manifest).expect("open");
    let layer = store.blob_path(&b.meta.manifest.layers[1].digest);
    let mut bytes = fs::read(&layer).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&layer, bytes).expect("write");
    let run = Command::new("python3")
        .arg(repo().join("spec/reference/read_bundle.py"))
        .arg(&home)
        .arg("t")
        .output()
        .expect("run reader");
    assert!(
        !run.status.success(),
        "reference reader accepted a tampered layer"
    );
}
