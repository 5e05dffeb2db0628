//! The sync service (issue 11): `sitebundle-init --sync CONFIG --listen ADDR`, run as an operator
//! runs it, against real origins from `../shared/services` (directory, nginx, docker-registry,
//! moto S3) and private nginx instances for redirects and for serving DEST to a reader.
//!
//! The HTTP API is spoken to with a few lines of HTTP/1.1 over a `TcpStream` ([`get`],
//! [`post`]): the point is to see the bytes a client sees. Headless Chromium (Debian's
//! `chromium`, installed by `scripts/test`) loads the status page; its screenshot is kept under
//! `target/test-artifacts/`.
//!
//! No fake origin is needed: a "down" origin is a private nginx that was stopped, a redirect to
//! a host outside the allow-list is a real nginx `return 307`.

mod common;
mod repl_support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bundle::{BuildOptions, BuildReport, NoProgress, Store};
use object_store::aws::AmazonS3Builder;
use repl_support::{chmod_world_readable, free_port, need, push_bundles, PrivateNginx};
use replicator::store_target::{StoreKind, StoreTarget};
use replicator::Target;

// ---------------------------------------------------------------------------------------------
// Fixtures

fn unique(tag: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("svc-{tag}-{}-{}", std::process::id(), n % 1_000_000_000_000)
}

/// Tiny sites whose page names a content-hashed asset, as real static builds do: version `n`
/// has `index.html` (`data-version="n"`, linking `app.n.css`) and `app.n.css` (`version n`).
struct Fixture {
    _home: tempfile::TempDir,
    store: Store,
    v: Vec<BuildReport>,
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let home = tempfile::tempdir().expect("tempdir");
        let store = Store::open(home.path().join("store")).expect("store");
        let opts = BuildOptions {
            use_cache: false,
            ..Default::default()
        };
        let v = (1..=3)
            .map(|n| {
                let dir = home.path().join(format!("site-v{n}"));
                fs::create_dir_all(dir.join("docs")).expect("mkdir");
                fs::write(
                    dir.join("index.html"),
                    format!(
                        "<!DOCTYPE html><html><head><link rel=\"stylesheet\" href=\"app.{n}.css\">\
                         </head><body data-version=\"{n}\">version {n}</body></html>\n"
                    ),
                )
                .expect("write");
                fs::write(
                    dir.join(format!("app.{n}.css")),
                    format!("/* version {n} */\n"),
                )
                .expect("write");
                fs::write(
                    dir.join("docs/about.html"),
                    "<p>same in every version</p>\n",
                )
                .expect("write");
                bundle::build(&dir, &store, &opts, &NoProgress).expect("build")
            })
            .collect();
        Fixture {
            _home: home,
            store,
            v,
        }
    })
}

/// Push version `n` (1-based) to `t` and move `channel` to it.
fn push(t: &Arc<dyn Target>, n: usize, channel: &str) {
    push_report(t, &fx().v[n - 1], channel);
}

/// Push a bundle of the fixture's store to `t` and move `channel` to it.
fn push_report(t: &Arc<dyn Target>, report: &BuildReport, channel: &str) {
    push_bundles(&fx().store, t, &[report], Some(channel));
}

/// The kinds of origin a site can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    Nginx,
    Registry,
    S3,
}

/// A set of origins, one folder / repository / prefix per site.
struct Origins {
    tag: String,
    dir: PathBuf,
    www: PathBuf,
}

impl Origins {
    fn new(work: &Path) -> Origins {
        let tag = unique("o");
        let www = Path::new(&need("SITEBUNDLE_TEST_HTTP_ROOT")).join(&tag);
        Origins {
            dir: work.join("origins"),
            www,
            tag,
        }
    }

    fn target(&self, kind: Kind, site: &str) -> Arc<dyn Target> {
        match kind {
            Kind::Dir => Arc::new(StoreTarget::dir(&self.dir.join(site)).expect("dir target")),
            Kind::Nginx => Arc::new(StoreTarget::dir(&self.www.join(site)).expect("dir target")),
            Kind::Registry => {
                let url: replicator::TargetUrl = format!(
                    "oci+http://{}/{}/{site}",
                    need("SITEBUNDLE_TEST_REGISTRY"),
                    self.tag
                )
                .parse()
                .expect("registry url");
                replicator::open(&url).expect("registry target")
            }
            Kind::S3 => {
                let prefix = format!("{}/{site}", self.tag);
                let s = AmazonS3Builder::new()
                    .with_endpoint(need("SITEBUNDLE_TEST_S3_ENDPOINT"))
                    .with_allow_http(true)
                    .with_region(need("SITEBUNDLE_TEST_S3_REGION"))
                    .with_bucket_name(need("SITEBUNDLE_TEST_S3_BUCKET"))
                    .with_access_key_id(need("SITEBUNDLE_TEST_S3_ACCESS_KEY_ID"))
                    .with_secret_access_key(need("SITEBUNDLE_TEST_S3_SECRET_ACCESS_KEY"))
                    .build()
                    .expect("s3 client");
                Arc::new(StoreTarget::new(
                    format!("s3://{}/{prefix}", need("SITEBUNDLE_TEST_S3_BUCKET")),
                    Arc::new(s),
                    &prefix,
                    StoreKind::Cloud,
                ))
            }
        }
    }

    /// The origin URL `sitebundle-init` is given for `site`.
    fn url(&self, kind: Kind, site: &str) -> String {
        match kind {
            Kind::Dir => format!("file://{}", self.dir.join(site).display()),
            Kind::Nginx => format!(
                "{}/{}/{site}/",
                need("SITEBUNDLE_TEST_HTTP_ORIGIN"),
                self.tag
            ),
            Kind::Registry => format!(
                "oci+http://{}/{}/{site}",
                need("SITEBUNDLE_TEST_REGISTRY"),
                self.tag
            ),
            Kind::S3 => format!(
                "s3://{}/{}/{site}",
                need("SITEBUNDLE_TEST_S3_BUCKET"),
                self.tag
            ),
        }
    }

