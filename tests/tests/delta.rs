//! Issue 11, "next deploys do work in proportion to the change": `sitebundle-init` fetches only
//! the layers the installed version does not have, takes the other files from the installed tree
//! after checking each against the new index, keeps the last N versions, and revalidates a
//! channel with one conditional request per site.
//!
//! Real parts only: the real binary, the medium corpus (v1 → v2: a theme upgrade that rewrites
//! every page), a directory origin written by the replicator's own push, and nginx from
//! `../shared/services` serving a copy of it (its access log counts the requests). The only
//! faults are made by hand in directories we own: a tampered installed file, a layer deleted
//! from an origin.

mod common;
mod repl_support;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bundle::{BuildOptions, BuildReport, Bundle, NoProgress, Store};
use repl_support::{chmod_world_readable, need, push_bundles};
use replicator::store_target::StoreTarget;
use replicator::Target;

fn unique(tag: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "delta-{tag}-{}-{}",
        std::process::id(),
        n % 1_000_000_000_000
    )
}

/// The store with medium v1, v2 and small v1, v2, v3 built into it.
struct Fixture {
    _home: tempfile::TempDir,
    store: Store,
    medium: Vec<BuildReport>,
    small: Vec<BuildReport>,
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let home = tempfile::tempdir().expect("tempdir");
        let store = Store::open(home.path()).expect("store");
        let opts = BuildOptions {
            use_cache: false,
            ..Default::default()
        };
        let b = |site: &str, v: &str| {
            bundle::build(&common::corpus_site(site, v), &store, &opts, &NoProgress)
                .unwrap_or_else(|e| panic!("build {site} {v}: {e}"))
        };
        let medium = vec![b("medium", "v1"), b("medium", "v2")];
        let small = vec![b("small", "v1"), b("small", "v2"), b("small", "v3")];
        Fixture {
            _home: home,
            store,
            medium,
            small,
        }
    })
}

/// A directory target holding `bundles` (channel `prod` on the last), world-readable.
fn dir_origin(bundles: &[&BuildReport]) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("origin");
    let target: Arc<dyn Target> = Arc::new(StoreTarget::dir(&dir).expect("dir target"));
    push_bundles(&fx().store, &target, bundles, Some("prod"));
    chmod_world_readable(t.path());
    (t, dir)
}

/// Copy a directory target under nginx's root; returns its URL, the copy and its URL path.
fn http_origin(dir: &Path) -> (String, PathBuf, String) {
    let name = unique("http");
    let copy = Path::new(&need("SITEBUNDLE_TEST_HTTP_ROOT")).join(&name);
    let st = Command::new("cp")
        .arg("-a")
        .arg(dir)
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(st.success());
    chmod_world_readable(&copy);
    (
        format!("{}/{name}/", need("SITEBUNDLE_TEST_HTTP_ORIGIN")),
        copy,
        format!("/{name}/"),
    )
}

fn nginx_access_log() -> PathBuf {
    let dir = std::env::var("SITEBUNDLE_SERVICES_DIR")
        .unwrap_or_else(|_| "/tmp/sitebundle-services".into());
    Path::new(&dir).join("logs/nginx-access.log")
}

fn init(dest: &Path, origin: &str) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("sitebundle-init"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SITEBUNDLE_") && !k.starts_with("SITEBUNDLE_TEST_") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "info")
        .env("SITEBUNDLE_RETRIES", "0")
        .env("SITEBUNDLE_TIMEOUT", "60s")
        .args(["--log-format", "json", "--dest"])
        .arg(dest)
        .args(["--origin", origin]);
    c
}

/// What the run's final `done` line says.
#[derive(Debug)]
struct Done {
    fetched_bytes: u64,
    layers_fetched: u64,
    layers_reused: u64,
}

