//! The HTTP origin target (read-only): any static file server (nginx, a CDN) serving the files
//! of a directory target. Only plain `GET`/`HEAD`/`Range` are used, so no WebDAV or listing is
//! needed: channels are listed from `index.json`, and history is read by fetching
//! `history/<channel>/<seq>.json` from 1 until the first 404. A bundle id is found with one GET
//! of its id record `ids/sha256/<hex>.json` ([`crate::resolve`]), or, on a layout written before
//! id records, of `index.json`.
//!
//! Every write answers [`Error::ReadOnly`]: publish to the directory (or bucket) the origin serves.

use std::path::Path;

use async_trait::async_trait;
use bundle::manifest::KEY_REF_NAME;
use bundle::store::LayoutIndex;
use bundle::Digest;
use bytes::Bytes;
use reqwest::header::{HeaderValue, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, RANGE};
use reqwest::{Method, StatusCode};

/// How long a channel record must have been unchanged when served for its validator to be kept
/// (see `read_channel_if_changed` below): more than the one-second granularity of
/// `Last-Modified` and of nginx's ETags.
const VALIDATOR_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(2);

use crate::channel::{validate_channel, ChannelRecord, HistoryEvent};
use crate::error::{Error, Result};
use crate::net::{self, Http, Request};
use crate::target::{
    check_digest, BlobStream, Capabilities, ChannelMode, ChannelRead, Target, Validator,
};

/// A read-only HTTP(S) origin. It holds no credentials; every answer is read through
/// [`crate::net`] (capped, paced), and redirects are followed only within the origin it was
/// given (same scheme, host and port): a redirect to another host, or from https to http, is
/// refused, for blobs too (unlike a registry, a static origin has no reason to send them
/// elsewhere).
#[derive(Debug, Clone)]
pub struct HttpTarget {
    name: String,
    base: url::Url,
    http: Http,
}

impl HttpTarget {
    /// An origin at `base` (ending with `/`); extra CA from `SITEBUNDLE_REGISTRY_CA`.
    pub fn new(base: url::Url) -> Result<HttpTarget> {
        let name = base.to_string();
        let ca = net::extra_ca()?;
        let pem = ca.as_ref().map(|(_, pem)| pem.as_slice());
        let key = crate::clients::key(&[
            b"http-origin",
            crate::clients::ca_marker(pem),
            pem.unwrap_or_default(),
        ]);
        let client = crate::clients::get(&key, || {
            net::client_builder(pem, ca.as_ref().map_or("", |(path, _)| path.as_str()))?
                .no_proxy()
                .build()
                .map_err(|e| net::backend(&name, "set up client for", "", e))
        })?;
        let http = Http::new(client, base.clone(), name.clone());
        Ok(HttpTarget { name, base, http })
    }

    fn url(&self, rel: &str) -> Result<url::Url> {
        self.base.join(rel).map_err(|e| Error::InvalidUrl {
            url: self.name.clone(),
            reason: e.to_string(),
        })
    }

    /// An answer that is neither success nor 404.
    async fn status_error(&self, r: reqwest::Response, op: &'static str, object: &str) -> Error {
        let status = r.status();
        let text = net::error_text(r).await;
        Error::Backend {
            target: self.name.clone(),
            op,
            object: object.to_string(),
            retryable: status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
            source: format!("HTTP {status}: {text}").into(),
        }
    }

    /// Send `req`; `None` on 404.
    async fn send(&self, req: Request) -> Result<Option<reqwest::Response>> {
        let r = self.http.send(&req, None).await?;
        if r.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(self.status_error(r, req.op, &req.what).await);
        }
        Ok(Some(r))
    }

    /// GET a small object of at most `max` bytes; `None` on 404.
    async fn get_bytes(&self, rel: &str, op: &'static str, max: u64) -> Result<Option<Bytes>> {
        let Some(r) = self.send(Request::get(self.url(rel)?, op, rel)).await? else {
            return Ok(None);
        };
        net::read_body(r, max, &self.name, op, rel).await.map(Some)
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

    fn blob_request(&self, d: &Digest, op: &'static str) -> Result<Request> {
        Ok(Request::get(
            self.url(&blob_rel(d))?,
            op,
            format!("blob {d}"),
        ))
    }
}

