//! `sitebundle-init` (issue 5), run as a user runs it: the real binary, against real origins from
//! `../shared/services` (registry, TLS+auth registry, moto S3, Azurite, fake-gcs-server, nginx) and
//! local directories. Needs `. /tmp/sitebundle-services/env`; fails with a clear message without.
//!
//! Origins are populated with the replicator's own push (or, for GCS, whose emulator refuses
//! object_store's writes, by uploading a directory target's files through its JSON API; for the
//! nginx origin, by copying a directory target under its root). The only fault injected by hand
//! is a corrupted blob in a directory we own, which a real server then serves as-is.
//!
//! Issue 8 (hostile origins, DEST hygiene) adds the `issue_8_*` tests at the end: real nginx
//! instances for redirects, Basic challenges, token realms, rate limits and TLS; a loopback fake
//! only for an endless body (see `repl_support::fault_proxy::EndlessOrigin`); small tmpfs and
//! read-only bind mounts for disk-full and read-only DESTs; peak memory from `wait4`.

mod common;
mod repl_support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bundle::manifest::Manifest;
use bundle::{BuildOptions, BuildReport, Digest, NoProgress, Store};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::{BackoffConfig, RetryConfig};
use repl_support::{chmod_world_readable, need, push_bundles, rt};
use replicator::store_target::{StoreKind, StoreTarget};
use replicator::Target;

// ---------------------------------------------------------------------------------------------
// Environment and fixtures

fn unique(tag: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "init-{tag}-{}-{}",
        std::process::id(),
        n % 1_000_000_000_000
    )
}

fn init_bin() -> PathBuf {
    let p = assert_cmd::cargo::cargo_bin("sitebundle-init");
    assert!(
        p.is_file(),
        "{} is missing: build it with `cargo build -p sitebundle-init` (cargo test --workspace does)",
        p.display()
    );
    p
}

fn corpus_site(version: &str) -> PathBuf {
    let corpus = std::env::var_os("SITEBUNDLE_TEST_CORPUS")
        .expect("SITEBUNDLE_TEST_CORPUS is unset: run the tests with scripts/test");
    let p = Path::new(&corpus).join("small").join(version);
    assert!(
        p.is_dir(),
        "{} is missing: build the corpus (scripts/test does)",
        p.display()
    );
    p
}

struct Fixture {
    _home: tempfile::TempDir,
    store: Store,
    v1: BuildReport,
    v2: BuildReport,
    v3: BuildReport,
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
        let v1 = bundle::build(&corpus_site("v1"), &store, &opts, &NoProgress).expect("build v1");
        let v2 = bundle::build(&corpus_site("v2"), &store, &opts, &NoProgress).expect("build v2");
        let v3 = bundle::build(&corpus_site("v3"), &store, &opts, &NoProgress).expect("build v3");
        Fixture {
            _home: home,
            store,
            v1,
            v2,
            v3,
        }
    })
}

/// Push `bundles` of the fixture's store to `t` in order; `channel` (if any) ends on the last.
fn push(t: Arc<dyn Target>, bundles: &[&BuildReport], channel: Option<&str>) {
    push_bundles(&fx().store, &t, bundles, channel);
}

fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            base: 2.0,
        },
        max_retries: 1,
        retry_timeout: Duration::from_secs(10),
    }
}

/// A directory target holding v1, v2 and v3, channel `prod` on v1. World-readable (non-root test).
fn dir_origin() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("origin");
    let target: Arc<dyn Target> = Arc::new(StoreTarget::dir(&dir).expect("dir target"));
    let f = fx();
    push(target, &[&f.v3, &f.v2, &f.v1], Some("prod"));
    chmod_world_readable(t.path());
    (t, dir)
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// Copy a directory target under nginx's root; returns its URL and the copy.
fn http_origin(dir: &Path) -> (String, PathBuf) {
    let name = unique("http");
    let copy = Path::new(&need("SITEBUNDLE_TEST_HTTP_ROOT")).join(&name);
    let st = Command::new("cp")
        .arg("-a")
        .arg(dir)
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(st.success(), "copy {} to {}", dir.display(), copy.display());
    chmod_world_readable(&copy);
    (
        format!("{}/{name}/", need("SITEBUNDLE_TEST_HTTP_ORIGIN")),
        copy,
    )
}

fn s3_target(prefix: &str) -> Arc<dyn Target> {
    let s = AmazonS3Builder::new()
        .with_endpoint(need("SITEBUNDLE_TEST_S3_ENDPOINT"))
        .with_allow_http(true)
        .with_region(need("SITEBUNDLE_TEST_S3_REGION"))
        .with_bucket_name(need("SITEBUNDLE_TEST_S3_BUCKET"))
        .with_access_key_id(need("SITEBUNDLE_TEST_S3_ACCESS_KEY_ID"))
        .with_secret_access_key(need("SITEBUNDLE_TEST_S3_SECRET_ACCESS_KEY"))
        .with_retry(retry())
        .build()
        .expect("s3 client");
    Arc::new(StoreTarget::new(
        format!("s3://{}/{prefix}", need("SITEBUNDLE_TEST_S3_BUCKET")),
        Arc::new(s),
        prefix,
        StoreKind::Cloud,
    ))
}

fn azure_target(prefix: &str) -> Arc<dyn Target> {
    let s = MicrosoftAzureBuilder::new()
        .with_account(need("SITEBUNDLE_TEST_AZURE_ACCOUNT"))
        .with_access_key(need("SITEBUNDLE_TEST_AZURE_KEY"))
        .with_container_name(need("SITEBUNDLE_TEST_AZURE_CONTAINER"))
        .with_endpoint(need("SITEBUNDLE_TEST_AZURE_ENDPOINT"))
        .with_allow_http(true)
        .with_retry(retry())
        .build()
        .expect("azure client");
    Arc::new(StoreTarget::new(
        format!("az://{}/{prefix}", need("SITEBUNDLE_TEST_AZURE_CONTAINER")),
        Arc::new(s),
        prefix,
        StoreKind::Cloud,
    ))
}

/// Seed fake-gcs-server with a directory target's files through its JSON API (it refuses
/// object_store's XML-API writes; see the services README).
fn seed_gcs(dir: &Path, prefix: &str) {
    let endpoint = need("SITEBUNDLE_TEST_GCS_ENDPOINT");
    let bucket = need("SITEBUNDLE_TEST_GCS_BUCKET");
    let mut files = Vec::new();
    walk_files(dir, dir, &mut files);
    rt().block_on(async {
        let client = reqwest::Client::new();
        for (rel, path) in files {
            let url = reqwest::Url::parse_with_params(
                &format!("{endpoint}/upload/storage/v1/b/{bucket}/o"),
                &[
                    ("uploadType", "media"),
                    ("name", &format!("{prefix}/{rel}")),
                ],
            )
            .expect("url");
            let body = fs::read(&path).expect("read");
            let r = client
                .post(url)
                .body(body)
                .send()
                .await
                .expect("gcs upload");
            assert!(r.status().is_success(), "gcs upload {rel}: {}", r.status());
        }
    });
}

