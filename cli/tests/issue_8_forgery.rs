//! Issue 8, "the reader must enforce the spec it states": the forgery suite. An honest bundle is
//! rewritten with exactly one MUST of spec §4-§9 broken and every digest recomputed
//! ([`testkit::forge`]), in both compressions; `sitebundle verify` and `extract` must refuse each
//! (exit 3, with the words of the check that caught it, nothing written) and so must the
//! reference reader `spec/reference/read_bundle.py`. The control row (nothing broken) must be
//! accepted by all three with the honest bundle id, which proves the forger makes valid bundles.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use bundle::{Compression, Store};
use common::*;
use testkit::forge::{applies, Forge, RULES};

/// What the forgeries start from: two content layers (text, binary), a content with three paths
/// (two hard links), a symlink, an executable, a pax path, and directories with files.
fn forge_site(root: &Path) {
    write(root, "a/one.css", b"body{color:red}\n");
    write(root, "b/two.css", b"body{color:red}\n");
    write(root, "c/three.css", b"body{color:red}\n");
    write(root, "index.html", b"<h1>home</h1>\n");
    write(root, "docs/guide.html", b"<p>guide</p>\n");
    let long = format!("docs/{}/page.html", "é".repeat(60));
    write(root, &long, b"<p>long</p>\n");
    write(root, "img/a.png", &noise(7, 3000));
    write(root, "img/b.png", &noise(8, 5000));
    write(root, "bin/run.sh", b"#!/bin/sh\nexit 0\n");
    fs::set_permissions(root.join("bin/run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::symlink("index.html", root.join("home.html")).expect("symlink");
}

fn reference_reader() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/reference/read_bundle.py")
}

#[test]
fn issue_8_forgery_every_rule_is_enforced_zstd() {
    every_rule_is_enforced(Compression::Zstd, "zstd");
}

#[test]
fn issue_8_forgery_every_rule_is_enforced_gzip() {
    every_rule_is_enforced(Compression::Gzip, "gzip");
}

/// Every rule of [`RULES`] against `verify`, `extract` and the reference reader, in `c`.
fn every_rule_is_enforced(c: Compression, cname: &str) {
    let probe = Command::new("python3")
        .args(["-c", "import blake3"])
        .status();
    assert!(
        probe.map(|s| s.success()).unwrap_or(false),
        "python3 with the blake3 module is needed (scripts/test installs it)"
    );
    let work = tempfile::tempdir().expect("tempdir");
    let site = work.path().join("site");
    forge_site(&site);
    let mut failures = Vec::new();
    let mut checked = 0;
    {
        let home = work.path().join(format!("home-{cname}"));
        let id = build(&home, &site, &["--compression", cname, "--tag", "honest"]);
        let store = Store::open(&home).expect("store");
        let honest = store.resolve("honest").expect("honest");
        let layers = bundle::Bundle::open(&store, &honest)
            .expect("open")
            .meta
            .manifest
            .layers
            .len();
        assert_eq!(
            layers, 3,
            "the forge site has layer 0, a text and a binary layer"
        );
        for rule in RULES.iter().filter(|r| applies(r, c)) {
            let mut f = Forge::from_store(&store, &honest);
            (rule.apply)(&mut f);
            let tag = rule.name;
            let sealed = f.seal(&store, tag);
            let control = rule.name == "control";
            let row = format!("{cname} {} ({}: {})", rule.name, rule.section, rule.what);
            if control && sealed.id.to_string() != id {
                failures.push(format!("{row}: forger changed the bundle id"));
            }
            // verify
            let out = sb(&home).args(["verify", tag]).output().expect("verify");
            let err = String::from_utf8_lossy(&out.stderr);
            match (control, out.status.code()) {
                (true, Some(0)) => {}
                (false, Some(3)) if err.contains(rule.expect) => {}
                (_, code) => failures.push(format!(
                    "{row}: verify exited {code:?}, expected {} with {:?}: {err}",
                    if control { 0 } else { 3 },
                    rule.expect
                )),
            }
            // extract
            let dest = work.path().join(format!("out-{cname}-{tag}"));
            let out = sb(&home)
                .arg("extract")
                .arg(tag)
                .arg(&dest)
                .output()
                .expect("extract");
            let ok = if control {
                out.status.success() && snapshot(&dest) == snapshot(&site)
            } else {
                out.status.code() == Some(3)
                    && fs::symlink_metadata(&dest).is_err()
                    && staging_leftovers(work.path(), &format!("out-{cname}-{tag}")).is_empty()
            };
            if !ok {
                failures.push(format!(
                    "{row}: extract exited {:?} (dest exists: {}): {}",
                    out.status.code(),
                    dest.exists(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            // the reference reader
            if rule.reference_reader {
                let out = Command::new("python3")
                    .arg(reference_reader())
                    .arg(&home)
                    .arg(tag)
                    .output()
                    .expect("python3");
                let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let ok = if control {
                    out.status.success() && printed == id
                } else {
                    !out.status.success()
                };
                if !ok {
                    failures.push(format!(
                        "{row}: read_bundle.py exited {:?}, printed {printed:?}: {}",
                        out.status.code(),
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} rows ran");
    assert!(
        failures.is_empty(),
        "{} of {checked} forgery rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn issue_8_forgery_index_json_naming_another_bundle_id_is_refused() {
    // §9: a config whose digest differs from the bundle id asked for. `index.json` records a
    // manifest under bundle id X (an annotation); asked for X, the reader opens that manifest,
    // finds id Y, and must refuse rather than verify or extract Y as X.
    let work = tempfile::tempdir().expect("tempdir");
    let site = work.path().join("site");
    forge_site(&site);
    let home = work.path().join("home");
    let id = build(&home, &site, &["--tag", "honest"]);
    let liar = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let path = home.join("index.json");
    let mut idx: serde_json::Value =
        serde_json::from_slice(&fs::read(&path).expect("index.json")).expect("json");
    assert_eq!(
        idx["manifests"][0]["annotations"]["dev.sitebundle.id"],
        id.as_str()
    );
    idx["manifests"][0]["annotations"]["dev.sitebundle.id"] = liar.into();
    fs::write(&path, serde_json::to_vec(&idx).expect("json")).expect("write index.json");
    for cmd in ["verify", "ls"] {
        let out = sb(&home).args([cmd, liar]).output().expect("run");
        assert_eq!(
            out.status.code(),
            Some(3),
            "{cmd} of a bundle id index.json lies about: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("but that manifest's bundle id is"));
    }
    let dest = work.path().join("out");
    let out = sb(&home)
        .arg("extract")
        .arg(liar)
        .arg(&dest)
        .output()
        .expect("extract");
    assert_eq!(out.status.code(), Some(3));
    assert!(!dest.exists());
}
