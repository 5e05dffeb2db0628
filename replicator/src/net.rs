//! Talking to origins within bounds: sizes, rates, redirects and where credentials may go.
//!
//! Every byte a target sends is hostile until its digest says otherwise, so this module is the
//! one place where HTTP answers are read:
//!
//! - **Sizes.** Every body read into memory goes through [`collect`] (or [`read_body`] for a
//!   reqwest response), which refuses it as soon as it passes its cap, *while reading*; a
//!   `Content-Length` (or an object store's declared size) above the cap is refused before the
//!   first byte. The caps are the `MAX_*` constants below, listed in `spec/protocol.md`. Streams
//!   written to disk are bounded by their descriptor's size by their readers
//!   ([`crate::download_blob`]).
//! - **Rates.** A body that arrives slower than [`Pace`] allows (on average, over each window) is
//!   cut, so a 100 B/s origin cannot hold a pull for hours; the whole operation also has a
//!   deadline per target (`sitebundle pull --timeout`, `sitebundle-init --timeout`).
//! - **Redirects.** Every reqwest client is built by [`client_builder`] with redirects off;
//!   [`Http::send`] follows them by hand under [`Follow`]: within the configured origin only,
//!   never from `https` to `http`, at most [`MAX_REDIRECTS`] hops. The one exception is a GET
//!   or HEAD of a blob (whose bytes are then verified against its digest), which may go to another
//!   host (registries send blob downloads to S3 or a CDN), **without** credentials and still never
//!   from `https` to `http`.
//! - **Credentials** are attached by [`Http::send`] only to requests addressed to the configured
//!   origin (scheme, host and port); the registry token exchange has its own rule
//!   ([`crate::registry`]). Object-store clients get the same redirect rule through
//!   [`SafeConnector`], so a signed request is never replayed to another host.
//!
//! - **Allow-list.** When the binary sets one ([`crate::allow`]), every request [`Http::send`]
//!   sends (each redirect hop too) and every redirect an object-store client follows is checked
//!   against it first.
//!
//! URLs in messages go through [`redact_url`]: no userinfo, no query (a presigned URL's signature
//! lives there), no fragment.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, LOCATION};
use reqwest::{Method, StatusCode};

use crate::env::{self, var};
use crate::error::{Error, Result};
use crate::target::BlobStream;

/// Largest manifest read (the format's limit, `spec/format.md`).
pub const MAX_MANIFEST: u64 = bundle::manifest::MAX_JSON_BYTES;
/// Largest image config read: a config descriptor declaring more is refused before downloading.
pub const MAX_CONFIG: u64 = bundle::manifest::MAX_JSON_BYTES;
/// Largest `index.json` read from a target (one small entry per channel).
pub const MAX_INDEX_JSON: u64 = 4 * 1024 * 1024;
/// Largest channel record or history event (a few hundred bytes in practice; a history message
/// is free text, hence the room).
pub const MAX_RECORD: u64 = 64 * 1024;
/// Largest page of a registry's tag list (1000 tags of at most 128 characters, in JSON).
pub const MAX_TAG_PAGE: u64 = 1024 * 1024;
/// Largest answer of a registry token service (a JWT is a few KiB).
pub const MAX_TOKEN: u64 = 256 * 1024;
/// Most bytes of an error answer read to explain a failure; the rest is dropped, not refused.
pub const MAX_ERROR_BODY: u64 = 16 * 1024;
/// Largest history held in memory: a registry's history layer, or the sum of an origin's
/// history events (about 250,000 events).
pub const MAX_HISTORY_BYTES: u64 = 64 * 1024 * 1024;
/// Most history events read from one target.
pub const MAX_HISTORY_EVENTS: usize = 100_000;
/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;
/// Default minimum transfer rate, bytes per second averaged over each [`DEFAULT_RATE_WINDOW`].
pub const DEFAULT_MIN_RATE: u64 = 1024;
/// Default window over which the minimum rate is measured.
pub const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(30);
/// Time allowed to connect to a target.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for each read of an answer to make progress.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Rates

/// The slowest transfer accepted: at least `min_rate` bytes per second on average over every
/// `window` (a window with fewer bytes cuts the transfer, including one with none at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Bytes per second; 0 turns the check off.
    pub min_rate: u64,
    /// Measuring window.
    pub window: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            min_rate: DEFAULT_MIN_RATE,
            window: DEFAULT_RATE_WINDOW,
        }
    }
}

