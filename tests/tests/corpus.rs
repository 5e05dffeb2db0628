//! Round trips on the test corpus (issue 3): build, extract, and compare with an independent hash
//! walk (`b3sum`), modes and symlinks; the edge site's bad inputs; and how many layer bytes the
//! next deploys share with v1. Needs `SITEBUNDLE_TEST_CORPUS` (scripts/test sets it up); without
//! it these tests fail, they never skip.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::*;

/// Build `site` (with `extra` build args), extract it, and check the extracted tree against the
/// site: the b3sum walk, then every path's type, exec bit and symlink target. `leave_out` are the
/// site paths the build was told to exclude.
fn round_trip(home: &Path, work: &Path, site: &Path, extra: &[&str], leave_out: &[&str]) -> String {
    let id = build(home, site, extra);
    let dest = tempfile::Builder::new()
        .prefix(&format!("x-{}-", &id[7..19]))
        .tempdir_in(work)
        .expect("tempdir")
        .keep()
        .join("out");
    run_ok(sb(home).args(["extract", &id]).arg(&dest));
    // 1. Independent hash walk.
    let mut want = b3sum_walk(site);
    if !leave_out.is_empty() {
        want = want
            .lines()
            .filter(|l| !leave_out.iter().any(|x| l.ends_with(&format!("  ./{x}"))))
            .map(|l| format!("{l}\n"))
            .collect();
    }
    let got = b3sum_walk(&dest);
    assert!(
        want == got,
        "b3sum walk of {} differs from its extraction",
        site.display()
    );
    // 2. Types, exec bits, symlink targets, empty directories.
    let mut expected = snapshot(site);
    for x in leave_out {
        expected.remove(*x);
    }
    assert_same_tree(&site.display().to_string(), &expected, &snapshot(&dest));
    // The corpus uses exactly the modes a bundle stores (0644, 0755 for dirs and executables),
    // so the full permission bits must come back too.
    let mut want_modes = modes(site);
    for x in leave_out {
        want_modes.remove(*x);
    }
    assert_eq!(want_modes, modes(&dest), "modes of {}", site.display());
    // 3. And the bundle verifies.
    run_ok(sb(home).args(["verify", &id]));
    id
}

#[test]
fn small_v1_v2_v3_round_trip() {
    let home = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let mut ids = Vec::new();
    for v in ["v1", "v2", "v3"] {
        ids.push(round_trip(
            home.path(),
            work.path(),
            &corpus_site("small", v),
            &[],
            &[],
        ));
    }
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        3,
        "three different deploys, three ids"
    );
    // gzip layers: same bundle id (it covers uncompressed content only), same tree back.
    let gz_home = tempfile::tempdir().expect("tempdir");
    let gz = round_trip(
        gz_home.path(),
        work.path(),
        &corpus_site("small", "v1"),
        &["--compression", "gzip"],
        &[],
    );
    assert_eq!(gz, ids[0], "gzip and zstd builds of small/v1 have one id");
}

/// The edge site's deliberately bad entries (corpus.md, "edge").
const EDGE_BAD_LINKS: [&str; 3] = [
    "links/outside-absolute",
    "links/outside-relative",
    "links/dangling.html",
];
const EDGE_NFD: &str = "unicode/cafe\u{301}.html";

#[test]
fn edge_v1_is_refused_then_builds_with_excludes() {
    let home = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let site = corpus_site("edge", "v1");
    // Refused as it is, naming a bad path, with a hint; nothing stored.
    let out = sb(home.path())
        .arg("build")
        .arg(&site)
        .output()
        .expect("run build");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        EDGE_BAD_LINKS.iter().any(|p| stderr.contains(p)) || stderr.contains("unicode/caf"),
        "error names no bad path: {stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
    let blobs = std::fs::read_dir(home.path().join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0, "a refused build stored blobs");
    // Each bad entry alone is refused too: exclude all the others.
    let mut bad: Vec<&str> = EDGE_BAD_LINKS.to_vec();
    bad.push(EDGE_NFD);
    for keep in &bad {
        let mut c = sb(home.path());
        c.arg("build").arg(&site);
        for x in bad.iter().filter(|x| *x != keep) {
            c.args(["--exclude", x]);
        }
        let out = c.output().expect("run build");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{keep} accepted: {stderr}");
        let named = if *keep == EDGE_NFD {
            "unicode/caf"
        } else {
            keep
        };
        assert!(stderr.contains(named), "{keep} not named: {stderr}");
    }
    // With the bad entries excluded it builds, and round-trips exactly.
    let mut args = Vec::new();
    for x in &bad {
        args.extend(["--exclude", x]);
    }
    round_trip(home.path(), work.path(), &site, &args, &bad);
}