fn done(o: &Output) -> Done {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "sitebundle-init failed: {err}");
    let line = err
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "done")
        .unwrap_or_else(|| panic!("no done line in:\n{err}"));
    let n = |k: &str| {
        line[k]
            .as_u64()
            .unwrap_or_else(|| panic!("done line without {k}: {line}"))
    };
    Done {
        fetched_bytes: n("fetched_bytes"),
        layers_fetched: n("layers_fetched"),
        layers_reused: n("layers_reused"),
    }
}

fn install(dest: &Path, origin: &str, r: &BuildReport, extra: &[&str]) -> Done {
    let o = init(dest, origin)
        .args(["--digest", &r.manifest.to_string()])
        .args(extra)
        .output()
        .expect("run sitebundle-init");
    done(&o)
}

fn layer_count(r: &BuildReport) -> u64 {
    let b = Bundle::open(&fx().store, &r.manifest).expect("open");
    b.meta.manifest.layers.len() as u64
}

/// The served tree (`current`) of `dest` equals a fresh extract of `r`, and the corpus.
fn assert_tree_is(dest: &Path, r: &BuildReport, site: &str, v: &str) {
    assert_eq!(
        fs::read_link(dest.join("current"))
            .expect("current")
            .to_string_lossy(),
        r.id.hex()
    );
    let fresh = tempfile::tempdir().expect("tempdir");
    let out = fresh.path().join("x");
    let b = Bundle::open(&fx().store, &r.manifest).expect("open");
    bundle::extract(&fx().store, &b, &out, Default::default(), &NoProgress).expect("extract");
    common::assert_listing_eq(
        "delta-installed tree vs a fresh extract",
        &common::listing(&out),
        &common::listing(&dest.join("current/")),
    );
    assert_eq!(
        common::b3sum_walk(&dest.join("current/")),
        common::b3sum_walk(&common::corpus_site(site, v)),
        "delta-installed tree vs corpus {site}/{v}"
    );
}

#[test]
fn issue_11_delta_medium_v1_to_v2_fetches_less_over_directory_and_nginx() {
    let f = fx();
    let (v1, v2) = (&f.medium[0], &f.medium[1]);
    let (_t, dir) = dir_origin(&[v1, v2]);
    let (http, _copy, _) = http_origin(&dir);
    let file = format!("file://{}", dir.display());
    for origin in [file, http] {
        let work = tempfile::tempdir().expect("tempdir");
        let (dest, scratch) = (work.path().join("dest"), work.path().join("scratch"));
        let first = install(&dest, &origin, v1, &[]);
        assert_eq!(
            first.layers_reused, 0,
            "{origin}: nothing to reuse on a first install"
        );
        let delta = install(&dest, &origin, v2, &[]);
        let full = install(&scratch, &origin, v2, &[]);
        assert_eq!(full.layers_reused, 0);
        assert_eq!(
            full.layers_fetched,
            layer_count(v2),
            "{origin}: a fresh install fetches every layer"
        );
        assert!(delta.layers_reused > 0, "{origin}: {delta:?}");
        assert_eq!(
            delta.layers_fetched + delta.layers_reused,
            layer_count(v2),
            "{origin}: {delta:?}"
        );
        // The ratio from the counters: v2 rewrites every page, so the page layers are new, but
        // images, fonts and unchanged scripts come from v1's tree.
        let ratio = delta.fetched_bytes as f64 / full.fetched_bytes as f64;
        assert!(
            ratio < 0.6,
            "{origin}: delta fetched {} bytes, a fresh install {} (ratio {ratio:.2})",
            delta.fetched_bytes,
            full.fetched_bytes
        );
        assert_tree_is(&dest, v2, "medium", "v2");
        assert_tree_is(&scratch, v2, "medium", "v2");
    }
}

