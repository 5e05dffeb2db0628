//! Issue 10, "any digest a user was shown resolves on every target": a bundle pushed **without a
//! channel** installs (`sitebundle-init --digest`) and pulls (`sitebundle pull`) by its bundle id
//! and by its manifest digest from every real target kind (directory, moto, Azurite, both
//! registries, nginx serving a directory target, fake-gcs-server for reads); with both
//! compressions of one bundle on a target the zstd build wins whatever the push order; and the
//! lookup takes a bounded number of requests, counted in a real nginx's access log (in front of
//! a directory target and of the real registry), however many channels the target has.
//!
//! Needs `SITEBUNDLE_TEST_*` (scripts/test) and `SITEBUNDLE_TEST_CORPUS`.

mod common;
mod repl_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use repl_support::{need, rt, service_env, unique, workspace_bin, PrivateNginx};

/// The small corpus v1 built with zstd and with gzip (one bundle id, two manifests), and v2.
struct Built {
    _home: tempfile::TempDir,
    home: PathBuf,
    id: String,
    zstd: String,
    gzip: String,
}

fn sb(home: &Path) -> Command {
    let mut c = Command::new(workspace_bin("sitebundle"));
    service_env(&mut c);
    c.env("SITEBUNDLE_HOME", home);
    c
}

fn init(dest: &Path, origin: &str) -> Command {
    init_with(dest, "--origin", origin)
}

/// `sitebundle-init` with the origin given as `flag` (`--origin`, or its alias `--target`).
fn init_with(dest: &Path, flag: &str, origin: &str) -> Command {
    let mut c = Command::new(workspace_bin("sitebundle-init"));
    service_env(&mut c);
    c.env("SITEBUNDLE_TIMEOUT", "60s")
        .env("SITEBUNDLE_CONNECT_TIMEOUT", "5s")
        .env("RUST_LOG", "info")
        .arg("--dest")
        .arg(dest)
        .args([flag, origin]);
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap_or_else(|e| panic!("run {c:?}: {e}"));
    assert!(
        o.status.success(),
        "{c:?} failed ({}):\n{}",
        o.status,
        text(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or_default().trim().to_string()
}

fn small(v: &str) -> PathBuf {
    common::corpus_site("small", v)
}

fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let t = tempfile::tempdir().expect("tempdir");
        let home = t.path().join("store");
        let id = last_line(&ok(sb(&home)
            .args(["--quiet", "build", "--tag", "v1"])
            .arg(small("v1"))));
        let id_gz = last_line(&ok(sb(&home)
            .args([
                "--quiet",
                "build",
                "--compression",
                "gzip",
                "--tag",
                "v1-gzip",
            ])
            .arg(small("v1"))));
        assert_eq!(id, id_gz, "both compressions share the bundle id");
        ok(sb(&home)
            .args(["--quiet", "build", "--tag", "v2"])
            .arg(small("v2")));
        let manifest = |tag: &str| {
            let v: serde_json::Value =
                serde_json::from_str(&ok(sb(&home).args(["--json", "inspect", tag])))
                    .expect("inspect --json");
            assert_eq!(v["version"], 1, "{v}");
            v["manifest"].as_str().expect("manifest").to_string()
        };
        let (zstd, gzip) = (manifest("v1"), manifest("v1-gzip"));
        assert_ne!(zstd, gzip);
        Built {
            home,
            _home: t,
            id,
            zstd,
            gzip,
        }
    })
}

/// `DEST/current` holds exactly the small corpus v1.
fn assert_installed_v1(dest: &Path, what: &str) {
    let b = built();
    let cur = std::fs::read_link(dest.join("current")).expect("DEST/current");
    assert_eq!(
        format!("sha256:{}", cur.display()),
        b.id,
        "{what}: current names the bundle id"
    );
    common::assert_same_tree(
        what,
        &common::snapshot(&small("v1")),
        &common::snapshot(&dest.join("current")),
    );
}

/// A writable target of each kind, as a URL, fresh for `tag`.
fn writable_urls(tag: &str, work: &Path) -> Vec<(&'static str, String)> {
    let name = unique(tag).to_lowercase();
    vec![
        ("dir", format!("file://{}", work.join(&name).display())),
        (
            "s3 (moto)",
            format!("s3://{}/{name}", need("SITEBUNDLE_TEST_S3_BUCKET")),
        ),
        (
            "az (Azurite)",
            format!("az://{}/{name}", need("SITEBUNDLE_TEST_AZURE_CONTAINER")),
        ),
        (
            "oci (plain)",
            format!(
                "oci+http://{}/sbtest/{name}",
                need("SITEBUNDLE_TEST_REGISTRY")
            ),
        ),
        (
            "oci (TLS + basic auth)",
            format!(
                "oci://{}/sbtest/{name}",
                need("SITEBUNDLE_TEST_REGISTRY_AUTH")
            ),
        ),
    ]
}

