//! A GCS website target, over the JSON API.
//!
//! Why not `object_store` here: its GCS client writes through the XML API, and a header change
//! needs a `PATCH` it does not have. The JSON API does both (multipart upload of metadata and
//! bytes in one request, `PATCH` of the metadata alone, listings that carry every object's
//! metadata), and it is also what the one GCS emulator reachable for tests accepts
//! (fake-gcs-server refuses XML-API writes that are not signed URLs), so the write path is
//! exercised against a real server. Credentials are `object_store`'s GCP chain (service-account
//! file, application default credentials, the metadata server), refreshed as it refreshes them;
//! the API base URL is the service-account file's `gcs_base_url` when it names one (emulators),
//! else `https://storage.googleapis.com`.
//!
//! GCS behaviour users ask about: an object stored with `Content-Encoding: gzip` is decompressed
//! on the fly for clients that do not send `Accept-Encoding: gzip` (and then has no
//! `Content-Length`); the audit asks for the stored bytes. Index and error documents are bucket
//! settings (`MainPageSuffix`, `NotFoundPage`); GCS has no per-object redirects.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bundle::FileHash;
use bytes::Bytes;
use futures::StreamExt;
use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::CredentialProvider;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;

use super::fetch::read_capped;
use super::headers::Headers;
use super::store::{
    Condition, Features, Op, RequestCounts, Requests, SiteStore, Stored, Version, META_BLAKE3,
};
use super::{Message, SiteError};
use crate::error::{Error, Result};
use crate::open::retry_config;

/// The public API endpoint.
pub const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";
/// Largest JSON answer read (an object resource, a listing page).
const MAX_JSON: u64 = 32 * 1024 * 1024;
/// Objects per listing page.
const PAGE: u32 = 1000;
/// Deletes in flight (the JSON API deletes one object per request).
const DELETE_JOBS: usize = 16;

/// A GCS website target.
#[derive(Debug)]
pub struct GcsSite {
    name: String,
    base: String,
    bucket: String,
    prefix: String,
    credentials: Arc<dyn CredentialProvider<Credential = GcpCredential>>,
    http: reqwest::Client,
    attempts: u32,
    counts: RequestCounts,
}

/// The object resource fields we read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resource {
    name: String,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    generation: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    cache_control: Option<String>,
    #[serde(default)]
    content_encoding: Option<String>,
    #[serde(default)]
    content_disposition: Option<String>,
    #[serde(default)]
    content_language: Option<String>,
    #[serde(default)]
    metadata: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listing {
    #[serde(default)]
    items: Vec<Resource>,
    #[serde(default)]
    next_page_token: Option<String>,
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

impl Resource {
    fn stored(self) -> Stored {
        let blake3 = self
            .metadata
            .as_ref()
            .and_then(|m| m.get(META_BLAKE3))
            .and_then(|h| FileHash::parse_hex(h));
        Stored {
            size: self.size.and_then(|s| s.parse().ok()).unwrap_or(0),
            ours: blake3.is_some(),
            blake3,
            headers: Some(Headers {
                content_type: self.content_type.unwrap_or_default(),
                cache_control: nonempty(self.cache_control),
                content_encoding: nonempty(self.content_encoding),
                content_disposition: nonempty(self.content_disposition),
                content_language: nonempty(self.content_language),
            }),
        }
    }
}

/// The `gcs_base_url` of a service-account file, if it names one (emulators do).
fn base_from_service_account(path: &str) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    if text.len() > 1024 * 1024 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    v.get("gcs_base_url")?.as_str().map(str::to_string)
}

impl GcsSite {
    /// Open `gs+site://bucket/prefix` from the environment.
    pub fn open(bucket: &str, prefix: &str) -> Result<GcsSite> {
        let b = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
        GcsSite::new(
            &format!(
                "gs+site://{bucket}{}",
                if prefix.is_empty() {
                    String::new()
                } else {
                    format!("/{prefix}")
                }
            ),
            b,
            prefix,
        )
    }

