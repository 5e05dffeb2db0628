//! Shared helpers of the replication tests: environment, fixtures, target constructors, and the
//! fault-injecting proxy.

#![allow(dead_code)]

pub mod fault_proxy;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bundle::{Digest, Store};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use replicator::push::{LocalBundle, Options};
use replicator::store_target::{StoreKind, StoreTarget};
use replicator::Target;

/// A required test setting; fails the test with a clear message when it is missing.
pub fn need(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: run the tests through scripts/test, or start the services \
             (../shared/services/start) and `. /tmp/sitebundle-services/env` first"
        ),
    }
}

/// A current-thread runtime for a test's async calls.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// `chmod -R a+rX`: what a web server running as another user needs to serve `p`.
pub fn chmod_world_readable(p: &Path) {
    let st = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(p)
        .status()
        .expect("chmod");
    assert!(st.success());
}

/// Push `bundles` of `store` to `t` in order; `channel` (if any) moves to the last one.
pub fn push_bundles(
    store: &Store,
    t: &Arc<dyn Target>,
    bundles: &[&bundle::BuildReport],
    channel: Option<&str>,
) {
    rt().block_on(async {
        for (i, b) in bundles.iter().enumerate() {
            let lb = LocalBundle::open(store, b.manifest)
                .await
                .expect("local bundle");
            let ch = if i + 1 == bundles.len() {
                channel
            } else {
                None
            };
            replicator::push::push(&lb, std::slice::from_ref(t), ch, &Options::from_env())
                .await
                .unwrap_or_else(|e| panic!("push to {}: {e:?}", t.name()));
        }
    });
}

/// A name unique to this test run, for repositories, prefixes and directories.
pub fn unique(tag: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "repl-{tag}-{}-{}",
        std::process::id(),
        n % 1_000_000_000_000
    )
}

/// Two (three) bundles of the small corpus in one local store.
pub struct Fixture {
    pub store: Store,
    pub site: [PathBuf; 3],
    pub manifests: [Digest; 3],
}

impl Fixture {
    pub async fn bundle(&self, i: usize) -> LocalBundle {
        LocalBundle::open(&self.store, self.manifests[i])
            .await
            .expect("open fixture bundle")
    }
}

/// Built once per test process.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let corpus = PathBuf::from(need("SITEBUNDLE_TEST_CORPUS"));
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let store = Store::open(dir.join("store")).expect("store");
        let mut manifests = Vec::new();
        let mut sites = Vec::new();
        for v in ["v1", "v2", "v3"] {
            let site = corpus.join("small").join(v);
            assert!(
                site.is_dir(),
                "{} missing: SITEBUNDLE_TEST_CORPUS must hold small/v1..v3 (../shared/make-corpus)",
                site.display()
            );
            let opts = bundle::BuildOptions {
                use_cache: false,
                ..Default::default()
            };
            let r = bundle::build(&site, &store, &opts, &bundle::NoProgress).expect("build");
            manifests.push(r.manifest);
            sites.push(site);
        }
        Fixture {
            store,
            site: [sites[0].clone(), sites[1].clone(), sites[2].clone()],
            manifests: [manifests[0], manifests[1], manifests[2]],
        }
    })
}

/// Options with quick retries, so failing tests fail fast.
pub fn opts() -> Options {
    Options {
        jobs: 4,
        attempts: 4,
        actor: "sitebundle-tests".into(),
        message: Some("test".into()),
        progress: Arc::new(bundle::NoProgress),
    }
}

/// object_store retries: few and quick.
pub fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(20),
    }
}

pub fn dir_target(path: &Path) -> Arc<dyn Target> {
    Arc::new(StoreTarget::dir(path).expect("dir target"))
}

/// The plain registry, a fresh repository.
pub fn registry_target(repo: &str) -> Arc<dyn Target> {
    registry_target_at(&need("SITEBUNDLE_TEST_REGISTRY"), repo)
}