/// A directory target under the shared nginx root: its file:// URL, its http:// URL, its path.
fn nginx_dir(tag: &str) -> (String, String, PathBuf) {
    let name = unique(tag);
    let dir = Path::new(&need("SITEBUNDLE_TEST_HTTP_ROOT")).join(&name);
    (
        format!("file://{}", dir.display()),
        format!("{}/{name}/", need("SITEBUNDLE_TEST_HTTP_ORIGIN")),
        dir,
    )
}

/// Copy the directory target at `dir` into fake-gcs-server; its gs:// URL.
fn gcs_copy_of(dir: &Path, tag: &str) -> String {
    let prefix = unique(tag);
    rt().block_on(repl_support::seed_gcs_from_dir(dir, &prefix));
    format!("gs://{}/{prefix}", need("SITEBUNDLE_TEST_GCS_BUCKET"))
}

fn world_readable(p: &Path) {
    common::run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(p));
}

#[test]
fn issue_10_resolve_push_without_channel_then_init_and_pull_by_either_digest_everywhere() {
    let b = built();
    let work = tempfile::tempdir().expect("tempdir");
    let mut origins = Vec::new();
    for (kind, url) in writable_urls("nochan", work.path()) {
        let out = ok(sb(&b.home).args(["--quiet", "push", "v1", "--target", &url]));
        assert_eq!(
            last_line(&out),
            b.zstd,
            "{kind}: push prints the manifest digest"
        );
        origins.push((kind.to_string(), url));
    }
    // nginx serving a directory target, and fake-gcs-server holding a copy of one (reads only).
    let (file_url, http_url, dir) = nginx_dir("nochan-http");
    ok(sb(&b.home).args(["--quiet", "push", "v1", "--target", &file_url]));
    world_readable(&dir);
    origins.push(("http (nginx over a directory target)".into(), http_url));
    origins.push((
        "gs (fake-gcs-server)".into(),
        gcs_copy_of(&dir, "nochan-gcs"),
    ));

    for (kind, url) in &origins {
        // No channel anywhere: the id resolves through its id record alone.
        let st: serde_json::Value =
            serde_json::from_str(&ok(sb(&b.home).args(["--json", "status", "--target", url])))
                .expect("status --json");
        assert_eq!(
            st["targets"][0]["channels"],
            serde_json::json!({}),
            "{kind}: push without --channel moved no channel"
        );
        for (how, digest) in [("bundle id", &b.id), ("manifest digest", &b.zstd)] {
            let what = format!("{kind}, by {how}");
            let t = tempfile::tempdir().expect("tempdir");
            let dest = t.path().join("site");
            // `--target` is sitebundle-init's alias of --origin (one vocabulary): use it on
            // every other kind.
            let flag = if origins.iter().position(|(k, _)| k == kind).unwrap_or(0) % 2 == 0 {
                "--origin"
            } else {
                "--target"
            };
            let o = init_with(&dest, flag, url)
                .args(["--digest", digest])
                .output()
                .expect("run sitebundle-init");
            assert!(
                o.status.success(),
                "init {what}: {}\n{}",
                o.status,
                text(&o)
            );
            assert_installed_v1(&dest, &format!("init {what}"));
            let out =
                ok(sb(&t.path().join("store")).args(["--quiet", "pull", digest, "--target", url]));
            assert_eq!(last_line(&out), b.zstd, "pull {what}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The manifest `digest` resolves to on `url`, as `sitebundle status --digest` reports it.
fn resolves_to(url: &str, digest: &str) -> String {
    let b = built();
    let st: serde_json::Value = serde_json::from_str(&ok(
        sb(&b.home).args(["--json", "status", "--target", url, "--digest", digest])
    ))
    .expect("status --json");
    assert_eq!(st["version"], 1, "{st}");
    let t = &st["digests"][0]["targets"][0];
    assert_eq!(t["complete"], true, "{url}: {st}");
    t["manifest"].as_str().expect("manifest").to_string()
}

#[test]
fn issue_10_resolve_both_compressions_zstd_wins_whatever_the_push_order() {
    let b = built();
    let work = tempfile::tempdir().expect("tempdir");
    for (order, first, second) in [
        ("gz-then-zstd", "v1-gzip", "v1"),
        ("zstd-then-gz", "v1", "v1-gzip"),
    ] {
        let mut urls = writable_urls(order, work.path());
        let (file_url, http_url, dir) = nginx_dir(order);
        urls.push(("dir served by nginx", file_url));
        for (kind, url) in &urls {
            for tag in [first, second] {
                ok(sb(&b.home).args(["--quiet", "push", tag, "--target", url]));
            }
            assert_eq!(
                resolves_to(url, &b.id),
                b.zstd,
                "{kind}, {order}: the zstd build wins"
            );
            // The gzip build stays addressable by its own digest.
            assert_eq!(resolves_to(url, &b.gzip), b.gzip, "{kind}, {order}");
        }
        world_readable(&dir);
        let gs = gcs_copy_of(&dir, order);
        for (kind, url) in [("http (nginx)", http_url), ("gs (fake-gcs-server)", gs)] {
            assert_eq!(resolves_to(&url, &b.id), b.zstd, "{kind}, {order}");
        }
        // A channel moved to the bundle id lands on the zstd build on every target at once.
        let mut rb = sb(&b.home);
        rb.args(["--quiet", "push", "v2", "--channel", "live"]);
        for (_, url) in &urls {
            rb.args(["--target", url]);
        }
        ok(&mut rb);
        let mut rb = sb(&b.home);
        rb.args(["--quiet", "rollback", "live", "--digest", &b.id]);
        for (_, url) in &urls {
            rb.args(["--target", url]);
        }
        assert_eq!(
            last_line(&ok(&mut rb)),
            b.zstd,
            "{order}: rollback --digest ID"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
    // The local store: the same rule, whatever the build order.
    for (order, first, second) in [
        ("gz-then-zstd", "gzip", "zstd"),
        ("zstd-then-gz", "zstd", "gzip"),
    ] {
        let t = tempfile::tempdir().expect("tempdir");
        for c in [first, second] {
            ok(sb(t.path())
                .args(["--quiet", "build", "--compression", c])
                .arg(small("v1")));
        }
        let v: serde_json::Value =
            serde_json::from_str(&ok(sb(t.path()).args(["--json", "inspect", &b.id])))
                .expect("inspect --json");
        assert_eq!(v["manifest"], b.zstd.as_str(), "local store, {order}");
        // A prefix of the id resolves too (one bundle, two manifests: not ambiguous).
        let prefix = &b.id["sha256:".len().."sha256:".len() + 12];
        let v: serde_json::Value =
            serde_json::from_str(&ok(sb(t.path()).args(["--json", "inspect", prefix])))
                .expect("inspect --json");
        assert_eq!(
            v["manifest"],
            b.zstd.as_str(),
            "local store prefix, {order}"
        );
    }
}

/// Requests of a private nginx's access log that came to `addr`, as "METHOD URI status=N".
fn requests(nginx: &PrivateNginx, addr: &str) -> Vec<String> {
    nginx
        .log_of(addr)
        .into_iter()
        .map(|l| {
            let l = l.split(" auth=").next().unwrap_or_default().to_string();
            l.split_once(' ').map(|(_, r)| r.to_string()).unwrap_or(l)
        })
        .collect()
}

/// Requests that are not the download of one of `blobs` (config and layers).
fn lookups(reqs: &[String], blobs: &[String]) -> Vec<String> {
    reqs.iter()
        .filter(|r| {
            !blobs.iter().any(|b| {
                r.contains(&format!("/blobs/{b} "))
                    || r.contains(&format!("/blobs/sha256/{} ", &b["sha256:".len()..]))
            })
        })
        .cloned()
        .collect()
}

/// Config and layer digests of a manifest of the local store.
fn blobs_of(manifest: &str) -> Vec<String> {
    let b = built();
    let p = b
        .home
        .join("blobs/sha256")
        .join(&manifest["sha256:".len()..]);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p).expect("read manifest")).expect("manifest");
    std::iter::once(&m["config"])
        .chain(m["layers"].as_array().expect("layers"))
        .map(|d| d["digest"].as_str().expect("digest").to_string())
        .collect()
}

#[test]
fn issue_10_resolve_takes_a_bounded_number_of_requests_whatever_the_channels() {
    let b = built();
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("target");
    let file_url = format!("file://{}", dir.display());
    let repo = format!("sbtest/{}", unique("bound").to_lowercase());
    let reg_url = format!("oci+http://{}/{repo}", need("SITEBUNDLE_TEST_REGISTRY"));
    // Many channels, all on v2; v1 pushed without any channel.
    const CHANNELS: usize = 12;
    for i in 0..CHANNELS {
        ok(sb(&b.home).args([
            "--quiet",
            "push",
            "v2",
            "--target",
            &file_url,
            "--target",
            &reg_url,
            "--channel",
            &format!("ch{i:02}"),
        ]));
    }
    ok(sb(&b.home).args([
        "--quiet", "push", "v1", "--target", &file_url, "--target", &reg_url,
    ]));
    world_readable(work.path());
    let files = format!("127.0.0.1:{}", repl_support::free_port("127.0.0.1"));
    let registry = format!("127.0.0.1:{}", repl_support::free_port("127.0.0.1"));
    let nginx = PrivateNginx::start(
        &work.path().join("nginx"),
        &format!(
            "server {{ listen {files}; root {}; }}\n\
             server {{ listen {registry}; location / {{ proxy_pass http://{}; }} }}",
            dir.display(),
            need("SITEBUNDLE_TEST_REGISTRY")
        ),
        &[files.clone(), registry.clone()],
    );
    let blobs = blobs_of(&b.zstd);
    let zstd_hex = &b.zstd["sha256:".len()..];
    let id_hex = &b.id["sha256:".len()..];
    let cases = [
        (
            "http, by bundle id",
            format!("http://{files}/"),
            &b.id,
            files.clone(),
        ),
        (
            "http, by manifest digest",
            format!("http://{files}/"),
            &b.zstd,
            files.clone(),
        ),
        (
            "registry, by bundle id",
            format!("oci+http://{registry}/{repo}"),
            &b.id,
            registry.clone(),
        ),
        (
            "registry, by manifest digest",
            format!("oci+http://{registry}/{repo}"),
            &b.zstd,
            registry.clone(),
        ),
    ];
    for (what, origin, digest, addr) in &cases {
        let before = requests(&nginx, addr).len();
        let t = tempfile::tempdir().expect("tempdir");
        let dest = t.path().join("site");
        ok(init(&dest, origin).args(["--digest", digest.as_str()]));
        assert_installed_v1(&dest, what);
        let reqs: Vec<String> = requests(&nginx, addr)[before..].to_vec();
        let look = lookups(&reqs, &blobs);
        let expected: Vec<String> = match (what.starts_with("http"), *digest == &b.id) {
            (true, true) => vec![
                format!("GET /ids/sha256/{id_hex}.json status=200"),
                format!("GET /blobs/sha256/{zstd_hex} status=200"),
            ],
            (true, false) => vec![
                format!("GET /ids/sha256/{zstd_hex}.json status=404"),
                format!("GET /blobs/sha256/{zstd_hex} status=200"),
            ],
            (false, true) => vec![format!(
                "GET /v2/{repo}/manifests/sitebundle-id-{id_hex} status=200"
            )],
            (false, false) => vec![
                format!("GET /v2/{repo}/manifests/sitebundle-id-{zstd_hex} status=404"),
                format!("GET /v2/{repo}/manifests/{} status=200", b.zstd),
            ],
        };
        assert_eq!(
            look, expected,
            "{what}: the lookup requests, in order (all: {reqs:#?})"
        );
        assert!(
            !reqs.iter().any(|r| r.contains("/channels/")
                || r.contains("/tags/list")
                || r.contains("/manifests/ch")),
            "{what}: no channel was read: {reqs:#?}"
        );
    }
    // A directory target written before id records: one index.json read stands in for the record
    // (at most 4 lookup requests), still no channel read.
    std::fs::remove_dir_all(dir.join("ids")).expect("drop the id records");
    ok(sb(&b.home).args([
        "--quiet",
        "push",
        "v1",
        "--target",
        &file_url,
        "--channel",
        "old",
    ]));
    std::fs::remove_dir_all(dir.join("ids")).expect("drop the id records again");
    world_readable(work.path());
    let before = requests(&nginx, &files).len();
    let t = tempfile::tempdir().expect("tempdir");
    let dest = t.path().join("site");
    ok(init(&dest, &format!("http://{files}/")).args(["--digest", &b.id]));
    assert_installed_v1(&dest, "legacy layout by bundle id");
    let reqs: Vec<String> = requests(&nginx, &files)[before..].to_vec();
    let look = lookups(&reqs, &blobs);
    assert_eq!(
        look,
        vec![
            format!("GET /ids/sha256/{id_hex}.json status=404"),
            format!("GET /index.json status=200"),
            format!("GET /blobs/sha256/{zstd_hex} status=200"),
        ],
        "legacy lookup (the config blob itself, fetched as a manifest candidate, is one of the \
         bundle's blobs): {reqs:#?}"
    );
    assert!(
        reqs.iter().filter(|r| !look.contains(r)).count() <= blobs.len() + 1,
        "{reqs:#?}"
    );
    assert!(!reqs.iter().any(|r| r.contains("/channels/")), "{reqs:#?}");
}