    /// The allow-list entries that cover every kind.
    fn allowed(&self) -> Vec<String> {
        vec![
            format!("file://{}/", self.dir.display()),
            host_of(&need("SITEBUNDLE_TEST_HTTP_ORIGIN")),
            need("SITEBUNDLE_TEST_REGISTRY"),
            need("SITEBUNDLE_TEST_S3_BUCKET"),
        ]
    }

    /// Make what was pushed under nginx's root readable by its workers.
    fn publish(&self) {
        if self.www.exists() {
            chmod_world_readable(&self.www);
        }
    }
}

impl Drop for Origins {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.www);
    }
}

fn host_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// The service process and its HTTP API

/// A running `sitebundle-init --sync ... --listen ...`, killed (SIGKILL) on drop if still up.
struct Service {
    child: Option<Child>,
    addr: String,
    log: PathBuf,
}

fn init_bin() -> PathBuf {
    let p = assert_cmd::cargo::cargo_bin("sitebundle-init");
    assert!(
        p.is_file(),
        "{} is missing: cargo build -p sitebundle-init",
        p.display()
    );
    p
}

/// `sitebundle-init` with the services' credentials in its environment and no stray
/// `SITEBUNDLE_*` variable of the test's own environment.
fn init_cmd() -> Command {
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
        .env("SITEBUNDLE_TIMEOUT", "20s")
        .env("SITEBUNDLE_CONNECT_TIMEOUT", "2s");
    c
}

impl Service {
    /// Start the service on `config`, syncing into `root`, with `extra` flags.
    fn start(work: &Path, config: &Path, root: &Path, extra: &[&str]) -> Service {
        let port = free_port("127.0.0.1");
        let addr = format!("127.0.0.1:{port}");
        let log = work.join(format!("service-{port}.log"));
        let mut c = init_cmd();
        c.arg("--sync")
            .arg(config)
            .arg("--dest")
            .arg(root)
            .args(["--listen", &addr])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"));
        let child = c.spawn().expect("start sitebundle-init");
        let mut s = Service {
            child: Some(child),
            addr,
            log,
        };
        s.wait_for("the API to listen", Duration::from_secs(20), |s| {
            TcpStream::connect(&s.addr).is_ok()
        });
        s
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (bounded) until `cond` holds, failing with the log.
    fn wait_for(&mut self, what: &str, within: Duration, cond: impl Fn(&Service) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            if cond(self) {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "the service exited ({st}) waiting for {what}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn status(&self) -> serde_json::Value {
        let (code, body) = get(&self.addr, "/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"))
    }

    fn passes(&self) -> u64 {
        self.status()["passes"].as_u64().unwrap_or(0)
    }

    /// Wait until the pass count passes `n`.
    fn wait_pass_after(&mut self, n: u64) {
        self.wait_for(&format!("pass {}", n + 1), Duration::from_secs(90), |s| {
            s.passes() > n
        });
    }

    /// Send SIGTERM and wait (bounded) for the exit code.
    fn terminate(&mut self) -> i32 {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "no exit after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One HTTP/1.1 request; returns the status code and the body.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).expect("write request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read answer");
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {raw}"));
    (code, body.to_string())
}

fn get(addr: &str, path: &str) -> (u16, String) {
    request(addr, "GET", path, &[])
}

fn post(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    match token {
        Some(t) => request(
            addr,
            "POST",
            path,
            &[("Authorization", &format!("Bearer {t}"))],
        ),
        None => request(addr, "POST", path, &[]),
    }
}

/// The value of metric line `name{labels}` in a Prometheus text.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l[series.len()..].trim().parse().ok())
}

fn current(root: &Path, site: &str) -> Option<String> {
    fs::read_link(root.join(site).join("current"))
        .ok()
        .map(|t| t.display().to_string())
}

/// `DEST/<site>/current` holds the complete tree of version `n`.
fn assert_serves(root: &Path, site: &str, n: usize) {
    let f = fx();
    assert_eq!(
        current(root, site).as_deref(),
        Some(f.v[n - 1].id.hex().as_str()),
        "{site} should serve version {n}"
    );
    let page = fs::read_to_string(root.join(site).join("current/index.html")).expect("page");
    assert!(
        page.contains(&format!("data-version=\"{n}\"")),
        "{site}: {page}"
    );
    let css =
        fs::read_to_string(root.join(site).join(format!("current/app.{n}.css"))).expect("asset");
    assert!(css.contains(&format!("version {n}")), "{site}: {css}");
}

fn write_config(path: &Path, text: &str) {
    // As a ConfigMap update does: a new file renamed over the old one.
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).expect("write config");
    fs::rename(&tmp, path).expect("rename config");
}

fn site_entry(name: &str, origin: &str, channel: &str) -> String {
    format!("[sites.{name}]\nchannel = \"{channel}\"\norigins = [\"{origin}\"]\n")
}

const TOKEN: &str = "issue-11-webhook-token-0123456789";