impl Pace {
    /// From `SITEBUNDLE_MIN_RATE` (bytes/s, 0: off) and `SITEBUNDLE_RATE_WINDOW` (a duration such
    /// as `30s`); defaults [`DEFAULT_MIN_RATE`] and [`DEFAULT_RATE_WINDOW`].
    pub fn from_env() -> Result<Pace> {
        let mut p = Pace::default();
        if let Some(v) = var(env::SITEBUNDLE_MIN_RATE) {
            p.min_rate = v.trim().parse().map_err(|_| Error::Config {
                what: env::SITEBUNDLE_MIN_RATE.into(),
                reason: format!("{v:?} is not a number of bytes per second"),
            })?;
        }
        if let Some(v) = var(env::SITEBUNDLE_RATE_WINDOW) {
            p.window = env::parse_duration(&v).map_err(|reason| Error::Config {
                what: env::SITEBUNDLE_RATE_WINDOW.into(),
                reason,
            })?;
        }
        Ok(p)
    }

    fn min_bytes(&self) -> u64 {
        let per_ms = u128::from(self.min_rate) * self.window.as_millis() / 1000;
        u64::try_from(per_ms).unwrap_or(u64::MAX)
    }
}

/// `s`, cut with [`Error::TooSlow`] as soon as a window of `pace` passes with too few bytes.
pub fn paced(s: BlobStream, pace: Pace, target: String, what: String) -> BlobStream {
    if pace.min_rate == 0 || pace.window.is_zero() {
        return s;
    }
    let min = pace.min_bytes();
    let start = tokio::time::Instant::now();
    futures::stream::unfold(
        (s, start, 0u64, false),
        move |(mut s, mut window_start, mut got, done)| {
            let (target, what) = (target.clone(), what.clone());
            async move {
                if done {
                    return None;
                }
                loop {
                    let end = window_start + pace.window;
                    let item = match tokio::time::timeout_at(end, s.next()).await {
                        Ok(item) => item,
                        Err(_) if got >= min => {
                            window_start = tokio::time::Instant::now();
                            got = 0;
                            continue;
                        }
                        Err(_) => {
                            let e = too_slow(&target, &what, got, pace);
                            return Some((Err(e), (s, window_start, got, true)));
                        }
                    };
                    return match item {
                        None => None,
                        Some(Err(e)) => Some((Err(e), (s, window_start, got, true))),
                        Some(Ok(chunk)) => {
                            got += chunk.len() as u64;
                            if tokio::time::Instant::now() >= end {
                                // The window closed with this chunk in it.
                                if got < min {
                                    let e = too_slow(&target, &what, got, pace);
                                    return Some((Err(e), (s, window_start, got, true)));
                                }
                                window_start = tokio::time::Instant::now();
                                got = 0;
                            }
                            Some((Ok(chunk), (s, window_start, got, false)))
                        }
                    };
                }
            }
        },
    )
    .boxed()
}

fn too_slow(target: &str, what: &str, got: u64, pace: Pace) -> Error {
    Error::TooSlow {
        target: target.to_string(),
        what: what.to_string(),
        reason: format!(
            "{got} bytes in the last {:?}, below the minimum of {} B/s (SITEBUNDLE_MIN_RATE)",
            pace.window, pace.min_rate
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Sizes

/// The error for a body above its cap.
pub fn too_large(target: &str, what: &str, max: u64) -> Error {
    Error::Corrupt {
        target: target.to_string(),
        what: what.to_string(),
        reason: format!(
            "larger than {max} bytes, the most sitebundle reads for this kind of object \
             (spec/protocol.md, \"Limits\")"
        ),
    }
}

/// What [`read_local_capped`] found.
#[derive(Debug)]
pub enum LocalFile {
    /// Nothing at that path.
    Missing,
    /// A symlink, a directory, a fifo, a device: not a file this target wrote.
    NotAFile,
    /// More than the cap.
    TooLarge,
    /// The whole file.
    Bytes(Vec<u8>),
}

/// Read a small file of a directory target (a channel record, `index.json`, a marker) within
/// `max` bytes. A directory shared with other writers may hold anything there: the path is
/// opened without following a final symlink and without blocking (a fifo would hang `open`),
/// must be a regular file, and is read no further than one byte past the cap.
pub fn read_local_capped(path: &std::path::Path, max: u64) -> std::io::Result<LocalFile> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LocalFile::Missing),
        // ELOOP: the last component is a symlink.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Ok(LocalFile::NotAFile)
        }
        Err(e) => return Err(e),
    };
    if !f.metadata()?.is_file() {
        return Ok(LocalFile::NotAFile);
    }
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf)?;
    Ok(if buf.len() as u64 > max {
        LocalFile::TooLarge
    } else {
        LocalFile::Bytes(buf)
    })
}

