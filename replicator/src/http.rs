//! The HTTP origin target (read-only): any static file server (nginx, a CDN) serving the files
//! of a directory target. Only plain `GET`/`HEAD`/`Range` are used, so no WebDAV or listing is
//! needed: channels are listed from `index.json`, and history is read by fetching
//! `history/<channel>/<seq>.json` from 1 until the first 404.
//!
//! Every write answers [`Error::ReadOnly`]: publish to the directory (or bucket) the origin serves.

use std::path::Path;

use async_trait::async_trait;
use bundle::manifest::KEY_REF_NAME;
use bundle::store::LayoutIndex;
use bundle::Digest;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reqwest::StatusCode;

use crate::channel::{validate_channel, ChannelRecord, HistoryEvent};
use crate::env::{self, var};
use crate::error::{Error, Result};
use crate::target::{check_digest, BlobStream, Capabilities, ChannelMode, Target};

/// Most history events read from an origin (a bound on the probing loop).
const MAX_HISTORY: u64 = 100_000;

/// A read-only HTTP(S) origin.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    name: String,
    base: url::Url,
    client: reqwest::Client,
}

impl HttpTarget {
    /// An origin at `base` (ending with `/`); extra CA from `SITEBUNDLE_REGISTRY_CA`.
    pub fn new(base: url::Url) -> Result<HttpTarget> {
        let name = base.to_string();
        let mut b = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(60))
            .no_proxy();
        if let Some(ca) = var(env::SITEBUNDLE_REGISTRY_CA) {
            let pem = std::fs::read(&ca).map_err(Error::io("read CA file", &ca))?;
            for c in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::Config {
                what: ca.clone(),
                reason: format!("not a PEM certificate bundle: {e}"),
            })? {
                b = b.add_root_certificate(c);
            }
        }
        let client = b.build().map_err(|e| Error::Backend {
            target: name.clone(),
            op: "set up client for",
            object: String::new(),
            retryable: false,
            source: Box::new(e),
        })?;
        Ok(HttpTarget { name, base, client })
    }

    fn url(&self, rel: &str) -> Result<url::Url> {
        self.base.join(rel).map_err(|e| Error::InvalidUrl {
            url: self.name.clone(),
            reason: e.to_string(),
        })
    }

    fn err(&self, op: &'static str, object: impl ToString, e: reqwest::Error) -> Error {
        let retryable = e.is_timeout()
            || e.is_connect()
            || e.is_body()
            || e.is_request()
            || e.status().is_some_and(|s| s.is_server_error());
        Error::Backend {
            target: self.name.clone(),
            op,
            object: object.to_string(),
            retryable,
            source: Box::new(e.without_url()),
        }
    }

    /// GET `rel`; `None` on 404.
    async fn get(
        &self,
        rel: &str,
        op: &'static str,
        range: Option<(u64, u64)>,
    ) -> Result<Option<reqwest::Response>> {
        let mut req = self.client.get(self.url(rel)?);
        if let Some((off, len)) = range {
            req = req.header(
                reqwest::header::RANGE,
                format!("bytes={off}-{}", off + len.max(1) - 1),
            );
        }
        let r = req.send().await.map_err(|e| self.err(op, rel, e))?;
        if r.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let r = r.error_for_status().map_err(|e| self.err(op, rel, e))?;
        Ok(Some(r))
    }

    async fn get_bytes(&self, rel: &str, op: &'static str, max: u64) -> Result<Option<Bytes>> {
        let Some(r) = self.get(rel, op, None).await? else {
            return Ok(None);
        };
        if r.content_length().is_some_and(|n| n > max) {
            return Err(self.corrupt(rel, format!("larger than {max} bytes")));
        }
        let b = r.bytes().await.map_err(|e| self.err(op, rel, e))?;
        if b.len() as u64 > max {
            return Err(self.corrupt(rel, format!("larger than {max} bytes")));
        }
        Ok(Some(b))
    }

    fn corrupt(&self, what: impl ToString, reason: impl ToString) -> Error {
        Error::Corrupt {
            target: self.name.clone(),
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }

    fn read_only(&self, op: &'static str) -> Error {
        Error::ReadOnly {
            target: self.name.clone(),
            op,
        }
    }
}

