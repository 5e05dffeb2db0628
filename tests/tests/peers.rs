//! Peers read our bundles (issue 3): `sitebundle export` → `skopeo copy oci-archive:` → `umoci
//! unpack` (gzip layers) gives the site; plain `zstd -d | tar -x` of each layer in order, straight
//! from the store's OCI layout, gives the site; `skopeo inspect oci:$SITEBUNDLE_HOME:tag` reads
//! the store. Tools come from ../shared/services/install; a missing tool fails the test.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

/// A site with what the corpus's small site lacks: a symlink, an executable, duplicates
/// (stored as tar hardlinks), an empty directory, a long unicode path, an empty file.
fn feature_site(root: &Path) {
    let w = |rel: &str, bytes: &[u8]| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir -p");
        fs::write(&p, bytes).expect("write");
    };
    w("index.html", b"<h1>home</h1>\n");
    w("a/one.css", b"body{color:red}\n");
    w("b/two.css", b"body{color:red}\n");
    w("c/three.css", b"body{color:red}\n");
    w("empty.txt", b"");
    let long = format!("unicode/{}/ページ-😀.html", "é".repeat(60));
    w(&long, b"<p>long</p>\n");
    let img: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    w("img/big.png", &img);
    w("img/copy.png", &img);
    w("bin/run.sh", b"#!/bin/sh\nexit 0\n");
    fs::set_permissions(root.join("bin/run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::create_dir_all(root.join("empty-dir/nested")).expect("mkdir");
    std::os::unix::fs::symlink("../index.html", root.join("a/home.html")).expect("symlink");
    std::os::unix::fs::symlink("a", root.join("alias")).expect("symlink");
}

fn sites() -> Vec<(String, std::path::PathBuf, Option<tempfile::TempDir>)> {
    let t = tempfile::tempdir().expect("tempdir");
    let site = t.path().join("site");
    feature_site(&site);
    vec![
        ("features".to_string(), site, Some(t)),
        ("small-v1".to_string(), corpus_site("small", "v1"), None),
    ]
}

#[test]
fn gzip_bundle_through_skopeo_and_umoci_unpacks_to_the_site() {
    require_tool("skopeo");
    require_tool("umoci");
    for (name, site, _keep) in sites() {
        let home = tempfile::tempdir().expect("tempdir");
        let work = tempfile::tempdir().expect("tempdir");
        build(home.path(), &site, &["--compression", "gzip", "--tag", "g"]);
        let archive = work.path().join("x.tar");
        run_ok(sb(home.path()).args(["export", "g", "-o"]).arg(&archive));
        let layout = work.path().join("oci");
        run_ok(Command::new("skopeo").args([
            "copy",
            "--quiet",
            &format!("oci-archive:{}", archive.display()),
            &format!("oci:{}:g", layout.display()),
        ]));
        let bundle_dir = work.path().join("bundle");
        run_ok(
            Command::new("umoci")
                .args(["unpack", "--rootless", "--image"])
                .arg(format!("{}:g", layout.display()))
                .arg(&bundle_dir),
        );
        let rootfs = bundle_dir.join("rootfs");
        assert_same_tree(
            &format!("{name}: umoci rootfs"),
            &snapshot(&site),
            &snapshot(&rootfs),
        );
        assert_eq!(b3sum_walk(&site), b3sum_walk(&rootfs), "{name}: b3sum walk");
    }
}

#[test]
fn zstd_layers_untarred_in_order_give_the_site() {
    require_tool("zstd");
    require_tool("skopeo");
    for (name, site, _keep) in sites() {
        let home = tempfile::tempdir().expect("tempdir");
        let work = tempfile::tempdir().expect("tempdir");
        build(home.path(), &site, &["--tag", "z"]);
        // Straight from the store, which is an OCI layout.
        let root = work.path().join("from-store");
        untar_layers(home.path(), "z", "zstd -d -c", &root);
        assert_same_tree(
            &format!("{name}: zstd|tar from the store"),
            &snapshot(&site),
            &snapshot(&root),
        );
        assert_eq!(b3sum_walk(&site), b3sum_walk(&root), "{name}: b3sum walk");
        // And after a trip through skopeo (export, oci-archive → oci layout).
        let archive = work.path().join("x.tar");
        run_ok(sb(home.path()).args(["export", "z", "-o"]).arg(&archive));
        let layout = work.path().join("oci");
        run_ok(Command::new("skopeo").args([
            "copy",
            "--quiet",
            &format!("oci-archive:{}", archive.display()),
            &format!("oci:{}:z", layout.display()),
        ]));
        let root2 = work.path().join("from-skopeo");
        untar_layers(&layout, "z", "zstd -d -c", &root2);
        assert_same_tree(
            &format!("{name}: zstd|tar after skopeo"),
            &snapshot(&site),
            &snapshot(&root2),
        );
    }
}

#[test]
fn gzip_layers_untarred_in_order_give_the_site() {
    for (name, site, _keep) in sites().into_iter().take(1) {
        let home = tempfile::tempdir().expect("tempdir");
        let work = tempfile::tempdir().expect("tempdir");
        build(home.path(), &site, &["--compression", "gzip", "--tag", "g"]);
        let root = work.path().join("root");
        untar_layers(home.path(), "g", "gzip -d -c", &root);
        assert_same_tree(
            &format!("{name}: gzip|tar"),
            &snapshot(&site),
            &snapshot(&root),
        );
    }
}

#[test]
fn skopeo_inspects_the_store_and_the_archive() {
    require_tool("skopeo");
    let t = tempfile::tempdir().expect("tempdir");
    let site = t.path().join("site");
    feature_site(&site);
    let home = tempfile::tempdir().expect("tempdir");
    let id = build(home.path(), &site, &["--tag", "latest-site"]);
    let ours = inspect(home.path(), "latest-site");
    assert_eq!(ours["id"], id.as_str());
    let out = run_ok(Command::new("skopeo").args([
        "inspect",
        &format!("oci:{}:latest-site", home.path().display()),
    ]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("skopeo prints JSON");
    assert_eq!(v["Digest"], ours["manifest"], "{v}");
    let theirs: Vec<&str> = v["Layers"]
        .as_array()
        .expect("Layers")
        .iter()
        .map(|l| l.as_str().expect("layer digest"))
        .collect();
    let ours_layers: Vec<&str> = ours["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest"))
        .collect();
    assert_eq!(theirs, ours_layers);
    assert_eq!(v["Os"], "linux");
    // The raw config skopeo reads is our config blob: its digest is the bundle id.
    let cfg = run_ok(Command::new("skopeo").args([
        "inspect",
        "--config",
        "--raw",
        &format!("oci:{}:latest-site", home.path().display()),
    ]));
    let digest = format!("sha256:{}", sha256_hex(&cfg.stdout));
    assert_eq!(digest, id, "config digest is the bundle id");
    // And the exported archive is readable the same way.
    let archive = t.path().join("x.tar");
    run_ok(
        sb(home.path())
            .args(["export", "latest-site", "-o"])
            .arg(&archive),
    );
    let out = run_ok(
        Command::new("skopeo").args(["inspect", &format!("oci-archive:{}", archive.display())]),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("skopeo prints JSON");
    assert_eq!(v["Digest"], ours["manifest"]);
}

fn sha256_hex(bytes: &[u8]) -> String {
    let d = bundle::Digest::of(bytes);
    d.hex()
}