/// Read a whole body of at most `max` bytes, refusing it as soon as it passes `max` (and before
/// the first byte when `declared`, its announced size, already does). Paced by [`Pace::from_env`].
pub async fn collect<S>(
    s: S,
    max: u64,
    declared: Option<u64>,
    target: &str,
    what: &str,
) -> Result<Bytes>
where
    S: Stream<Item = Result<Bytes>> + Send + 'static,
{
    if declared.is_some_and(|n| n > max) {
        return Err(too_large(target, what, max));
    }
    let pace = Pace::from_env()?;
    let mut s = paced(s.boxed(), pace, target.to_string(), what.to_string());
    let mut buf = BytesMut::new();
    while let Some(chunk) = s.next().await {
        let chunk = chunk?;
        if (buf.len() + chunk.len()) as u64 > max {
            return Err(too_large(target, what, max));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// [`collect`] for a reqwest response.
pub async fn read_body(
    r: reqwest::Response,
    max: u64,
    target: &str,
    op: &'static str,
    what: &str,
) -> Result<Bytes> {
    let declared = r.content_length();
    collect(stream(r, target, op, what), max, declared, target, what).await
}

/// `len` bytes at `offset` of a blob answer: a `206` must hold at most `len` bytes; a full answer
/// (the server ignored the range) is read only up to `offset + len`, then dropped.
pub async fn read_range(
    r: reqwest::Response,
    partial: bool,
    offset: u64,
    len: u64,
    target: &str,
    what: &str,
) -> Result<Bytes> {
    if partial {
        return read_body(r, len, target, "read range of", what).await;
    }
    let pace = Pace::from_env()?;
    let mut s = paced(
        stream(r, target, "read range of", what),
        pace,
        target.to_string(),
        what.to_string(),
    );
    let (start, end) = (offset, offset.saturating_add(len));
    let mut pos = 0u64;
    let mut out = BytesMut::new();
    while pos < end {
        let Some(chunk) = s.next().await else { break };
        let chunk = chunk?;
        let (c0, c1) = (pos, pos + chunk.len() as u64);
        let (a, b) = (start.max(c0), end.min(c1));
        if a < b {
            out.extend_from_slice(&chunk[(a - c0) as usize..(b - c0) as usize]);
        }
        pos = c1;
    }
    Ok(out.freeze())
}

/// The body of a response as a stream of our errors.
pub fn stream(r: reqwest::Response, target: &str, op: &'static str, what: &str) -> BlobStream {
    let (t, w) = (target.to_string(), what.to_string());
    r.bytes_stream()
        .map_err(move |e| backend(&t, op, &w, e))
        .boxed()
}

/// At most [`MAX_ERROR_BODY`] bytes of an error answer, as text, for a message (never fails).
pub async fn error_text(r: reqwest::Response) -> String {
    let mut s = r.bytes_stream();
    let mut buf = Vec::new();
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(5), s.try_next()).await
    {
        let room = (MAX_ERROR_BODY as usize).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() as u64 >= MAX_ERROR_BODY {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .take(300)
        .collect()
}

/// A reqwest error as a backend error (retryable when a retry may help). The URL is dropped:
/// it may carry a presigned query.
pub fn backend(target: &str, op: &'static str, object: &str, e: reqwest::Error) -> Error {
    let retryable = e.is_timeout()
        || e.is_connect()
        || e.is_body()
        || e.is_request()
        || e.status().is_some_and(|s| s.is_server_error());
    Error::Backend {
        target: target.to_string(),
        op,
        object: object.to_string(),
        retryable,
        source: Box::new(e.without_url()),
    }
}

// ---------------------------------------------------------------------------------------------
// Redirects and credentials

/// A URL fit for a message: scheme, host, port and path; no userinfo, query or fragment.
pub fn redact_url(u: &url::Url) -> String {
    let mut s = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
    if let Some(p) = u.port() {
        s.push_str(&format!(":{p}"));
    }
    s.push_str(u.path());
    if u.query().is_some() {
        s.push_str("?***");
    }
    s
}

/// True when `a` and `b` have the same scheme, host and port.
pub fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Which redirects a request may follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Within the configured origin only (manifests, channels, tags, tokens, uploads).
    SameOrigin,
    /// A blob GET/HEAD: also to another host, without credentials (the bytes are verified
    /// against their digest). Never from `https` to `http`.
    Blob,
}

/// Where a redirect from `from` to `to` may go. `Ok(true)`: follow with credentials (same origin
/// as `origin`); `Ok(false)`: follow without; `Err(reason)`: refuse.
pub fn redirect_rule(
    origin: &url::Url,
    from: &url::Url,
    to: &url::Url,
    follow: Follow,
) -> std::result::Result<bool, String> {
    if !matches!(to.scheme(), "http" | "https") {
        return Err(format!("to a {} URL", to.scheme()));
    }
    if from.scheme() == "https" && to.scheme() == "http" {
        return Err(format!("from https to plain http ({})", redact_url(to)));
    }
    if !to.username().is_empty() || to.password().is_some() {
        return Err("to a URL with credentials in it".into());
    }
    if same_origin(origin, to) {
        return Ok(true);
    }
    match follow {
        Follow::Blob => Ok(false),
        Follow::SameOrigin => Err(format!(
            "to another host ({}); sitebundle follows redirects only within the origin it was \
             given, except for blob downloads",
            redact_url(to)
        )),
    }
}

/// One request for [`Http::send`].
#[derive(Debug, Clone)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Where (absolute).
    pub url: url::Url,
    /// Headers other than credentials.
    pub headers: HeaderMap,
    /// Body (re-sent as is if the request is repeated).
    pub body: Option<Body>,
    /// Which redirects it may follow (only GET and HEAD follow any).
    pub follow: Follow,
    /// What it is about, for messages.
    pub what: String,
    /// The operation, for messages.
    pub op: &'static str,
}

impl Request {
    /// A GET of `url`.
    pub fn get(url: url::Url, op: &'static str, what: impl Into<String>) -> Request {
        Request {
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            body: None,
            follow: Follow::SameOrigin,
            what: what.into(),
            op,
        }
    }

    /// The same request with another method.
    pub fn method(mut self, m: Method) -> Request {
        self.method = m;
        self
    }

    /// Add a header.
    pub fn header(mut self, k: reqwest::header::HeaderName, v: HeaderValue) -> Request {
        self.headers.insert(k, v);
        self
    }

    /// Set the redirect rule.
    pub fn follow(mut self, f: Follow) -> Request {
        self.follow = f;
        self
    }

    /// Set the body.
    pub fn body(mut self, b: Bytes) -> Request {
        self.body = Some(Body::Bytes(b));
        self
    }

    /// Send the first `len` bytes of the file at `path` as the body, streamed (opened again if
    /// the request is repeated).
    pub fn file_body(mut self, path: std::path::PathBuf, len: u64) -> Request {
        self.body = Some(Body::File { path, len });
        self
    }
}

/// A request body: bytes in memory, or a local file streamed from disk, so that pushing a
/// 100 MB layer does not hold it in memory. Either can be sent again (after a registry's
/// token challenge).
#[derive(Debug, Clone)]
pub enum Body {
    /// These bytes.
    Bytes(Bytes),
    /// The first `len` bytes of this file.
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Bytes sent (the `Content-Length`).
        len: u64,
    },
}

/// Chunks read from a file for a streamed body.
const BODY_CHUNK: usize = 256 * 1024;

impl Body {
    /// The reqwest body and its length.
    async fn open(&self) -> Result<(reqwest::Body, u64)> {
        match self {
            Body::Bytes(b) => Ok((reqwest::Body::from(b.clone()), b.len() as u64)),
            Body::File { path, len } => {
                use tokio::io::AsyncReadExt;
                let f = tokio::fs::File::open(path)
                    .await
                    .map_err(Error::io("open", path))?;
                let path = path.clone();
                let stream =
                    futures::stream::try_unfold((f.take(*len), path), |(mut f, path)| async move {
                        let mut buf = BytesMut::with_capacity(BODY_CHUNK);
                        let n = f.read_buf(&mut buf).await.map_err(|e| {
                            std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                        })?;
                        if n == 0 {
                            return Ok::<_, std::io::Error>(None);
                        }
                        Ok(Some((buf.freeze(), (f, path))))
                    });
                Ok((reqwest::Body::wrap_stream(stream), *len))
            }
        }
    }
}

/// A reqwest client bound to one origin, following redirects by hand (see the module doc).
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    origin: url::Url,
    target: String,
}