fn blob_rel(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Largest small JSON object (channel record, history event, index.json) read from an origin.
const MAX_SMALL_JSON: u64 = 4 * 1024 * 1024;

#[async_trait]
impl Target for HttpTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            writable: false,
            channels: ChannelMode::ReadOnly,
            history: true,
        }
    }

    async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let rel = blob_rel(digest);
        let r = self
            .client
            .head(self.url(&rel)?)
            .send()
            .await
            .map_err(|e| self.err("check blob", digest, e))?;
        match r.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            s => Err(Error::Backend {
                target: self.name.clone(),
                op: "check blob",
                object: digest.to_string(),
                retryable: s.is_server_error(),
                source: format!("HTTP {s}").into(),
            }),
        }
    }

    async fn get_blob(&self, digest: &Digest) -> Result<BlobStream> {
        let rel = blob_rel(digest);
        let r = self
            .get(&rel, "get blob", None)
            .await?
            .ok_or_else(|| Error::NotFound {
                target: self.name.clone(),
                what: format!("blob {digest}"),
            })?;
        let me = self.clone();
        let d = *digest;
        Ok(r.bytes_stream()
            .map_err(move |e| me.err("read blob", d, e))
            .boxed())
    }

    async fn get_blob_range(&self, digest: &Digest, offset: u64, len: u64) -> Result<Bytes> {
        let rel = blob_rel(digest);
        let r = self
            .get(&rel, "read range of", Some((offset, len)))
            .await?
            .ok_or_else(|| Error::NotFound {
                target: self.name.clone(),
                what: format!("blob {digest}"),
            })?;
        let partial = r.status() == StatusCode::PARTIAL_CONTENT;
        let b = r
            .bytes()
            .await
            .map_err(|e| self.err("read range of", digest, e))?;
        let b = if partial {
            b
        } else {
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
            let end = start.saturating_add(len as usize).min(b.len());
            b.slice(start..end)
        };
        if b.len() as u64 != len {
            return Err(self.corrupt(
                format!("blob {digest}"),
                format!("range {offset}+{len} returned {} bytes", b.len()),
            ));
        }
        Ok(b)
    }

    async fn get_manifest(&self, digest: &Digest) -> Result<Bytes> {
        let rel = blob_rel(digest);
        let b = self
            .get_bytes(&rel, "get manifest", bundle::manifest::MAX_JSON_BYTES)
            .await?
            .ok_or_else(|| Error::NotFound {
                target: self.name.clone(),
                what: format!("manifest {digest}"),
            })?;
        let b2 = b.clone();
        let found = crate::blocking::run(move || Digest::of(&b2)).await?;
        check_digest(self, &format!("manifest {digest}"), digest, &found)?;
        Ok(b)
    }

    async fn read_channel(&self, channel: &str) -> Result<Option<ChannelRecord>> {
        validate_channel(channel)?;
        let rel = format!("channels/{channel}.json");
        match self.get_bytes(&rel, "read channel", MAX_SMALL_JSON).await? {
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| self.corrupt(&rel, e)),
            None => Ok(None),
        }
    }

    async fn list_channels(&self) -> Result<Vec<String>> {
        let Some(b) = self
            .get_bytes("index.json", "list channels", MAX_SMALL_JSON)
            .await?
        else {
            return Ok(Vec::new());
        };
        let idx: LayoutIndex =
            serde_json::from_slice(&b).map_err(|e| self.corrupt("index.json", e))?;
        let mut out: Vec<String> = idx
            .manifests
            .iter()
            .filter_map(|d| d.annotations.get(KEY_REF_NAME).cloned())
            .filter(|c| validate_channel(c).is_ok())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn history(&self, channel: &str) -> Result<Vec<HistoryEvent>> {
        validate_channel(channel)?;
        let mut out = Vec::new();
        for seq in 1..=MAX_HISTORY {
            let rel = format!("history/{channel}/{seq:010}.json");
            match self.get_bytes(&rel, "read history", MAX_SMALL_JSON).await? {
                Some(b) => out.push(
                    serde_json::from_slice::<HistoryEvent>(&b)
                        .map_err(|e| self.corrupt(&rel, e))?,
                ),
                None => break,
            }
        }
        Ok(out)
    }

    async fn put_blob(&self, _: &Digest, _: u64, _: &Path) -> Result<()> {
        Err(self.read_only("upload a blob"))
    }

    async fn put_manifest(&self, _: &Digest, _: Bytes) -> Result<()> {
        Err(self.read_only("upload a manifest"))
    }

    async fn swap_channel(
        &self,
        _: &str,
        _: Option<&ChannelRecord>,
        _: &ChannelRecord,
    ) -> Result<()> {
        Err(self.read_only("move a channel"))
    }

    async fn append_history(&self, _: &HistoryEvent) -> Result<()> {
        Err(self.read_only("record history"))
    }
}
