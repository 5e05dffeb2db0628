//! Issue 8, "spec gaps an independent reader hit": each gap closed in `spec/format.md` is pinned
//! here against the real binary (the byte-level ones also by `spec/test-vectors`).

mod common;

use std::fs;
use std::path::Path;

use common::*;

fn config_of(home: &Path, reference: &str) -> serde_json::Value {
    let out = sb(home)
        .args(["inspect", "--json", reference])
        .output()
        .expect("inspect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = v["id"].as_str().expect("id").to_string();
    let bytes = fs::read(home.join("blobs/sha256").join(&id[7..])).expect("config blob");
    serde_json::from_slice(&bytes).expect("config json")
}

#[test]
fn issue_8_spec_platform_variant_is_written_as_its_own_member() {
    let work = tempfile::tempdir().expect("tempdir");
    let site = work.path().join("site");
    sample_site(&site);
    let home = work.path().join("home");
    let plain = build(&home, &site, &["--tag", "amd64"]);
    let arm = build(
        &home,
        &site,
        &["--platform", "linux/arm64/v8", "--tag", "arm"],
    );
    assert_ne!(plain, arm, "the platform is part of the bundle id");
    let c = config_of(&home, "arm");
    assert_eq!(c["architecture"], "arm64");
    assert_eq!(c["variant"], "v8");
    let c = config_of(&home, "amd64");
    assert_eq!(c["architecture"], "amd64");
    assert!(c.get("variant").is_none(), "no variant unless given: {c}");
    let out = sb(&home).args(["verify", "arm"]).output().expect("verify");
    assert!(out.status.success());
    for bad in [
        "linux/arm64/V8",
        "linux",
        "linux/arm 64",
        "linux/arm64/v8/x",
    ] {
        let out = sb(&home)
            .args(["build"])
            .arg(&site)
            .args(["--platform", bad])
            .output()
            .expect("build");
        assert!(!out.status.success(), "--platform {bad} was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("platform"),
            "{bad}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn issue_8_spec_a_bundle_id_of_two_manifests_resolves_to_the_zstd_one() {
    // The same site built with zstd and with gzip: one bundle id, two manifests. The id names
    // the all-zstd manifest whichever was recorded last (spec §2, §8: the same choice on every
    // target), and a tag or the manifest digest picks one.
    let work = tempfile::tempdir().expect("tempdir");
    let site = work.path().join("site");
    sample_site(&site);
    let home = work.path().join("home");
    let id = build(&home, &site, &["--tag", "z"]);
    assert_eq!(
        build(&home, &site, &["--compression", "gzip", "--tag", "g"]),
        id
    );
    let manifest = |r: &str| -> (String, String) {
        let out = sb(&home)
            .args(["inspect", "--json", r])
            .output()
            .expect("inspect");
        assert!(
            out.status.success(),
            "{r}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        (
            v["manifest"].as_str().expect("manifest").to_string(),
            v["compression"].as_str().expect("compression").to_string(),
        )
    };
    let (gz, c) = manifest("g");
    assert_eq!(c, "gzip");
    let (zs, c) = manifest("z");
    assert_eq!(c, "zstd");
    assert_ne!(gz, zs);
    assert_eq!(manifest(&id), (zs.clone(), "zstd".to_string()));
    assert_eq!(manifest(&id[7..19]).0, zs, "an id prefix too");
    // Recording the gzip form again does not change the choice.
    build(&home, &site, &["--compression", "gzip", "--tag", "g2"]);
    assert_eq!(manifest(&id).0, zs);
    assert_eq!(manifest("g2").0, gz);
    for cmd in ["verify", "ls"] {
        let out = sb(&home).args([cmd, &id]).output().expect("run");
        assert!(out.status.success(), "{cmd} {id}");
    }
}

#[test]
fn issue_8_spec_config_example_has_no_insignificant_whitespace() {
    // §7's example config is what an implementer copies: it must be in the canonical form it
    // describes (the old one had a space after a comma).
    let spec = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/format.md"))
        .expect("spec/format.md");
    let at = spec.find("**Config**").expect("the Config paragraph");
    let block = &spec[at..];
    let start = block.find("```json\n").expect("a json block") + 8;
    let end = start + block[start..].find("\n```").expect("end of block");
    let example = &block[start..end];
    let mut in_string = false;
    let mut escaped = false;
    for c in example.chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => in_string = !in_string,
            (false, _, c) if c.is_whitespace() => panic!("whitespace outside a string: {example}"),
            _ => {}
        }
    }
    let v: serde_json::Value = serde_json::from_str(example).expect("the example is JSON");
    let keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["architecture", "config", "os", "rootfs"]);
}