impl Http {
    /// A client for `origin` (its scheme, host and port are what credentials are scoped to);
    /// `target` names it in messages.
    pub fn new(client: reqwest::Client, origin: url::Url, target: impl Into<String>) -> Http {
        Http {
            client,
            origin,
            target: target.into(),
        }
    }

    /// The configured origin.
    pub fn origin(&self) -> &url::Url {
        &self.origin
    }

    /// The underlying client (redirects off).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The target name used in messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Send `req`, adding `auth` (an `Authorization` value) only while the request is addressed
    /// to the configured origin, and following redirects under `req.follow`. Returns the final
    /// answer, whatever its status.
    pub async fn send(
        &self,
        req: &Request,
        auth: Option<&HeaderValue>,
    ) -> Result<reqwest::Response> {
        let mut url = req.url.clone();
        let mut creds = same_origin(&self.origin, &url);
        for _ in 0..=MAX_REDIRECTS {
            // Every host reached, the first and each redirect hop, is checked against the
            // process-wide allow-list (`crate::allow`).
            crate::allow::check(&url).map_err(|reason| {
                self.refused(req, format!("a request to {}: {reason}", redact_url(&url)))
            })?;
            let mut b = self
                .client
                .request(req.method.clone(), url.clone())
                .headers(req.headers.clone());
            if let (true, Some(a)) = (creds, auth) {
                b = b.header(AUTHORIZATION, a.clone());
            }
            if let Some(body) = &req.body {
                let (body, len) = body.open().await?;
                // A streamed body has no length of its own: without it hyper would send it
                // chunked, which not every registry takes for a monolithic upload.
                b = b
                    .header(reqwest::header::CONTENT_LENGTH, HeaderValue::from(len))
                    .body(body);
            }
            let r = b
                .send()
                .await
                .map_err(|e| backend(&self.target, req.op, &req.what, e))?;
            let redirect = matches!(
                r.status(),
                StatusCode::MOVED_PERMANENTLY
                    | StatusCode::FOUND
                    | StatusCode::SEE_OTHER
                    | StatusCode::TEMPORARY_REDIRECT
                    | StatusCode::PERMANENT_REDIRECT
            );
            if !redirect || !matches!(req.method, Method::GET | Method::HEAD) {
                return Ok(r);
            }
            let Some(loc) = r.headers().get(LOCATION).and_then(|l| l.to_str().ok()) else {
                return Ok(r);
            };
            let next = url
                .join(loc)
                .map_err(|e| self.refused(req, format!("bad Location: {e}")))?;
            match redirect_rule(&self.origin, &url, &next, req.follow) {
                Ok(with_creds) => {
                    if !with_creds && creds {
                        tracing::debug!(
                            target_url = %self.target,
                            to = %redact_url(&next),
                            "following a blob redirect to another host, without credentials"
                        );
                    }
                    creds = creds && with_creds;
                    url = next;
                }
                Err(reason) => {
                    return Err(self.refused(req, format!("a redirect {reason}")));
                }
            }
        }
        Err(self.refused(req, format!("more than {MAX_REDIRECTS} redirects")))
    }