    /// A GCS website target from a configured builder (tests give the emulator's service-account
    /// file here).
    pub fn new(name: &str, b: GoogleCloudStorageBuilder, prefix: &str) -> Result<GcsSite> {
        let bucket = b
            .get_config_value(&GoogleConfigKey::Bucket)
            .unwrap_or_default();
        let base = b
            .get_config_value(&GoogleConfigKey::ServiceAccount)
            .and_then(|p| base_from_service_account(&p))
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        let gcs = b
            .with_retry(retry_config())
            .build()
            .map_err(|e| Error::Backend {
                target: name.to_string(),
                op: "configure",
                object: String::new(),
                retryable: false,
                source: Box::new(e),
            })?;
        Ok(GcsSite {
            name: name.to_string(),
            base: base.trim_end_matches('/').to_string(),
            bucket,
            prefix: prefix.trim_matches('/').to_string(),
            credentials: Arc::clone(gcs.credentials()),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(300))
                .build()
                .unwrap_or_default(),
            attempts: retry_config().max_retries as u32 + 1,
            counts: RequestCounts::default(),
        })
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn object_url(&self, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            utf8_percent_encode(&self.bucket, NON_ALPHANUMERIC),
            utf8_percent_encode(&self.full_key(key), NON_ALPHANUMERIC)
        )
    }

    fn backend(
        &self,
        op: &'static str,
        key: &str,
        e: impl std::fmt::Display,
        retryable: bool,
    ) -> Error {
        Error::Backend {
            target: self.name.clone(),
            op,
            object: key.to_string(),
            retryable,
            source: Box::new(Message(e.to_string())),
        }
    }

    /// Send a request built by `build` (again on each attempt), retrying 429, 5xx and transport
    /// failures with backoff. Returns the response, whatever its status otherwise.
    async fn send(
        &self,
        op: &'static str,
        key: &str,
        build: impl Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder>,
    ) -> Result<reqwest::Response> {
        let mut delay = Duration::from_millis(100);
        let mut n = 1;
        loop {
            let cred = self
                .credentials
                .get_credential()
                .await
                .map_err(|e| self.backend(op, key, e, true))?;
            let mut rb = build(&self.http)?;
            if !cred.bearer.is_empty() {
                rb = rb.bearer_auth(&cred.bearer);
            }
            let res = rb.send().await;
            let retry = match &res {
                Ok(r) => {
                    r.status().is_server_error()
                        || r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS
                }
                Err(e) => e.is_timeout() || e.is_connect() || e.is_request() || e.is_body(),
            };
            if retry && n < self.attempts {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                n += 1;
                continue;
            }
            return match res {
                Ok(r) => Ok(r),
                Err(e) => Err(self.backend(op, key, e.without_url(), retry)),
            };
        }
    }

    async fn fail(&self, op: &'static str, key: &str, r: reqwest::Response) -> Error {
        let status = r.status();
        let body = read_capped(r, 4096).await.unwrap_or_default();
        let retryable =
            status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        self.backend(
            op,
            key,
            format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ),
            retryable,
        )
    }

    async fn delete_one(&self, k: String) -> Result<()> {
        self.counts.add(Op::Delete, 1);
        let url = self.object_url(&k);
        let r = self.send("delete", &k, |c| Ok(c.delete(&url))).await?;
        if r.status().is_success() || r.status() == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.fail("delete", &k, r).await)
        }
    }

    async fn resource(&self, key: &str) -> Result<Option<Resource>> {
        self.counts.add(Op::Head, 1);
        let url = self.object_url(key);
        let r = self.send("head", key, |c| Ok(c.get(&url))).await?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(self.fail("head", key, r).await);
        }
        let body = read_capped(r, MAX_JSON)
            .await
            .map_err(|e| self.backend("head", key, e, true))?;
        serde_json::from_slice(&body).map(Some).map_err(|e| {
            self.backend(
                "head",
                key,
                format!("unreadable object resource: {e}"),
                false,
            )
        })
    }

    fn metadata_json(&self, hash: Option<&FileHash>, h: &Headers) -> serde_json::Value {
        let mut v = serde_json::json!({
            "contentType": h.content_type,
            "cacheControl": h.cache_control,
            "contentEncoding": h.content_encoding,
            "contentDisposition": h.content_disposition,
            "contentLanguage": h.content_language,
        });
        if let Some(hash) = hash {
            v["metadata"] = serde_json::json!({ META_BLAKE3: hash.hex() });
        }
        v
    }

    /// One multipart upload: metadata and bytes (`body`, `len` bytes) in one request.
    async fn upload(
        &self,
        key: &str,
        hash: Option<&FileHash>,
        h: &Headers,
        condition: Option<&Condition>,
        len: u64,
        body: impl Fn() -> Result<ByteStream>,
    ) -> Result<reqwest::Response> {
        let mut meta = self.metadata_json(hash, h);
        meta["name"] = serde_json::Value::String(self.full_key(key));
        let meta = meta.to_string();
        let boundary = format!("sitebundle-{}", blake3::hash(meta.as_bytes()).to_hex());
        let head = format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n--{boundary}\r\nContent-Type: {}\r\n\r\n",
            h.content_type
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let mut url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=multipart",
            self.base,
            utf8_percent_encode(&self.bucket, NON_ALPHANUMERIC)
        );
        match condition {
            Some(Condition::Absent) => url.push_str("&ifGenerationMatch=0"),
            Some(Condition::Matches(v)) => url.push_str(&format!("&ifGenerationMatch={}", v.0)),
            None => {}
        }
        let total = head.len() as u64 + len + tail.len() as u64;
        self.counts.add(Op::Put, 1);
        self.send("upload", key, |c| {
            let (head, tail) = (Bytes::from(head.clone()), Bytes::from(tail.clone()));
            let inner = body()?;
            let parts = futures::stream::iter([Ok::<_, std::io::Error>(head)])
                .chain(inner)
                .chain(futures::stream::iter([Ok(tail)]));
            Ok(c.post(&url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    format!("multipart/related; boundary={boundary}"),
                )
                .header(reqwest::header::CONTENT_LENGTH, total)
                .body(reqwest::Body::wrap_stream(parts)))
        })
        .await
    }
}

