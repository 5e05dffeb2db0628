//! Helpers of the website-target tests (issue 9): the `sitebundle` binary configured for the
//! loopback services, independent views of what a target holds (object_store listings with ETags,
//! the aws CLI, a directory snapshot), and RSS measured with the kernel's accounting.
//!
//! (`publish.rs` declares this file with `#[path]`, so the replication tests do not compile it.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use md5::{Digest as _, Md5};

use crate::repl_support::{need, retry};

/// A private store and config for one test, and the environment the binary needs to reach the
/// loopback services (credentials from the environment only, as users give them).
pub struct Site {
    pub home: PathBuf,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
    /// S3 endpoint the binary uses (moto, or a proxy in front of it).
    pub s3_endpoint: String,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        let config = dir.path().join("sitebundle.toml");
        std::fs::write(&config, "").expect("write config");
        Site {
            home,
            config,
            dir,
            s3_endpoint: need("SITEBUNDLE_TEST_S3_ENDPOINT"),
        }
    }

    /// Replace the config file.
    pub fn config(&self, toml: &str) {
        std::fs::write(&self.config, toml).expect("write sitebundle.toml");
    }

    /// `sitebundle` with this store, config and the services' environment.
    pub fn sb(&self) -> Command {
        let mut c = Command::new(crate::common::bin());
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("SITEBUNDLE_HOME", &self.home)
            .env("SITEBUNDLE_CONFIG", &self.config)
            .env("SITEBUNDLE_RETRIES", "2")
            .env("SITEBUNDLE_ACTOR", "issue-9-tests")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT", &self.s3_endpoint)
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
            .arg("--quiet");
        c
    }

    /// Build `dir` and tag it; return the manifest digest (`sitebundle inspect`).
    pub fn build(&self, dir: &Path, tag: &str) -> String {
        run_ok(self.sb().args(["build", "--no-cache", "-t", tag]).arg(dir));
        let v: serde_json::Value =
            serde_json::from_slice(&run_ok(self.sb().args(["inspect", "--json", tag])).stdout)
                .expect("inspect --json");
        v["manifest"]
            .as_str()
            .or_else(|| v["manifest_digest"].as_str())
            .unwrap_or_else(|| panic!("no manifest digest in {v}"))
            .to_string()
    }

    /// `publish REF --to T... --json` (extra args after); the parsed JSON.
    pub fn publish(&self, reference: &str, to: &[&str], extra: &[&str]) -> serde_json::Value {
        let mut c = self.sb();
        c.args(["--json", "publish", reference]);
        for t in to {
            c.args(["--to", t]);
        }
        c.args(extra);
        serde_json::from_slice(&run_ok(&mut c).stdout).expect("publish --json prints JSON")
    }
}