    fn refused(&self, req: &Request, reason: String) -> Error {
        Error::Refused {
            target: self.target.clone(),
            what: format!("{} {}", req.op, req.what),
            reason,
        }
    }
}

/// A reqwest client builder with sitebundle's settings: redirects off ([`Http::send`] follows
/// them), connect and read timeouts, a user agent, the extra CA of `SITEBUNDLE_REGISTRY_CA`.
pub fn client_builder(ca_pem: Option<&[u8]>, what: &str) -> Result<reqwest::ClientBuilder> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent(concat!("sitebundle/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem {
        for c in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| Error::Config {
            what: what.to_string(),
            reason: format!("not a PEM certificate bundle: {e}"),
        })? {
            b = b.add_root_certificate(c);
        }
    }
    Ok(b)
}

/// The bytes of the `SITEBUNDLE_REGISTRY_CA` file, if set.
pub fn extra_ca() -> Result<Option<(String, Vec<u8>)>> {
    match var(env::SITEBUNDLE_REGISTRY_CA) {
        Some(ca) => {
            let pem = std::fs::read(&ca).map_err(Error::io("read CA file", &ca))?;
            Ok(Some((ca, pem)))
        }
        None => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------
// Object stores

/// An object_store [`HttpConnector`](object_store::client::HttpConnector) whose clients follow
/// redirects only within the origin of the first request and never from `https` to `http`: a
/// signed request (SigV4, SharedKey, a bearer token) and its session-token headers are never
/// replayed to another host. Otherwise configured from the store's options as object_store's own
/// connector is (timeouts, `allow_http`, proxy, user agent, HTTP/1 or /2 only).
#[derive(Debug, Default, Clone, Copy)]
pub struct SafeConnector;

fn option_duration(
    o: &object_store::ClientOptions,
    k: object_store::ClientConfigKey,
) -> Option<Duration> {
    o.get_config_value(&k)
        .and_then(|v| humantime::parse_duration(v.trim()).ok())
}

fn option_flag(o: &object_store::ClientOptions, k: object_store::ClientConfigKey) -> bool {
    o.get_config_value(&k).is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on"
        )
    })
}