pub fn registry_target_at(host: &str, repo: &str) -> Arc<dyn Target> {
    Arc::new(
        replicator::oci::OciTarget::with_auth(
            host,
            &format!("sbtest/{repo}"),
            true,
            oci_client::secrets::RegistryAuth::Anonymous,
            None,
        )
        .expect("registry target"),
    )
}

/// The TLS + basic auth registry.
pub fn auth_registry_target(repo: &str, password: &str) -> Arc<dyn Target> {
    let ca = std::fs::read(need("SITEBUNDLE_TEST_REGISTRY_CA")).expect("read CA");
    Arc::new(
        replicator::oci::OciTarget::with_auth(
            &need("SITEBUNDLE_TEST_REGISTRY_AUTH"),
            &format!("sbtest/{repo}"),
            false,
            oci_client::secrets::RegistryAuth::Basic(
                need("SITEBUNDLE_TEST_REGISTRY_AUTH_USER"),
                password.to_string(),
            ),
            Some(ca),
        )
        .expect("auth registry target"),
    )
}

pub fn s3_target(prefix: &str) -> Arc<dyn Target> {
    s3_target_at(&need("SITEBUNDLE_TEST_S3_ENDPOINT"), prefix)
}

pub fn s3_target_at(endpoint: &str, prefix: &str) -> Arc<dyn Target> {
    let s = AmazonS3Builder::new()
        .with_endpoint(endpoint)
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

pub fn azure_target(prefix: &str) -> Arc<dyn Target> {
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

/// GCS (fake-gcs-server), reads only: the service-account file with `disable_oauth`, so the
/// client never asks a metadata server for a token.
pub fn gcs_target(prefix: &str) -> Arc<dyn Target> {
    let s = GoogleCloudStorageBuilder::new()
        .with_bucket_name(need("SITEBUNDLE_TEST_GCS_BUCKET"))
        .with_service_account_path(need("SITEBUNDLE_TEST_GCS_SERVICE_ACCOUNT"))
        .with_client_options(ClientOptions::new().with_allow_http(true))
        .with_retry(retry())
        .build()
        .expect("gcs client");
    Arc::new(StoreTarget::new(
        format!("gs://{}/{prefix}", need("SITEBUNDLE_TEST_GCS_BUCKET")),
        Arc::new(s),
        prefix,
        StoreKind::Cloud,
    ))
}

pub fn http_target(base: &str) -> Arc<dyn Target> {
    let mut base = base.to_string();
    if !base.ends_with('/') {
        base.push('/');
    }
    Arc::new(replicator::http::HttpTarget::new(base.parse().expect("url")).expect("http target"))
}

/// A loopback port nothing listens on.
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let p = l.local_addr().expect("addr").port();
    drop(l);
    p
}

/// Every regular file under `root`, relative path -> bytes hash (for tree comparisons).
pub fn tree(root: &Path) -> std::collections::BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry"))
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let ft = e.file_type().expect("file type");
            let rel = p
                .strip_prefix(root)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            if ft.is_dir() {
                out.insert(format!("{rel}/"), "dir".into());
                walk(root, &p, out);
            } else if ft.is_symlink() {
                let t = std::fs::read_link(&p).expect("readlink");
                out.insert(rel, format!("-> {}", t.display()));
            } else {
                let bytes = std::fs::read(&p).expect("read");
                out.insert(rel, bundle::Digest::of(&bytes).to_string());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A private docker-registry process (the same binary the shared services run), so a test can
/// kill it: plain HTTP on a free loopback port, data in `dir`.
pub struct PrivateRegistry {
    pub host: String,
    config: PathBuf,
    child: Arc<std::sync::Mutex<Option<std::process::Child>>>,
}

impl PrivateRegistry {
    pub async fn start(dir: &Path) -> PrivateRegistry {
        let port = dead_port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.join("config.yml");
        std::fs::create_dir_all(dir.join("data")).expect("mkdir");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn, accesslog: {{disabled: true}}}}\n\
                 storage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\n\
                 http:\n  addr: {host}\n  secret: sitebundle-test-secret\n",
                dir.join("data").display()
            ),
        )
        .expect("write registry config");
        let r = PrivateRegistry {
            host,
            config,
            child: Arc::new(std::sync::Mutex::new(None)),
        };
        r.spawn().await;
        r
    }

    async fn spawn(&self) {
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start docker-registry (installed by ../shared/services/install)");
        *self.child.lock().expect("lock") = Some(child);
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("http://{}/v2/", self.host)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("private docker-registry on {} did not come up", self.host);
    }

    /// A function that SIGKILLs the registry (for [`fault_proxy::FaultProxy::on_down`]).
    pub fn killer(&self) -> impl FnOnce() + Send + 'static {
        let child = self.child.clone();
        move || {
            if let Some(mut c) = child.lock().ok().and_then(|mut c| c.take()) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.lock().map(|c| c.is_some()).unwrap_or(false)
    }

    pub async fn restart(&self) {
        (self.killer())();
        self.spawn().await;
    }
}

