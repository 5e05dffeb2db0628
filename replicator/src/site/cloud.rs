//! S3 and Azure website targets, through `object_store` plus one signed request of their own.
//!
//! Writes, reads, listings and deletes go through `object_store` (its credential chains, retries
//! with backoff on 5xx / 503 SlowDown / 429, multipart uploads above [`SINGLE_PUT_MAX`], batch
//! deletes). Headers travel as `object_store` attributes; the BLAKE3 as user metadata
//! (`x-amz-meta-sitebundle-blake3`, `x-ms-meta-sitebundle_blake3`). The one thing
//! `object_store` cannot do is change an object's headers without sending its bytes again, so
//! that request is built here and signed with `object_store`'s own signers (credentials from the
//! same provider, refreshed as it refreshes them):
//! - S3: `CopyObject` onto itself with `x-amz-metadata-directive: REPLACE`;
//! - Azure: `Set Blob Properties` (`?comp=properties`), which replaces the standard headers and
//!   leaves the metadata alone.
//!
//! Per-store behaviour users ask about (also in `spec/protocol.md`):
//! - S3 serves the stored bytes with the stored `Content-Encoding` whatever the client accepts
//!   (no negotiation). Index and error documents are bucket settings of the website endpoint;
//!   behind CloudFront with OAC the bucket stays private and CloudFront's default root object
//!   only covers `/`.
//! - Azure `$web` keeps the standard headers only (no custom headers, no per-object redirects);
//!   index and error documents are the account's static-website settings.

use std::path::Path as FsPath;
use std::sync::Arc;

use async_trait::async_trait;
use bundle::FileHash;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer, AwsCredential};
use object_store::azure::{
    AzureAuthorizer, AzureConfigKey, AzureCredential, MicrosoftAzureBuilder,
};
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, CredentialProvider, GetOptions, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, UpdateVersion,
};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::headers::Headers;
use super::store::{
    Condition, Features, Op, RequestCounts, Requests, SiteStore, Stored, Version, META_BLAKE3,
    META_BLAKE3_AZURE,
};
use super::{SiteError, SiteUrl};
use crate::error::{Error, Result};
use crate::open::retry_config;

/// Files above this go up as multipart uploads (memory stays bounded by the part size).
pub const SINGLE_PUT_MAX: u64 = 8 * 1024 * 1024;
/// Part size of multipart uploads (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts in flight per multipart upload.
const PART_CONCURRENCY: usize = 2;
/// Keys per batch delete request (S3's `DeleteObjects` limit).
const DELETE_BATCH: usize = 1000;
/// Keys per listing page (S3 and Azure defaults), for counting requests.
const LIST_PAGE: u64 = 1000;