/// Run, panic with stderr unless it succeeds.
pub fn run_ok(c: &mut Command) -> Output {
    let out = c.output().unwrap_or_else(|e| panic!("run {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run and return the output whatever the status.
pub fn run(c: &mut Command) -> Output {
    c.output().unwrap_or_else(|e| panic!("run {c:?}: {e}"))
}

/// Every regular file under `root`: relative path -> (size, MD5 hex, BLAKE3 hex).
pub fn files_of(root: &Path) -> BTreeMap<String, (u64, String, String)> {
    let mut out = BTreeMap::new();
    for (k, node) in crate::common::snapshot(root) {
        if let crate::common::Node::File { hash, len, .. } = node {
            let bytes = std::fs::read(root.join(&k)).expect("read");
            out.insert(k, (len, hex(&Md5::digest(&bytes)), hash));
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An object_store client for moto (for independent listings and reads).
pub fn moto(bucket: &str) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(need("SITEBUNDLE_TEST_S3_ENDPOINT"))
        .with_allow_http(true)
        .with_region(need("SITEBUNDLE_TEST_S3_REGION"))
        .with_bucket_name(bucket)
        .with_access_key_id(need("SITEBUNDLE_TEST_S3_ACCESS_KEY_ID"))
        .with_secret_access_key(need("SITEBUNDLE_TEST_S3_SECRET_ACCESS_KEY"))
        .with_retry(retry())
        .build()
        .expect("moto client")
}

/// An object_store client for Azurite.
pub fn azurite() -> object_store::azure::MicrosoftAzure {
    object_store::azure::MicrosoftAzureBuilder::new()
        .with_account(need("SITEBUNDLE_TEST_AZURE_ACCOUNT"))
        .with_access_key(need("SITEBUNDLE_TEST_AZURE_KEY"))
        .with_container_name(need("SITEBUNDLE_TEST_AZURE_CONTAINER"))
        .with_endpoint(need("SITEBUNDLE_TEST_AZURE_ENDPOINT"))
        .with_allow_http(true)
        .with_retry(retry())
        .build()
        .expect("azurite client")
}

/// Every object under `prefix/` of a store: key (relative) -> (size, ETag without quotes).
pub async fn listing(
    store: &dyn object_store::ObjectStore,
    prefix: &str,
) -> BTreeMap<String, (u64, String)> {
    use futures::TryStreamExt;
    let p = object_store::path::Path::parse(prefix).expect("prefix");
    let metas: Vec<object_store::ObjectMeta> =
        store.list(Some(&p)).try_collect().await.expect("list");
    metas
        .into_iter()
        .map(|m| {
            let k = m
                .location
                .as_ref()
                .strip_prefix(&format!("{prefix}/"))
                .expect("under prefix")
                .to_string();
            (
                k,
                (
                    m.size,
                    m.e_tag.unwrap_or_default().trim_matches('"').to_string(),
                ),
            )
        })
        .collect()
}

/// Assert that an S3 listing under `prefix` is exactly the site at `root` (keys, sizes, and the
/// ETag, which S3 sets to the MD5 of a single-PUT object's bytes) plus the protocol's objects.
pub async fn assert_s3_is_tree(bucket: &str, prefix: &str, root: &Path) {
    let want = files_of(root);
    let got = listing(&moto(bucket), prefix).await;
    let mut diffs = Vec::new();
    for (k, (size, md5, _)) in &want {
        match got.get(k) {
            None => diffs.push(format!("missing {k}")),
            Some((s, e)) if s != size || e != md5 => {
                diffs.push(format!("differs {k}: {s} {e} vs {size} {md5}"))
            }
            _ => {}
        }
    }
    for k in got.keys() {
        if !want.contains_key(k) && !replicator::site::is_reserved(k) {
            diffs.push(format!("extra {k}"));
        }
    }
    diffs.truncate(20);
    assert!(
        diffs.is_empty(),
        "s3://{bucket}/{prefix} is not {}:\n{}",
        root.display(),
        diffs.join("\n")
    );
    assert!(
        got.contains_key(replicator::site::MARKER_KEY),
        "no marker in s3://{bucket}/{prefix}"
    );
}

/// Assert that the directory target at `target` holds exactly the site at `root` (plus the
/// protocol's own `.well-known/sitebundle*`).
pub fn assert_dir_is_tree(target: &Path, root: &Path) {
    let want = crate::common::snapshot(root);
    let mut got = crate::common::snapshot(target);
    got.retain(|k, _| {
        (k != ".well-known" || want.contains_key(".well-known"))
            && !k.starts_with(".well-known/sitebundle")
    });
    crate::common::assert_same_tree(&format!("{}", target.display()), &want, &got);
}

/// The marker of a directory target.
pub fn dir_marker(target: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(target.join(".well-known/sitebundle.json")).expect("read marker"),
    )
    .expect("marker is JSON")
}

/// The aws CLI against moto.
pub fn aws() -> Command {
    let mut c = Command::new(need("SITEBUNDLE_TEST_AWS_CLI"));
    c.env(
        "AWS_ACCESS_KEY_ID",
        need("SITEBUNDLE_TEST_S3_ACCESS_KEY_ID"),
    )
    .env(
        "AWS_SECRET_ACCESS_KEY",
        need("SITEBUNDLE_TEST_S3_SECRET_ACCESS_KEY"),
    )
    .env("AWS_DEFAULT_REGION", need("SITEBUNDLE_TEST_S3_REGION"))
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .args(["--endpoint-url", &need("SITEBUNDLE_TEST_S3_ENDPOINT")]);
    c
}

/// `aws s3api head-object` as JSON.
pub fn aws_head(bucket: &str, key: &str) -> serde_json::Value {
    let out = run_ok(aws().args(["s3api", "head-object", "--bucket", bucket, "--key", key]));
    serde_json::from_slice(&out.stdout).expect("head-object JSON")
}

/// A new moto bucket whose objects anyone may GET (a public website bucket), by its policy.
pub fn public_bucket(name: &str) {
    run_ok(aws().args(["s3", "mb", &format!("s3://{name}")]));
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":["s3:GetObject"],"Resource":"arn:aws:s3:::{name}/*"}}]}}"#
    );
    run_ok(aws().args([
        "s3api",
        "put-bucket-policy",
        "--bucket",
        name,
        "--policy",
        &policy,
    ]));
}

/// Remove every object under `prefix/` of a moto bucket (moto keeps everything in memory).
pub async fn clean_s3(bucket: &str, prefix: &str) {
    use futures::{StreamExt, TryStreamExt};
    use object_store::ObjectStore;
    let s = moto(bucket);
    let p = object_store::path::Path::parse(prefix).expect("prefix");
    let locs = s.list(Some(&p)).map_ok(|m| m.location).boxed();
    let _: Vec<_> = s.delete_stream(locs).collect().await;
}

/// Run a command to completion, returning its output and its peak RSS in KiB as the kernel
/// counted it: `wait4`'s `ru_maxrss` of the command, taken by a small Python parent that forks
/// and execs it (the kernel folds the pre-exec copy of the forking process into `ru_maxrss`, so a
/// child forked straight from this large test process would report the test's own size).
pub fn run_measured(c: &mut Command) -> (Output, i64) {
    let out_file = tempfile::NamedTempFile::new().expect("temp file");
    let mut w = Command::new("python3");
    w.arg("-c")
        .arg(
            "import os,sys\n\
             pid=os.fork()\n\
             if pid==0:\n    os.execvp(sys.argv[2], sys.argv[2:])\n\
             _,st,ru=os.wait4(pid,0)\n\
             open(sys.argv[1],'w').write(str(ru.ru_maxrss))\n\
             sys.exit(os.waitstatus_to_exitcode(st) if os.WIFEXITED(st) else 128+os.WTERMSIG(st))",
        )
        .arg(out_file.path())
        .arg(c.get_program());
    w.args(c.get_args());
    w.env_clear();
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            w.env(k, v);
        }
    }
    if let Some(d) = c.get_current_dir() {
        w.current_dir(d);
    }
    let out = w
        .output()
        .unwrap_or_else(|e| panic!("run {c:?} under python3: {e}"));
    let rss = std::fs::read_to_string(out_file.path())
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no RSS measured for {c:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (out, rss)
}