fn blob_rel(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

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
        let req = self.blob_request(digest, "check")?.method(Method::HEAD);
        Ok(self.send(req).await?.is_some())
    }

    async fn get_blob(&self, digest: &Digest) -> Result<BlobStream> {
        let req = self.blob_request(digest, "get")?;
        let what = req.what.clone();
        let r = self.send(req).await?.ok_or_else(|| Error::NotFound {
            target: self.name.clone(),
            what: what.clone(),
        })?;
        Ok(net::stream(r, &self.name, "read", &what))
    }

    async fn get_blob_range(&self, digest: &Digest, offset: u64, len: u64) -> Result<Bytes> {
        let range = HeaderValue::from_str(&format!("bytes={offset}-{}", offset + len.max(1) - 1))
            .map_err(|e| Error::Task(e.to_string()))?;
        let req = self
            .blob_request(digest, "read range of")?
            .header(RANGE, range);
        let what = req.what.clone();
        let r = self.send(req).await?.ok_or_else(|| Error::NotFound {
            target: self.name.clone(),
            what: what.clone(),
        })?;
        let partial = r.status() == StatusCode::PARTIAL_CONTENT;
        let b = net::read_range(r, partial, offset, len, &self.name, &what).await?;
        if b.len() as u64 != len {
            return Err(self.corrupt(
                &what,
                format!("range {offset}+{len} returned {} bytes", b.len()),
            ));
        }
        Ok(b)
    }

    async fn get_manifest(&self, digest: &Digest) -> Result<Bytes> {
        let rel = blob_rel(digest);
        let b = self
            .get_bytes(&rel, "get manifest", net::MAX_MANIFEST)
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
        match self
            .get_bytes(&rel, "read channel", net::MAX_RECORD)
            .await?
        {
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| self.corrupt(&rel, e)),
            None => Ok(None),
        }
    }

    /// One conditional `GET` of the channel file (`If-None-Match` with the ETag nginx and CDNs
    /// send, else `If-Modified-Since`); `304` is [`ChannelRead::Unchanged`]. Redirects follow
    /// the same rule as every request here (same origin only), and the body has the same cap.
    async fn read_channel_if_changed(
        &self,
        channel: &str,
        validator: Option<&Validator>,
    ) -> Result<ChannelRead> {
        validate_channel(channel)?;
        let rel = format!("channels/{channel}.json");
        let mut req = Request::get(self.url(&rel)?, "read channel", rel.clone());
        if let Some(v) = validator {
            let (name, value) = match v {
                Validator::ETag(t) => (IF_NONE_MATCH, t),
                Validator::LastModified(d) => (IF_MODIFIED_SINCE, d),
            };
            if let Ok(h) = HeaderValue::from_str(value) {
                req = req.header(name, h);
            }
        }
        let r = self.http.send(&req, None).await?;
        if r.status() == StatusCode::NOT_MODIFIED && validator.is_some() {
            return Ok(ChannelRead::Unchanged);
        }
        if r.status() == StatusCode::NOT_FOUND {
            return Ok(ChannelRead::Record {
                record: None,
                validator: None,
            });
        }
        if !r.status().is_success() {
            return Err(self.status_error(r, req.op, &req.what).await);
        }
        let header = |h| {
            r.headers()
                .get(h)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .and_then(Validator::checked)
        };
        // A validator is kept only for a record that had not changed for a while when it was
        // served: nginx's ETag (like Last-Modified) is made of the mtime in whole seconds and
        // the size, and two channel records of one channel have the same size, so a record
        // rewritten within the same second as the one we read would answer 304 with the old
        // record (a channel moved right after a push was missed). The same "too recent to
        // validate" rule HTTP caches use; without it the next read is a plain GET.
        let settled = {
            let date = |h| {
                r.headers()
                    .get(h)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
                    .and_then(|v| httpdate::parse_http_date(v).ok())
            };
            let served = date(reqwest::header::DATE).unwrap_or_else(std::time::SystemTime::now);
            date(LAST_MODIFIED).is_some_and(|m| {
                served
                    .duration_since(m)
                    .is_ok_and(|age| age >= VALIDATOR_MIN_AGE)
            })
        };
        let next = header(ETAG)
            .map(Validator::ETag)
            .or_else(|| header(LAST_MODIFIED).map(Validator::LastModified))
            .filter(|_| settled);
        let b = net::read_body(r, net::MAX_RECORD, &self.name, "read channel", &rel).await?;
        let record = serde_json::from_slice(&b).map_err(|e| self.corrupt(&rel, e))?;
        Ok(ChannelRead::Record {
            record: Some(record),
            validator: next,
        })
    }

    async fn list_channels(&self) -> Result<Vec<String>> {
        let Some(b) = self
            .get_bytes("index.json", "list channels", net::MAX_INDEX_JSON)
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
        let mut total = 0u64;
        for seq in 1.. {
            if out.len() >= net::MAX_HISTORY_EVENTS {
                return Err(self.corrupt(
                    format!("history/{channel}"),
                    format!("more than {} events", net::MAX_HISTORY_EVENTS),
                ));
            }
            let rel = format!("history/{channel}/{seq:010}.json");
            match self
                .get_bytes(&rel, "read history", net::MAX_RECORD)
                .await?
            {
                Some(b) => {
                    total += b.len() as u64;
                    if total > net::MAX_HISTORY_BYTES {
                        return Err(net::too_large(
                            &self.name,
                            &format!("history/{channel}"),
                            net::MAX_HISTORY_BYTES,
                        ));
                    }
                    out.push(
                        serde_json::from_slice::<HistoryEvent>(&b)
                            .map_err(|e| self.corrupt(&rel, e))?,
                    )
                }
                None => break,
            }
        }
        Ok(out)
    }

    async fn lookup_id(&self, id: &Digest) -> Result<Option<crate::resolve::Found>> {
        let rel = crate::resolve::id_record_key(id);
        let Some(b) = self
            .get_bytes(&rel, "read id record", net::MAX_RECORD)
            .await?
        else {
            return Ok(None);
        };
        let r: crate::resolve::IdRecord =
            serde_json::from_slice(&b).map_err(|e| self.corrupt(&rel, e))?;
        if r.id != *id {
            return Err(self.corrupt(&rel, format!("records bundle id {}", r.id)));
        }
        Ok(Some(crate::resolve::Found {
            manifest: r.manifest,
            bytes: None,
        }))
    }

    async fn lookup_id_legacy(&self, id: &Digest) -> Result<Option<Digest>> {
        match self
            .get_bytes("index.json", "read", net::MAX_INDEX_JSON)
            .await?
        {
            Some(b) => crate::resolve::id_in_layout_index(&b, id)
                .map_err(|e| self.corrupt("index.json", e)),
            None => Ok(None),
        }
    }

    async fn record_id(&self, _: &Digest, _: &Bytes) -> Result<()> {
        Err(self.read_only("record a bundle id"))
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
