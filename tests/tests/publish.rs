//! Issue 9: publishing a bundle's files into website targets, in step with the channels, and
//! auditing what live origins serve. Every case runs the real `sitebundle` binary against the real
//! services: moto (S3; headers read back with the aws CLI, trees compared through listings whose
//! ETags are the MD5 of each object), Azurite, fake-gcs-server (the JSON API the GCS website
//! target writes with), a directory served by nginx; the only fake is the hostile origin of
//! `issue_9_audit_bounds_hostile_origins` (an endless body, a redirect to another host and a
//! compression bomb, which no real server here produces on demand).

mod common;
mod repl_support;
#[path = "repl_support/site.rs"]
mod site;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use repl_support::{dead_port, need, unique};
use site::*;

/// Header rules most cases use: pages revalidate, the hashed assets are immutable.
const RULES: &str = r#"
[[site.headers]]
path = "*.html"
cache_control = "no-cache"
[[site.headers]]
path = "_static/**"
cache_control = "public, max-age=31536000, immutable"
"#;

const BUCKET_ENV: &str = "SITEBUNDLE_TEST_S3_BUCKET";

fn corpus(site: &str, v: &str) -> PathBuf {
    common::corpus_site(site, v)
}

/// The small and medium corpus built once per test process into one store (read-only after).
struct Built {
    _dir: tempfile::TempDir,
    home: PathBuf,
    manifests: BTreeMap<String, String>,
}

fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let s = Site::new();
        let mut manifests = BTreeMap::new();
        for site in ["small", "medium"] {
            for v in ["v1", "v2", "v3"] {
                let tag = format!("{}{v}", &site[..1]);
                let m = s.build(&corpus(site, v), &tag);
                manifests.insert(tag, m);
            }
        }
        let home = s.home.clone();
        Built {
            _dir: s.dir,
            home,
            manifests,
        }
    })
}

/// A site whose store holds the shared bundles (tags sv1..sv3, mv1..mv3).
fn site_with_bundles() -> Site {
    let mut s = Site::new();
    s.home = built().home.clone();
    s
}

fn manifest(tag: &str) -> String {
    built().manifests[tag].clone()
}

/// (changed or added, removed) between two corpus trees, from their files alone.
fn tree_diff(a: &Path, b: &Path) -> (usize, usize) {
    let (fa, fb) = (files_of(a), files_of(b));
    let written = fb
        .iter()
        .filter(|(k, v)| fa.get(*k).map(|x| &x.2) != Some(&v.2))
        .count();
    let removed = fa.keys().filter(|k| !fb.contains_key(*k)).count();
    (written, removed)
}

fn report<'a>(v: &'a serde_json::Value, target: &str) -> &'a serde_json::Value {
    v["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| &t["report"])
        .find(|r| r["target"] == target)
        .unwrap_or_else(|| panic!("no report for {target} in {v}"))
}

/// Medium v1, v2 (every page rewritten with the same size, hashed assets renamed) and v3 (pages
/// added, edited, removed) into moto and a directory, in turn: each leaves exactly the new tree,
/// a normal publish lists nothing and HEADs nothing, writes exactly the changed files, deletes the
/// removed ones, and the process stays within 64 MiB.
#[tokio::test(flavor = "multi_thread")]
async fn issue_9_medium_v1_v2_v3_each_leave_exactly_the_new_tree() {
    let s = site_with_bundles();
    s.config(RULES);
    let bucket = need(BUCKET_ENV);
    let prefix = unique("medium");
    let s3 = format!("s3+site://{bucket}/{prefix}");
    let dir = s.dir.path().join("www");
    let dir_url = format!("file+site://{}", dir.display());
    let mut prev: Option<PathBuf> = None;
    for v in ["v1", "v2", "v3"] {
        let tree = corpus("medium", v);
        let (out, rss_kib) = run_measured(s.sb().args([
            "--json",
            "publish",
            &format!("m{v}"),
            "--to",
            &s3,
            "--to",
            &dir_url,
        ]));
        assert!(
            out.status.success(),
            "publish m{v}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            rss_kib < 64 * 1024,
            "publish of medium {v} peaked at {rss_kib} KiB RSS (limit 64 MiB)"
        );
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_s3_is_tree(&bucket, &prefix, &tree).await;
        assert_dir_is_tree(&dir, &tree);
        if let Some(p) = &prev {
            let (written, removed) = tree_diff(p, &tree);
            for t in [s3.as_str(), dir_url.as_str()] {
                let r = report(&j, t);
                assert_eq!(r["written"], written as u64, "{t} {v}: {r}");
                assert_eq!(r["deleted"], removed as u64, "{t} {v}: {r}");
                assert_eq!(r["mode"], "marker", "{t} {v}");
                // From the indexes alone: no listing, no HEAD per object.
                assert_eq!(r["requests"]["list"], 0, "{t} {v}: {r}");
                assert_eq!(r["requests"]["head"], 0, "{t} {v}: {r}");
            }
        }
        prev = Some(tree);
    }
    // Headers as the aws CLI reads them back.
    let h = aws_head(&bucket, &format!("{prefix}/index.html"));
    assert_eq!(h["ContentType"], "text/html; charset=utf-8", "{h}");
    assert_eq!(h["CacheControl"], "no-cache", "{h}");
    let local = files_of(&corpus("medium", "v3"));
    assert_eq!(
        h["Metadata"]["sitebundle-blake3"], local["index.html"].2,
        "{h}"
    );
    let js = local
        .keys()
        .find(|k| k.starts_with("_static/js/index.") && k.ends_with(".js"))
        .expect("hashed js asset");
    let h = aws_head(&bucket, &format!("{prefix}/{js}"));
    assert_eq!(h["ContentType"], "text/javascript; charset=utf-8", "{h}");
    assert_eq!(h["CacheControl"], "public, max-age=31536000, immutable");
    clean_s3(&bucket, &prefix).await;
}