fn token_file(work: &Path) -> PathBuf {
    let p = work.join("token");
    fs::write(&p, format!("{TOKEN}\n")).expect("token file");
    p
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn issue_11_fifty_sites_on_every_origin_kind_only_the_moved_channels_swap() {
    let work = tempfile::tempdir().expect("tempdir");
    let origins = Origins::new(work.path());
    let kinds = [Kind::Dir, Kind::Nginx, Kind::Registry, Kind::S3];
    let mut config = String::from("concurrency = 8\n");
    let mut sites = BTreeMap::new();
    for i in 0..50 {
        let kind = kinds[i % kinds.len()];
        let name = format!("site{i:02}");
        push(&origins.target(kind, &name), 1, "prod");
        config.push_str(&site_entry(&name, &origins.url(kind, &name), "prod"));
        sites.insert(name, kind);
    }
    origins.publish();
    let cfg = work.path().join("sites.toml");
    write_config(&cfg, &config);
    let root = work.path().join("sites");
    let token = token_file(work.path());
    let allowed = origins.allowed().join(",");
    let mut svc = Service::start(
        work.path(),
        &cfg,
        &root,
        &[
            "--interval",
            "1h",
            "--allowed-hosts",
            &allowed,
            "--token-file",
            token.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(get(&svc.addr, "/healthz").0, 200);
    svc.wait_for("readiness", Duration::from_secs(120), |s| {
        get(&s.addr, "/readyz").0 == 200
    });
    let st = svc.status();
    assert_eq!(st["version"], 1, "{st}");
    assert_eq!(st["ok"], true, "{st}");
    assert_eq!(st["sites"].as_object().map(|m| m.len()), Some(50), "{st}");
    for name in sites.keys() {
        assert_serves(&root, name, 1);
        let s = &st["sites"][name];
        assert_eq!(s["bundle_id"], fx().v[0].id.to_string(), "{name}: {s}");
        assert_eq!(s["digest"], fx().v[0].manifest.to_string(), "{name}: {s}");
        assert_eq!(s["channel"], "prod", "{name}: {s}");
        assert!(
            s["last_sync"].is_string() && s["last_success"].is_string(),
            "{s}"
        );
        assert!(s["duration_ms"].is_u64(), "{s}");
        assert!(s.get("bytes_fetched").is_some(), "{s}");
    }
    let before: BTreeMap<String, Option<String>> = sites
        .keys()
        .map(|n| (n.clone(), current(&root, n)))
        .collect();
    let passes = svc.passes();

    // The webhook: a missing or wrong token is refused and starts nothing.
    let (code, body) = post(&svc.addr, "/sync", None);
    assert_eq!(code, 401, "{body}");
    let (code, body) = post(
        &svc.addr,
        "/sync",
        Some("issue-11-webhook-token-012345678X"),
    );
    assert_eq!(code, 401, "{body}");
    let (code, body) = post(&svc.addr, "/sync", Some("short"));
    assert_eq!(code, 401, "{body}");
    let (code, _) = post(&svc.addr, "/sync/no-such-site", Some(TOKEN));
    assert_eq!(code, 404);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        svc.passes(),
        passes,
        "a refused webhook must not start a pass"
    );
    assert!(!svc.log().contains(TOKEN), "the token was logged");

    // Three channels move, one on each of three origin kinds; the right token syncs.
    let moved = ["site00", "site01", "site02"];
    for name in moved {
        push(&origins.target(sites[name], name), 2, "prod");
    }
    origins.publish();
    let (code, body) = post(&svc.addr, "/sync", Some(TOKEN));
    assert_eq!(code, 202, "{body}");
    svc.wait_pass_after(passes);
    let st = svc.status();
    for (name, was) in &before {
        let s = &st["sites"][name];
        if moved.contains(&name.as_str()) {
            assert_serves(&root, name, 2);
            assert_eq!(s["changed"], true, "{name}: {s}");
            assert_eq!(s["swaps"], 2, "{name}: {s}");
        } else {
            assert_eq!(
                &current(&root, name),
                was,
                "{name} swapped but its channel did not move"
            );
            assert_eq!(s["changed"], false, "{name}: {s}");
            assert_eq!(s["swaps"], 1, "{name}: {s}");
        }
    }
    let swaps: Vec<&str> = st["recent_swaps"]
        .as_array()
        .expect("swaps")
        .iter()
        .rev()
        .take(3)
        .filter_map(|w| w["site"].as_str())
        .collect();
    let mut swaps = swaps;
    swaps.sort();
    assert_eq!(swaps, moved, "{st}");
    let m = get(&svc.addr, "/metrics").1;
    assert_eq!(
        metric(&m, "sitebundle_sync_site_swaps_total{site=\"site00\"}"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "sitebundle_sync_site_swaps_total{site=\"site03\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "sitebundle_sync_site_up{site=\"site49\",channel=\"prod\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "sitebundle_sync_pass_duration_seconds_count"),
        Some(svc.passes() as f64),
        "{m}"
    );
    assert_eq!(metric(&m, "sitebundle_sync_ready"), Some(1.0), "{m}");

    // One site's webhook syncs that site only.
    push(&origins.target(sites["site03"], "site03"), 2, "prod");
    push(&origins.target(sites["site04"], "site04"), 2, "prod");
    origins.publish();
    let passes = svc.passes();
    let (code, body) = post(&svc.addr, "/sync/site03", Some(TOKEN));
    assert_eq!(code, 202, "{body}");
    svc.wait_pass_after(passes);
    assert_serves(&root, "site03", 2);
    assert_serves(&root, "site04", 1);
    assert_eq!(svc.status()["last_pass"]["sites"], 1);
    assert_eq!(svc.terminate(), 0, "{}", svc.log());
}

#[test]
fn issue_11_webhook_is_off_without_a_token_and_listen_needs_an_allow_list() {
    let work = tempfile::tempdir().expect("tempdir");
    let origins = Origins::new(work.path());
    push(&origins.target(Kind::Dir, "blog"), 1, "prod");
    let cfg = work.path().join("sites.toml");
    write_config(
        &cfg,
        &site_entry("blog", &origins.url(Kind::Dir, "blog"), "prod"),
    );
    let root = work.path().join("sites");
    // --listen without an allow-list: refused at start, exit 1, nothing written.
    let out = init_cmd()
        .arg("--sync")
        .arg(&cfg)
        .arg("--dest")
        .arg(&root)
        .args(["--listen", &format!("127.0.0.1:{}", free_port("127.0.0.1"))])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", common::all_output(&out));
    assert!(
        common::all_output(&out).contains("--allowed-hosts"),
        "{}",
        common::all_output(&out)
    );
    assert!(!root.exists());
    // No token: the webhook answers 404 and the log says why.
    let allowed = origins.allowed().join(",");
    let mut svc = Service::start(work.path(), &cfg, &root, &["--allowed-hosts", &allowed]);
    svc.wait_for("readiness", Duration::from_secs(30), |s| {
        get(&s.addr, "/readyz").0 == 200
    });
    let (code, body) = post(&svc.addr, "/sync", Some(TOKEN));
    assert_eq!(code, 404, "{body}");
    assert!(svc.log().contains("no token configured"), "{}", svc.log());
    // Hostile requests get answers, not a dead server.
    let mut s = TcpStream::connect(&svc.addr).expect("connect");
    let _ =
        s.write_all(format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(40_000)).as_bytes());
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    let (code, _) = request(
        &svc.addr,
        "POST",
        "/sync",
        &[("Content-Length", "999999999")],
    );
    assert!(code == 413 || code == 400, "{code}");
    assert_eq!(get(&svc.addr, "/nope").0, 404);
    assert_eq!(request(&svc.addr, "DELETE", "/status", &[]).0, 405);
    assert_eq!(get(&svc.addr, "/healthz").0, 200);
    assert_eq!(svc.terminate(), 0);
}

/// The registry behind a private nginx front on 127.0.0.2 that sends blob downloads (307) to
/// "storage" on 127.0.0.3, as registries send them to S3 or a CDN.
fn redirecting_registry(work: &Path) -> (PrivateNginx, String, String) {
    let front = format!("127.0.0.2:{}", free_port("127.0.0.2"));
    let storage = format!("127.0.0.3:{}", free_port("127.0.0.3"));
    let up = need("SITEBUNDLE_TEST_REGISTRY");
    let nginx = PrivateNginx::start(
        &work.join("nginx-redirect"),
        &format!(
            "server {{ listen {front};\n\
               location ~ ^/v2/.+/blobs/sha256: {{ return 307 http://{storage}$request_uri; }}\n\
               location / {{ proxy_pass http://{up}; }} }}\n\
             server {{ listen {storage}; location / {{ proxy_pass http://{up}; }} }}"
        ),
        &[front.clone(), storage.clone()],
    );
    (nginx, front, storage)
}

#[test]
fn issue_11_origins_outside_the_allow_list_are_refused_directly_and_via_a_redirect() {
    let work = tempfile::tempdir().expect("tempdir");
    let origins = Origins::new(work.path());
    for site in ["inside", "outside", "redirected"] {
        push(&origins.target(Kind::Registry, site), 1, "prod");
    }
    push(&origins.target(Kind::Dir, "local"), 1, "prod");
    let (nginx, front, storage) = redirecting_registry(work.path());
    let repo = |site: &str| format!("{}/{site}", origins.tag);
    // "outside" names the real registry by another address (localhost instead of 127.0.0.1):
    // the same server, but not a host the list names.
    let reg_port = need("SITEBUNDLE_TEST_REGISTRY")
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .expect("port");
    let cfg = work.path().join("sites.toml");
    let config = format!(
        "{}{}{}{}",
        site_entry("inside", &origins.url(Kind::Registry, "inside"), "prod"),
        site_entry(
            "outside",
            &format!("oci+http://localhost:{reg_port}/{}", repo("outside")),
            "prod"
        ),
        site_entry(
            "redirected",
            &format!("oci+http://{front}/{}", repo("redirected")),
            "prod"
        ),
        site_entry("local", &origins.url(Kind::Dir, "local"), "prod"),
    );
    write_config(&cfg, &config);
    let root = work.path().join("sites");
    // The front is allowed, the storage host it redirects blobs to is not.
    let allowed = format!(
        "{},{front},file://{}/",
        need("SITEBUNDLE_TEST_REGISTRY"),
        origins.dir.display()
    );
    let mut svc = Service::start(work.path(), &cfg, &root, &["--allowed-hosts", &allowed]);
    svc.wait_for("readiness", Duration::from_secs(60), |s| {
        get(&s.addr, "/readyz").0 == 200
    });
    let st = svc.status();
    assert_serves(&root, "inside", 1);
    assert_serves(&root, "local", 1);
    for site in ["outside", "redirected"] {
        let s = &st["sites"][site];
        assert_eq!(s["ok"], false, "{site}: {s}");
        assert!(
            s["error"]
                .as_str()
                .unwrap_or("")
                .contains("not in the allow-list"),
            "{site}: {s}"
        );
        assert!(current(&root, site).is_none(), "{site} was installed");
    }
    // The redirect was followed nowhere: storage never saw a request.
    assert!(!nginx.log_of(&front).is_empty(), "{}", nginx.log());
    assert!(nginx.log_of(&storage).is_empty(), "{}", nginx.log());
    let m = get(&svc.addr, "/metrics").1;
    assert_eq!(
        metric(
            &m,
            "sitebundle_sync_site_up{site=\"redirected\",channel=\"prod\"}"
        ),
        Some(0.0),
        "{m}"
    );
    drop(svc);
    // Control: with storage allowed too, the same redirect is followed and the site installs.
    let mut svc = Service::start(
        work.path(),
        &cfg,
        &root,
        &["--allowed-hosts", &format!("{allowed},{storage}")],
    );
    svc.wait_for("readiness", Duration::from_secs(60), |s| {
        get(&s.addr, "/readyz").0 == 200
    });
    assert_serves(&root, "redirected", 1);
    assert!(!nginx.log_of(&storage).is_empty(), "{}", nginx.log());
    assert_eq!(svc.status()["sites"]["outside"]["ok"], false);
}

#[test]
fn issue_11_a_down_origin_keeps_its_site_serving_and_the_page_flags_it_in_chromium() {
    let work = tempfile::tempdir().expect("tempdir");
    let origins = Origins::new(work.path());
    // "flaky" is served by a private nginx over a directory target; it goes down later.
    let flaky_dir = work.path().join("flaky-www");
    let flaky: Arc<dyn Target> = Arc::new(StoreTarget::dir(&flaky_dir.join("flaky")).expect("dir"));
    push(&flaky, 1, "prod");
    chmod_world_readable(&flaky_dir);
    let flaky_addr = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let nginx = PrivateNginx::start(
        &work.path().join("nginx-flaky"),
        &format!(
            "server {{ listen {flaky_addr}; root {}; }}",
            flaky_dir.display()
        ),
        std::slice::from_ref(&flaky_addr),
    );
    let names = ["alpha", "bravo", "charlie", "delta"];
    let mut config = site_entry("flaky", &format!("http://{flaky_addr}/flaky/"), "prod");
    for n in names {
        push(&origins.target(Kind::Nginx, n), 1, "prod");
        config.push_str(&site_entry(n, &origins.url(Kind::Nginx, n), "prod"));
    }
    origins.publish();
    let cfg = work.path().join("sites.toml");
    write_config(&cfg, &config);
    let root = work.path().join("sites");
    let token = token_file(work.path());
    let allowed = format!("{},{flaky_addr}", origins.allowed().join(","));
    let mut svc = Service::start(
        work.path(),
        &cfg,
        &root,
        &[
            "--allowed-hosts",
            &allowed,
            "--token-file",
            token.to_str().expect("utf-8"),
        ],
    );
    svc.wait_for("readiness", Duration::from_secs(60), |s| {
        get(&s.addr, "/readyz").0 == 200
    });
    assert_serves(&root, "flaky", 1);
    // The origin goes down; the channel of the others moves.
    drop(nginx);
    for n in names {
        push(&origins.target(Kind::Nginx, n), 2, "prod");
    }
    origins.publish();
    let passes = svc.passes();
    assert_eq!(post(&svc.addr, "/sync", Some(TOKEN)).0, 202);
    svc.wait_pass_after(passes);
    assert_serves(&root, "flaky", 1);
    for n in names {
        assert_serves(&root, n, 2);
    }
    let st = svc.status();
    let s = &st["sites"]["flaky"];
    assert_eq!(s["ok"], false, "{s}");
    assert!(
        s["error"].as_str().is_some_and(|e| e.contains(&flaky_addr)),
        "{s}"
    );
    assert_eq!(
        s["bundle_id"],
        fx().v[0].id.to_string(),
        "still served: {s}"
    );
    assert_eq!(st["ok"], false);
    let m = get(&svc.addr, "/metrics").1;
    assert_eq!(
        metric(
            &m,
            "sitebundle_sync_site_up{site=\"flaky\",channel=\"prod\"}"
        ),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "sitebundle_sync_site_up{site=\"alpha\",channel=\"prod\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "sitebundle_sync_site_failures_total{site=\"flaky\"}"),
        Some(1.0),
        "{m}"
    );

    // The page, as the person on call sees it: headless Chromium renders it.
    let url = format!("http://{}/", svc.addr);
    let dom = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            &url,
        ])
        .output()
        .expect("chromium (Debian's, installed by scripts/test)");
    let dom_text = String::from_utf8_lossy(&dom.stdout).to_string();
    assert!(dom.status.success(), "{}", common::all_output(&dom));
    for n in names.iter().chain(["flaky"].iter()) {
        assert!(
            dom_text.contains(&format!("data-site=\"{n}\"")),
            "the page does not list {n}:\n{dom_text}"
        );
    }
    assert!(
        dom_text.contains("class=\"site failing\" data-site=\"flaky\""),
        "flaky is not flagged:\n{dom_text}"
    );
    assert_eq!(
        dom_text.matches("class=\"site failing\"").count(),
        1,
        "{dom_text}"
    );
    assert!(dom_text.contains("FAILING"), "{dom_text}");
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    fs::create_dir_all(&artifacts).expect("artifacts dir");
    let shot = artifacts.join("issue_11_status_page.png");
    let _ = fs::remove_file(&shot);
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1280,900",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("chromium");
    assert!(out.status.success(), "{}", common::all_output(&out));
    let png = fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    assert_eq!(svc.terminate(), 0);
}

#[test]
fn issue_11_a_config_typo_during_a_run_keeps_the_last_good_config_and_shows_it() {
    let work = tempfile::tempdir().expect("tempdir");
    let origins = Origins::new(work.path());
    for n in ["blog", "docs"] {
        push(&origins.target(Kind::Dir, n), 1, "prod");
    }
    let cfg = work.path().join("sites.toml");
    let allowed = format!("allowed_hosts = [\"file://{}/\"]\n", origins.dir.display());
    write_config(
        &cfg,
        &format!(
            "{allowed}{}",
            site_entry("blog", &origins.url(Kind::Dir, "blog"), "prod")
        ),
    );
    let root = work.path().join("sites");
    let token = token_file(work.path());
    // The allow-list comes from the config alone here.
    let mut svc = Service::start(
        work.path(),
        &cfg,
        &root,
        &[
            "--interval",
            "1h",
            "--token-file",
            token.to_str().expect("utf-8"),
        ],
    );
    svc.wait_for("readiness", Duration::from_secs(30), |s| {
        get(&s.addr, "/readyz").0 == 200
    });
    assert_serves(&root, "blog", 1);
    // A typo: refused, reported on /status, /metrics and the page; blog keeps syncing.
    write_config(&cfg, "sites.blog]\nchannel = \"prod\"\n");
    svc.wait_for(
        "the refused config on /status",
        Duration::from_secs(20),
        |s| s.status()["config"]["error"].is_string(),
    );
    let st = svc.status();
    assert!(
        st["config_error"]
            .as_str()
            .unwrap_or("")
            .contains("sites.toml"),
        "{st}"
    );
    assert_eq!(st["ok"], false);
    let m = get(&svc.addr, "/metrics").1;
    assert_eq!(metric(&m, "sitebundle_sync_config_ok"), Some(0.0), "{m}");
    assert!(get(&svc.addr, "/").1.contains("id=\"config-error\""));
    push(&origins.target(Kind::Dir, "blog"), 2, "prod");
    let passes = svc.passes();
    assert_eq!(post(&svc.addr, "/sync", Some(TOKEN)).0, 202);
    svc.wait_pass_after(passes);
    assert_serves(&root, "blog", 2);
    // A refused site name is a bad config too.
    write_config(
        &cfg,
        &format!(
            "{allowed}{}",
            site_entry("status.json", &origins.url(Kind::Dir, "blog"), "prod")
        ),
    );
    svc.wait_for(
        "the refused name on /status",
        Duration::from_secs(20),
        |s| {
            s.status()["config"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("status.json"))
        },
    );
    // The fix, picked up on SIGHUP (and on change): docs appears, the error goes.
    write_config(
        &cfg,
        &format!(
            "{allowed}{}{}",
            site_entry("blog", &origins.url(Kind::Dir, "blog"), "prod"),
            site_entry("docs", &origins.url(Kind::Dir, "docs"), "prod")
        ),
    );
    if let Some(c) = &svc.child {
        let _ = Command::new("kill")
            .args(["-HUP", &c.id().to_string()])
            .status();
    }
    svc.wait_for("docs", Duration::from_secs(30), |s| {
        s.status()["sites"]["docs"]["ok"] == true
    });
    let st = svc.status();
    assert!(st["config"]["error"].is_null(), "{st}");
    assert_serves(&root, "docs", 1);
    assert_eq!(svc.terminate(), 0);
}

#[test]
fn issue_11_a_preview_channel_appears_then_is_removed_after_its_grace() {
    let work = tempfile::tempdir().expect("tempdir");
    let origins = Origins::new(work.path());
    let shop = origins.target(Kind::Dir, "shop");
    push(&shop, 1, "prod");
    push(&shop, 2, "pr-1");
    push(&shop, 3, "pr-Upper");
    let cfg = work.path().join("sites.toml");
    write_config(
        &cfg,
        &format!(
            "allowed_hosts = [\"file://{}/\"]\npreview_grace = \"2s\"\n\
             [sites.shop]\nchannel = \"prod\"\norigins = [\"{o}\"]\n\
             [sites.shop-previews]\nchannels = \"pr-*\"\norigins = [\"{o}\"]\n",
            origins.dir.display(),
            o = origins.url(Kind::Dir, "shop"),
        ),
    );
    let root = work.path().join("sites");
    let token = token_file(work.path());
    let mut svc = Service::start(
        work.path(),
        &cfg,
        &root,
        &["--token-file", token.to_str().expect("utf-8")],
    );
    svc.wait_for("readiness", Duration::from_secs(30), |s| {
        get(&s.addr, "/readyz").0 == 200
    });
    assert_serves(&root, "shop", 1);
    assert_serves(&root, "shop-previews--pr-1", 2);
    let st = svc.status();
    assert_eq!(
        st["sites"]["shop-previews--pr-1"]["preview_of"], "shop-previews",
        "{st}"
    );
    assert!(
        st["previews"]["shop-previews"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("pr-Upper"),
        "{st}"
    );
    // A new pull request: its channel appears, the webhook of the set syncs it.
    push(&shop, 3, "pr-2");
    let passes = svc.passes();
    assert_eq!(post(&svc.addr, "/sync/shop-previews", Some(TOKEN)).0, 202);
    svc.wait_pass_after(passes);
    assert_serves(&root, "shop-previews--pr-2", 3);
    // pr-1 is merged and its channel deleted: its folder stays through the grace, then goes.
    fs::remove_file(origins.dir.join("shop/channels/pr-1.json")).expect("delete channel");
    let passes = svc.passes();
    assert_eq!(post(&svc.addr, "/sync", Some(TOKEN)).0, 202);
    svc.wait_pass_after(passes);
    assert!(
        root.join("shop-previews--pr-1").exists(),
        "removed before its grace"
    );
    assert!(
        svc.status()["previews"]["shop-previews"]["pending_removal"]["shop-previews--pr-1"]
            .is_string()
    );
    std::thread::sleep(Duration::from_secs(3));
    let passes = svc.passes();
    assert_eq!(post(&svc.addr, "/sync", Some(TOKEN)).0, 202);
    svc.wait_pass_after(passes);
    assert!(
        !root.join("shop-previews--pr-1").exists(),
        "not removed after its grace"
    );
    assert_serves(&root, "shop-previews--pr-2", 3);
    assert_serves(&root, "shop", 1);
    assert!(svc.status()["sites"].get("shop-previews--pr-1").is_none());
    assert_eq!(svc.terminate(), 0);
}

/// The marker the service writes: `server_init::service::previews::GONE_MARKER`.
const GONE_MARKER: &str = ".sitebundle-gone-since";

/// A service restarted more often than `preview_grace` never removed a deleted preview: the
/// time its channel went was kept in memory only, so every restart started the grace again. It
/// is now written into the folder ([`GONE_MARKER`]): here the service is down for longer
/// than the grace, and the first pass after the restart removes the folder.
#[test]
fn issue_11_a_preview_gone_before_a_restart_is_removed_after_its_first_grace() {
    let work = tempfile::tempdir().expect("tempdir");
    let origins = Origins::new(work.path());
    let shop = origins.target(Kind::Dir, "shop");
    push(&shop, 1, "pr-1");
    push(&shop, 2, "pr-2");
    let cfg = work.path().join("sites.toml");
    write_config(
        &cfg,
        &format!(
            "allowed_hosts = [\"file://{}/\"]\npreview_grace = \"3s\"\n\
             [sites.shop]\nchannels = \"pr-*\"\norigins = [\"{o}\"]\n",
            origins.dir.display(),
            o = origins.url(Kind::Dir, "shop"),
        ),
    );
    let root = work.path().join("sites");
    let token = token_file(work.path());
    let args = ["--token-file", token.to_str().expect("utf-8")];
    let mut svc = Service::start(work.path(), &cfg, &root, &args);
    svc.wait_for("readiness", Duration::from_secs(30), |s| {
        get(&s.addr, "/readyz").0 == 200
    });
    assert_serves(&root, "shop--pr-1", 1);
    assert_serves(&root, "shop--pr-2", 2);
    // pr-1 is merged: seen gone by one pass, then the service stops.
    fs::remove_file(origins.dir.join("shop/channels/pr-1.json")).expect("delete channel");
    let passes = svc.passes();
    assert_eq!(post(&svc.addr, "/sync", Some(TOKEN)).0, 202);
    svc.wait_pass_after(passes);
    assert!(root.join("shop--pr-1").exists(), "removed before its grace");
    assert!(
        root.join("shop--pr-1").join(GONE_MARKER).is_file(),
        "the time its channel went is not recorded"
    );
    assert_eq!(svc.terminate(), 0);
    // Down for longer than the grace.
    std::thread::sleep(Duration::from_millis(3500));
    let mut svc = Service::start(work.path(), &cfg, &root, &args);
    svc.wait_for("readiness", Duration::from_secs(30), |s| {
        get(&s.addr, "/readyz").0 == 200
    });
    let passes = svc.passes();
    assert_eq!(post(&svc.addr, "/sync", Some(TOKEN)).0, 202);
    svc.wait_pass_after(passes);
    // Within 3 s of the restart: a grace started again would still keep it.
    assert!(
        !root.join("shop--pr-1").exists(),
        "a restart started the preview's grace period again"
    );
    assert_serves(&root, "shop--pr-2", 2);
    assert!(!root.join("shop--pr-2").join(GONE_MARKER).exists());
    assert_eq!(svc.terminate(), 0);
}

#[test]
fn issue_11_a_reader_over_nginx_never_sees_a_page_with_another_versions_asset() {
    let work = tempfile::tempdir().expect("tempdir");
    let origins = Origins::new(work.path());
    let t = origins.target(Kind::Dir, "blog");
    push(&t, 1, "prod");
    let cfg = work.path().join("sites.toml");
    write_config(
        &cfg,
        &site_entry("blog", &origins.url(Kind::Dir, "blog"), "prod"),
    );
    let root = work.path().join("sites");
    fs::create_dir_all(&root).expect("root");
    chmod_world_readable(work.path());
    let token = token_file(work.path());
    let allowed = format!("file://{}/", origins.dir.display());
    let mut svc = Service::start(
        work.path(),
        &cfg,
        &root,
        &[
            "--allowed-hosts",
            &allowed,
            "--token-file",
            token.to_str().expect("utf-8"),
        ],
    );
    svc.wait_for("readiness", Duration::from_secs(30), |s| {
        get(&s.addr, "/readyz").0 == 200
    });
    // nginx serves DEST as deploy/ does: the page from `current`, an asset from `current`
    // or else `previous` (a page served just before a swap names an asset of its version).
    let web = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let _nginx = PrivateNginx::start(
        &work.path().join("nginx-dest"),
        &format!(
            "server {{ listen {web}; root {}; location / {{ try_files /current$uri /current$uri/index.html /previous$uri =404; }} }}",
            root.join("blog").display()
        ),
        std::slice::from_ref(&web),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, web) = (stop.clone(), web.clone());
        std::thread::spawn(move || {
            let mut seen = BTreeMap::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (code, page) = get(&web, "/index.html");
                assert_eq!(code, 200, "{page}");
                let v = page
                    .split("data-version=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or_else(|| panic!("no version in {page}"))
                    .to_string();
                let (code, css) = get(&web, &format!("/app.{v}.css"));
                assert_eq!(code, 200, "asset of version {v}: {css}");
                assert!(
                    css.contains(&format!("version {v}")),
                    "page {v}, asset {css}"
                );
                *seen.entry(v).or_insert(0u32) += 1;
            }
            seen
        })
    };
    for round in 0..6 {
        let n = 2 + round % 2;
        push(&t, n, "prod");
        let passes = svc.passes();
        assert_eq!(post(&svc.addr, "/sync", Some(TOKEN)).0, 202);
        svc.wait_pass_after(passes);
        assert_serves(&root, "blog", n);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.join().expect("reader saw a mixed version");
    assert!(
        seen.len() >= 2,
        "the reader should have seen several versions: {seen:?}"
    );
    assert_eq!(svc.terminate(), 0);
}

#[test]
fn issue_11_a_slow_site_stays_within_its_timeout_and_sigterm_mid_pass_leaves_sites_complete() {
    let work = tempfile::tempdir().expect("tempdir");
    let origins = Origins::new(work.path());
    // "slow" is behind a private nginx that sends 2 KiB/s: its pass is cut by site_timeout.
    // Its bundle holds 512 KiB that do not compress: minutes at that rate.
    let big = work.path().join("big-site");
    fs::create_dir_all(&big).expect("mkdir");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..512 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(big.join("noise.bin"), noise).expect("write");
    fs::write(big.join("index.html"), "big\n").expect("write");
    let opts = BuildOptions {
        use_cache: false,
        ..Default::default()
    };
    let big = bundle::build(&big, &fx().store, &opts, &NoProgress).expect("build big");
    let slow_dir = work.path().join("slow-www");
    push_report(
        &(Arc::new(StoreTarget::dir(&slow_dir.join("slow")).expect("dir")) as Arc<dyn Target>),
        &big,
        "prod",
    );
    chmod_world_readable(&slow_dir);
    let slow_addr = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let _nginx = PrivateNginx::start(
        &work.path().join("nginx-slow"),
        &format!(
            "server {{ listen {slow_addr}; root {}; location /slow/blobs/ {{ limit_rate 2k; }} }}",
            slow_dir.display()
        ),
        std::slice::from_ref(&slow_addr),
    );
    let mut config = format!(
        "concurrency = 2\nsite_timeout = \"3s\"\n{}",
        site_entry("slow", &format!("http://{slow_addr}/slow/"), "prod")
    );
    for i in 0..6 {
        let n = format!("fast{i}");
        push(&origins.target(Kind::Dir, &n), 1, "prod");
        config.push_str(&site_entry(&n, &origins.url(Kind::Dir, &n), "prod"));
    }
    let cfg = work.path().join("sites.toml");
    write_config(&cfg, &config);
    let root = work.path().join("sites");
    let allowed = format!("file://{}/,{slow_addr}", origins.dir.display());
    let mut svc = Service::start(work.path(), &cfg, &root, &["--allowed-hosts", &allowed]);
    svc.wait_for("readiness", Duration::from_secs(60), |s| {
        get(&s.addr, "/readyz").0 == 200
    });
    let st = svc.status();
    for i in 0..6 {
        assert_serves(&root, &format!("fast{i}"), 1);
    }
    let s = &st["sites"]["slow"];
    assert_eq!(s["ok"], false, "{s}");
    assert!(s["error"].as_str().unwrap_or("").contains("timeout"), "{s}");
    assert!(
        s["duration_ms"].as_u64().unwrap_or(u64::MAX) < 10_000,
        "{s}"
    );
    assert!(current(&root, "slow").is_none());
    drop(svc);
    // SIGTERM in the middle of a pass: the service exits 0 without starting new sites, and
    // every site folder is complete (its current is absent or a whole version).
    for i in 0..6 {
        push(&origins.target(Kind::Dir, &format!("fast{i}")), 2, "prod");
    }
    let mut svc = Service::start(work.path(), &cfg, &root, &["--allowed-hosts", &allowed]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(svc.terminate(), 0, "{}", svc.log());
    for i in 0..6 {
        let n = format!("fast{i}");
        let id = current(&root, &n).expect("current");
        let v = if id == fx().v[1].id.hex() { 2 } else { 1 };
        assert_serves(&root, &n, v);
        let leftovers: Vec<_> = fs::read_dir(root.join(&n))
            .expect("site dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|e| e.starts_with(".staging"))
            .collect();
        assert!(leftovers.is_empty(), "{n}: {leftovers:?}");
    }
    // The signal came while the pass ran (the slow site holds it for its 3 s timeout).
    let log = svc.log();
    let (signal, done) = (log.find("no new site starts"), log.find("sync pass done"));
    assert!(
        signal.is_some() && done.is_some() && signal < done,
        "SIGTERM should have arrived mid-pass:\n{log}"
    );
}

#[test]
fn issue_11_the_service_runs_as_nobody_on_a_read_only_root_filesystem() {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "this test needs root to make a mount namespace with a read-only / (scripts/test runs as root)"
    );
    let work = tempfile::tempdir().expect("tempdir");
    let origins = Origins::new(work.path());
    let t = origins.target(Kind::Dir, "blog");
    push(&t, 1, "prod");
    let cfg = work.path().join("sites.toml");
    write_config(
        &cfg,
        &site_entry("blog", &origins.url(Kind::Dir, "blog"), "prod"),
    );
    let root = work.path().join("sites");
    fs::create_dir(&root).expect("root");
    let st = Command::new("chown")
        .arg("65534:65534")
        .arg(&root)
        .status()
        .expect("chown");
    assert!(st.success());
    let token = token_file(work.path());
    chmod_world_readable(work.path());
    // The binary where nobody can reach it.
    let bin = work.path().join("sitebundle-init");
    fs::copy(init_bin(), &bin).expect("copy binary");
    let port = free_port("127.0.0.1");
    let addr = format!("127.0.0.1:{port}");
    let log = work.path().join("service.log");
    // A private mount namespace: DEST (the work dir) bind-mounted on itself stays writable,
    // then / is remounted read-only, then the service runs as nobody.
    let inner = init_cmd();
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(
            "set -e; mount --bind \"$1\" \"$1\"; mount -o remount,bind,ro /; shift; \
             exec setpriv --reuid=65534 --regid=65534 --clear-groups \"$@\"",
        )
        .arg("sh")
        .arg(work.path())
        .arg(&bin)
        .arg("--sync")
        .arg(&cfg)
        .arg("--dest")
        .arg(&root)
        .args(["--listen", &addr, "--token-file"])
        .arg(&token)
        .args([
            "--allowed-hosts",
            &format!("file://{}/", origins.dir.display()),
        ])
        .current_dir(work.path())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log"));
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let mut svc = Service {
        child: Some(c.spawn().expect("unshare")),
        addr,
        log,
    };
    svc.wait_for("readiness", Duration::from_secs(30), |s| {
        TcpStream::connect(&s.addr).is_ok() && get(&s.addr, "/readyz").0 == 200
    });
    assert_serves(&root, "blog", 1);
    push(&t, 2, "prod");
    let passes = svc.passes();
    assert_eq!(post(&svc.addr, "/sync", Some(TOKEN)).0, 202);
    svc.wait_pass_after(passes);
    assert_serves(&root, "blog", 2);
    assert_eq!(svc.status()["ok"], true, "{}", svc.log());
    {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(root.join("blog/current/index.html")).expect("stat");
        assert_eq!(
            m.uid(),
            65534,
            "files should belong to the unprivileged user"
        );
        let m = fs::metadata(root.join("status.json")).expect("status file in DEST");
        assert_eq!(m.uid(), 65534);
    }
    assert!(
        !svc.log().contains("Read-only file system"),
        "{}",
        svc.log()
    );
    assert_eq!(svc.terminate(), 0, "{}", svc.log());
}