/// A reused layer's file of medium v1 that v2 also has, with its layer number in v2.
fn reusable_file(dest: &Path, v2: &BuildReport) -> (String, usize) {
    let f = fx();
    let b = Bundle::open(&f.store, &v2.manifest).expect("open v2");
    let tree = dest.join("current/");
    let plan = bundle::reuse::plan(&f.store, &b, &tree, |_| false).expect("plan");
    let k = *plan.iter().next().expect("v1's tree holds a layer of v2");
    let index = b.index.load(&f.store).expect("index");
    let e = index
        .entries()
        .iter()
        .find(|e| e.layer == k as u32 && e.size() > 0)
        .expect("a file in that layer");
    (e.path.to_string(), k)
}

/// Overwrite `p` with other bytes of the same size, and give it back its mtime: only its BLAKE3
/// can tell.
fn tamper(p: &Path) {
    let meta = fs::metadata(p).expect("stat");
    let mut bytes = fs::read(p).expect("read");
    bytes[0] ^= 0xff;
    fs::write(p, &bytes).expect("write");
    let st = Command::new("touch")
        .arg("-m")
        .arg("-d")
        .arg(format!("@{}", std::os::unix::fs::MetadataExt::mtime(&meta)))
        .arg(p)
        .status()
        .expect("touch");
    assert!(st.success());
}

#[test]
fn issue_11_delta_tampered_installed_file_is_refetched_not_reused() {
    let f = fx();
    let (v1, v2) = (&f.medium[0], &f.medium[1]);
    let (_t, dir) = dir_origin(&[v1, v2]);
    let origin = format!("file://{}", dir.display());
    let work = tempfile::tempdir().expect("tempdir");
    // Untampered, for the count of reused layers.
    let clean = work.path().join("clean");
    install(&clean, &origin, v1, &[]);
    let clean_run = install(&clean, &origin, v2, &[]);
    // Tampered: one file of a reusable layer, same size, same mtime.
    let dest = work.path().join("dest");
    install(&dest, &origin, v1, &[]);
    let (path, layer) = reusable_file(&dest, v2);
    let installed = dest.join("current").join(&path);
    tamper(&installed);
    let run = install(&dest, &origin, v2, &[]);
    assert_eq!(
        run.layers_reused + 1,
        clean_run.layers_reused,
        "the tampered file's layer {layer} ({path}) must be fetched, not reused: {run:?} vs {clean_run:?}"
    );
    assert!(run.fetched_bytes > clean_run.fetched_bytes);
    assert_tree_is(&dest, v2, "medium", "v2");
}

/// The plan said "reusable", then the file changed before the link: the extraction itself
/// rejects it (it hashes the staged file), names the layer, and writes nothing.
#[test]
fn issue_11_delta_file_changed_after_the_plan_is_rejected_by_the_extraction() {
    let f = fx();
    let (v1, v2) = (&f.medium[0], &f.medium[1]);
    let (_t, dir) = dir_origin(&[v1, v2]);
    let origin = format!("file://{}", dir.display());
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("dest");
    install(&dest, &origin, v1, &[]);
    let b = Bundle::open(&f.store, &v2.manifest).expect("open v2");
    let tree = fs::canonicalize(dest.join("current")).expect("tree");
    let plan = bundle::reuse::plan(&f.store, &b, &tree, |_| false).expect("plan");
    let (path, layer) = reusable_file(&dest, v2);
    tamper(&tree.join(&path));
    let out = work.path().join("out");
    let err = bundle::reuse::extract_reusing(
        &f.store,
        &b,
        &out,
        bundle::ExtractOptions {
            replace: false,
            sync: false,
        },
        &bundle::reuse::Reuse {
            tree: &tree,
            layers: plan.clone(),
        },
        &NoProgress,
    )
    .expect_err("a tampered file must not be reused");
    match err {
        bundle::Error::ReuseRejected { layers } => assert_eq!(layers, vec![layer]),
        e => panic!("expected ReuseRejected, got {e:?}"),
    }
    assert!(!out.exists(), "nothing written on a rejected reuse");
    let leftovers: Vec<_> = fs::read_dir(work.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".sitebundle-"))
        .collect();
    assert!(leftovers.is_empty(), "staging left: {leftovers:?}");
}