impl object_store::client::HttpConnector for SafeConnector {
    fn connect(
        &self,
        options: &object_store::ClientOptions,
    ) -> object_store::Result<object_store::client::HttpClient> {
        use object_store::ClientConfigKey as K;
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            let Some(first) = attempt.previous().first() else {
                return attempt.stop();
            };
            let last = attempt.previous().last().unwrap_or(first);
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            if let Err(reason) = crate::allow::check(attempt.url()) {
                return attempt.error(format!("refused a redirect: {reason}"));
            }
            match redirect_rule(first, last, attempt.url(), Follow::SameOrigin) {
                Ok(_) => attempt.follow(),
                Err(reason) => attempt.error(format!("refused a redirect {reason}")),
            }
        });
        // Every option read below is part of the key, so one set of options gets one client.
        let settings = [
            K::AllowHttp,
            K::AllowInvalidCertificates,
            K::Timeout,
            K::ConnectTimeout,
            K::ReadTimeout,
            K::PoolIdleTimeout,
            K::UserAgent,
            K::ProxyUrl,
            K::ProxyExcludes,
            K::Http1Only,
            K::Http2Only,
        ]
        .map(|k| options.get_config_value(&k));
        let mut parts: Vec<&[u8]> = vec![b"object-store"];
        for v in &settings {
            match v {
                Some(v) => parts.extend([b"set".as_slice(), v.as_bytes()]),
                None => parts.push(b"unset"),
            }
        }
        let key = crate::clients::key(&parts);
        let client = crate::clients::get(&key, || self.build(options, policy)).map_err(|e| {
            object_store::Error::Generic {
                store: "HTTP client",
                source: Box::new(e),
            }
        })?;
        Ok(object_store::client::HttpClient::new(client))
    }
}