fn walk_files(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    for e in fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        let ft = e.file_type().expect("file type");
        if ft.is_dir() {
            walk_files(root, &p, out);
        } else if ft.is_file() {
            let rel = p
                .strip_prefix(root)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            if !rel.ends_with(".lock") {
                out.push((rel, p));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running the binary

/// `sitebundle-init` with the services' credentials in its environment (never on argv).
fn init_cmd(dest: &Path, origins: &[String]) -> Command {
    let mut c = Command::new(init_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("SITEBUNDLE_") && !k.starts_with("SITEBUNDLE_TEST_") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "info")
        .env("SITEBUNDLE_RETRIES", "0")
        .env("AWS_ENDPOINT", need("SITEBUNDLE_TEST_S3_ENDPOINT"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", need("SITEBUNDLE_TEST_S3_REGION"))
        .env(
            "AWS_ACCESS_KEY_ID",
            need("SITEBUNDLE_TEST_S3_ACCESS_KEY_ID"),
        )
        .env(
            "AWS_SECRET_ACCESS_KEY",
            need("SITEBUNDLE_TEST_S3_SECRET_ACCESS_KEY"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(
            "AZURE_STORAGE_ACCOUNT_NAME",
            need("SITEBUNDLE_TEST_AZURE_ACCOUNT"),
        )
        .env(
            "AZURE_STORAGE_ACCOUNT_KEY",
            need("SITEBUNDLE_TEST_AZURE_KEY"),
        )
        .env(
            "AZURE_STORAGE_ENDPOINT",
            need("SITEBUNDLE_TEST_AZURE_ENDPOINT"),
        )
        .env("AZURE_ALLOW_HTTP", "true")
        .env(
            "GOOGLE_SERVICE_ACCOUNT",
            need("SITEBUNDLE_TEST_GCS_SERVICE_ACCOUNT"),
        )
        .env("SITEBUNDLE_TIMEOUT", "30s")
        .env("SITEBUNDLE_CONNECT_TIMEOUT", "3s")
        .arg("--dest")
        .arg(dest);
    for o in origins {
        c.args(["--origin", o]);
    }
    c
}

fn run(c: &mut Command) -> Output {
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    let t = text(&o);
    assert!(
        o.status.success(),
        "sitebundle-init failed ({:?}):\n{t}",
        o.status
    );
    t
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

// ---------------------------------------------------------------------------------------------
// Checking DEST

/// Every entry under `root` (not following symlinks): kind, mode, size, content hash or link
/// target ([`common::listing`], the shared "byte-for-byte as before" helper).
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    common::listing(root)
}

/// Content of a served tree: files (hash, executable bit), dirs, symlinks.
fn site_tree(root: &Path) -> BTreeMap<String, String> {
    snapshot(root)
        .into_iter()
        .filter(|(k, _)| k != ".")
        .map(|(k, v)| {
            let v = match v.split_once(' ') {
                Some(("f", rest)) => {
                    let mut it = rest.split(' ');
                    let (mode, hash) = (it.next().expect("mode"), it.nth(1).expect("hash"));
                    let exec = u32::from_str_radix(mode, 8).expect("octal") & 0o111 != 0;
                    format!("f {exec} {hash}")
                }
                Some(("d", _)) => "d".to_string(),
                _ => v,
            };
            (k, v)
        })
        .collect()
}

fn current_id(dest: &Path) -> Option<String> {
    fs::read_link(dest.join("current"))
        .ok()
        .map(|t| t.display().to_string())
}

/// `current` points at the complete tree of `report`'s site.
fn assert_serves(dest: &Path, report: &BuildReport, site: &str) {
    assert_eq!(
        current_id(dest).as_deref(),
        Some(report.id.hex().as_str()),
        "current should point at {}",
        report.id
    );
    assert_eq!(
        site_tree(&dest.join("current")),
        site_tree(&corpus_site(site)),
        "DEST/current differs from corpus small/{site}"
    );
}

/// After a kill: `current` is absent, or points at one of the complete trees (its name).
fn assert_consistent(dest: &Path, ctx: &str) -> Option<&'static str> {
    let f = fx();
    let id = current_id(dest)?;
    for (r, site) in [(&f.v1, "v1"), (&f.v2, "v2"), (&f.v3, "v3")] {
        if id == r.id.hex() {
            assert_eq!(
                site_tree(&dest.join("current")),
                site_tree(&corpus_site(site)),
                "{ctx}: current -> {site} but the tree is not {site}"
            );
            return Some(site);
        }
    }
    panic!("{ctx}: current points at unknown {id}")
}

fn install_v1(dest: &Path, origin: &str) {
    let f = fx();
    ok(run(
        init_cmd(dest, &[origin.to_string()]).args(["--digest", &f.v1.manifest.to_string()])
    ));
    assert_serves(dest, &f.v1, "v1");
}

fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}/nothing/")
}

/// Corrupt one layer blob (same size, one byte flipped) in a directory target.
fn corrupt_a_layer(dir: &Path, report: &BuildReport) -> Digest {
    let f = fx();
    let m: Manifest = serde_json::from_slice(
        &f.store
            .read_blob(&report.manifest, 1 << 22)
            .expect("manifest"),
    )
    .expect("parse manifest");
    let layer = m.layers.iter().max_by_key(|l| l.size).expect("a layer");
    let p = dir.join("blobs/sha256").join(layer.digest.hex());
    let mut bytes = fs::read(&p).expect("read blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&p, bytes).expect("write blob");
    layer.digest
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn fetches_from_every_origin_kind() {
    let f = fx();
    let (_t, dir) = dir_origin();
    let (http_url, http_copy) = http_origin(&dir);
    let repo = unique("repo").to_lowercase();
    let registry = need("SITEBUNDLE_TEST_REGISTRY");
    push(
        Arc::new(
            replicator::oci::OciTarget::with_auth(
                &registry,
                &repo,
                true,
                oci_client::secrets::RegistryAuth::Anonymous,
                None,
            )
            .expect("registry target"),
        ),
        &[&f.v1],
        Some("prod"),
    );
    let auth_registry = need("SITEBUNDLE_TEST_REGISTRY_AUTH");
    let user = need("SITEBUNDLE_TEST_REGISTRY_AUTH_USER");
    let password = need("SITEBUNDLE_TEST_REGISTRY_AUTH_PASSWORD");
    let ca = fs::read(need("SITEBUNDLE_TEST_REGISTRY_CA")).expect("CA");
    push(
        Arc::new(
            replicator::oci::OciTarget::with_auth(
                &auth_registry,
                &repo,
                false,
                oci_client::secrets::RegistryAuth::Basic(user.clone(), password.clone()),
                Some(ca),
            )
            .expect("auth registry target"),
        ),
        &[&f.v1],
        Some("prod"),
    );
    let s3_prefix = unique("s3");
    push(s3_target(&s3_prefix), &[&f.v1], Some("prod"));
    let az_prefix = unique("az");
    push(azure_target(&az_prefix), &[&f.v1], Some("prod"));
    let gs_prefix = unique("gs");
    seed_gcs(&dir, &gs_prefix);

    let origins = [
        ("file", file_url(&dir)),
        ("http (nginx)", http_url),
        ("oci (plain)", format!("oci+http://{registry}/{repo}")),
        (
            "oci (TLS + basic auth)",
            format!("oci://{auth_registry}/{repo}"),
        ),
        (
            "s3 (moto)",
            format!("s3://{}/{s3_prefix}", need("SITEBUNDLE_TEST_S3_BUCKET")),
        ),
        (
            "az (Azurite)",
            format!(
                "az://{}/{az_prefix}",
                need("SITEBUNDLE_TEST_AZURE_CONTAINER")
            ),
        ),
        (
            "gs (fake-gcs-server)",
            format!("gs://{}/{gs_prefix}", need("SITEBUNDLE_TEST_GCS_BUCKET")),
        ),
    ];
    for (kind, url) in origins {
        // By manifest digest, by channel, and by bundle id (found through the channel records).
        for how in ["digest", "channel", "id"] {
            let work = tempfile::tempdir().expect("tempdir");
            let dest = work.path().join("site");
            let mut c = init_cmd(&dest, std::slice::from_ref(&url));
            c.env("SITEBUNDLE_REGISTRY_USER", &user)
                .env("SITEBUNDLE_REGISTRY_PASSWORD", &password)
                .env(
                    "SITEBUNDLE_REGISTRY_CA",
                    need("SITEBUNDLE_TEST_REGISTRY_CA"),
                );
            match how {
                "digest" => c.args(["--digest", &f.v1.manifest.to_string()]),
                "channel" => c.args(["--channel", "prod"]),
                _ => c.args(["--digest", &f.v1.id.to_string()]),
            };
            let out = run(&mut c);
            let t = text(&out);
            assert!(
                out.status.success(),
                "{kind} by {how}: exit {:?}\n{t}",
                out.status
            );
            assert!(
                !t.contains(&password),
                "{kind}: the password appears in the output"
            );
            assert_serves(&dest, &f.v1, "v1");
        }
    }
    let _ = fs::remove_dir_all(http_copy);
}

#[test]
fn first_origin_down_second_used() {
    let f = fx();
    let (_t, dir) = dir_origin();
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("site");
    let down = dead_url();
    let t = ok(run(init_cmd(&dest, &[down.clone(), file_url(&dir)])
        .args(["--digest", &f.v2.manifest.to_string()])));
    assert_serves(&dest, &f.v2, "v2");
    assert!(
        t.contains("origin skipped") && t.contains(down.trim_end_matches('/')),
        "the down origin should be logged as skipped:\n{t}"
    );
}

#[test]
fn slow_origin_is_skipped_after_its_timeout() {
    // A listener that accepts connections and never answers: a hung origin.
    let f = fx();
    let (_t, dir) = dir_origin();
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hung = format!("http://{}/site/", l.local_addr().expect("addr"));
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("site");
    let started = Instant::now();
    let t = ok(run(init_cmd(&dest, &[hung, file_url(&dir)])
        .args(["--connect-timeout", "1s"])
        .args(["--digest", &f.v1.manifest.to_string()])));
    assert_serves(&dest, &f.v1, "v1");
    // Skipped on its deadline (whichever request it hung on: the id record, the channel, a blob).
    assert!(
        t.contains("origin skipped") && t.contains("within 1s"),
        "{t}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "{t}");
    drop(l);
}

#[test]
fn corrupted_blob_rejected_second_origin_used() {
    let f = fx();
    let (_t, dir) = dir_origin();
    let (http_url, http_copy) = http_origin(&dir);
    let bad = corrupt_a_layer(&http_copy, &f.v2);
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("site");
    let t =
        ok(run(init_cmd(&dest, &[http_url, file_url(&dir)])
            .args(["--digest", &f.v2.manifest.to_string()])));
    assert_serves(&dest, &f.v2, "v2");
    assert!(
        t.contains("origin skipped")
            && t.contains(&bad.to_string())
            && t.contains("integrity=true"),
        "the lying origin should be skipped, naming the blob:\n{t}"
    );
    let _ = fs::remove_dir_all(http_copy);
}

#[test]
fn all_origins_bad_exit_non_zero_dest_untouched() {
    let f = fx();
    let (_t, dir) = dir_origin();
    let (http_url, http_copy) = http_origin(&dir);
    corrupt_a_layer(&http_copy, &f.v2);
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("site");
    install_v1(&dest, &file_url(&dir));
    let before = snapshot(&dest);

    // Down + lying: integrity (3).
    let out = run(
        init_cmd(&dest, &[dead_url(), http_url]).args(["--digest", &f.v2.manifest.to_string()])
    );
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert_eq!(snapshot(&dest), before, "DEST changed after a failed run");
    // All down: origins (2).
    let out =
        run(init_cmd(&dest, &[dead_url(), dead_url()])
            .args(["--digest", &f.v2.manifest.to_string()]));
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert_eq!(snapshot(&dest), before, "DEST changed after a failed run");
    // Unknown digest everywhere: origins (2).
    let unknown = Digest::of(b"no such bundle").to_string();
    let out = run(init_cmd(&dest, &[file_url(&dir)]).args(["--digest", &unknown]));
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert_eq!(snapshot(&dest), before, "DEST changed after a failed run");
    // Usage errors (1): bad digest, credentials in a URL (and never echoed).
    let out = run(init_cmd(&dest, &[file_url(&dir)]).args(["--digest", "sha256:xyz"]));
    assert_eq!(code(&out), 1, "{}", text(&out));
    let out = run(init_cmd(
        &dest,
        &["https://alice:s3cr3t-pw@origin.invalid/site/".to_string()],
    )
    .args(["--digest", &f.v2.manifest.to_string()]));
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(!text(&out).contains("s3cr3t-pw"), "{}", text(&out));
    assert_eq!(snapshot(&dest), before, "DEST changed after a failed run");
    assert_serves(&dest, &f.v1, "v1");
    let _ = fs::remove_dir_all(http_copy);
}

#[test]
fn reinstall_of_current_digest_is_a_fast_no_op_without_network() {
    let f = fx();
    let (_t, dir) = dir_origin();
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("site");
    install_v1(&dest, &file_url(&dir));
    let before = snapshot(&dest);
    for digest in [f.v1.manifest, f.v1.id] {
        let started = Instant::now();
        // The only origin is down: nothing is fetched.
        let t = ok(run(init_cmd(&dest, &[dead_url()]).args([
            "--log-format",
            "json",
            "--digest",
            &digest.to_string(),
        ])));
        assert!(started.elapsed() < Duration::from_secs(2), "{t}");
        assert!(t.contains("nothing to do"), "{t}");
        for line in t.lines().filter(|l| !l.trim().is_empty()) {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        }
        assert_eq!(snapshot(&dest), before);
    }
}

#[test]
fn update_keeps_previous_and_rolls_back_without_network() {
    let f = fx();
    let (_t, dir) = dir_origin();
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("site");
    install_v1(&dest, &file_url(&dir));
    ok(run(
        init_cmd(&dest, &[file_url(&dir)]).args(["--digest", &f.v2.manifest.to_string()])
    ));
    assert_serves(&dest, &f.v2, "v2");
    assert_eq!(
        fs::read_link(dest.join("previous"))
            .expect("previous")
            .display()
            .to_string(),
        f.v1.id.hex()
    );
    // Rollback to the previous version: a symlink swap, no origin needed.
    ok(run(
        init_cmd(&dest, &[dead_url()]).args(["--digest", &f.v1.id.to_string()])
    ));
    assert_serves(&dest, &f.v1, "v1");
    let names: Vec<String> = fs::read_dir(&dest)
        .expect("read dest")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(names.len(), 4, "two trees + current + previous: {names:?}");
}

#[test]
fn sigkill_at_every_step_leaves_a_complete_version() {
    let f = fx();
    let (_t, dir) = dir_origin();
    let origin = file_url(&dir);
    let v3 = f.v3.manifest.to_string();
    // Deterministic points (the binary pauses there when SITEBUNDLE_INIT_PAUSE_AT names one).
    // DEST starts with v2 current and v1 previous, so installing v3 also prunes v1.
    for step in [
        "fetched",
        "extracted",
        "previous-swapped",
        "current-swapped",
        "pruning",
    ] {
        let work = tempfile::tempdir().expect("tempdir");
        let dest = work.path().join("site");
        install_v1(&dest, &origin);
        ok(run(init_cmd(&dest, std::slice::from_ref(&origin))
            .args(["--digest", &f.v2.manifest.to_string()])));
        let mut child = init_cmd(&dest, std::slice::from_ref(&origin))
            .args(["--digest", &v3])
            .env("SITEBUNDLE_INIT_PAUSE_AT", step)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let mut paused = false;
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("pause point") {
                paused = true;
                break;
            }
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        assert!(paused, "never reached pause point {step}:\n{seen}");
        let served = assert_consistent(&dest, &format!("killed at {step}"));
        let expected = match step {
            "fetched" | "extracted" | "previous-swapped" => "v2",
            _ => "v3",
        };
        assert_eq!(served, Some(expected), "killed at {step}");
        // A re-run converges and leaves no leftovers.
        ok(run(
            init_cmd(&dest, std::slice::from_ref(&origin)).args(["--digest", &v3])
        ));
        assert_serves(&dest, &f.v3, "v3");
        assert_eq!(
            fs::read_link(dest.join("previous"))
                .expect("previous")
                .display()
                .to_string(),
            f.v2.id.hex(),
            "after {step}"
        );
        let leftovers: Vec<String> = fs::read_dir(&dest)
            .expect("read dest")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.starts_with(".staging-")
                    || n.starts_with(".trash-")
                    || n.contains(".sitebundle-")
                    || n.starts_with(".link-")
                    || *n == f.v1.id.hex()
            })
            .collect();
        assert!(
            leftovers.is_empty(),
            "after {step}: leftovers {leftovers:?}"
        );
    }
}

#[test]
fn sigkill_after_random_delays_leaves_a_complete_version_or_nothing() {
    let f = fx();
    let (_t, dir) = dir_origin();
    let origin = file_url(&dir);
    let mut seen = BTreeMap::new();
    for (i, ms) in [0u64, 5, 15, 30, 50, 80, 120, 200, 300]
        .into_iter()
        .enumerate()
    {
        let work = tempfile::tempdir().expect("tempdir");
        let dest = work.path().join("site");
        // Half the runs start from nothing, half from v1 installed.
        let from_v1 = i % 2 == 1;
        if from_v1 {
            install_v1(&dest, &origin);
        }
        let mut child = init_cmd(&dest, std::slice::from_ref(&origin))
            .args(["--digest", &f.v2.manifest.to_string()])
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
        let served = assert_consistent(&dest, &format!("killed after {ms} ms"));
        if from_v1 {
            assert!(served.is_some(), "killed after {ms} ms: current vanished");
        } else {
            assert_ne!(served, Some("v1"));
        }
        *seen.entry(served.unwrap_or("nothing")).or_insert(0) += 1;
        ok(run(init_cmd(&dest, std::slice::from_ref(&origin))
            .args(["--digest", &f.v2.manifest.to_string()])));
        assert_serves(&dest, &f.v2, "v2");
    }
    eprintln!("states seen after SIGKILL: {seen:?}");
}

#[test]
fn path_traversal_bundles_are_refused() {
    let work = tempfile::tempdir().expect("tempdir");
    let home = work.path().join("store");
    let store = Store::open(&home).expect("store");
    const BODY: &[u8] = b"<p>pwned</p>\n";
    // 1. A layer writes d/../../evil.html where the index says d/a.html.
    let index = index_text(&[idx_dir("d"), idx_file("d/a.html", BODY, 1)]);
    let dotdot_tar = craft(
        &store,
        &index,
        &[tar(&[dir("d")]), tar(&[file("d/../../evil.html", BODY)])],
    );
    // 2. The index itself claims ../evil.html.
    let index2 = index_text(&[idx_file("../evil.html", BODY, 1)]);
    let dotdot_index = craft(
        &store,
        &index2,
        &[tar(&[]), tar(&[file("../evil.html", BODY)])],
    );
    // 3. A symlink pointing up, then a file written through it.
    let index3 = index_text(&[idx_link("x", "../.."), idx_file("x/escaped.html", BODY, 1)]);
    let through_link = craft(
        &store,
        &index3,
        &[
            tar(&[symlink("x", "../..")]),
            tar(&[file("x/escaped.html", BODY)]),
        ],
    );
    // 4-6 (issue 8 item 1): links that are lexically inside but resolve, through the bundle's
    // other links, above DEST (nginx would serve the host's /etc/passwd), dangle, or loop.
    let (index4, tars4) = escape_through_root_link();
    let physical_escape = craft(&store, &index4, &tars4);
    let dangling = craft(
        &store,
        &index_text(&[
            idx_file("a.html", BODY, 1),
            idx_link("b.html", "missing.html"),
        ]),
        &[
            tar(&[symlink("b.html", "missing.html")]),
            tar(&[file("a.html", BODY)]),
        ],
    );
    let looping = craft(
        &store,
        &index_text(&[
            idx_file("a.html", BODY, 1),
            idx_link("x", "y"),
            idx_link("y", "x"),
        ]),
        &[
            tar(&[symlink("x", "y"), symlink("y", "x")]),
            tar(&[file("a.html", BODY)]),
        ],
    );
    // Publish the store as a directory origin.
    let origin: Arc<dyn Target> =
        Arc::new(StoreTarget::dir(&work.path().join("origin")).expect("dir"));
    rt().block_on(async {
        for m in [
            dotdot_tar,
            dotdot_index,
            through_link,
            physical_escape,
            dangling,
            looping,
        ] {
            let b = store.read_blob(&m, 1 << 22).expect("manifest");
            // Blobs first, then the manifest (as push does; LocalBundle::open would refuse it).
            let man: Manifest = serde_json::from_slice(&b).expect("parse");
            for d in std::iter::once(&man.config).chain(man.layers.iter()) {
                origin
                    .put_blob(&d.digest, d.size, &store.blob_path(&d.digest))
                    .await
                    .expect("put blob");
            }
            origin
                .put_manifest(&m, bytes::Bytes::from(b))
                .await
                .expect("put manifest");
        }
    });
    let url = file_url(&work.path().join("origin"));
    let dest = work.path().join("srv/site");
    let (_good, good_dir) = dir_origin();
    install_v1(&dest, &file_url(&good_dir));
    let before = snapshot(&dest);
    let outside_before = snapshot(work.path().join("srv").as_path());
    for (what, m) in [
        ("tar entry with ..", dotdot_tar),
        ("index entry with ..", dotdot_index),
        ("write through a symlink", through_link),
        (
            "issue 8: link escaping through a link to the root",
            physical_escape,
        ),
        ("issue 8: dangling link", dangling),
        ("issue 8: looping links", looping),
    ] {
        let out =
            run(init_cmd(&dest, std::slice::from_ref(&url)).args(["--digest", &m.to_string()]));
        assert_eq!(
            code(&out),
            3,
            "{what}: expected exit 3 (integrity)\n{}",
            text(&out)
        );
        assert_eq!(snapshot(&dest), before, "{what}: DEST changed");
        assert_eq!(
            snapshot(work.path().join("srv").as_path()),
            outside_before,
            "{what}: something was written beside DEST"
        );
        assert!(!work.path().join("evil.html").exists());
        assert!(!work.path().join("srv/evil.html").exists());
    }
}

fn is_root() -> bool {
    let euid = String::from_utf8(Command::new("id").arg("-u").output().expect("id -u").stdout)
        .expect("utf8");
    euid.trim() == "0"
}

/// `c` run as nobody (65534) when we are root: same program (copied under `work`, where nobody
/// can reach it: the build directory may sit under a home that is not), arguments and
/// environment, under setpriv. Unchanged otherwise.
fn as_nobody(c: Command, work: &Path) -> Command {
    if !is_root() {
        return c;
    }
    let bin = work.join("sitebundle-init");
    if !bin.exists() {
        fs::copy(c.get_program(), &bin).expect("copy binary");
    }
    let mut wrapped = Command::new("setpriv");
    wrapped.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    wrapped.arg(&bin).args(c.get_args()).current_dir(work);
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped
}

fn chown_nobody(p: &Path) {
    let st = Command::new("chown")
        .args(["65534:65534"])
        .arg(p)
        .status()
        .expect("chown");
    assert!(st.success());
}

#[test]
fn runs_as_non_root_user() {
    let f = fx();
    let (_t, dir) = dir_origin();
    let work = tempfile::tempdir().expect("tempdir");
    chmod_world_readable(work.path());
    let dest = work.path().join("site");
    fs::create_dir(&dest).expect("mkdir");
    let mut c = init_cmd(&dest, &[file_url(&dir)]);
    c.args(["--digest", &f.v1.manifest.to_string()]);
    if is_root() {
        chown_nobody(&dest);
    }
    ok(run(&mut as_nobody(c, work.path())));
    assert_serves(&dest, &f.v1, "v1");
    if is_root() {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(dest.join("current/index.html")).expect("stat");
        assert_eq!(
            m.uid(),
            65534,
            "files should belong to the unprivileged user"
        );
    }
}

#[test]
fn sync_mode_keeps_many_sites_at_their_channels() {
    let f = fx();
    let work = tempfile::tempdir().expect("tempdir");
    // Two sites on one directory origin each ({site} in the URL), one pinned.
    let origins = work.path().join("origins");
    for site in ["blog", "docs"] {
        let t: Arc<dyn Target> =
            Arc::new(StoreTarget::dir(&origins.join(site)).expect("dir target"));
        push(t, &[&f.v1], Some("prod"));
    }
    let config = work.path().join("sites.toml");
    let write_config = |pinned: &Digest| {
        fs::write(
            &config,
            format!(
                "origins = [\"{}/nothing-here\", \"file://{}/{{site}}\"]\n\
                 [sites.blog]\nchannel = \"prod\"\n\
                 [sites.docs]\ndigest = \"{pinned}\"\n",
                dead_url().trim_end_matches('/'),
                origins.display()
            ),
        )
        .expect("write config");
    };
    write_config(&f.v1.manifest);
    let root = work.path().join("sites");
    let sync = |root: &Path| {
        let mut c = init_cmd(root, &[]);
        c.arg("--sync").arg(&config);
        ok(run(&mut c))
    };
    sync(&root);
    assert_serves(&root.join("blog"), &f.v1, "v1");
    assert_serves(&root.join("docs"), &f.v1, "v1");
    // The pipeline moves blog's channel: the next pass follows it; docs stays pinned even
    // though its origin's channel moves too.
    for site in ["blog", "docs"] {
        let t: Arc<dyn Target> =
            Arc::new(StoreTarget::dir(&origins.join(site)).expect("dir target"));
        push(t, &[&f.v2], Some("prod"));
    }
    sync(&root);
    assert_serves(&root.join("blog"), &f.v2, "v2");
    assert_serves(&root.join("docs"), &f.v1, "v1");
    let status: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("status.json")).expect("status"))
            .expect("status json");
    assert_eq!(status["ok"], true, "{status}");
    assert_eq!(
        status["sites"]["blog"]["id"],
        f.v2.id.to_string(),
        "{status}"
    );
    assert_eq!(status["sites"]["blog"]["changed"], true, "{status}");
    assert_eq!(status["sites"]["docs"]["changed"], false, "{status}");
    // A site whose origins all fail: reported, exit non-zero, the others unaffected.
    fs::write(
        &config,
        format!(
            "origins = [\"file://{}/{{site}}\"]\n[sites.blog]\nchannel = \"prod\"\n\
             [sites.gone]\nchannel = \"prod\"\n",
            origins.display()
        ),
    )
    .expect("config");
    let mut c = init_cmd(&root, &[]);
    c.arg("--sync").arg(&config);
    let out = run(&mut c);
    assert_eq!(code(&out), 2, "{}", text(&out));
    let status: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("status.json")).expect("status"))
            .expect("status json");
    assert_eq!(status["sites"]["blog"]["ok"], true, "{status}");
    assert_eq!(status["sites"]["gone"]["ok"], false, "{status}");
    assert_serves(&root.join("blog"), &f.v2, "v2");
}

#[test]
fn sync_interval_loop_follows_a_channel_and_stops_on_sigterm() {
    let f = fx();
    let work = tempfile::tempdir().expect("tempdir");
    let origin = work.path().join("origin/blog");
    let t: Arc<dyn Target> = Arc::new(StoreTarget::dir(&origin).expect("dir target"));
    push(t.clone(), &[&f.v1], Some("prod"));
    let config = work.path().join("sites.toml");
    fs::write(
        &config,
        format!(
            "origins = [\"file://{}/{{site}}\"]\n[sites.blog]\nchannel = \"prod\"\n",
            work.path().join("origin").display()
        ),
    )
    .expect("config");
    let root = work.path().join("sites");
    let mut c = init_cmd(&root, &[]);
    c.arg("--sync")
        .arg(&config)
        .args(["--interval", "300ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("spawn");
    let wait_for = |r: &BuildReport| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while current_id(&root.join("blog")).as_deref() != Some(r.id.hex().as_str()) {
            assert!(
                Instant::now() < deadline,
                "sync loop never installed {}",
                r.id
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(&f.v1);
    push(t, &[&f.v2], Some("prod"));
    wait_for(&f.v2);
    assert_serves(&root.join("blog"), &f.v2, "v2");
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let status = testkit::proc::wait_bounded(&mut child, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("the sync loop ignored SIGTERM: {e}"));
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM should end the loop cleanly"
    );
}

#[test]
fn deploy_manifests_validate_against_kubernetes_schemas() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/validate");
    let out = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let t = text(&out);
    assert!(
        out.status.success(),
        "deploy/validate failed (needs python3 -m venv and PyPI access on first run):\n{t}"
    );
    for f in ["site-init.yaml", "site-image-volume.yaml", "sync.yaml"] {
        assert!(
            t.contains(f) && !t.contains("ERROR"),
            "{f} not validated:\n{t}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-made hostile bundles: every digest right, the trick is in the content.

/// Store a self-consistent bundle (every digest right) from an index and layer tars.
use testkit::craft::{
    dir, escape_through_root_link, file, idx_dir, idx_file, idx_link, index_text, symlink, tar,
};

fn craft(store: &Store, index: &[u8], tars: &[Vec<u8>]) -> Digest {
    testkit::craft::craft(store, index, tars).manifest
}

// ---------------------------------------------------------------------------------------------
// Issue 8: hostile origins and DEST hygiene

use repl_support::fault_proxy::{Endless, EndlessOrigin};
use repl_support::PrivateNginx;

/// Peak RSS allowed to `sitebundle-init` and `sitebundle pull` on every hostile input.
const RSS_LIMIT_KIB: u64 = 128 * 1024;

/// `sitebundle` with a private store and the same clean environment as [`init_cmd`].
fn sb_cmd(home: &Path) -> Command {
    let mut c = common::sb(home);
    for (k, _) in std::env::vars() {
        if k.starts_with("SITEBUNDLE_") && !k.starts_with("SITEBUNDLE_TEST_") {
            c.env_remove(k);
        }
    }
    c.env("SITEBUNDLE_HOME", home)
        .env("SITEBUNDLE_RETRIES", "0")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    c
}

/// Push v1 (channel prod) to a fresh repository of the plain test registry; returns the repo.
fn registry_repo_with_v1(tag: &str) -> String {
    let f = fx();
    let repo = format!("sbtest/{}", unique(tag).to_lowercase());
    push(
        Arc::new(
            replicator::oci::OciTarget::with_auth(
                &need("SITEBUNDLE_TEST_REGISTRY"),
                &repo,
                true,
                oci_client::secrets::RegistryAuth::Anonymous,
                None,
            )
            .expect("registry target"),
        ),
        &[&f.v1],
        Some("prod"),
    );
    repo
}

/// An htpasswd file (apr1) for nginx's `auth_basic`.
fn htpasswd(path: &Path, user: &str, password: &str) {
    let out = Command::new("openssl")
        .args(["passwd", "-apr1", password])
        .output()
        .expect("openssl passwd");
    assert!(out.status.success());
    fs::write(
        path,
        format!("{user}:{}\n", String::from_utf8_lossy(&out.stdout).trim()),
    )
    .expect("write htpasswd");
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn issue_8_2_endless_bodies_are_cut_in_bounded_memory() {
    let f = fx();
    let body = EndlessOrigin::start(Endless::Body);
    let token = EndlessOrigin::start(Endless::Token);
    let work = tempfile::tempdir().expect("tempdir");
    let (m, id) = (f.v1.manifest.to_string(), f.v1.id.to_string());
    let http = format!("http://{}/site/", body.host());
    let reg = format!("oci+http://{}/sites/blog", body.host());
    let tok = format!("oci+http://{}/sites/blog", token.host());
    let cases: [(&str, &str, [&str; 2]); 7] = [
        ("http origin, manifest", &http, ["--digest", &m]),
        ("http origin, channel record", &http, ["--channel", "prod"]),
        (
            "http origin, index.json (bundle id)",
            &http,
            ["--digest", &id],
        ),
        ("registry, manifest", &reg, ["--digest", &m]),
        ("registry, tag (channel)", &reg, ["--channel", "prod"]),
        ("registry, tag list (bundle id)", &reg, ["--digest", &id]),
        ("registry, token service", &tok, ["--digest", &m]),
    ];
    for (i, (what, origin, args)) in cases.iter().enumerate() {
        let dest = work.path().join(format!("dest-{i}"));
        let (out, rss) = common::run_measured(
            init_cmd(&dest, &[origin.to_string()])
                .args(args)
                .env("SITEBUNDLE_REGISTRY_USER", "u")
                .env("SITEBUNDLE_REGISTRY_PASSWORD", "issue8-endless-pw"),
        );
        let t = text(&out);
        eprintln!("init, {what}: exit {}, peak RSS {} KiB", code(&out), rss);
        assert!(
            code(&out) == 2 || code(&out) == 3,
            "{what}: expected the origin to fail\n{t}"
        );
        assert!(t.contains("larger than"), "{what}: no cap named\n{t}");
        assert!(
            rss <= RSS_LIMIT_KIB,
            "{what}: peak RSS {rss} KiB > {RSS_LIMIT_KIB} KiB"
        );
        assert_eq!(
            snapshot(&dest).get(".").map(String::as_str),
            Some("absent"),
            "{what}: DEST did not exist and must not exist after a failed run"
        );
    }
    let pulls: [(&str, &str, &str); 5] = [
        ("http origin, channel record", &http, "prod"),
        ("http origin, manifest", &http, &m),
        ("registry, manifest", &reg, &m),
        ("registry, tag list", &reg, &id),
        ("registry, token service", &tok, &m),
    ];
    for (what, from, reference) in pulls {
        let home = work.path().join("home");
        let (out, rss) =
            common::run_measured(sb_cmd(&home).args(["pull", reference, "--from", from]));
        let t = text(&out);
        eprintln!("pull, {what}: exit {}, peak RSS {} KiB", code(&out), rss);
        assert_ne!(code(&out), 0, "{what}\n{t}");
        assert!(t.contains("larger than"), "{what}: no cap named\n{t}");
        assert!(
            rss <= RSS_LIMIT_KIB,
            "pull, {what}: peak RSS {rss} KiB > {RSS_LIMIT_KIB} KiB"
        );
    }
    assert!(body.requests() > 0 && token.requests() > 0);
}

#[test]
fn issue_8_2_config_descriptor_above_the_cap_is_refused_before_downloading() {
    let f = fx();
    let (_t, dir) = dir_origin();
    // v1's manifest, its config descriptor claiming 5 GiB: every digest else right.
    let mut m: Manifest = serde_json::from_slice(
        &f.store
            .read_blob(&f.v1.manifest, 1 << 22)
            .expect("manifest"),
    )
    .expect("parse");
    m.config.size = 5 << 30;
    let bytes = m.to_bytes();
    let md = Digest::of(&bytes);
    fs::write(dir.join("blobs/sha256").join(md.hex()), &bytes).expect("write manifest");
    let (url, copy) = http_origin(&dir);
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("site");
    for origin in [file_url(&dir), url.clone()] {
        let out =
            run(init_cmd(&dest, std::slice::from_ref(&origin)).args(["--digest", &md.to_string()]));
        let t = text(&out);
        assert_eq!(code(&out), 3, "{origin}\n{t}");
        assert!(t.contains("config descriptor declares"), "{t}");
    }
    let home = work.path().join("home");
    let out = run(sb_cmd(&home).args(["pull", &md.to_string(), "--from", &url]));
    let t = text(&out);
    assert_eq!(code(&out), 3, "{t}");
    assert!(t.contains("config descriptor declares"), "{t}");
    // The real nginx never saw a request for the config blob.
    let log = fs::read_to_string(
        Path::new(&need("SITEBUNDLE_SERVICES_DIR")).join("logs/nginx-access.log"),
    )
    .expect("nginx access log");
    let name = copy
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        log.contains(&format!("/{name}/blobs/sha256/{}", md.hex())),
        "the manifest was fetched"
    );
    assert!(
        !log.contains(&format!("/{name}/blobs/sha256/{}", m.config.digest.hex())),
        "the oversized config was requested"
    );
    let _ = fs::remove_dir_all(copy);
}

#[test]
fn issue_8_2_slow_origin_is_cut_by_the_deadline_and_the_minimum_rate() {
    let f = fx();
    let (_t, dir) = dir_origin();
    let work = tempfile::tempdir().expect("tempdir");
    let port = repl_support::free_port("127.0.0.1");
    let addr = format!("127.0.0.1:{port}");
    // A real server sending 100 bytes per second.
    let nginx = PrivateNginx::start(
        &work.path().join("nginx"),
        &format!(
            "server {{ listen {addr}; location / {{ root {}; limit_rate 100; }} }}",
            dir.display()
        ),
        std::slice::from_ref(&addr),
    );
    let slow = format!("http://{addr}/");
    let home = work.path().join("home");
    // The deadline alone (rate check off).
    let out = run(sb_cmd(&home)
        .args(["pull", "prod", "--from", &slow, "--timeout", "3s"])
        .env("SITEBUNDLE_MIN_RATE", "0"));
    let t = text(&out);
    assert_eq!(code(&out), 1, "{t}");
    assert!(
        t.contains("did not finish within 3s") && t.contains(&slow),
        "{t}"
    );
    // The minimum rate alone (default 30 min deadline).
    let out = run(sb_cmd(&home)
        .args(["pull", "prod", "--from", &slow])
        .env("SITEBUNDLE_MIN_RATE", "2000")
        .env("SITEBUNDLE_RATE_WINDOW", "1s"));
    let t = text(&out);
    assert_eq!(code(&out), 1, "{t}");
    assert!(t.contains("too slow") && t.contains(&slow), "{t}");
    // init: the slow origin is skipped for the next one, for either reason. (nginx rate-limits
    // the answer's head too, so the per-request timeout is raised above both.)
    for (env, timeout, reason) in [
        (
            ("SITEBUNDLE_MIN_RATE", "0"),
            "3s",
            "whole fetch: no answer within 3s",
        ),
        (("SITEBUNDLE_RATE_WINDOW", "1s"), "60s", "too slow"),
    ] {
        let dest = work.path().join(format!("dest-{}", env.0));
        let t = ok(run(init_cmd(&dest, &[slow.clone(), file_url(&dir)])
            .args(["--connect-timeout", "30s", "--timeout", timeout])
            .args(["--digest", &f.v1.manifest.to_string()])
            .env(env.0, env.1)));
        assert_serves(&dest, &f.v1, "v1");
        assert!(
            t.contains("origin skipped") && t.contains(reason),
            "{reason}:\n{t}"
        );
    }
    drop(nginx);
}

/// The registry behind private nginx fronts on 127.0.0.2 / 127.0.0.3 (see each test).
fn registry_upstream() -> String {
    need("SITEBUNDLE_TEST_REGISTRY")
}

#[test]
fn issue_8_3_registry_blob_redirect_to_storage_carries_no_credentials() {
    let f = fx();
    let repo = registry_repo_with_v1("redir");
    let work = tempfile::tempdir().expect("tempdir");
    let (user, password) = ("issue8", "issue8-blob-redirect-password");
    htpasswd(&work.path().join("htpasswd"), user, password);
    let front = format!("127.0.0.2:{}", repl_support::free_port("127.0.0.2"));
    let storage = format!("127.0.0.3:{}", repl_support::free_port("127.0.0.3"));
    let up = registry_upstream();
    // The registry answers every request only with Basic credentials (a real challenge), and
    // sends blob downloads to "storage" on another host, as registries send them to S3 or a CDN.
    let nginx = PrivateNginx::start(
        &work.path().join("nginx"),
        &format!(
            "server {{ listen {front};\n\
               location ~ ^/v2/.+/blobs/sha256: {{ return 307 http://{storage}$request_uri; }}\n\
               location / {{ auth_basic \"issue-8\"; auth_basic_user_file {}; proxy_pass http://{up}; }} }}\n\
             server {{ listen {storage}; location / {{ proxy_pass http://{up}; }} }}",
            work.path().join("htpasswd").display()
        ),
        &[front.clone(), storage.clone()],
    );
    let origin = format!("oci+http://{front}/{repo}");
    let creds = |c: &mut Command| {
        c.env("SITEBUNDLE_REGISTRY_USER", user)
            .env("SITEBUNDLE_REGISTRY_PASSWORD", password);
    };
    let home = work.path().join("home");
    let mut c = sb_cmd(&home);
    c.args(["pull", "prod", "--from", &origin]);
    creds(&mut c);
    let t = text(&common::run_ok(&mut c));
    assert!(!t.contains(password), "{t}");
    let dest = work.path().join("site");
    let mut c = init_cmd(&dest, std::slice::from_ref(&origin));
    c.args(["--channel", "prod"]);
    creds(&mut c);
    let t = ok(run(&mut c));
    assert!(!t.contains(password), "{t}");
    assert_serves(&dest, &f.v1, "v1");
    let basic = b64(&format!("{user}:{password}"));
    let front_log = nginx.log_of(&front);
    assert!(
        front_log
            .iter()
            .any(|l| l.contains("/manifests/") && l.contains(&basic)),
        "the registry should have been sent the credentials:\n{}",
        front_log.join("\n")
    );
    let storage_log = nginx.log_of(&storage);
    assert!(
        storage_log
            .iter()
            .filter(|l| l.contains("/blobs/sha256:"))
            .count()
            >= 2,
        "blobs should have come from storage:\n{}",
        nginx.log()
    );
    for l in &storage_log {
        assert!(
            l.ends_with("auth=[-]"),
            "credentials went to another host: {l}"
        );
    }
}

#[test]
fn issue_8_3_redirects_to_another_host_or_to_plain_http_are_refused() {
    let f = fx();
    let repo = registry_repo_with_v1("refuse");
    let (_t, dir) = dir_origin();
    let work = tempfile::tempdir().expect("tempdir");
    let (ca, crt, key) =
        repl_support::test_tls(&work.path().join("tls"), &["127.0.0.2", "127.0.0.3"]);
    let p2 = |_: ()| format!("127.0.0.2:{}", repl_support::free_port("127.0.0.2"));
    let (reg_front, http_front, tls_front) = (p2(()), p2(()), p2(()));
    let elsewhere = format!("127.0.0.3:{}", repl_support::free_port("127.0.0.3"));
    let up = registry_upstream();
    let nginx = PrivateNginx::start(
        &work.path().join("nginx"),
        &format!(
            // A registry whose manifests are sent to another host.
            "server {{ listen {reg_front};\n\
               location ~ /manifests/ {{ return 302 http://{elsewhere}$request_uri; }}\n\
               location / {{ proxy_pass http://{up}; }} }}\n\
             # An HTTP origin that sends everything to another host.\n\
             server {{ listen {http_front}; location / {{ return 302 http://{elsewhere}$request_uri; }} }}\n\
             # An HTTPS registry sending blob downloads to plain HTTP.\n\
             server {{ listen {tls_front} ssl; ssl_certificate {}; ssl_certificate_key {};\n\
               location ~ ^/v2/.+/blobs/sha256: {{ return 307 http://{elsewhere}$request_uri; }}\n\
               location / {{ proxy_pass http://{up}; }} }}\n\
             # Where they point: serves the same bytes, and must never be asked.\n\
             server {{ listen {elsewhere}; location / {{ root {}; }} location /v2/ {{ proxy_pass http://{up}; }} }}",
            crt.display(),
            key.display(),
            dir.display(),
        ),
        &[reg_front.clone(), http_front.clone(), tls_front.clone(), elsewhere.clone()],
    );
    let home = work.path().join("home");
    let cases = [
        (
            format!("oci+http://{reg_front}/{repo}"),
            "refused a redirect to another host",
        ),
        (
            format!("http://{http_front}/"),
            "refused a redirect to another host",
        ),
        (
            format!("oci://{tls_front}/{repo}"),
            "refused a redirect from https to plain http",
        ),
    ];
    for (origin, why) in &cases {
        let out = run(sb_cmd(&home)
            .args(["pull", "prod", "--from", origin])
            .env("SITEBUNDLE_REGISTRY_CA", &ca));
        let t = text(&out);
        assert_eq!(code(&out), 1, "{origin}\n{t}");
        assert!(t.contains(why), "{origin}: expected {why:?}\n{t}");
        // init skips it for the next origin, and says why.
        let dest = work.path().join(format!("site-{}", origin.len()));
        let t = ok(run(init_cmd(&dest, &[origin.clone(), file_url(&dir)])
            .args(["--digest", &f.v1.manifest.to_string()])
            .env("SITEBUNDLE_REGISTRY_CA", &ca)));
        assert!(
            t.contains("origin skipped") && t.contains(why),
            "{origin}:\n{t}"
        );
        assert_serves(&dest, &f.v1, "v1");
    }
    assert!(
        nginx.log_of(&elsewhere).is_empty(),
        "a redirect was followed:\n{}",
        nginx.log()
    );
    assert!(
        !nginx.log_of(&tls_front).is_empty(),
        "the TLS front was never asked"
    );
}

#[test]
fn issue_8_3_object_store_redirect_to_another_host_is_refused() {
    let f = fx();
    let (_t, dir) = dir_origin();
    let prefix = unique("s3redir");
    push(s3_target(&prefix), &[&f.v1], Some("prod"));
    let work = tempfile::tempdir().expect("tempdir");
    let front = format!("127.0.0.2:{}", repl_support::free_port("127.0.0.2"));
    let elsewhere = format!("127.0.0.3:{}", repl_support::free_port("127.0.0.3"));
    let moto = need("SITEBUNDLE_TEST_S3_ENDPOINT");
    // An S3 endpoint that sends every (signed) request to another host, which would serve it.
    let nginx = PrivateNginx::start(
        &work.path().join("nginx"),
        &format!(
            "server {{ listen {front}; location / {{ return 307 http://{elsewhere}$request_uri; }} }}\n\
             server {{ listen {elsewhere}; location / {{ proxy_pass {moto}; }} }}"
        ),
        &[front.clone(), elsewhere.clone()],
    );
    let origin = format!("s3://{}/{prefix}", need("SITEBUNDLE_TEST_S3_BUCKET"));
    let dest = work.path().join("site");
    let t = ok(run(init_cmd(&dest, &[origin, file_url(&dir)])
        .env("AWS_ENDPOINT", format!("http://{front}"))
        .args(["--digest", &f.v1.manifest.to_string()])));
    assert!(
        t.contains("origin skipped") && t.contains("refused a redirect"),
        "{t}"
    );
    assert_serves(&dest, &f.v1, "v1");
    assert!(
        !nginx.log_of(&front).is_empty(),
        "the endpoint was never asked"
    );
    assert!(
        nginx.log_of(&elsewhere).is_empty(),
        "a signed request followed a redirect to another host:\n{}",
        nginx.log()
    );
}

#[test]
fn issue_8_3_token_realm_on_another_host_never_gets_the_password() {
    let f = fx();
    let repo = registry_repo_with_v1("realm");
    let work = tempfile::tempdir().expect("tempdir");
    let (ca, crt, key) =
        repl_support::test_tls(&work.path().join("tls"), &["127.0.0.2", "127.0.0.3"]);
    let (user, password) = ("issue8", "issue8-token-realm-password");
    let plain_front = format!("127.0.0.2:{}", repl_support::free_port("127.0.0.2"));
    let tls_front = format!("127.0.0.2:{}", repl_support::free_port("127.0.0.2"));
    let plain_realm = format!("127.0.0.3:{}", repl_support::free_port("127.0.0.3"));
    let tls_realm = format!("127.0.0.3:{}", repl_support::free_port("127.0.0.3"));
    let up = registry_upstream();
    let front = |listen: &str, tls: &str, realm: &str| {
        format!(
            "server {{ listen {listen} {tls};\n\
               location /v2/ {{\n\
                 if ($http_authorization !~ \"^Bearer \") {{\n\
                   add_header WWW-Authenticate 'Bearer realm=\"{realm}/token\",service=\"issue8\"' always;\n\
                   return 401;\n\
                 }}\n\
                 proxy_pass http://{up};\n\
               }} }}\n"
        )
    };
    let ssl = format!(
        "ssl; ssl_certificate {}; ssl_certificate_key {}",
        crt.display(),
        key.display()
    );
    let token = "location = /token { default_type application/json; return 200 '{\"token\":\"issue8-anonymous-token\"}'; }";
    let conf = format!(
        "{}{}server {{ listen {plain_realm}; {token} }}\nserver {{ listen {tls_realm} {ssl}; {token} }}",
        front(&plain_front, "", &format!("http://{plain_realm}")),
        front(&tls_front, &ssl, &format!("https://{tls_realm}")),
    );
    let nginx = PrivateNginx::start(
        &work.path().join("nginx"),
        &conf,
        &[
            plain_front.clone(),
            tls_front.clone(),
            plain_realm.clone(),
            tls_realm.clone(),
        ],
    );
    let basic = b64(&format!("{user}:{password}"));
    let with_creds = |c: &mut Command| {
        c.env("SITEBUNDLE_REGISTRY_USER", user)
            .env("SITEBUNDLE_REGISTRY_PASSWORD", password)
            .env("SITEBUNDLE_REGISTRY_CA", &ca);
    };
    // A realm on another host over plain HTTP, and over HTTPS but not trusted: an anonymous
    // token is asked for (the registry here accepts it), the password never goes there.
    for origin in [
        format!("oci+http://{plain_front}/{repo}"),
        format!("oci://{tls_front}/{repo}"),
    ] {
        let home = work.path().join(format!("home-{}", origin.len()));
        let mut c = sb_cmd(&home);
        c.args(["pull", "prod", "--from", &origin]);
        with_creds(&mut c);
        let t = text(&common::run_ok(&mut c));
        assert!(!t.contains(password), "{t}");
        let dest = work.path().join(format!("site-{}", origin.len()));
        let mut c = init_cmd(&dest, std::slice::from_ref(&origin));
        c.args(["--channel", "prod"]);
        with_creds(&mut c);
        let t = ok(run(&mut c));
        assert!(
            t.contains("anonymous token"),
            "the refusal should be logged:\n{t}"
        );
        assert!(!t.contains(password));
        assert_serves(&dest, &f.v1, "v1");
    }
    for realm in [&plain_realm, &tls_realm] {
        let lines = nginx.log_of(realm);
        assert!(
            !lines.is_empty(),
            "the realm {realm} was never asked:\n{}",
            nginx.log()
        );
        for l in lines {
            assert!(
                l.ends_with("auth=[-]") && !l.contains(&basic),
                "credentials sent to the realm: {l}"
            );
        }
    }
    // Opt-in: an HTTPS realm listed in SITEBUNDLE_REGISTRY_TOKEN_HOSTS gets them.
    let home = work.path().join("home-optin");
    let mut c = sb_cmd(&home);
    c.args([
        "pull",
        "prod",
        "--from",
        &format!("oci://{tls_front}/{repo}"),
    ])
    .env("SITEBUNDLE_REGISTRY_TOKEN_HOSTS", &tls_realm);
    with_creds(&mut c);
    common::run_ok(&mut c);
    assert!(
        nginx.log_of(&tls_realm).iter().any(|l| l.contains(&basic)),
        "a trusted realm should have been sent the credentials:\n{}",
        nginx.log()
    );
    // Never a plain-HTTP realm, even listed.
    let home = work.path().join("home-optin-plain");
    let mut c = sb_cmd(&home);
    c.args([
        "pull",
        "prod",
        "--from",
        &format!("oci+http://{plain_front}/{repo}"),
    ])
    .env("SITEBUNDLE_REGISTRY_TOKEN_HOSTS", &plain_realm);
    with_creds(&mut c);
    common::run_ok(&mut c);
    for l in nginx.log_of(&plain_realm) {
        assert!(!l.contains(&basic), "credentials sent over plain HTTP: {l}");
    }
}

#[test]
fn issue_8_5_disk_full_while_downloading_is_local_and_stops_at_once() {
    let f = fx();
    let (_t, dir) = dir_origin();
    let (http_url, copy) = http_origin(&dir);
    let work = tempfile::tempdir().expect("tempdir");
    let small = work.path().join("small");
    // Smaller than the bundle's blobs (about 1 MB): the download itself hits ENOSPC.
    let _m = common::Mount::tmpfs(&small, "256k");
    let dest = small.join("site");
    let before = snapshot(&small);
    let out = run(init_cmd(&dest, &[file_url(&dir), http_url.clone()])
        .args(["--digest", &f.v1.manifest.to_string()]));
    let t = text(&out);
    assert_eq!(code(&out), 4, "disk full is a local error (exit 4):\n{t}");
    assert!(t.contains("No space left on device"), "{t}");
    assert!(t.contains("not the origin's fault"), "{t}");
    assert!(
        !t.contains("origin skipped") && !t.contains("integrity=true"),
        "an origin was blamed:\n{t}"
    );
    assert!(
        !t.contains(http_url.trim_end_matches('/')),
        "the second origin was tried:\n{t}"
    );
    let log = fs::read_to_string(
        Path::new(&need("SITEBUNDLE_SERVICES_DIR")).join("logs/nginx-access.log"),
    )
    .expect("nginx access log");
    let name = copy
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        !log.contains(&format!("/{name}/")),
        "the second origin was asked"
    );
    common::assert_listing_eq(
        "the small file system after a failed init",
        &before,
        &snapshot(&small),
    );
    // pull: its I/O exit code (6), the local store named, the target not blamed.
    let home = small.join("home");
    let out = run(sb_cmd(&home).args(["pull", "prod", "--from", &file_url(&dir)]));
    let t = text(&out);
    assert_eq!(code(&out), 6, "{t}");
    assert!(
        t.contains("No space left on device") && t.contains("a local problem"),
        "{t}"
    );
    assert!(
        !t.contains("tampered") && !t.contains("damaged"),
        "the target was blamed:\n{t}"
    );
    let leftovers: Vec<_> = fs::read_dir(home.join("blobs/sha256"))
        .expect("store")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Room for the blobs but not for the extracted site (4.5 MB): still local, still exit 4,
    // and DEST (an existing, empty emptyDir) exactly as it was.
    let medium = work.path().join("medium");
    let _m2 = common::Mount::tmpfs(&medium, "1500k");
    let before = snapshot(&medium);
    let out = run(init_cmd(&medium, &[file_url(&dir), http_url.clone()])
        .args(["--digest", &f.v1.manifest.to_string()]));
    let t = text(&out);
    assert_eq!(code(&out), 4, "{t}");
    assert!(
        t.contains("No space left on device") && t.contains("DEST is unchanged"),
        "{t}"
    );
    assert!(!t.contains("origin skipped"), "{t}");
    common::assert_listing_eq(
        "DEST after disk full while extracting",
        &before,
        &snapshot(&medium),
    );
    let _ = fs::remove_dir_all(copy);
}

#[test]
fn issue_8_5_permission_denied_in_the_staging_store_is_local_and_stops_at_once() {
    let f = fx();
    let (_t, dir) = dir_origin();
    let (http_url, copy) = http_origin(&dir);
    let work = tempfile::tempdir().expect("tempdir");
    chmod_world_readable(work.path());
    let dest = work.path().join("site");
    fs::create_dir(&dest).expect("mkdir");
    // The staging store a run killed as root left behind, which this (unprivileged) run may
    // read but not write into: EACCES while downloading.
    let staging = dest.join(format!(".staging-{}", f.v1.manifest.hex()));
    Store::open(&staging).expect("staging store");
    if is_root() {
        chown_nobody(&dest);
    } else {
        let st = Command::new("chmod")
            .arg("a-w")
            .arg(staging.join("blobs/sha256"))
            .status()
            .expect("chmod");
        assert!(st.success());
    }
    let before = snapshot(&dest);
    let mut c = init_cmd(&dest, &[file_url(&dir), http_url.clone()]);
    c.args(["--digest", &f.v1.manifest.to_string()]);
    let out = run(&mut as_nobody(c, work.path()));
    let t = text(&out);
    assert_eq!(
        code(&out),
        4,
        "permission denied is a local error (exit 4):\n{t}"
    );
    assert!(
        t.contains("Permission denied") && t.contains("not the origin's fault"),
        "{t}"
    );
    assert!(!t.contains("origin skipped"), "an origin was blamed:\n{t}");
    assert!(
        !t.contains(http_url.trim_end_matches('/')),
        "the second origin was tried:\n{t}"
    );
    common::assert_listing_eq("DEST after EACCES in staging", &before, &snapshot(&dest));
    let _ = fs::remove_dir_all(copy);
}

#[test]
fn issue_8_10_urls_with_secrets_are_refused_without_echoing_them() {
    const SECRET: &str = "S3CR3T-issue8-do-not-print";
    let f = fx();
    let urls = [
        format!("https://origin.invalid/site?token={SECRET}"),
        format!("s3://bucket/site?X-Amz-Signature={SECRET}&X-Amz-Credential=AKIA"),
        format!("az://container/site?sv=2024&sig={SECRET}"),
        format!("gs://bucket/site?access_token={SECRET}"),
        format!("https://alice:{SECRET}@origin.invalid/site/"),
        format!("oci://bob:{SECRET}@registry.invalid/repo"),
        format!("https://origin.invalid/site#{SECRET}"),
        format!("file:///srv/site?{SECRET}"),
    ];
    let work = tempfile::tempdir().expect("tempdir");
    let home = work.path().join("home");
    let id = common::build(&home, &corpus_site("v1"), &["--tag", "v1"]);
    let config = work.path().join("sitebundle.toml");
    for url in &urls {
        let dest = work.path().join("site");
        let mut runs: Vec<(String, Output)> = Vec::new();
        for fmt in ["text", "json"] {
            runs.push((
                format!("init --log-format {fmt}"),
                run(init_cmd(&dest, std::slice::from_ref(url)).args([
                    "--log-format",
                    fmt,
                    "--digest",
                    &f.v1.manifest.to_string(),
                ])),
            ));
        }
        runs.push((
            "init with SITEBUNDLE_ORIGINS".into(),
            run(init_cmd(&dest, &[])
                .env("SITEBUNDLE_ORIGINS", url)
                .args(["--digest", &f.v1.manifest.to_string()])),
        ));
        for json in [false, true] {
            let g: &[&str] = if json { &["--json"] } else { &[] };
            runs.push((
                format!("pull json={json}"),
                run(sb_cmd(&home).args(g).args(["pull", "prod", "--from", url])),
            ));
            runs.push((
                format!("push json={json}"),
                run(sb_cmd(&home).args(g).args(["push", &id, "--to", url])),
            ));
            runs.push((
                format!("status json={json}"),
                run(sb_cmd(&home).args(g).args(["status", "--to", url])),
            ));
        }
        fs::write(&config, format!("[targets]\nsite = \"{url}\"\n")).expect("config");
        runs.push((
            "pull from a named target".into(),
            run(sb_cmd(&home)
                .env("SITEBUNDLE_CONFIG", &config)
                .args(["pull", "prod", "--from", "site"])),
        ));
        for (what, out) in runs {
            let t = text(&out);
            assert_ne!(code(&out), 0, "{url}: {what} accepted it\n{t}");
            assert!(
                !t.contains(SECRET),
                "{url}: {what} printed the secret:\n{t}"
            );
            assert!(
                t.contains("refused") || t.contains("not used") || t.contains("invalid"),
                "{url}: {what}: no clear error\n{t}"
            );
        }
        assert_eq!(snapshot(&dest).get(".").map(String::as_str), Some("absent"));
    }
}

#[test]
fn issue_8_11_a_failed_init_leaves_dest_byte_for_byte_as_it_was() {
    let f = fx();
    let (_t, dir) = dir_origin();
    let (http_url, copy) = http_origin(&dir);
    corrupt_a_layer(&copy, &f.v2);
    let work = tempfile::tempdir().expect("tempdir");
    let v2 = f.v2.manifest.to_string();
    // 1. An empty DEST (an emptyDir): no .lock, nothing else left.
    let dest = work.path().join("empty");
    fs::create_dir(&dest).expect("mkdir");
    let before = snapshot(&dest);
    let out = run(init_cmd(&dest, &[dead_url()]).args(["--digest", &v2]));
    assert_eq!(code(&out), 2, "{}", text(&out));
    common::assert_listing_eq("empty DEST, origin down", &before, &snapshot(&dest));
    // 2. A DEST (and its parent) that did not exist: neither exists after.
    let parent = work.path().join("new");
    let out = run(init_cmd(&parent.join("site"), &[dead_url()]).args(["--digest", &v2]));
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(!parent.exists(), "a failed run left {}", parent.display());
    // 3. An installed DEST, a lying origin: integrity, DEST as it was.
    let dest = work.path().join("installed");
    install_v1(&dest, &file_url(&dir));
    assert!(
        !dest.join(".lock").exists(),
        "a successful run leaves its own .lock behind"
    );
    let before = snapshot(&dest);
    let out = run(init_cmd(&dest, std::slice::from_ref(&http_url)).args(["--digest", &v2]));
    assert_eq!(code(&out), 3, "{}", text(&out));
    common::assert_listing_eq("installed DEST, lying origin", &before, &snapshot(&dest));
    // 4. The leftovers of a run killed after its fetch (a full staging store, its .lock): a
    //    failed run keeps them exactly; a good run then resumes and cleans up.
    let mut child = init_cmd(&dest, &[file_url(&dir)])
        .args(["--digest", &v2])
        .env("SITEBUNDLE_INIT_PAUSE_AT", "fetched")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    for line in BufReader::new(stderr).lines() {
        if line.unwrap_or_default().contains("pause point") {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let before = snapshot(&dest);
    assert!(
        before.keys().any(|k| k.starts_with(".staging-")),
        "{before:?}"
    );
    let out = run(init_cmd(&dest, &[dead_url()]).args(["--digest", &v2]));
    assert_eq!(code(&out), 2, "{}", text(&out));
    common::assert_listing_eq("leftovers of a killed run", &before, &snapshot(&dest));
    ok(run(
        init_cmd(&dest, &[file_url(&dir)]).args(["--digest", &v2])
    ));
    assert_serves(&dest, &f.v2, "v2");
    assert!(!snapshot(&dest).keys().any(|k| k.starts_with(".staging-")));
    let _ = fs::remove_dir_all(copy);
}

#[test]
fn issue_8_11_current_as_a_real_directory_is_refused_and_dest_untouched() {
    let f = fx();
    let (_t, dir) = dir_origin();
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("site");
    install_v1(&dest, &file_url(&dir));
    // Someone replaced the symlink with a directory of their own.
    fs::remove_file(dest.join("current")).expect("rm current");
    fs::create_dir(dest.join("current")).expect("mkdir current");
    fs::write(dest.join("current/index.html"), "hand-made").expect("write");
    let before = snapshot(&dest);
    for digest in [f.v2.manifest, f.v1.manifest] {
        let out = run(init_cmd(&dest, &[file_url(&dir)]).args(["--digest", &digest.to_string()]));
        let t = text(&out);
        assert_eq!(code(&out), 4, "{t}");
        assert!(t.contains("current: is a directory, not a symlink"), "{t}");
        assert!(
            t.contains("nothing was changed") && t.contains("DEST is unchanged"),
            "{t}"
        );
        assert!(!t.contains("fetching"), "it fetched before refusing:\n{t}");
        common::assert_listing_eq("DEST/current is a directory", &before, &snapshot(&dest));
    }
}

#[test]
fn issue_8_11_read_only_dest_holding_the_digest_succeeds_without_writing() {
    let f = fx();
    let (_t, dir) = dir_origin();
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("site");
    install_v1(&dest, &file_url(&dir));
    let before = snapshot(&dest);
    let _ro = common::Mount::read_only(&dest);
    assert!(
        fs::write(dest.join("probe"), "x").is_err(),
        "DEST should be read-only"
    );
    for digest in [f.v1.manifest, f.v1.id] {
        let t = ok(run(
            init_cmd(&dest, &[dead_url()]).args(["--digest", &digest.to_string()])
        ));
        assert!(t.contains("nothing to do"), "{t}");
    }
    // By channel too (the origin answers; nothing is fetched).
    let t = ok(run(
        init_cmd(&dest, &[file_url(&dir)]).args(["--channel", "prod"])
    ));
    assert!(t.contains("nothing to do"), "{t}");
    // Something else cannot be installed: a local error, naming why.
    let out =
        run(init_cmd(&dest, &[file_url(&dir)]).args(["--digest", &f.v2.manifest.to_string()]));
    let t = text(&out);
    assert_eq!(code(&out), 4, "{t}");
    assert!(
        t.contains("not writable") && t.contains("Read-only file system"),
        "{t}"
    );
    common::assert_listing_eq("read-only DEST", &before, &snapshot(&dest));
}

#[test]
fn issue_8_11_a_second_init_waits_a_bounded_time_and_says_for_whom() {
    let f = fx();
    let (_t, dir) = dir_origin();
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("site");
    fs::create_dir(&dest).expect("mkdir");
    let mut holder = init_cmd(&dest, &[file_url(&dir)])
        .args(["--digest", &f.v1.manifest.to_string()])
        .env("SITEBUNDLE_INIT_PAUSE_AT", "locked")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let stderr = holder.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        if line.unwrap_or_default().contains("pause point locked") {
            break;
        }
    }
    let out = run(init_cmd(&dest, &[file_url(&dir)]).args([
        "--lock-timeout",
        "2s",
        "--digest",
        &f.v1.manifest.to_string(),
    ]));
    let t = text(&out);
    assert_eq!(code(&out), 4, "{t}");
    assert!(
        t.contains("DEST is locked by another installer; waiting"),
        "{t}"
    );
    assert!(
        t.contains(&format!("sitebundle-init pid {}", holder.id())),
        "the holder is not named:\n{t}"
    );
    assert!(t.contains("gave up after waiting 2s"), "{t}");
    holder.kill().expect("SIGKILL");
    let _ = holder.wait();
    // The lock dies with its holder: the next run goes ahead at once.
    ok(run(init_cmd(&dest, &[file_url(&dir)]).args([
        "--lock-timeout",
        "2s",
        "--digest",
        &f.v1.manifest.to_string(),
    ])));
    assert_serves(&dest, &f.v1, "v1");
}

#[test]
fn issue_8_12_a_sync_config_typo_keeps_the_loop_on_the_last_good_config() {
    let f = fx();
    let work = tempfile::tempdir().expect("tempdir");
    let origin = work.path().join("origin/blog");
    let t: Arc<dyn Target> = Arc::new(StoreTarget::dir(&origin).expect("dir target"));
    push(t.clone(), &[&f.v1], Some("prod"));
    let config = work.path().join("sites.toml");
    let good = format!(
        "origins = [\"file://{}/{{site}}\"]\n[sites.blog]\nchannel = \"prod\"\n",
        work.path().join("origin").display()
    );
    fs::write(&config, &good).expect("config");
    let root = work.path().join("sites");
    let mut child = init_cmd(&root, &[])
        .arg("--sync")
        .arg(&config)
        .args(["--interval", "200ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let wait_for = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < deadline, "sync loop never got to: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let status = || -> serde_json::Value {
        fs::read(root.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    };
    let serving =
        |r: &BuildReport| current_id(&root.join("blog")).as_deref() == Some(r.id.hex().as_str());
    wait_for("v1 installed", &|| serving(&f.v1));
    // A typo: the loop keeps going on the last good config, and says so in the status file.
    fs::write(&config, good.replace("channel =", "chanel =")).expect("typo");
    wait_for("config error reported", &|| {
        status()["config_error"].is_string()
    });
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the loop exited on a typo"
    );
    let st = status();
    assert!(
        st["config_error"].as_str().unwrap_or("").contains("chanel"),
        "{st}"
    );
    assert_eq!(st["ok"], false, "{st}");
    // ... and still follows the channel with it.
    push(t, &[&f.v2], Some("prod"));
    wait_for("v2 installed on the last good config", &|| serving(&f.v2));
    // Fixed: the error goes away.
    fs::write(&config, &good).expect("fix");
    wait_for("config error cleared", &|| {
        status()["config_error"].is_null() && status()["ok"] == true
    });
    assert_serves(&root.join("blog"), &f.v2, "v2");
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let exit = testkit::proc::wait_bounded(&mut child, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("the sync loop ignored SIGTERM: {e}"));
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn issue_8_12_sync_site_names_colliding_with_dest_files_are_refused() {
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path().join("sites");
    fs::create_dir(&root).expect("mkdir");
    let before = snapshot(&root);
    let config = work.path().join("sites.toml");
    for name in [
        "status.json",
        "current",
        "previous",
        ".lock",
        ".meta",
        ".staging-0123",
        "..",
        ".",
        "a/b",
        ".hidden",
        &"a".repeat(64),
        &"0".repeat(64),
    ] {
        fs::write(
            &config,
            format!(
                "origins = [\"file:///nowhere/{{site}}\"]\n[sites.'{name}']\nchannel = \"prod\"\n"
            ),
        )
        .expect("config");
        let mut c = init_cmd(&root, &[]);
        c.arg("--sync").arg(&config);
        let out = run(&mut c);
        let t = text(&out);
        assert_eq!(code(&out), 1, "site {name:?} accepted:\n{t}");
        assert!(
            t.contains(&format!("site name {name:?}")),
            "{name}: unclear error\n{t}"
        );
        common::assert_listing_eq(&format!("site {name:?}"), &before, &snapshot(&root));
    }
    // A status file named like a site, inside the root.
    fs::write(
        &config,
        "origins = [\"file:///nowhere/{site}\"]\n[sites.state]\nchannel = \"prod\"\n",
    )
    .expect("config");
    let mut c = init_cmd(&root, &[]);
    c.arg("--sync")
        .arg(&config)
        .arg("--status-file")
        .arg(root.join("state"));
    let out = run(&mut c);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        text(&out).contains("would be the status file"),
        "{}",
        text(&out)
    );
}