/// A request body's bytes as they are read.
type ByteStream = futures::stream::BoxStream<'static, std::io::Result<Bytes>>;

/// A file's bytes as a request body, read in chunks (never the whole file in memory).
fn file_body(path: &FsPath) -> Result<ByteStream> {
    let f = std::fs::File::open(path).map_err(Error::io("open", path))?;
    let f = tokio::fs::File::from_std(f);
    let stream = futures::stream::unfold(f, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 128 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    Ok(stream.boxed())
}

#[async_trait]
impl SiteStore for GcsSite {
    fn name(&self) -> &str {
        &self.name
    }

    fn features(&self) -> Features {
        Features {
            headers: true,
            metadata_in_listing: true,
        }
    }

    fn requests(&self) -> Requests {
        self.counts.snapshot()
    }

    async fn get_small(&self, key: &str, max: u64) -> Result<Option<(Bytes, Version)>> {
        let Some(res) = self.resource(key).await? else {
            return Ok(None);
        };
        let size: u64 = res
            .size
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if size > max {
            return Err(SiteError::BadMarker {
                target: self.name.clone(),
                what: key.to_string(),
                reason: format!("{size} bytes, more than the {max} allowed"),
            }
            .into());
        }
        let generation = res.generation.unwrap_or_default();
        let url = format!(
            "{}?alt=media&ifGenerationMatch={generation}",
            self.object_url(key)
        );
        self.counts.add(Op::Get, 1);
        let r = self.send("read", key, |c| Ok(c.get(&url))).await?;
        match r.status() {
            // Replaced between the two requests: report what we know; the caller's
            // compare-and-swap will see the new generation.
            reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::PRECONDITION_FAILED => {
                return Err(SiteError::MarkerConflict {
                    target: self.name.clone(),
                    expected: format!("generation {generation}"),
                }
                .into())
            }
            s if !s.is_success() => return Err(self.fail("read", key, r).await),
            _ => {}
        }
        let body = read_capped(r, max)
            .await
            .map_err(|e| self.backend("read", key, e, true))?;
        Ok(Some((Bytes::from(body), Version(generation))))
    }

    async fn put_small(
        &self,
        key: &str,
        body: Bytes,
        headers: &Headers,
        condition: Option<Condition>,
    ) -> Result<Version> {
        let len = body.len() as u64;
        let r = self
            .upload(key, None, headers, condition.as_ref(), len, || {
                Ok(futures::stream::iter([Ok(body.clone())]).boxed())
            })
            .await?;
        if r.status() == reqwest::StatusCode::PRECONDITION_FAILED {
            return Err(SiteError::MarkerConflict {
                target: self.name.clone(),
                expected: match condition {
                    Some(Condition::Matches(v)) => format!("generation {}", v.0),
                    _ => "no marker".into(),
                },
            }
            .into());
        }
        if !r.status().is_success() {
            return Err(self.fail("write", key, r).await);
        }
        let body = read_capped(r, MAX_JSON)
            .await
            .map_err(|e| self.backend("write", key, e, true))?;
        let res: Resource = serde_json::from_slice(&body).map_err(|e| {
            self.backend(
                "write",
                key,
                format!("unreadable object resource: {e}"),
                false,
            )
        })?;
        Ok(Version(res.generation.unwrap_or_default()))
    }

    async fn put_file(
        &self,
        key: &str,
        file: &FsPath,
        size: u64,
        hash: &FileHash,
        headers: &Headers,
    ) -> Result<()> {
        let r = self
            .upload(key, Some(hash), headers, None, size, || file_body(file))
            .await?;
        if !r.status().is_success() {
            return Err(self.fail("upload", key, r).await);
        }
        Ok(())
    }

    async fn set_headers(&self, key: &str, hash: &FileHash, headers: &Headers) -> Result<()> {
        self.counts.add(Op::Copy, 1);
        let url = self.object_url(key);
        let body = self.metadata_json(Some(hash), headers).to_string();
        let r = self
            .send("set headers of", key, |c| {
                Ok(c.patch(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone()))
            })
            .await?;
        if !r.status().is_success() {
            return Err(self.fail("set headers of", key, r).await);
        }
        Ok(())
    }

    async fn head(&self, key: &str) -> Result<Option<Stored>> {
        Ok(self.resource(key).await?.map(Resource::stored))
    }

    async fn list(&self) -> Result<Vec<(String, Stored)>> {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/storage/v1/b/{}/o?maxResults={PAGE}&prefix={}",
                self.base,
                utf8_percent_encode(&self.bucket, NON_ALPHANUMERIC),
                utf8_percent_encode(&prefix, NON_ALPHANUMERIC)
            );
            if let Some(t) = &token {
                url.push_str(&format!(
                    "&pageToken={}",
                    utf8_percent_encode(t, NON_ALPHANUMERIC)
                ));
            }
            self.counts.add(Op::List, 1);
            let r = self.send("list", &prefix, |c| Ok(c.get(&url))).await?;
            if !r.status().is_success() {
                return Err(self.fail("list", &prefix, r).await);
            }
            let body = read_capped(r, MAX_JSON)
                .await
                .map_err(|e| self.backend("list", &prefix, e, true))?;
            let page: Listing = serde_json::from_slice(&body).map_err(|e| {
                self.backend("list", &prefix, format!("unreadable listing: {e}"), false)
            })?;
            for item in page.items {
                if let Some(k) = item.name.strip_prefix(prefix.as_str()) {
                    if !k.is_empty() {
                        let k = k.to_string();
                        out.push((k, item.stored()));
                    }
                }
            }
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn delete(&self, keys: &[String]) -> Result<()> {
        let results: Vec<Result<()>> = futures::stream::iter(keys.to_vec())
            .map(|k| self.delete_one(k))
            .buffer_unordered(DELETE_JOBS)
            .collect()
            .await;
        results.into_iter().collect()
    }
}
