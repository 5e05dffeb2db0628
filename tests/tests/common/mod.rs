//! Helpers for the corpus and peer tests: where the corpus and the binary are, running the CLI
//! against a private store, and comparing trees with independent tools (`b3sum`, `tar`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Environment variable naming the test corpus (`shared/make-corpus` output).
pub const CORPUS_ENV: &str = "SITEBUNDLE_TEST_CORPUS";

/// The corpus directory; panics (so the test fails, never skips) when it is not there.
pub fn corpus() -> PathBuf {
    let Some(dir) = std::env::var_os(CORPUS_ENV).filter(|v| !v.is_empty()) else {
        panic!(
            "{CORPUS_ENV} is not set: run the tests with scripts/test, which builds the corpus \
             (or run ../shared/make-corpus DIR and set {CORPUS_ENV}=DIR)"
        );
    };
    let dir = PathBuf::from(dir);
    for site in ["small/v1", "edge/v1"] {
        assert!(
            dir.join(site).is_dir(),
            "{CORPUS_ENV}={} has no {site}: run scripts/test, which builds the corpus \
             (or ../shared/make-corpus {})",
            dir.display(),
            dir.display()
        );
    }
    dir
}

/// One site version of the corpus, e.g. `corpus_site("medium", "v2")`; panics when missing.
pub fn corpus_site(site: &str, version: &str) -> PathBuf {
    let p = corpus().join(site).join(version);
    assert!(
        p.is_dir(),
        "{} is missing: run scripts/test, which builds the corpus",
        p.display()
    );
    p
}

/// The `sitebundle` binary, built beside this test (as `cargo test --workspace` does).
pub fn bin() -> PathBuf {
    let p = assert_cmd::cargo::cargo_bin("sitebundle");
    assert!(
        p.is_file(),
        "{} is missing: build it with `cargo build -p sitebundle` (cargo test --workspace does)",
        p.display()
    );
    p
}

/// `sitebundle` with `SITEBUNDLE_HOME=home`.
pub fn sb(home: &Path) -> Command {
    let mut c = Command::new(bin());
    c.env("SITEBUNDLE_HOME", home)
        .env_remove("RAYON_NUM_THREADS")
        .arg("--quiet");
    c
}

/// Run a command, panic with its stderr unless it succeeds.
pub fn run_ok(c: &mut Command) -> Output {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Build `dir` into the store at `home` with extra args; return the bundle id.
pub fn build(home: &Path, dir: &Path, extra: &[&str]) -> String {
    let out = run_ok(sb(home).arg("build").arg(dir).args(extra));
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "bad id {id:?}");
    id
}

/// Panic with an install hint unless `tool` runs.
pub fn require_tool(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{tool} is not installed: run ../shared/services/install (scripts/test does)"
    );
}

/// The independent hash walk: `find . -type f -print0 | LC_ALL=C sort -z | xargs -0 b3sum`.
pub fn b3sum_walk(dir: &Path) -> String {
    let out = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg("find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r b3sum")
            .current_dir(dir),
    );
    String::from_utf8(out.stdout).expect("b3sum prints UTF-8 for UTF-8 names")
}

/// What a tree entry is, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Directory.
    Dir,
    /// Regular file: BLAKE3 of its bytes, its size, whether any execute bit is set.
    File {
        /// BLAKE3 hex.
        hash: String,
        /// Size.
        len: u64,
        /// Executable.
        exec: bool,
    },
    /// Symlink and its target.
    Symlink(String),
}

/// Every entry under `root` (not following symlinks), keyed by relative path.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    snapshot_into(root, root, &mut out);
    out
}

fn snapshot_into(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
    let rd = fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
    for e in rd {
        let p = e.expect("dir entry").path();
        let rel = p
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        let md = fs::symlink_metadata(&p).expect("lstat");
        let ft = md.file_type();
        if ft.is_symlink() {
            let t = fs::read_link(&p).expect("readlink");
            out.insert(rel, Node::Symlink(t.to_string_lossy().into_owned()));
        } else if ft.is_dir() {
            out.insert(rel, Node::Dir);
            snapshot_into(root, &p, out);
        } else {
            let bytes = fs::read(&p).expect("read file");
            out.insert(
                rel,
                Node::File {
                    hash: bundle::FileHash::of(&bytes).hex(),
                    len: md.len(),
                    exec: md.permissions().mode() & 0o111 != 0,
                },
            );
        }
    }
}

/// Compare two snapshots and panic with the first few differences.
pub fn assert_same_tree(
    what: &str,
    expected: &BTreeMap<String, Node>,
    got: &BTreeMap<String, Node>,
) {
    if expected == got {
        return;
    }
    let mut diffs = Vec::new();
    for (k, v) in expected {
        match got.get(k) {
            None => diffs.push(format!("missing {k}")),
            Some(g) if g != v => diffs.push(format!("differs {k}: {v:?} vs {g:?}")),
            _ => {}
        }
    }
    for k in got.keys() {
        if !expected.contains_key(k) {
            diffs.push(format!("extra {k}"));
        }
    }
    diffs.truncate(20);
    panic!("{what}: trees differ:\n{}", diffs.join("\n"));
}

/// Parse `sitebundle inspect --json REF`.
pub fn inspect(home: &Path, reference: &str) -> serde_json::Value {
    let out = run_ok(sb(home).args(["inspect", "--json", reference]));
    serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON")
}

/// The layers (digest → compressed size) of `sitebundle inspect --json` output.
pub fn layer_sizes(inspected: &serde_json::Value) -> BTreeMap<String, u64> {
    inspected["layers"]
        .as_array()
        .expect("layers array")
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().expect("digest").to_string(),
                l["size"].as_u64().expect("size"),
            )
        })
        .collect()
}

/// Extract each layer blob of the manifest tagged `tag` in the OCI layout `layout` with
/// `<decompress> | tar -x`, in order, into `root` (created).
pub fn untar_layers(layout: &Path, tag: &str, decompress: &str, root: &Path) {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("read index.json"))
            .expect("index.json is JSON");
    let desc = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no manifest tagged {tag} in {}", layout.display()));
    let blob = |d: &serde_json::Value| {
        let d = d.as_str().expect("digest string");
        layout
            .join("blobs/sha256")
            .join(d.strip_prefix("sha256:").expect("sha256 digest"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(blob(&desc["digest"])).expect("read manifest"))
            .expect("manifest is JSON");
    fs::create_dir_all(root).expect("mkdir root");
    for l in manifest["layers"].as_array().expect("layers") {
        let cmd = format!(
            "{decompress} < '{}' | tar -x --no-same-owner -f - -C '{}'",
            blob(&l["digest"]).display(),
            root.display()
        );
        run_ok(Command::new("bash").args(["-o", "pipefail", "-c", &cmd]));
    }
}

/// Permission bits (`mode & 0o7777`) of every non-symlink entry under `root`.
pub fn modes(root: &Path) -> BTreeMap<String, u32> {
    snapshot(root)
        .into_iter()
        .filter(|(_, n)| !matches!(n, Node::Symlink(_)))
        .map(|(p, _)| {
            let m = fs::symlink_metadata(root.join(&p)).expect("lstat");
            (p, m.permissions().mode() & 0o7777)
        })
        .collect()
}