/// A same-size rebuild (medium v2: every page rewritten, sizes unchanged, older content
/// timestamps) updates every changed page, where `aws s3 sync` judges by size and mtime; and the
/// invalidation list names the stable pages (as /d, /d/ and /d/index.html), never hashed assets.
#[tokio::test(flavor = "multi_thread")]
async fn issue_9_same_size_rebuild_updates_every_changed_page() {
    let s = site_with_bundles();
    s.config(RULES);
    let dir = s.dir.path().join("www");
    let to = format!("file+site://{}", dir.display());
    s.publish("mv1", &[&to], &[]);
    let j = s.publish("mv2", &[&to], &["--invalidation-budget", "100000"]);
    let (v1, v2) = (
        files_of(&corpus("medium", "v1")),
        files_of(&corpus("medium", "v2")),
    );
    let same_size_changed: Vec<&String> = v2
        .iter()
        .filter(|(k, b)| v1.get(*k).is_some_and(|a| a.0 == b.0 && a.2 != b.2))
        .map(|(k, _)| k)
        .collect();
    assert!(
        same_size_changed.len() > 4000,
        "the corpus should rewrite pages with the same size ({})",
        same_size_changed.len()
    );
    let got = files_of(&dir);
    for k in &same_size_changed {
        assert_eq!(got[*k].2, v2[*k].2, "{k} not updated");
    }
    let r = report(&j, &to);
    let inv: Vec<&str> = r["invalidate"]
        .as_array()
        .expect("invalidate")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        inv.contains(&"/index.html") && inv.contains(&"/"),
        "{inv:?}"
    );
    assert!(
        !inv.iter()
            .any(|p| p.contains("_static/css/index.") || p.contains("_static/js/index.")),
        "hashed assets must not be invalidated: {inv:?}"
    );
    let dir_index = v2
        .keys()
        .find(|k| k.ends_with("/index.html") && same_size_changed.contains(k))
        .expect("a changed directory index");
    let d = dir_index.trim_end_matches("/index.html");
    for form in [format!("/{d}"), format!("/{d}/"), format!("/{dir_index}")] {
        assert!(inv.contains(&form.as_str()), "{form} not in the list");
    }
    // A small budget folds the list into wildcards.
    let j = s.publish("mv3", &[&to], &["--invalidation-budget", "10", "--dry-run"]);
    let inv = j["targets"][0]["invalidate"]
        .as_array()
        .expect("list")
        .clone();
    assert!(
        inv.len() <= 10
            && inv
                .iter()
                .any(|p| p.as_str().is_some_and(|p| p.ends_with("/*"))),
        "{inv:?}"
    );
}

