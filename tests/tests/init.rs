//! `sitebundle-init` (issue 5), run as a user runs it: the real binary, against real origins from
//! `../shared/services` (registry, TLS+auth registry, moto S3, Azurite, fake-gcs-server, nginx) and
//! local directories. Needs `. /tmp/sitebundle-services/env`; fails with a clear message without.
//!
//! Origins are populated with the replicator's own push (or, for GCS, whose emulator refuses
//! object_store's writes, by uploading a directory target's files through its JSON API; for the
//! nginx origin, by copying a directory target under its root). The only fault injected by hand
//! is a corrupted blob in a directory we own, which a real server then serves as-is.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bundle::manifest::Manifest;
use bundle::{BuildOptions, BuildReport, Digest, FileHash, NoProgress, Store};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::{BackoffConfig, RetryConfig};
use replicator::push::{LocalBundle, Options};
use replicator::store_target::{StoreKind, StoreTarget};
use replicator::Target;

// ---------------------------------------------------------------------------------------------
// Environment and fixtures

fn need(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: start the services (../shared/services/start) and \
             `. /tmp/sitebundle-services/env` before running these tests (scripts/test does both)"
        ),
    }
}

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

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
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

/// Push `bundles` to `t` in order; `channel` (if any) ends on the last one.
fn push(t: Arc<dyn Target>, bundles: &[&BuildReport], channel: Option<&str>) {
    let f = fx();
    rt().block_on(async {
        for (i, b) in bundles.iter().enumerate() {
            let lb = LocalBundle::open(&f.store, b.manifest)
                .await
                .expect("local bundle");
            let ch = if i + 1 == bundles.len() {
                channel
            } else {
                None
            };
            replicator::push::push(&lb, std::slice::from_ref(&t), ch, &Options::from_env())
                .await
                .unwrap_or_else(|e| panic!("push to {}: {e:?}", t.name()));
        }
    });
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

fn chmod_world_readable(p: &Path) {
    let st = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(p)
        .status()
        .expect("chmod");
    assert!(st.success());
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

/// Every entry under `root` (not following symlinks): kind, mode, content hash or link target.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            let m = fs::symlink_metadata(&p).expect("stat");
            let v = if m.file_type().is_symlink() {
                format!("l {}", fs::read_link(&p).expect("readlink").display())
            } else if m.is_dir() {
                go(root, &p, out);
                format!("d {:o}", m.permissions().mode() & 0o7777)
            } else {
                format!(
                    "f {:o} {}",
                    m.permissions().mode() & 0o7777,
                    FileHash::of(&fs::read(&p).expect("read")).hex()
                )
            };
            out.insert(rel, v);
        }
    }
    let mut out = BTreeMap::new();
    go(root, root, &mut out);
    out
}

/// Content of a served tree: files (hash, executable bit), dirs, symlinks.
fn site_tree(root: &Path) -> BTreeMap<String, String> {
    snapshot(root)
        .into_iter()
        .map(|(k, v)| {
            let v = match v.split_once(' ') {
                Some(("f", rest)) => {
                    let (mode, hash) = rest.split_once(' ').expect("mode hash");
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
    assert!(t.contains("no answer within"), "{t}");
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

#[test]
fn runs_as_non_root_user() {
    let euid = String::from_utf8(Command::new("id").arg("-u").output().expect("id -u").stdout)
        .expect("utf8");
    let f = fx();
    let (_t, dir) = dir_origin();
    let work = tempfile::tempdir().expect("tempdir");
    chmod_world_readable(work.path());
    let dest = work.path().join("site");
    fs::create_dir(&dest).expect("mkdir");
    let mut c = init_cmd(&dest, &[file_url(&dir)]);
    c.args(["--digest", &f.v1.manifest.to_string()]);
    let mut c = if euid.trim() == "0" {
        let st = Command::new("chown")
            .args(["65534:65534"])
            .arg(&dest)
            .status()
            .expect("chown");
        assert!(st.success());
        // Same program (copied where nobody can reach it: the build directory may sit under a
        // home that is not), arguments and environment, under setpriv as nobody.
        let bin = work.path().join("sitebundle-init");
        fs::copy(c.get_program(), &bin).expect("copy binary");
        let mut wrapped = Command::new("setpriv");
        wrapped.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        wrapped
            .arg(&bin)
            .args(c.get_args())
            .current_dir(work.path());
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        wrapped
    } else {
        c
    };
    ok(run(&mut c));
    assert_serves(&dest, &f.v1, "v1");
    if euid.trim() == "0" {
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
    let status = child.wait().expect("wait");
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