impl Drop for PrivateRegistry {
    fn drop(&mut self) {
        (self.killer())();
    }
}

/// A free TCP port on loopback address `ip` (e.g. `127.0.0.2`).
pub fn free_port(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).expect("bind");
    let p = l.local_addr().expect("addr").port();
    drop(l);
    p
}

/// A private nginx (the same binary as the shared `http` service) with the `server { }` blocks a
/// test gives: real redirects, a real Basic challenge (`auth_basic`), a real rate limit
/// (`limit_rate`), real TLS, real proxying to the real registry. Its access log records, per
/// request, the address it came to, the method, the URI, the status and the `Authorization`
/// header (`auth=[...]`, `auth=[-]` when there was none), so a test can prove where credentials
/// went.
pub struct PrivateNginx {
    child: Option<std::process::Child>,
    dir: PathBuf,
}

impl PrivateNginx {
    /// Start nginx with `servers` (nginx config text), waiting until every `listen` address
    /// in `addrs` (`ip:port`) accepts connections.
    pub fn start(dir: &Path, servers: &str, addrs: &[String]) -> PrivateNginx {
        std::fs::create_dir_all(dir.join("tmp")).expect("mkdir nginx dir");
        let root_line = if std::env::var("USER").as_deref() == Ok("root")
            || std::fs::read_to_string("/proc/self/status")
                .map(|s| {
                    s.lines()
                        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
                })
                .unwrap_or(false)
        {
            "user root;"
        } else {
            ""
        };
        let d = dir.display();
        let conf = format!(
            "{root_line}\nworker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  default_type application/octet-stream;\n\
             log_format sb '$server_addr:$server_port $request_method $request_uri status=$status auth=[$http_authorization]';\n\
             access_log {d}/access.log sb;\n\
             client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
             fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
             client_max_body_size 0;\n\
             {servers}\n}}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).expect("write nginx.conf");
        let child = std::process::Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start nginx (installed by ../shared/services/install)");
        let mut n = PrivateNginx {
            child: Some(child),
            dir: dir.to_path_buf(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        for a in addrs {
            while std::net::TcpStream::connect(a).is_err() {
                if let Some(Ok(Some(st))) = n.child.as_mut().map(|c| c.try_wait()) {
                    let err = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                    panic!("private nginx exited ({st}):\n{err}");
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "private nginx did not listen on {a}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        n
    }

    /// The access log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Access-log lines of requests that came to `addr` (`ip:port`).
    pub fn log_of(&self, addr: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.starts_with(&format!("{addr} ")))
            .map(String::from)
            .collect()
    }
}

impl Drop for PrivateNginx {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A test CA and a server certificate for `ips` (SANs), made with openssl in `dir`.
/// Returns (CA certificate, server certificate, server key) paths.
pub fn test_tls(dir: &Path, ips: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("mkdir tls");
    let (ca, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let (crt, key, csr, ext) = (
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("server.csr"),
        dir.join("server.ext"),
    );
    let sans: Vec<String> = ips.iter().map(|i| format!("IP:{i}")).collect();
    std::fs::write(
        &ext,
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName={}\n",
            sans.join(",")
        ),
    )
    .expect("write ext");
    let p = |x: &Path| x.display().to_string();
    let steps: Vec<Vec<String>> = vec![
        vec![
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            &p(&ca_key),
            "-out",
            &p(&ca),
            "-days",
            "2",
            "-subj",
            "/CN=sitebundle issue-8 test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        vec![
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            &p(&key),
            "-out",
            &p(&csr),
            "-subj",
            "/CN=127.0.0.2",
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        vec![
            "x509",
            "-req",
            "-in",
            &p(&csr),
            "-CA",
            &p(&ca),
            "-CAkey",
            &p(&ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p(&ext),
            "-out",
            &p(&crt),
        ]
        .into_iter()
        .map(String::from)
        .collect(),
    ];
    for args in steps {
        let out = std::process::Command::new("openssl")
            .args(&args)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (ca, crt, key)
}

/// Give a `sitebundle` or `sitebundle-init` process the test services' credentials and endpoints
/// through the environment (never argv), as a pipeline or a pod would, with every other
/// `SITEBUNDLE_*` setting of the test process removed.
pub fn service_env(c: &mut std::process::Command) -> &mut std::process::Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("SITEBUNDLE_") && !k.starts_with("SITEBUNDLE_TEST_") {
            c.env_remove(k);
        }
    }
    c.env("SITEBUNDLE_RETRIES", "1")
        .env("SITEBUNDLE_ACTOR", "sitebundle-tests")
        .env("AWS_EC2_METADATA_DISABLED", "true")
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
        .env(
            "SITEBUNDLE_REGISTRY_USER",
            need("SITEBUNDLE_TEST_REGISTRY_AUTH_USER"),
        )
        .env(
            "SITEBUNDLE_REGISTRY_PASSWORD",
            need("SITEBUNDLE_TEST_REGISTRY_AUTH_PASSWORD"),
        )
        .env(
            "SITEBUNDLE_REGISTRY_CA",
            need("SITEBUNDLE_TEST_REGISTRY_CA"),
        )
}

/// Copy every file of a directory target into fake-gcs-server under `prefix`, through its JSON
/// upload API (it refuses object_store's XML-API writes: see the services README), so the GCS
/// read path can be tested on what a real push wrote.
pub async fn seed_gcs_from_dir(dir: &Path, prefix: &str) {
    let endpoint = need("SITEBUNDLE_TEST_GCS_ENDPOINT");
    let bucket = need("SITEBUNDLE_TEST_GCS_BUCKET");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).expect("read_dir") {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().expect("type").is_dir() {
                stack.push(e.path());
                continue;
            }
            if name.starts_with('.') {
                continue; // lock files
            }
            let rel = e
                .path()
                .strip_prefix(dir)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            let r = client
                .post(format!("{endpoint}/upload/storage/v1/b/{bucket}/o"))
                .query(&[
                    ("uploadType", "media"),
                    ("name", &format!("{prefix}/{rel}")),
                ])
                .body(std::fs::read(e.path()).expect("read"))
                .send()
                .await
                .expect("seed upload");
            assert!(r.status().is_success(), "seed {rel}: {}", r.status());
        }
    }
}

/// A workspace binary (`sitebundle`, `sitebundle-init`), built by `cargo build --workspace --bins`
/// (scripts/test does it first).
pub fn workspace_bin(name: &str) -> PathBuf {
    let p = assert_cmd::cargo::cargo_bin(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace --bins` (scripts/test does)",
        p.display()
    );
    p
}