#[test]
fn edge_v2_round_trips_with_excludes() {
    // v2: the NFD name is gone, bin/deploy-hook.sh lost its exec bit, kind/was-dir swapped types.
    let home = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let site = corpus_site("edge", "v2");
    let mut args = Vec::new();
    for x in &EDGE_BAD_LINKS {
        args.extend(["--exclude", x]);
    }
    let id = round_trip(home.path(), work.path(), &site, &args, &EDGE_BAD_LINKS);
    // The inside link is kept as a link.
    let ls = run_ok(sb(home.path()).args(["ls", &id]));
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("l ") && l.contains("links/inside.html -> ")),
        "{ls}"
    );
}

/// Bytes of `other`'s layers that are also layers of `base` (same digest).
fn shared_bytes(base: &BTreeMap<String, u64>, other: &BTreeMap<String, u64>) -> u64 {
    other
        .iter()
        .filter(|(d, _)| base.contains_key(*d))
        .map(|(_, s)| s)
        .sum()
}

#[test]
fn medium_deploys_share_layers_with_v1() {
    let home = tempfile::tempdir().expect("tempdir");
    let mut inspected = Vec::new();
    for v in ["v1", "v2", "v3"] {
        let id = build(home.path(), &corpus_site("medium", v), &["--tag", v]);
        inspected.push((v, id, inspect(home.path(), v)));
    }
    let layers: Vec<BTreeMap<String, u64>> =
        inspected.iter().map(|(_, _, i)| layer_sizes(i)).collect();
    let v1 = &layers[0];
    let total = |l: &BTreeMap<String, u64>| l.values().sum::<u64>();
    for (k, (v, id, _)) in inspected.iter().enumerate() {
        let l = &layers[k];
        let shared = shared_bytes(v1, l);
        let shared_prev = if k > 0 {
            shared_bytes(&layers[k - 1], l)
        } else {
            total(l)
        };
        println!(
            "medium {v}: {id}  {} layers, {} bytes; shared with v1: {} layers, {shared} bytes \
             ({:.1} %); shared with previous: {shared_prev} bytes",
            l.len(),
            total(l),
            l.keys().filter(|d| v1.contains_key(*d)).count(),
            100.0 * shared as f64 / total(l) as f64,
        );
    }
    let v2_shared = shared_bytes(v1, &layers[1]);
    assert!(v2_shared > 0, "v2 shares no layer byte with v1");

    // The image layers in particular: v2 changed no image, so the layers of v1 that hold only
    // .png files must nearly all be reused (one may move with a neighbour's cut point).
    let ls = run_ok(sb(home.path()).args(["ls", "--json", "v1"]));
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).expect("ls --json");
    let entries = ls["entries"].as_array().expect("ls --json: entries");
    let mut kinds: BTreeMap<u64, BTreeSet<bool>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e["type"] == "f") {
        let png = e["path"].as_str().is_some_and(|p| p.ends_with(".png"));
        kinds
            .entry(e["layer"].as_u64().expect("layer"))
            .or_default()
            .insert(png);
    }
    let v1_layers = inspected[0].2["layers"].as_array().expect("layers").clone();
    let png_layers: Vec<(String, u64)> = v1_layers
        .iter()
        .enumerate()
        .filter(|(i, _)| kinds.get(&(*i as u64)) == Some(&BTreeSet::from([true])))
        .map(|(_, l)| {
            (
                l["digest"].as_str().expect("digest").to_string(),
                l["size"].as_u64().expect("size"),
            )
        })
        .collect();
    let png_bytes: u64 = png_layers.iter().map(|(_, s)| s).sum();
    let png_shared: u64 = png_layers
        .iter()
        .filter(|(d, _)| layers[1].contains_key(d))
        .map(|(_, s)| s)
        .sum();
    println!(
        "medium v1→v2: {} png-only layers ({png_bytes} bytes), {png_shared} bytes of them shared",
        png_layers.len()
    );
    assert!(!png_layers.is_empty(), "v1 has no png-only layer");
    assert!(
        png_shared * 10 >= png_bytes * 9,
        "only {png_shared} of {png_bytes} png-layer bytes reused by v2"
    );
}
