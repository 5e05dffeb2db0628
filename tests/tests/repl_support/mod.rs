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