impl SafeConnector {
    fn build(
        &self,
        options: &object_store::ClientOptions,
        policy: reqwest::redirect::Policy,
    ) -> Result<reqwest::Client> {
        use object_store::ClientConfigKey as K;
        let fail = |e: reqwest::Error| Error::Config {
            what: "object store HTTP client".into(),
            reason: e.to_string(),
        };
        let mut b = reqwest::Client::builder()
            .redirect(policy)
            .https_only(!option_flag(options, K::AllowHttp))
            .danger_accept_invalid_certs(option_flag(options, K::AllowInvalidCertificates));
        if let Some(d) = option_duration(options, K::Timeout) {
            b = b.timeout(d);
        }
        if let Some(d) = option_duration(options, K::ConnectTimeout) {
            b = b.connect_timeout(d);
        }
        if let Some(d) = option_duration(options, K::ReadTimeout) {
            b = b.read_timeout(d);
        }
        if let Some(d) = option_duration(options, K::PoolIdleTimeout) {
            b = b.pool_idle_timeout(d);
        }
        if let Some(ua) = options.get_config_value(&K::UserAgent) {
            b = b.user_agent(ua);
        } else {
            b = b.user_agent(concat!("sitebundle/", env!("CARGO_PKG_VERSION")));
        }
        if let Some(p) = options.get_config_value(&K::ProxyUrl) {
            let mut proxy = reqwest::Proxy::all(&p).map_err(fail)?;
            if let Some(ex) = options.get_config_value(&K::ProxyExcludes) {
                proxy = proxy.no_proxy(reqwest::NoProxy::from_string(&ex));
            }
            b = b.proxy(proxy);
        }
        if option_flag(options, K::Http1Only) {
            b = b.http1_only();
        }
        if option_flag(options, K::Http2Only) {
            b = b.http2_prior_knowledge();
        }
        b.build().map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn u(s: &str) -> url::Url {
        s.parse().unwrap()
    }

    #[test]
    fn redirect_rules() {
        let o = u("https://reg.example/");
        // Same origin: followed with credentials.
        assert_eq!(
            redirect_rule(
                &o,
                &u("https://reg.example/v2/a"),
                &u("https://reg.example/v2/b"),
                Follow::SameOrigin
            ),
            Ok(true)
        );
        // Another host: refused, except for blobs (without credentials).
        assert!(redirect_rule(&o, &o, &u("https://cdn.example/x"), Follow::SameOrigin).is_err());
        assert_eq!(
            redirect_rule(&o, &o, &u("https://cdn.example/x"), Follow::Blob),
            Ok(false)
        );
        // Another port is another origin.
        assert_eq!(
            redirect_rule(&o, &o, &u("https://reg.example:8443/x"), Follow::Blob),
            Ok(false)
        );
        // https -> http: refused, even for blobs and on the same host.
        assert!(redirect_rule(&o, &o, &u("http://reg.example/x"), Follow::Blob).is_err());
        assert!(redirect_rule(&o, &o, &u("http://cdn.example/x"), Follow::Blob).is_err());
        // A plain-HTTP origin may send a blob to another plain-HTTP host (no downgrade).
        let p = u("http://reg.local:5000/");
        assert_eq!(
            redirect_rule(&p, &p, &u("http://store.local/x"), Follow::Blob),
            Ok(false)
        );
        // Credentials in the Location, other schemes: refused.
        assert!(redirect_rule(&o, &o, &u("https://a:b@cdn.example/x"), Follow::Blob).is_err());
        assert!(redirect_rule(&o, &o, &u("file:///etc/passwd"), Follow::Blob).is_err());
    }

    #[test]
    fn redacts_urls() {
        assert_eq!(
            redact_url(&u(
                "https://user:pw@h.example:8443/p/q?X-Amz-Signature=abc#f"
            )),
            "https://h.example:8443/p/q?***"
        );
    }

    #[tokio::test]
    async fn collect_refuses_past_the_cap_while_reading() {
        // An endless stream: collect must stop at the cap, not read forever.
        let endless = futures::stream::repeat_with(|| Ok(Bytes::from_static(&[0u8; 1024])));
        let e = collect(endless, 10_000, None, "t", "x").await.unwrap_err();
        assert!(e.to_string().contains("larger than 10000"), "{e}");
        // A declared size above the cap is refused before reading.
        let e = collect(futures::stream::empty(), 10, Some(11), "t", "x")
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }));
        let ok = collect(
            futures::stream::iter(vec![
                Ok(Bytes::from_static(b"ab")),
                Ok(Bytes::from_static(b"c")),
            ]),
            3,
            Some(3),
            "t",
            "x",
        )
        .await
        .unwrap();
        assert_eq!(&ok[..], b"abc");
    }

    #[tokio::test]
    async fn pace_cuts_a_slow_stream() {
        let pace = Pace {
            min_rate: 1000,
            window: Duration::from_millis(200),
        };
        // 10 bytes every 100 ms: 100 B/s, below 1000 B/s.
        let slow = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok(Bytes::from_static(&[1u8; 10])), ()))
        })
        .boxed();
        let mut s = paced(slow, pace, "t".into(), "x".into());
        let mut n = 0;
        let err = loop {
            match s.next().await {
                Some(Ok(c)) => n += c.len(),
                Some(Err(e)) => break e,
                None => panic!("ended"),
            }
        };
        assert!(matches!(err, Error::TooSlow { .. }), "{err}");
        // Cut in the first window with fewer than 200 bytes (1000 B/s over 200 ms).
        assert!(n < 200, "{n}");
        // Fast enough: passes.
        let fast =
            futures::stream::iter((0..50).map(|_| Ok(Bytes::from_static(&[1u8; 200])))).boxed();
        let total: usize = paced(fast, pace, "t".into(), "x".into())
            .map(|c| c.unwrap().len())
            .fold(0, |a, b| async move { a + b })
            .await;
        assert_eq!(total, 10_000);
    }
}