/// Characters left as they are in a URL path segment (RFC 3986 unreserved).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encode a key for a URL path, keeping `/` between segments.
pub(crate) fn encode_key(key: &str) -> String {
    key.split('/')
        .map(|s| utf8_percent_encode(s, PATH_SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

#[derive(Debug)]
enum Flavor {
    S3 {
        credentials: Arc<dyn CredentialProvider<Credential = AwsCredential>>,
        /// `https://s3.<region>.amazonaws.com/<bucket>` or the configured endpoint's form.
        bucket_url: String,
        bucket: String,
        region: String,
    },
    Azure {
        credentials: Arc<dyn CredentialProvider<Credential = AzureCredential>>,
        /// `https://<account>.blob.core.windows.net/<container>` or the endpoint's form.
        container_url: String,
        account: String,
    },
}

/// An S3 or Azure website target.
#[derive(Debug)]
pub struct CloudSite {
    name: String,
    store: Arc<dyn ObjectStore>,
    prefix: String,
    flavor: Flavor,
    http: reqwest::Client,
    counts: RequestCounts,
}

fn configure_err(name: &str, e: object_store::Error) -> Error {
    Error::Backend {
        target: name.to_string(),
        op: "configure",
        object: String::new(),
        retryable: false,
        source: Box::new(e),
    }
}

impl CloudSite {
    /// Open `url` (an S3 or Azure website URL) from the environment's settings and credentials.
    pub fn open(url: &SiteUrl) -> Result<CloudSite> {
        let name = url.to_string();
        match url {
            SiteUrl::S3 { bucket, prefix } => {
                let b = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry_config());
                CloudSite::s3(&name, b, prefix)
            }
            SiteUrl::Azure { container, prefix } => {
                let b = MicrosoftAzureBuilder::from_env()
                    .with_container_name(container)
                    .with_retry(retry_config());
                CloudSite::azure(&name, b, prefix)
            }
            _ => Err(Error::Usage(format!(
                "{name} is not an S3 or Azure website URL"
            ))),
        }
    }

    /// An S3 website target from a configured builder (tests give endpoints and keys here).
    pub fn s3(name: &str, b: AmazonS3Builder, prefix: &str) -> Result<CloudSite> {
        let bucket = b
            .get_config_value(&AmazonS3ConfigKey::Bucket)
            .unwrap_or_default();
        let region = b
            .get_config_value(&AmazonS3ConfigKey::Region)
            .unwrap_or_else(|| "us-east-1".to_string());
        let virtual_hosted = b
            .get_config_value(&AmazonS3ConfigKey::VirtualHostedStyleRequest)
            .is_some_and(|v| v == "true");
        // The same rule object_store applies to find the bucket's URL.
        let bucket_url = match (
            b.get_config_value(&AmazonS3ConfigKey::Endpoint),
            virtual_hosted,
        ) {
            (Some(e), true) => e,
            (Some(e), false) => format!("{}/{bucket}", e.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        let s3 = b.build().map_err(|e| configure_err(name, e))?;
        let credentials = Arc::clone(s3.credentials());
        Ok(CloudSite {
            name: name.to_string(),
            store: Arc::new(s3),
            prefix: prefix.trim_matches('/').to_string(),
            flavor: Flavor::S3 {
                credentials,
                bucket_url,
                bucket,
                region,
            },
            http: raw_client(),
            counts: RequestCounts::default(),
        })
    }

    /// An Azure website target from a configured builder.
    pub fn azure(name: &str, b: MicrosoftAzureBuilder, prefix: &str) -> Result<CloudSite> {
        let container = b
            .get_config_value(&AzureConfigKey::ContainerName)
            .unwrap_or_default();
        let emulator = b
            .get_config_value(&AzureConfigKey::UseEmulator)
            .is_some_and(|v| v == "true");
        let account = b
            .get_config_value(&AzureConfigKey::AccountName)
            .unwrap_or_else(|| "devstoreaccount1".to_string());
        let account_url = if emulator {
            let base = crate::env::var("AZURITE_BLOB_STORAGE_URL")
                .unwrap_or_else(|| "http://127.0.0.1:10000".to_string());
            format!("{}/{account}", base.trim_end_matches('/'))
        } else {
            b.get_config_value(&AzureConfigKey::Endpoint)
                .unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"))
        };
        let container_url = format!(
            "{}/{}",
            account_url.trim_end_matches('/'),
            utf8_percent_encode(&container, PATH_SEGMENT)
        );
        let az = b.build().map_err(|e| configure_err(name, e))?;
        let credentials = Arc::clone(az.credentials());
        Ok(CloudSite {
            name: name.to_string(),
            store: Arc::new(az),
            prefix: prefix.trim_matches('/').to_string(),
            flavor: Flavor::Azure {
                credentials,
                container_url,
                account,
            },
            http: raw_client(),
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

    fn path(&self, key: &str) -> Result<Path> {
        let full = self.full_key(key);
        // `Path::parse` keeps every character as it is (`Path::from` would percent-encode `%`, `~`,
        // `[`... and the website would answer at another URL).
        Path::parse(&full).map_err(|e| {
            SiteError::BadKey {
                path: key.to_string(),
                reason: e.to_string(),
            }
            .into()
        })
    }

    fn meta_key(&self) -> &'static str {
        match self.flavor {
            Flavor::S3 { .. } => META_BLAKE3,
            Flavor::Azure { .. } => META_BLAKE3_AZURE,
        }
    }

    fn err(&self, op: &'static str, key: &str, e: object_store::Error) -> Error {
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound {
                target: self.name.clone(),
                what: key.to_string(),
            },
            e => {
                let retryable = matches!(e, object_store::Error::Generic { .. });
                Error::Backend {
                    target: self.name.clone(),
                    op,
                    object: key.to_string(),
                    retryable,
                    source: Box::new(e),
                }
            }
        }
    }

    fn attributes(&self, hash: Option<&FileHash>, h: &Headers) -> Attributes {
        let mut a = Attributes::new();
        a.insert(
            Attribute::ContentType,
            AttributeValue::from(h.content_type.clone()),
        );
        let opt = [
            (Attribute::CacheControl, &h.cache_control),
            (Attribute::ContentEncoding, &h.content_encoding),
            (Attribute::ContentDisposition, &h.content_disposition),
            (Attribute::ContentLanguage, &h.content_language),
        ];
        for (k, v) in opt {
            if let Some(v) = v {
                a.insert(k, AttributeValue::from(v.clone()));
            }
        }
        if let Some(hash) = hash {
            a.insert(
                Attribute::Metadata(self.meta_key().into()),
                AttributeValue::from(hash.hex()),
            );
        }
        a
    }

    fn stored(&self, size: u64, attrs: &Attributes) -> Stored {
        let get = |k: &Attribute| attrs.get(k).map(|v| v.as_ref().to_string());
        let blake3 =
            get(&Attribute::Metadata(self.meta_key().into())).and_then(|h| FileHash::parse_hex(&h));
        Stored {
            size,
            ours: blake3.is_some(),
            blake3,
            headers: Some(Headers {
                content_type: get(&Attribute::ContentType).unwrap_or_default(),
                cache_control: get(&Attribute::CacheControl),
                content_encoding: get(&Attribute::ContentEncoding),
                content_disposition: get(&Attribute::ContentDisposition),
                content_language: get(&Attribute::ContentLanguage),
            }),
        }
    }

    /// The signed header-only request (see the module docs).
    async fn header_request(&self, key: &str, hash: &FileHash, h: &Headers) -> Result<()> {
        let full = self.full_key(key);
        let backend = |e: Box<dyn std::error::Error + Send + Sync>, retryable| Error::Backend {
            target: self.name.clone(),
            op: "set headers of",
            object: key.to_string(),
            retryable,
            source: e,
        };
        let mut b = http::Request::builder().method(http::Method::PUT);
        let mut req = match &self.flavor {
            Flavor::S3 {
                bucket_url, bucket, ..
            } => {
                b = b
                    .uri(format!("{bucket_url}/{}", encode_key(&full)))
                    .header(
                        "x-amz-copy-source",
                        format!(
                            "/{}/{}",
                            utf8_percent_encode(bucket, PATH_SEGMENT),
                            encode_key(&full)
                        ),
                    )
                    .header("x-amz-metadata-directive", "REPLACE")
                    .header("content-type", &h.content_type)
                    .header(format!("x-amz-meta-{META_BLAKE3}"), hash.hex());
                for (n, v) in [
                    ("cache-control", &h.cache_control),
                    ("content-encoding", &h.content_encoding),
                    ("content-disposition", &h.content_disposition),
                    ("content-language", &h.content_language),
                ] {
                    if let Some(v) = v {
                        b = b.header(n, v);
                    }
                }
                b.body(object_store::client::HttpRequestBody::empty())
                    .map_err(|e| backend(Box::new(e), false))?
            }
            Flavor::Azure { container_url, .. } => {
                b = b
                    .uri(format!(
                        "{container_url}/{}?comp=properties",
                        encode_key(&full)
                    ))
                    .header("x-ms-blob-content-type", &h.content_type)
                    .header("content-length", "0");
                for (n, v) in [
                    ("x-ms-blob-cache-control", &h.cache_control),
                    ("x-ms-blob-content-encoding", &h.content_encoding),
                    ("x-ms-blob-content-disposition", &h.content_disposition),
                    ("x-ms-blob-content-language", &h.content_language),
                ] {
                    if let Some(v) = v {
                        b = b.header(n, v);
                    }
                }
                b.body(object_store::client::HttpRequestBody::empty())
                    .map_err(|e| backend(Box::new(e), false))?
            }
        };
        match &self.flavor {
            Flavor::S3 {
                credentials,
                region,
                ..
            } => {
                let cred = credentials
                    .get_credential()
                    .await
                    .map_err(|e| backend(Box::new(e), true))?;
                AwsAuthorizer::new(&cred, "s3", region)
                    .try_authorize(&mut req, None)
                    .map_err(|e| backend(Box::new(e), false))?;
            }
            Flavor::Azure {
                credentials,
                account,
                ..
            } => {
                let cred = credentials
                    .get_credential()
                    .await
                    .map_err(|e| backend(Box::new(e), true))?;
                AzureAuthorizer::new(&cred, account)
                    .try_authorize(&mut req)
                    .map_err(|e| backend(Box::new(e), false))?;
            }
        }
        let (parts, _) = req.into_parts();
        let url = parts.uri.to_string();
        let resp = self
            .http
            .request(parts.method, &url)
            .headers(parts.headers)
            .body(Vec::new())
            .send()
            .await
            .map_err(|e| {
                let retryable = e.is_timeout() || e.is_connect() || e.is_request();
                backend(
                    Box::new(super::Message(e.without_url().to_string())),
                    retryable,
                )
            })?;
        let status = resp.status();
        // A copy can answer 200 with an error document in the body (S3); read a bounded body.
        let body = super::fetch::read_capped(resp, 64 * 1024)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        if status.is_success() && !text.contains("<Error>") {
            return Ok(());
        }
        let retryable = status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || text.contains("SlowDown")
            || text.contains("InternalError");
        let detail: String = text.chars().take(300).collect();
        Err(backend(
            Box::new(super::Message(format!("HTTP {status}: {detail}"))),
            retryable,
        ))
    }
}

/// Below this, a payload is an ordinary heap buffer; at or above it, an anonymous memory map.
const MMAP_PAYLOAD_MIN: u64 = 128 * 1024;

/// `len` bytes of `file` at `offset`, as an upload payload. Large payloads live in anonymous
/// memory maps, not on the heap: many uploads of different sizes on several threads otherwise
/// leave the allocator holding freed buffers in per-thread arenas (glibc raises its mmap threshold
/// after each large free), and the RSS of a long publish grows with the site; a map is returned
/// to the kernel when the upload drops it.
async fn read_chunk(file: &FsPath, offset: u64, len: u64) -> Result<Bytes> {
    let path = file.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<Bytes> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&path).map_err(Error::io("open", &path))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(Error::io("seek", &path))?;
        let n = usize::try_from(len).map_err(|_| Error::Usage("file part too large".into()))?;
        if len < MMAP_PAYLOAD_MIN {
            let mut v = vec![0u8; n];
            f.read_exact(&mut v).map_err(Error::io("read", &path))?;
            return Ok(Bytes::from(v));
        }
        let mut m = memmap2::MmapMut::map_anon(n).map_err(Error::io("map memory for", &path))?;
        f.read_exact(&mut m[..]).map_err(Error::io("read", &path))?;
        let m = m
            .make_read_only()
            .map_err(Error::io("map memory for", &path))?;
        Ok(Bytes::from_owner(m))
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))?
}

/// The client for the signed requests built here (no redirects: a signed request is for one
/// host).
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap_or_default()
}

#[async_trait]
impl SiteStore for CloudSite {
    fn name(&self) -> &str {
        &self.name
    }

    fn features(&self) -> Features {
        Features {
            headers: true,
            metadata_in_listing: false,
        }
    }

    fn requests(&self) -> Requests {
        self.counts.snapshot()
    }

    async fn get_small(&self, key: &str, max: u64) -> Result<Option<(Bytes, Version)>> {
        let path = self.path(key)?;
        self.counts.add(Op::Get, 1);
        let r = match self.store.get(&path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err("read", key, e)),
        };
        if r.meta.size > max {
            return Err(SiteError::BadMarker {
                target: self.name.clone(),
                what: key.to_string(),
                reason: format!("{} bytes, more than the {max} allowed", r.meta.size),
            }
            .into());
        }
        let version = Version(r.meta.e_tag.clone().unwrap_or_default());
        let mut s = r.into_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(|e| self.err("read", key, e))?;
            if (buf.len() + chunk.len()) as u64 > max {
                return Err(SiteError::BadMarker {
                    target: self.name.clone(),
                    what: key.to_string(),
                    reason: format!("more than the {max} bytes allowed"),
                }
                .into());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Some((Bytes::from(buf), version)))
    }

    async fn put_small(
        &self,
        key: &str,
        body: Bytes,
        headers: &Headers,
        condition: Option<Condition>,
    ) -> Result<Version> {
        let path = self.path(key)?;
        let mode = match &condition {
            None => PutMode::Overwrite,
            Some(Condition::Absent) => PutMode::Create,
            Some(Condition::Matches(v)) => PutMode::Update(UpdateVersion {
                e_tag: Some(v.0.clone()),
                version: None,
            }),
        };
        let opts = PutOptions {
            mode,
            attributes: self.attributes(None, headers),
            ..Default::default()
        };
        self.counts.add(Op::Put, 1);
        match self
            .store
            .put_opts(&path, PutPayload::from(body), opts)
            .await
        {
            Ok(r) => Ok(Version(r.e_tag.unwrap_or_default())),
            Err(object_store::Error::Precondition { .. })
            | Err(object_store::Error::AlreadyExists { .. }) => Err(SiteError::MarkerConflict {
                target: self.name.clone(),
                expected: match condition {
                    Some(Condition::Matches(v)) => format!("version {}", v.0),
                    _ => "no marker".into(),
                },
            }
            .into()),
            Err(e) => Err(self.err("write", key, e)),
        }
    }

    async fn put_file(
        &self,
        key: &str,
        file: &FsPath,
        size: u64,
        hash: &FileHash,
        headers: &Headers,
    ) -> Result<()> {
        let path = self.path(key)?;
        let attributes = self.attributes(Some(hash), headers);
        if size <= SINGLE_PUT_MAX {
            let bytes = read_chunk(file, 0, size).await?;
            self.counts.add(Op::Put, 1);
            let opts = PutOptions {
                attributes,
                ..Default::default()
            };
            self.store
                .put_opts(&path, bytes.into(), opts)
                .await
                .map_err(|e| self.err("upload", key, e))?;
            return Ok(());
        }
        let opts = PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let mut up = self
            .store
            .put_multipart_opts(&path, opts)
            .await
            .map_err(|e| self.err("start upload of", key, e))?;
        let parts = size.div_ceil(PART_SIZE as u64);
        self.counts.add(Op::Put, parts + 2);
        let mut inflight = futures::stream::FuturesUnordered::new();
        let mut result: Result<()> = Ok(());
        for i in 0..parts {
            let offset = i * PART_SIZE as u64;
            let len = (size - offset).min(PART_SIZE as u64);
            match read_chunk(file, offset, len).await {
                Ok(b) => inflight.push(up.put_part(b.into())),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            while inflight.len() >= PART_CONCURRENCY {
                if let Some(Err(e)) = inflight.next().await {
                    result = Err(self.err("upload part of", key, e));
                    break;
                }
            }
            if result.is_err() {
                break;
            }
        }
        while let Some(r) = inflight.next().await {
            if let (Err(e), true) = (r, result.is_ok()) {
                result = Err(self.err("upload part of", key, e));
            }
        }
        drop(inflight);
        match result {
            Ok(()) => {
                up.complete()
                    .await
                    .map_err(|e| self.err("complete upload of", key, e))?;
                Ok(())
            }
            Err(e) => {
                let _ = up.abort().await;
                Err(e)
            }
        }
    }

    async fn set_headers(&self, key: &str, hash: &FileHash, headers: &Headers) -> Result<()> {
        self.counts.add(Op::Copy, 1);
        self.header_request(key, hash, headers).await
    }

    async fn head(&self, key: &str) -> Result<Option<Stored>> {
        let path = self.path(key)?;
        self.counts.add(Op::Head, 1);
        let opts = GetOptions {
            head: true,
            ..Default::default()
        };
        match self.store.get_opts(&path, opts).await {
            Ok(r) => Ok(Some(self.stored(r.meta.size, &r.attributes))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("head", key, e)),
        }
    }

    async fn list(&self) -> Result<Vec<(String, Stored)>> {
        let prefix = if self.prefix.is_empty() {
            None
        } else {
            Some(Path::parse(&self.prefix).map_err(|e| SiteError::BadKey {
                path: self.prefix.clone(),
                reason: e.to_string(),
            })?)
        };
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(|e| self.err("list", &self.prefix, e))?;
        self.counts
            .add(Op::List, (metas.len() as u64).div_ceil(LIST_PAGE).max(1));
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let k = m
                    .location
                    .as_ref()
                    .strip_prefix(strip.as_str())?
                    .to_string();
                Some((
                    k,
                    Stored {
                        size: m.size,
                        blake3: None,
                        ours: false,
                        headers: None,
                    },
                ))
            })
            .collect())
    }

    async fn delete(&self, keys: &[String]) -> Result<()> {
        for chunk in keys.chunks(DELETE_BATCH) {
            let mut paths = Vec::with_capacity(chunk.len());
            for k in chunk {
                paths.push(Ok(self.path(k)?));
            }
            let batches = match self.flavor {
                Flavor::S3 { .. } => 1,
                Flavor::Azure { .. } => (chunk.len() as u64).div_ceil(256),
            };
            self.counts.add(Op::Delete, batches);
            let results: Vec<object_store::Result<Path>> = self
                .store
                .delete_stream(futures::stream::iter(paths).boxed())
                .collect()
                .await;
            for r in results {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        return Err(self.err("delete", &format!("{} key(s)", chunk.len()), e))
                    }
                }
            }
        }
        Ok(())
    }
}