#[test]
fn issue_11_delta_failure_mid_delta_leaves_dest_as_before() {
    let f = fx();
    let (v1, v2) = (&f.medium[0], &f.medium[1]);
    let (_t, dir) = dir_origin(&[v1, v2]);
    let origin = format!("file://{}", dir.display());
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("dest");
    install(&dest, &origin, v1, &[]);
    // Remove from the origin a layer of v2 that v1 does not have: the delta fetches the skeleton
    // and the other layers, then fails on that one.
    let b1 = Bundle::open(&f.store, &v1.manifest).expect("open v1");
    let b2 = Bundle::open(&f.store, &v2.manifest).expect("open v2");
    let old: BTreeSet<_> = b1.meta.manifest.layers.iter().map(|l| l.digest).collect();
    let new_layer = b2
        .meta
        .manifest
        .layers
        .iter()
        .skip(1)
        .rfind(|l| !old.contains(&l.digest))
        .expect("v2 has a new layer");
    fs::remove_file(dir.join("blobs/sha256").join(new_layer.digest.hex())).expect("remove blob");
    let before = common::listing(&dest);
    let o = init(&dest, &origin)
        .args(["--digest", &v2.manifest.to_string()])
        .output()
        .expect("run");
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    common::assert_listing_eq(
        "DEST after a failed delta",
        &before,
        &common::listing(&dest),
    );
}

#[test]
fn issue_11_delta_keep_last_n_removes_the_right_trees() {
    let f = fx();
    let (v1, v2, v3) = (&f.small[0], &f.small[1], &f.small[2]);
    let (_t, dir) = dir_origin(&[v1, v2, v3]);
    let origin = format!("file://{}", dir.display());
    let work = tempfile::tempdir().expect("tempdir");
    let trees = |dest: &Path| -> BTreeSet<String> {
        fs::read_dir(dest)
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.len() == 64)
            .collect()
    };
    let set = |rs: &[&BuildReport]| -> BTreeSet<String> { rs.iter().map(|r| r.id.hex()).collect() };
    // keep 3: all three stay.
    let d3 = work.path().join("keep3");
    for r in [v1, v2, v3] {
        install(&d3, &origin, r, &["--keep", "3"]);
    }
    assert_eq!(trees(&d3), set(&[v1, v2, v3]));
    // Rolling back to v1 is a swap, without fetching.
    let back = install(&d3, &origin, v1, &["--keep", "3"]);
    assert_eq!(back.fetched_bytes, 0);
    assert_eq!(trees(&d3), set(&[v1, v2, v3]));
    // keep 2 (the default): the oldest goes, current and previous stay.
    let d2 = work.path().join("keep2");
    for r in [v1, v2, v3] {
        install(&d2, &origin, r, &[]);
    }
    assert_eq!(trees(&d2), set(&[v2, v3]));
    assert_eq!(
        fs::read_link(d2.join("previous"))
            .expect("previous")
            .to_string_lossy(),
        v2.id.hex()
    );
    // keep 3 after a rollback: the most recently current ones are kept, not the newest builds.
    install(&d3, &origin, v3, &["--keep", "2"]);
    assert_eq!(
        trees(&d3),
        set(&[v1, v3]),
        "current v3, previous v1 (the rollback)"
    );
    // keep 1: only current; no dangling previous.
    let d1 = work.path().join("keep1");
    install(&d1, &origin, v1, &["--keep", "1"]);
    install(&d1, &origin, v2, &["--keep", "1"]);
    assert_eq!(trees(&d1), set(&[v2]));
    assert!(fs::symlink_metadata(d1.join("previous")).is_err());
    assert_tree_is(&d1, v2, "small", "v2");
    // A bad value is a usage error.
    let o = init(&d1, &origin)
        .args(["--digest", &v3.manifest.to_string(), "--keep", "0"])
        .output()
        .expect("run");
    assert_ne!(o.status.code(), Some(0));
}