/// Relative `.css`/`.js` references of a page.
fn asset_refs(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = page;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let Some(end) = rest.find('"') else { break };
            let v = &rest[..end];
            let path = v.split(['?', '#']).next().unwrap_or(v);
            if !v.contains("://") && (path.ends_with(".css") || path.ends_with(".js")) {
                out.push(v.to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// While medium v2 and v3 are published into the directory nginx serves, a reader fetching pages
/// in a loop never gets a page whose stylesheets or scripts are missing: assets go up before the
/// pages that name them, and with --keep-removed the old pages' assets stay for caches.
#[tokio::test(flavor = "multi_thread")]
async fn issue_9_reader_never_sees_a_page_without_its_assets() {
    let s = site_with_bundles();
    s.config(RULES);
    let name = unique("reader");
    let root = PathBuf::from(need("SITEBUNDLE_TEST_HTTP_ROOT")).join(&name);
    let base = format!("{}/{name}/", need("SITEBUNDLE_TEST_HTTP_ORIGIN"));
    let to = format!("file+site://{}", root.display());
    s.publish("mv1", &[&to], &[]);
    let pages: Vec<String> = ["v1", "v2", "v3"]
        .iter()
        .flat_map(|v| files_of(&corpus("medium", v)).into_keys())
        .filter(|k| k.ends_with(".html"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let assets: Arc<std::collections::BTreeSet<String>> = Arc::new(
        ["v1", "v2", "v3"]
            .iter()
            .flat_map(|v| files_of(&corpus("medium", v)).into_keys())
            .filter(|k| k.ends_with(".css") || k.ends_with(".js"))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let fetched = Arc::new(AtomicUsize::new(0));
    let versions = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    for r in 0..3 {
        let (stop, fetched, versions, failures, pages, base, assets, name) = (
            stop.clone(),
            fetched.clone(),
            versions.clone(),
            failures.clone(),
            pages.clone(),
            base.clone(),
            assets.clone(),
            name.clone(),
        );
        readers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client");
            let mut i = r * 977;
            while !stop.load(Ordering::SeqCst) {
                i = (i + 7919) % pages.len();
                let url = reqwest::Url::parse(&base)
                    .and_then(|b| b.join(&pages[i]))
                    .expect("page url");
                let Ok(resp) = client.get(url.clone()).send().await else {
                    continue;
                };
                if !resp.status().is_success() {
                    continue; // a page of another version, not (or no longer) there
                }
                let body = resp.text().await.unwrap_or_default();
                fetched.fetch_add(1, Ordering::SeqCst);
                if let Some(g) = body.find("corpus-ssg-") {
                    let v: String = body[g..].chars().take(16).collect();
                    versions.lock().expect("lock").insert(v);
                }
                for a in asset_refs(&body) {
                    let au = url.join(&a).expect("asset url");
                    // Only the site's own assets (some pages also name /usr/share/javascript/...,
                    // which no version of the site has).
                    let key = au
                        .path()
                        .trim_start_matches(&format!("/{name}/"))
                        .to_string();
                    if !assets.contains(&key) {
                        continue;
                    }
                    let ok = client
                        .head(au.clone())
                        .send()
                        .await
                        .map(|r| r.status().is_success())
                        .unwrap_or(false);
                    if !ok {
                        failures.lock().expect("lock").push(format!(
                            "{} names {} (missing)",
                            url.path(),
                            au.path()
                        ));
                    }
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let s2 = Arc::new(s);
    for v in ["mv2", "mv3"] {
        let (s2, to) = (s2.clone(), to.clone());
        tokio::task::spawn_blocking(move || s2.publish(v, &[&to], &["--keep-removed"]))
            .await
            .expect("publish task");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.await.expect("reader");
    }
    let failures = failures.lock().expect("lock").clone();
    assert!(
        failures.is_empty(),
        "pages without assets:\n{}",
        failures[..failures.len().min(20)].join("\n")
    );
    let versions = versions.lock().expect("lock").clone();
    assert!(
        fetched.load(Ordering::SeqCst) > 50 && versions.len() >= 2,
        "the readers must see the site change under them: {} pages, versions {versions:?}",
        fetched.load(Ordering::SeqCst)
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// SIGKILL the real binary at several points of a publish (by bytes sent through a proxy in front
/// of moto): every re-run converges to exactly the new tree, an early kill leaves every served
/// object as it was, and publishing another bundle over an interrupted publish is safe too.
#[tokio::test(flavor = "multi_thread")]
async fn issue_9_killed_publish_converges_on_rerun() {
    use repl_support::fault_proxy::FaultProxy;
    let upstream = need("SITEBUNDLE_TEST_S3_ENDPOINT");
    let proxy = FaultProxy::start(upstream.trim_start_matches("http://"), Vec::new()).await;
    let mut s = site_with_bundles();
    s.s3_endpoint = format!("http://{}", proxy.host());
    s.config(RULES);
    let s = Arc::new(s);
    let bucket = need(BUCKET_ENV);
    let (v1, v2, v3) = (
        corpus("small", "v1"),
        corpus("small", "v2"),
        corpus("small", "v3"),
    );
    // (bundle killed, where, bundle published after): inside the stage (v3 adds files; nothing
    // served may change), in the middle and near the end of the switch, and another bundle
    // published over an interrupted publish.
    for (killed, point, then) in [
        ("sv3", Point::Stage, "sv3"),
        ("sv2", Point::Fraction(0.5), "sv2"),
        ("sv2", Point::Fraction(0.95), "sv2"),
        ("sv2", Point::Fraction(0.5), "sv3"),
    ] {
        let prefix = unique("kill");
        let to = format!("s3+site://{bucket}/{prefix}");
        s.publish("sv1", &[&to], &[]);
        let plan = s.publish(killed, &[&to], &["--dry-run"]);
        let total = plan["targets"][0]["upload_bytes"].as_u64().expect("bytes");
        let stage: u64 = plan["targets"][0]["plan"]["writes"]
            .as_array()
            .expect("writes")
            .iter()
            .filter(|w| w["phase"] == "stage")
            .map(|w| w["size"].as_u64().unwrap_or(0))
            .sum();
        let budget = match point {
            Point::Stage => {
                assert!(
                    stage > 100_000,
                    "{killed} must stage enough bytes to be killed in it"
                );
                stage / 2
            }
            Point::Fraction(f) => (total as f64 * f) as u64,
        };
        let mut c = s.sb();
        c.args(["publish", killed, "--to", &to]);
        let child = c.spawn().expect("spawn publish");
        let pid = child.id() as libc::pid_t;
        proxy.on_down(move || {
            // SAFETY: sending a signal to our own child.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        });
        proxy.cut_after(budget);
        let status = tokio::task::spawn_blocking(move || {
            let mut child = child;
            child.wait().expect("wait")
        })
        .await
        .expect("join");
        proxy.set_down(false);
        proxy.on_down(|| {});
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "the publish of {killed} should have been killed at {point:?} ({status})"
        );
        if point == Point::Stage {
            // Killed in the stage: every object the site served is as it was.
            let got = listing(&moto(&bucket), &prefix).await;
            for (k, (size, md5, _)) in files_of(&v1) {
                assert_eq!(
                    got.get(&k),
                    Some(&(size, md5)),
                    "{k} changed before the switch"
                );
            }
        }
        s.publish(then, &[&to], &[]);
        let tree = if then == "sv2" { &v2 } else { &v3 };
        assert_s3_is_tree(&bucket, &prefix, tree).await;
        let m = s.publish(then, &[&to], &["--dry-run"]);
        assert_eq!(
            m["targets"][0]["plan"]["writes"].as_array().map(Vec::len),
            Some(0),
            "converged: nothing left to write"
        );
        clean_s3(&bucket, &prefix).await;
    }
}

/// Where a kill happens.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Point {
    /// Halfway through the bytes of the stage.
    Stage,
    /// At this fraction of all upload bytes.
    Fraction(f64),
}

/// A channel push to a registry and three website targets (moto, Azurite, nginx's directory) with
/// one of them down moves no channel and switches no website: the others keep serving the old
/// site, whole. Once all are up the push completes; `promote` moves the sites with the channel;
/// `status` shows what each serves; `rollback` puts the old site back on every bucket; `status
/// --verify` audits nginx.
#[tokio::test(flavor = "multi_thread")]
async fn issue_9_one_website_target_down_moves_no_channel_promote_and_rollback_follow() {
    let mut s = site_with_bundles();
    let p = unique("chan");
    let bucket = need(BUCKET_ENV);
    let www = PathBuf::from(need("SITEBUNDLE_TEST_HTTP_ROOT")).join(&p);
    let public = format!("{}/{p}/", need("SITEBUNDLE_TEST_HTTP_ORIGIN"));
    s.config(&format!(
        r#"{RULES}
[targets]
reg = "oci+http://{reg}/sbtest/{p}"
s3 = "s3+site://{bucket}/{p}"
az = "az+site://{az}/{p}"
www = {{ url = "file+site://{www}", public_url = "{public}" }}
[defaults]
to = ["reg", "s3", "az", "www"]
"#,
        reg = need("SITEBUNDLE_TEST_REGISTRY"),
        az = need("SITEBUNDLE_TEST_AZURE_CONTAINER"),
        www = www.display(),
    ));
    let (m1, m2) = (manifest("sv1"), manifest("sv2"));
    run_ok(s.sb().args(["push", "sv1", "-c", "prod"]));
    let serving = |s: &Site| -> Vec<String> {
        let out = run(s.sb().args(["--json", "status", "-c", "prod"]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        let mut out: Vec<String> = v["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .map(|t| {
                t["channels"]["prod"]["manifest"]
                    .as_str()
                    .unwrap_or("none")
                    .to_string()
            })
            .collect();
        out.extend(v["sites"].as_array().expect("sites").iter().map(|t| {
            t["serving"]["manifest"]
                .as_str()
                .unwrap_or("none")
                .to_string()
        }));
        out
    };
    assert_eq!(serving(&s), vec![m1.clone(); 4]);

    // S3 down: nothing moves anywhere; the other websites still serve sv1, whole.
    let up = s.s3_endpoint.clone();
    s.s3_endpoint = format!("http://127.0.0.1:{}", dead_port());
    let out = run(s.sb().args(["push", "sv2", "-c", "prod"]));
    assert!(!out.status.success(), "push with S3 down must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s3+site://") && err.contains("no channel was moved"),
        "{err}"
    );
    s.s3_endpoint = up;
    assert_eq!(serving(&s), vec![m1.clone(); 4]);
    run_ok(
        s.sb()
            .args(["audit", &public, "--digest", "sv1", "--headers", "none"]),
    );
    assert_s3_is_tree(&bucket, &p, &corpus("small", "v1")).await;

    // All up: the same command completes.
    run_ok(s.sb().args(["push", "sv2", "-c", "prod"]));
    assert_eq!(serving(&s), vec![m2.clone(); 4]);
    assert_s3_is_tree(&bucket, &p, &corpus("small", "v2")).await;
    assert_dir_is_tree(&www, &corpus("small", "v2"));

    // Promote: sv3, pushed to staging on the registry only, becomes prod everywhere.
    let m3 = manifest("sv3");
    run_ok(s.sb().args(["push", "sv3", "-c", "staging", "--to", "reg"]));
    run_ok(s.sb().args(["promote", "staging", "prod"]));
    assert_eq!(serving(&s), vec![m3.clone(); 4]);
    assert_s3_is_tree(&bucket, &p, &corpus("small", "v3")).await;

    // Rollback: the buckets serve sv2 again.
    run_ok(s.sb().args(["rollback", "prod", "--steps", "1"]));
    assert_eq!(serving(&s), vec![m2.clone(); 4]);
    assert_s3_is_tree(&bucket, &p, &corpus("small", "v2")).await;
    assert_dir_is_tree(&www, &corpus("small", "v2"));
    let st = run_ok(
        s.sb()
            .args(["--json", "status", "--to", "reg", "--to", "www", "--verify"]),
    );
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("status JSON");
    assert_eq!(v["sites"][0]["verified"], true, "{v}");
    assert_eq!(v["sites"][0]["complete"], true, "{v}");
    assert_eq!(v["sites"][0]["serving"]["channel"], "prod", "{v}");
    clean_s3(&bucket, &p).await;
    let _ = std::fs::remove_dir_all(&www);
}

/// The audit of a public S3 bucket (moto, anonymous GETs) and of nginx catches one changed byte,
/// one missing file, one extra object and one wrong Content-Type, each named, with exit 4; and
/// across two origins it reports markers that disagree.
#[tokio::test(flavor = "multi_thread")]
async fn issue_9_audit_catches_changed_byte_missing_extra_and_wrong_type() {
    let s = site_with_bundles();
    s.config(RULES);
    let bucket = unique("audit").to_lowercase().replace('_', "-");
    let bucket = bucket[..bucket.len().min(60)].to_string();
    public_bucket(&bucket);
    let to = format!("s3+site://{bucket}/site");
    s.publish("sv1", &[&to], &[]);
    let origin = format!("{}/{bucket}/site/", need("SITEBUNDLE_TEST_S3_ENDPOINT"));
    let audit = |extra: &[&str]| {
        let out = run(s
            .sb()
            .args(["--json", "audit", &origin, "--digest", "sv1", "--list", &to])
            .args(extra));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("audit JSON: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), v)
    };
    let (code, v) = audit(&[]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["origins"][0]["ok"], v["files"], "{v}");

    let v1 = corpus("small", "v1");
    let work = s.dir.path().join("mut");
    std::fs::create_dir_all(&work).expect("mkdir");
    let mut page = std::fs::read(v1.join("genindex.html")).expect("read page");
    page[100] ^= 1;
    std::fs::write(work.join("page"), &page).expect("write");
    std::fs::write(work.join("extra"), b"not in the bundle\n").expect("write");
    run_ok(
        aws()
            .args(["s3", "cp"])
            .arg(work.join("page"))
            .arg(format!("s3://{bucket}/site/genindex.html"))
            .args([
                "--content-type",
                "text/html; charset=utf-8",
                "--cache-control",
                "no-cache",
            ]),
    );
    run_ok(aws().args(["s3", "rm", &format!("s3://{bucket}/site/api.html")]));
    run_ok(
        aws()
            .args(["s3", "cp"])
            .arg(work.join("extra"))
            .arg(format!("s3://{bucket}/site/extra.txt")),
    );
    let css = files_of(&v1)
        .into_keys()
        .find(|k| k.starts_with("_static/") && k.ends_with(".css"))
        .expect("a stylesheet");
    run_ok(aws().args([
        "s3api",
        "copy-object",
        "--bucket",
        &bucket,
        "--key",
        &format!("site/{css}"),
        "--copy-source",
        &format!("{bucket}/site/{css}"),
        "--metadata-directive",
        "REPLACE",
        "--content-type",
        "text/plain",
        "--cache-control",
        "public, max-age=31536000, immutable",
    ]));
    let (code, v) = audit(&[]);
    assert_eq!(code, Some(4), "{v}");
    let o = &v["origins"][0];
    assert_eq!(o["missing"], serde_json::json!(["api.html"]), "{o}");
    assert_eq!(o["extra"], serde_json::json!(["extra.txt"]), "{o}");
    assert_eq!(o["different_count"], 1, "{o}");
    assert_eq!(o["different"][0]["key"], "genindex.html", "{o}");
    assert_eq!(o["header_count"], 1, "{o}");
    assert_eq!(o["headers"][0]["key"], css.as_str(), "{o}");
    assert!(
        o["headers"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Content-Type")),
        "{o}"
    );
    // A sample checks fewer files and says which seed picked them.
    let (_, v) = audit(&["--sample", "20", "--seed", "7"]);
    assert_eq!(v["sampled"], 20);
    assert_eq!(v["seed"], 7);

    // Two origins: nginx serves sv2, the bucket's marker says sv1.
    let name = unique("audit-www");
    let root = PathBuf::from(need("SITEBUNDLE_TEST_HTTP_ROOT")).join(&name);
    s.publish("sv2", &[&format!("file+site://{}", root.display())], &[]);
    let nginx = format!("{}/{name}/", need("SITEBUNDLE_TEST_HTTP_ORIGIN"));
    let out = run(s.sb().args([
        "--json",
        "audit",
        &nginx,
        "--origin",
        &origin,
        "--digest",
        "sv2",
        "--headers",
        "none",
    ]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("audit JSON");
    assert_eq!(out.status.code(), Some(4), "{v}");
    assert_eq!(v["markers_agree"], false, "{v}");
    assert_eq!(v["origins"][0]["marker"]["state"], "ok", "{v}");
    assert_eq!(v["origins"][1]["marker"]["state"], "other", "{v}");
    clean_s3(&bucket, "site").await;
    let _ = std::fs::remove_dir_all(&root);
}

/// A hostile origin (a loopback fake, since no real server here misbehaves on demand): a body
/// that never ends, a redirect to another host, a gzip bomb. The audit reads each within the
/// declared size, follows no redirect off the origin, sends no credentials, finishes promptly and
/// stays within 64 MiB RSS.
#[tokio::test(flavor = "multi_thread")]
async fn issue_9_audit_bounds_hostile_origins() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Site::new();
    let src = s.dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("endless.html"), vec![b'a'; 1000]).expect("write");
    std::fs::write(src.join("moved.html"), b"<p>here</p>").expect("write");
    std::fs::write(src.join("bomb.css"), b"body{}").expect("write");
    std::fs::write(src.join("ok.txt"), b"fine\n").expect("write");
    let m = s.build(&src, "h");
    let insp: serde_json::Value =
        serde_json::from_slice(&run_ok(s.sb().args(["inspect", "--json", "h"])).stdout)
            .expect("json");
    let marker = serde_json::json!({
        "sitebundle_site": 1,
        "serving": {"manifest": m, "id": insp["id"], "index": insp["index"], "objects": 4,
                    "bytes": 1000, "headers": {"mime_table": 1, "rules": []},
                    "at": "2026-12-01T00:00:00Z", "actor": "fake"},
        "pending": [], "removed": []
    })
    .to_string();
    let other = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let other_port = other.local_addr().expect("addr").port();
    let other_hits = Arc::new(AtomicUsize::new(0));
    {
        let hits = other_hits.clone();
        tokio::spawn(async move {
            while let Ok((_c, _)) = other.accept().await {
                hits.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut bomb, &vec![0u8; 256 * 1024 * 1024]).expect("gzip");
    let bomb = Arc::new(bomb.finish().expect("gzip"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen_headers = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let seen = seen_headers.clone();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = listener.accept().await {
                let (marker, bomb, seen) = (marker.clone(), bomb.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = c.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                    seen.lock().expect("lock").push(head.clone());
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    if path.starts_with("/.well-known/sitebundle.json") {
                        let _ = c
                            .write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{marker}", marker.len()).as_bytes())
                            .await;
                    } else if path.starts_with("/endless.html") {
                        let _ = c.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\nconnection: close\r\n\r\n").await;
                        let chunk = vec![b'a'; 64 * 1024];
                        while c.write_all(&chunk).await.is_ok() {}
                    } else if path.starts_with("/moved.html") {
                        let _ = c.write_all(format!("HTTP/1.1 302 Found\r\nlocation: http://127.0.0.2:{other_port}/steal\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes()).await;
                    } else if path.starts_with("/bomb.css") {
                        let _ = c.write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: text/css; charset=utf-8\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", bomb.len()).as_bytes()).await;
                        let _ = c.write_all(&bomb).await;
                    } else if path.starts_with("/ok.txt") {
                        let _ = c.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 5\r\nconnection: close\r\n\r\nfine\n").await;
                    } else {
                        let _ = c.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                    }
                });
            }
        });
    }
    let origin = format!("http://127.0.0.1:{port}/");
    let started = std::time::Instant::now();
    let (out, rss_kib) = tokio::task::spawn_blocking({
        let mut c = s.sb();
        c.args(["--json", "audit", &origin, "--digest", "h"]);
        move || run_measured(&mut c)
    })
    .await
    .expect("audit task");
    let took = started.elapsed();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("audit JSON: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(4), "{v}");
    let o = &v["origins"][0];
    assert_eq!(o["marker"]["state"], "ok", "{o}");
    assert_eq!(o["ok"], 1, "{o}");
    let why: BTreeMap<String, String> = o["different"]
        .as_array()
        .expect("different")
        .iter()
        .map(|p| {
            (
                p["key"].as_str().unwrap_or("").to_string(),
                p["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(why["endless.html"].contains("longer than"), "{why:?}");
    assert!(why["bomb.css"].contains("longer than"), "{why:?}");
    assert!(why["moved.html"].contains("redirects to"), "{why:?}");
    assert_eq!(
        other_hits.load(Ordering::SeqCst),
        0,
        "a redirect to another host was followed"
    );
    for h in seen_headers.lock().expect("lock").iter() {
        assert!(
            !h.contains("authorization:") && !h.contains("cookie:"),
            "credentials sent: {h}"
        );
    }
    assert!(rss_kib < 64 * 1024, "audit peaked at {rss_kib} KiB");
    assert!(
        took < std::time::Duration::from_secs(60),
        "audit took {took:?}"
    );
}

/// GCS through fake-gcs-server's JSON API (the API the GCS website target writes with): publish,
/// a diff publish, a header-only change applied as a PATCH (no bytes re-sent), every object's
/// metadata checked through the API's own listing, and an audit of its public URL.
#[tokio::test(flavor = "multi_thread")]
async fn issue_9_gcs_write_path_over_the_json_api() {
    let s = site_with_bundles();
    s.config(RULES);
    let p = unique("gcs");
    let bucket = need("SITEBUNDLE_TEST_GCS_BUCKET");
    let to = format!("gs+site://{bucket}/{p}");
    s.publish("sv1", &[&to], &[]);
    let j = s.publish("sv2", &[&to], &[]);
    let (written, removed) = tree_diff(&corpus("small", "v1"), &corpus("small", "v2"));
    assert_eq!(report(&j, &to)["written"], written as u64);
    assert_eq!(report(&j, &to)["deleted"], removed as u64);
    // The listing as the JSON API gives it, read with a plain client.
    let endpoint = need("SITEBUNDLE_TEST_GCS_ENDPOINT");
    let list = |prefix: String| {
        let endpoint = endpoint.clone();
        let bucket = bucket.clone();
        async move {
            let url =
                format!("{endpoint}/storage/v1/b/{bucket}/o?prefix={prefix}/&maxResults=10000");
            let v: serde_json::Value = reqwest::Client::new()
                .get(url)
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("list JSON");
            v["items"].as_array().cloned().unwrap_or_default()
        }
    };
    let want = files_of(&corpus("small", "v2"));
    let items = list(p.clone()).await;
    let got: BTreeMap<String, (String, String, String)> = items
        .iter()
        .filter_map(|i| {
            let k = i["name"]
                .as_str()?
                .strip_prefix(&format!("{p}/"))?
                .to_string();
            Some((
                k,
                (
                    i["metadata"]["sitebundle-blake3"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    i["contentType"].as_str().unwrap_or("").to_string(),
                    i["cacheControl"].as_str().unwrap_or("").to_string(),
                ),
            ))
        })
        .filter(|(k, _)| !replicator::site::is_reserved(k))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, (b3, _, _)) in &got {
        assert_eq!(b3, &want[k].2, "{k}");
    }
    assert_eq!(got["index.html"].1, "text/html; charset=utf-8");
    assert_eq!(got["index.html"].2, "no-cache");
    // A rule edited: headers change, bytes are not sent again.
    s.config(&RULES.replace(
        "cache_control = \"no-cache\"",
        "cache_control = \"no-cache, must-revalidate\"",
    ));
    let j = s.publish("sv2", &[&to], &[]);
    let r = report(&j, &to);
    assert_eq!(r["written"], 0, "{r}");
    assert!(r["headers_updated"].as_u64().is_some_and(|n| n > 50), "{r}");
    assert_eq!(r["requests"]["put"].as_u64(), Some(2), "marker twice: {r}");
    let items = list(p.clone()).await;
    let idx = items
        .iter()
        .find(|i| i["name"] == format!("{p}/index.html"))
        .expect("index.html");
    assert_eq!(idx["cacheControl"], "no-cache, must-revalidate");
    // Its public URL (fake-gcs-server serves /bucket/key like storage.googleapis.com).
    run_ok(s.sb().args([
        "audit",
        &format!("{endpoint}/{bucket}/{p}/"),
        "--digest",
        "sv2",
        "--list",
        &to,
    ]));
}

/// Azure (Azurite): v1, v2, v3 each leave exactly the tree (every object read back and hashed),
/// a header change is a `Set Blob Properties`, and the BLAKE3 is in the blob's metadata.
#[tokio::test(flavor = "multi_thread")]
async fn issue_9_azure_publish_and_header_only_change() {
    use object_store::{ObjectStore, ObjectStoreExt};
    let s = site_with_bundles();
    s.config(RULES);
    let p = unique("az");
    let to = format!("az+site://{}/{p}", need("SITEBUNDLE_TEST_AZURE_CONTAINER"));
    let az = azurite();
    for v in ["v1", "v2", "v3"] {
        s.publish(&format!("s{v}"), &[&to], &[]);
        let want = files_of(&corpus("small", v));
        let got = listing(&az, &p).await;
        let keys: Vec<&String> = got
            .keys()
            .filter(|k| !replicator::site::is_reserved(k))
            .collect();
        assert_eq!(keys, want.keys().collect::<Vec<_>>(), "{v}");
        for (k, (_, _, b3)) in &want {
            let path = object_store::path::Path::parse(format!("{p}/{k}")).expect("path");
            let bytes = az
                .get(&path)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes");
            assert_eq!(&bundle::FileHash::of(&bytes).hex(), b3, "{v} {k}");
        }
    }
    s.config(&RULES.replace("no-cache", "no-store"));
    let j = s.publish("sv3", &[&to], &[]);
    let r = report(&j, &to);
    assert_eq!(r["written"], 0, "{r}");
    assert!(r["headers_updated"].as_u64().is_some_and(|n| n > 50), "{r}");
    let path = object_store::path::Path::parse(format!("{p}/index.html")).expect("path");
    let head = az
        .get_opts(
            &path,
            object_store::GetOptions {
                head: true,
                ..Default::default()
            },
        )
        .await
        .expect("head");
    let a = &head.attributes;
    assert_eq!(
        a.get(&object_store::Attribute::CacheControl)
            .map(|v| v.as_ref()),
        Some("no-store")
    );
    assert_eq!(
        a.get(&object_store::Attribute::ContentType)
            .map(|v| v.as_ref()),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        a.get(&object_store::Attribute::Metadata(
            "sitebundle_blake3".into()
        ))
        .map(|v| v.as_ref().to_string()),
        Some(files_of(&corpus("small", "v3"))["index.html"].2.clone())
    );
}

/// Symlinks: a link to a file is published as a copy of its bytes, a link to a directory as a
/// copy of that directory's index.html (with a warning), on a bucket and on a directory alike.
#[tokio::test(flavor = "multi_thread")]
async fn issue_9_symlinks_publish_as_copies() {
    let s = Site::new();
    let src = s.dir.path().join("src");
    std::fs::create_dir_all(src.join("docs/v2")).expect("mkdir");
    std::fs::create_dir_all(src.join("img")).expect("mkdir");
    std::fs::write(src.join("index.html"), b"<a href=latest/>docs</a>").expect("write");
    std::fs::write(src.join("docs/v2/index.html"), b"<h1>v2</h1>").expect("write");
    std::fs::write(src.join("img/logo.png"), b"\x89PNG fake").expect("write");
    std::os::unix::fs::symlink("img/logo.png", src.join("logo.png")).expect("symlink");
    std::os::unix::fs::symlink("docs/v2", src.join("latest")).expect("symlink");
    std::os::unix::fs::symlink("img", src.join("pictures")).expect("symlink");
    s.build(&src, "links");
    let bucket = need(BUCKET_ENV);
    let p = unique("links");
    let s3 = format!("s3+site://{bucket}/{p}");
    let dir = s.dir.path().join("www");
    let d = format!("file+site://{}", dir.display());
    let j = s.publish("links", &[&s3, &d], &[]);
    let warnings = report(&j, &d)["warnings"].to_string();
    assert!(
        warnings.contains("latest") && warnings.contains("pictures"),
        "{warnings}"
    );
    let got = common::snapshot(&dir);
    let file = |p: &str| match got.get(p) {
        Some(common::Node::File { hash, .. }) => hash.clone(),
        other => panic!("{p}: {other:?}"),
    };
    assert_eq!(file("logo.png"), file("img/logo.png"));
    assert_eq!(file("latest/index.html"), file("docs/v2/index.html"));
    assert!(
        !got.contains_key("pictures") && !got.contains_key("pictures/logo.png"),
        "{got:?}"
    );
    let l = listing(&moto(&bucket), &p).await;
    assert_eq!(l["logo.png"], l["img/logo.png"]);
    assert_eq!(l["latest/index.html"], l["docs/v2/index.html"]);
    assert!(!l.contains_key("pictures/logo.png"));
    clean_s3(&bucket, &p).await;
}

/// `--max-delete` stops a publish that would delete most of a site before anything is written,
/// `--dry-run` changes nothing, and `--keep-removed` keeps removed objects until the next publish.
#[tokio::test(flavor = "multi_thread")]
async fn issue_9_max_delete_dry_run_and_keep_removed() {
    let s = site_with_bundles();
    let tiny = s.dir.path().join("tiny");
    std::fs::create_dir_all(&tiny).expect("mkdir");
    std::fs::write(tiny.join("index.html"), b"<p>gone</p>").expect("write");
    s.build(&tiny, "tiny");
    let dir = s.dir.path().join("www");
    let to = format!("file+site://{}", dir.display());
    s.publish("sv1", &[&to], &[]);
    let before = common::snapshot(&dir);

    let j = s.publish("sv2", &[&to], &["--dry-run"]);
    assert!(
        j["targets"][0]["plan"]["writes"]
            .as_array()
            .is_some_and(|w| !w.is_empty()),
        "{j}"
    );
    assert_eq!(
        common::snapshot(&dir),
        before,
        "--dry-run changed the target"
    );

    let out = run(s.sb().args(["publish", "tiny", "--to", &to]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--max-delete") && err.contains("hint:"),
        "{err}"
    );
    assert_eq!(
        common::snapshot(&dir),
        before,
        "a refused publish changed the target"
    );
    s.publish("tiny", &[&to], &["--max-delete", "all"]);
    assert_dir_is_tree(&dir, &tiny);

    // Kept until the next publish: the objects sv1 had and sv2 lacks are still there after sv2,
    // gone after sv3.
    s.publish("sv1", &[&to], &[]);
    let (v1, v2) = (
        files_of(&corpus("small", "v1")),
        files_of(&corpus("small", "v2")),
    );
    let removed: Vec<&String> = v1.keys().filter(|k| !v2.contains_key(*k)).collect();
    assert!(!removed.is_empty());
    let j = s.publish("sv2", &[&to], &["--keep-removed"]);
    assert_eq!(
        j["targets"][0]["report"]["kept"],
        removed.len() as u64,
        "{j}"
    );
    for k in &removed {
        assert!(dir.join(k).is_file(), "{k} should be kept");
    }
    let m = dir_marker(&dir);
    assert_eq!(m["removed"][0]["after"], "next-publish", "{m}");
    s.publish("sv3", &[&to], &[]);
    assert_dir_is_tree(&dir, &corpus("small", "v3"));
}

/// `audit --wait` re-checks until the origin serves the bundle (a CDN converging after a
/// publish): it starts while nginx still serves sv1, the publish of sv2 lands meanwhile, and the
/// audit ends clean after more than one round.
#[tokio::test(flavor = "multi_thread")]
async fn issue_9_audit_wait_until_the_origin_converges() {
    let s = Arc::new(site_with_bundles());
    let name = unique("wait");
    let root = PathBuf::from(need("SITEBUNDLE_TEST_HTTP_ROOT")).join(&name);
    let to = format!("file+site://{}", root.display());
    s.publish("sv1", &[&to], &[]);
    let origin = format!("{}/{name}/", need("SITEBUNDLE_TEST_HTTP_ORIGIN"));
    let audit = {
        let (s, origin) = (s.clone(), origin.clone());
        tokio::task::spawn_blocking(move || {
            run(s.sb().args([
                "--json",
                "audit",
                &origin,
                "--digest",
                "sv2",
                "--headers",
                "none",
                "--wait",
                "60s",
            ]))
        })
    };
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    {
        let (s, to) = (s.clone(), to.clone());
        tokio::task::spawn_blocking(move || s.publish("sv2", &[&to], &[]))
            .await
            .expect("publish");
    }
    let out = audit.await.expect("audit");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("audit JSON");
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert!(v["rounds"].as_u64().is_some_and(|r| r > 1), "{v}");
    let _ = std::fs::remove_dir_all(&root);
}