/// Lines of nginx's access log from byte `from` on whose request path starts with `prefix`.
fn log_lines(from: u64, prefix: &str) -> Vec<String> {
    let text = fs::read(nginx_access_log()).expect("nginx access log");
    let text = String::from_utf8_lossy(&text[from as usize..]).to_string();
    text.lines()
        .filter(|l| l.contains(&format!(" {prefix}")))
        .map(str::to_string)
        .collect()
}

fn log_len() -> u64 {
    fs::metadata(nginx_access_log())
        .map(|m| m.len())
        .unwrap_or(0)
}

#[test]
fn issue_11_delta_no_change_pass_costs_one_conditional_request_per_site() {
    let f = fx();
    let (_t, dir) = dir_origin(&[&f.small[0]]);
    let (_url, _copy, _) = http_origin(&dir);
    // Five sites, each its own copy under nginx (its own URL path).
    let sites = 5;
    let root = Path::new(&need("SITEBUNDLE_TEST_HTTP_ROOT")).join(unique("sites"));
    fs::create_dir_all(&root).expect("mkdir");
    for i in 0..sites {
        let st = Command::new("cp")
            .arg("-a")
            .arg(&dir)
            .arg(root.join(format!("s{i}")))
            .status()
            .expect("cp");
        assert!(st.success());
    }
    chmod_world_readable(&root);
    // The channels were moved a minute ago: a record changed within the last seconds is read in
    // full, not revalidated (its validator may not tell two writes in one second apart).
    for i in 0..sites {
        let st = Command::new("touch")
            .args(["-d", "1 minute ago"])
            .arg(root.join(format!("s{i}/channels/prod.json")))
            .status()
            .expect("touch");
        assert!(st.success());
    }
    let prefix = format!("/{}/", root.file_name().expect("name").to_string_lossy());
    let work = tempfile::tempdir().expect("tempdir");
    let config = work.path().join("sites.toml");
    let mut toml = format!(
        "origins = [\"{}{}{{site}}/\"]\n",
        need("SITEBUNDLE_TEST_HTTP_ORIGIN"),
        prefix
    );
    for i in 0..sites {
        toml.push_str(&format!("[sites.s{i}]\nchannel = \"prod\"\n"));
    }
    fs::write(&config, toml).expect("config");
    let dest = work.path().join("sites");
    let status = dest.join("status.json");
    let mut c = init(&dest, "file:///unused");
    let mut child = c
        .args(["--sync"])
        .arg(&config)
        .args(["--interval", "2s"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn sync");
    let wait_status = |after: Option<String>| -> String {
        let t0 = Instant::now();
        loop {
            if let Ok(s) = fs::read_to_string(&status) {
                let v: serde_json::Value = serde_json::from_str(&s).unwrap_or_default();
                let at = v["updated_at"].as_str().unwrap_or_default().to_string();
                if !at.is_empty() && Some(&at) != after.as_ref() {
                    assert_eq!(v["ok"], true, "pass failed: {s}");
                    return at;
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "no sync pass");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let first = wait_status(None);
    let mark = log_len();
    let second = wait_status(Some(first));
    let lines = log_lines(mark, &prefix);
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    // Written after the pass ends: wait until nginx has flushed the lines (it writes per request).
    assert!(!second.is_empty());
    for i in 0..sites {
        let mine: Vec<_> = lines
            .iter()
            .filter(|l| l.contains(&format!("{prefix}s{i}/")))
            .collect();
        assert_eq!(
            mine.len(),
            1,
            "site s{i}: one request in a no-change pass: {mine:?}"
        );
        assert!(
            mine[0].contains("channels/prod.json") && mine[0].contains("\" 304 "),
            "site s{i}: a conditional GET answered 304: {}",
            mine[0]
        );
    }
}
