//! Fetching files from a live origin for the audit, treating every answer as hostile.
//!
//! An origin under audit is exactly the thing not yet trusted, so:
//! - every body is read with a cap (the size the index declares for that file, plus nothing) and
//!   hashed as it streams, never held in memory; a longer body is cut and reported;
//! - a `Content-Encoding` the object is not supposed to carry (an origin compressing on the fly)
//!   is decoded while hashing (gzip; anything else is reported, not guessed), and the decoded
//!   size is capped the same way, so a compression bomb costs at most the declared size;
//! - each request has a connect timeout and a total deadline that grows with the declared size;
//! - redirects are followed only on the same host and port (and from `http` to `https`, never
//!   back), at most [`MAX_REDIRECTS`] times; one to another host is reported, not followed;
//! - no credentials are sent: no `Authorization`, no cookies, and URLs with userinfo are refused;
//! - requests are spread by an optional rate limit, and cache-busting is a unique query parameter
//!   plus `Cache-Control: no-cache`, so a CDN's cached copy is not what gets audited.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bundle::FileHash;
use futures::StreamExt;

use super::Message;
use crate::env::{self, var};
use crate::error::{Error, Result};

/// Most redirects followed for one file.
pub const MAX_REDIRECTS: usize = 3;
/// Connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of a request for an empty file; larger files get [`MIN_RATE`] on top.
pub const BASE_DEADLINE: Duration = Duration::from_secs(30);
/// The slowest transfer rate tolerated, in bytes per second.
pub const MIN_RATE: u64 = 64 * 1024;

/// Read a response body, refusing more than `max` bytes.
pub async fn read_capped(
    resp: reqwest::Response,
    max: u64,
) -> std::result::Result<Vec<u8>, Message> {
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(Message(format!("answer longer than {max} bytes")));
    }
    let mut s = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| Message(e.without_url().to_string()))?;
        if (buf.len() + chunk.len()) as u64 > max {
            return Err(Message(format!("answer longer than {max} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// What one GET of one file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx body was read (within the cap).
    Body {
        /// BLAKE3 of the (decoded) body.
        hash: FileHash,
        /// Its (decoded) length.
        size: u64,
        /// The body was longer than the cap (then `hash` covers the first `cap + 1` bytes).
        too_long: bool,
        /// Response headers the audit compares.
        headers: Seen,
    },
    /// 404 or 410.
    Missing,
    /// A redirect the fetcher would not follow (another host, https to http, too many).
    Redirect {
        /// Where to.
        location: String,
    },
    /// Another status.
    Status {
        /// The status code.
        code: u16,
    },
    /// The origin could not be read (connection, timeout, undecodable encoding).
    Failed {
        /// Why.
        reason: String,
    },
}

/// Response headers the audit compares with the rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
}

/// Spreads requests to at most `per_second`.
#[derive(Debug)]
struct Rate {
    interval: Duration,
    next: Mutex<Instant>,
}

/// A client for one origin.
#[derive(Debug)]
pub struct Fetcher {
    base: url::Url,
    client: reqwest::Client,
    rate: Option<Rate>,
    bust: Option<String>,
}

/// How to fetch.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Requests per second at most (`None`: no limit beyond the concurrency).
    pub rate: Option<f64>,
    /// Add a unique query parameter (and `Cache-Control: no-cache`) to every request.
    pub cache_bust: bool,
}

fn same_origin_or_upgrade(from: &url::Url, to: &url::Url) -> bool {
    let scheme_ok =
        from.scheme() == to.scheme() || (from.scheme() == "http" && to.scheme() == "https");
    scheme_ok
        && from.host_str() == to.host_str()
        && (from.port_or_known_default() == to.port_or_known_default()
            || (from.scheme() == "http" && to.scheme() == "https" && to.port().is_none()))
}

impl Fetcher {
    /// A fetcher for the origin at `base` (`http(s)://host[:port]/path/`).
    pub fn new(base: &url::Url, opts: &FetchOptions) -> Result<Fetcher> {
        let bad = |reason: &str| Error::InvalidUrl {
            url: crate::url::redact(base.as_str()),
            reason: reason.to_string(),
        };
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("an audited origin is http:// or https://"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad(
                "credentials in a URL are refused; the audit sends none",
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(bad("query strings and fragments are not used"));
        }
        let mut base = base.clone();
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            let ok = attempt.previous().len() <= MAX_REDIRECTS
                && attempt
                    .previous()
                    .first()
                    .is_some_and(|first| same_origin_or_upgrade(first, attempt.url()));
            if ok {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let mut b = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(policy)
            .user_agent(concat!("sitebundle-audit/", env!("CARGO_PKG_VERSION")));
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
            target: base.to_string(),
            op: "set up client for",
            object: String::new(),
            retryable: false,
            source: Box::new(e),
        })?;
        let rate = opts.rate.filter(|r| *r > 0.0).map(|r| Rate {
            interval: Duration::from_secs_f64(1.0 / r),
            next: Mutex::new(Instant::now()),
        });
        let bust = opts.cache_bust.then(|| {
            let n = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("{n:x}{:x}", std::process::id())
        });
        Ok(Fetcher {
            base,
            client,
            rate,
            bust,
        })
    }

    /// The origin's base URL.
    pub fn base(&self) -> &url::Url {
        &self.base
    }

    /// The URL of `key` under the base (each segment percent-encoded).
    pub fn url(&self, key: &str) -> String {
        let mut u = format!("{}{}", self.base, super::cloud::encode_key(key));
        if let Some(b) = &self.bust {
            u.push_str(&format!("?sitebundle-audit={b}"));
        }
        u
    }

    async fn pace(&self) {
        let Some(r) = &self.rate else { return };
        let wait = {
            let Ok(mut next) = r.next.lock() else { return };
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + r.interval;
            at - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// GET a small object (the marker): `None` on 404, an error text on anything else but 2xx.
    pub async fn get_small(
        &self,
        key: &str,
        cap: u64,
    ) -> std::result::Result<Option<Vec<u8>>, String> {
        self.pace().await;
        let mut rb = self
            .client
            .get(self.url(key))
            .timeout(BASE_DEADLINE)
            .header(reqwest::header::ACCEPT_ENCODING, "identity");
        if self.bust.is_some() {
            rb = rb.header(reqwest::header::CACHE_CONTROL, "no-cache");
        }
        let resp = rb.send().await.map_err(|e| e.without_url().to_string())?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        read_capped(resp, cap).await.map(Some).map_err(|e| e.0)
    }

    /// GET `key`, reading at most `cap` bytes of it (decoded). `stored_encoding` is the
    /// `Content-Encoding` the object is published with (`None`: identity): that is asked for, so
    /// GCS serves the stored bytes instead of transcoding them.
    pub async fn get(&self, key: &str, cap: u64, stored_encoding: Option<&str>) -> Outcome {
        self.pace().await;
        let deadline = BASE_DEADLINE + Duration::from_secs(cap / MIN_RATE);
        let mut rb = self.client.get(self.url(key)).timeout(deadline).header(
            reqwest::header::ACCEPT_ENCODING,
            stored_encoding.unwrap_or("identity"),
        );
        if self.bust.is_some() {
            rb = rb
                .header(reqwest::header::CACHE_CONTROL, "no-cache")
                .header(reqwest::header::PRAGMA, "no-cache");
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Failed {
                    reason: e.without_url().to_string(),
                }
            }
        };
        let status = resp.status();
        if status.is_redirection() {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .chars()
                .take(500)
                .collect();
            return Outcome::Redirect { location };
        }
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
            return Outcome::Missing;
        }
        if !status.is_success() {
            return Outcome::Status {
                code: status.as_u16(),
            };
        }
        let h = |n: reqwest::header::HeaderName| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(1024).collect::<String>())
        };
        let seen = Seen {
            content_type: h(reqwest::header::CONTENT_TYPE),
            cache_control: h(reqwest::header::CACHE_CONTROL),
            content_encoding: h(reqwest::header::CONTENT_ENCODING),
        };
        let served = seen
            .content_encoding
            .as_deref()
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| e != "identity" && !e.is_empty());
        let stored = stored_encoding.map(|e| e.trim().to_ascii_lowercase());
        // Decode only an encoding the origin added on top of the stored bytes.
        let decode = match (&served, &stored) {
            (None, _) => false,
            (Some(s), Some(st)) if s == st => false,
            (Some(s), _) if s == "gzip" || s == "x-gzip" => true,
            (Some(s), _) => {
                return Outcome::Failed {
                    reason: format!(
                        "served with Content-Encoding {s}, which the audit does not decode"
                    ),
                }
            }
        };
        let mut sink = CapSink::new(cap);
        let mut stream = resp.bytes_stream();
        let mut gz = decode.then(|| flate2::write::MultiGzDecoder::new(CapSink::new(cap)));
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    return Outcome::Failed {
                        reason: e.without_url().to_string(),
                    }
                }
            };
            let full = match &mut gz {
                Some(d) => {
                    // The sink refuses bytes past the cap: an error then means "too long".
                    if let Err(e) = d.write_all(&chunk) {
                        if !d.get_ref().over() {
                            return Outcome::Failed {
                                reason: format!("cannot decode the gzip body: {e}"),
                            };
                        }
                    }
                    d.get_ref().over()
                }
                None => {
                    sink.push(&chunk);
                    sink.over()
                }
            };
            if full {
                break;
            }
        }
        let done = match &mut gz {
            Some(d) => {
                if !d.get_ref().over() {
                    if let Err(e) = d.try_finish() {
                        if !d.get_ref().over() {
                            return Outcome::Failed {
                                reason: format!("cannot decode the gzip body: {e}"),
                            };
                        }
                    }
                }
                d.get_ref()
            }
            None => &sink,
        };
        Outcome::Body {
            hash: FileHash::from(done.hasher.finalize()),
            size: done.len.min(cap),
            too_long: done.over(),
            headers: seen,
        }
    }
}

/// Hashes bytes up to `cap + 1` and drops the rest.
struct CapSink {
    hasher: blake3::Hasher,
    len: u64,
    cap: u64,
}

impl CapSink {
    fn new(cap: u64) -> CapSink {
        CapSink {
            hasher: blake3::Hasher::new(),
            len: 0,
            cap,
        }
    }

    fn push(&mut self, b: &[u8]) {
        let room = (self.cap + 1).saturating_sub(self.len) as usize;
        let take = b.len().min(room);
        self.hasher.update(&b[..take]);
        self.len += take as u64;
    }

    fn over(&self) -> bool {
        self.len > self.cap
    }
}

impl Write for CapSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.over() {
            // Stop a decoder that keeps producing: the body is already too long.
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "decoded body longer than declared",
            ));
        }
        self.push(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_on_the_origin() {
        let u = |s: &str| url::Url::parse(s).expect("url");
        assert!(same_origin_or_upgrade(
            &u("http://a.example/x"),
            &u("https://a.example/x/")
        ));
        assert!(same_origin_or_upgrade(
            &u("https://a.example/x"),
            &u("https://a.example/y")
        ));
        assert!(!same_origin_or_upgrade(
            &u("https://a.example/x"),
            &u("http://a.example/x")
        ));
        assert!(!same_origin_or_upgrade(
            &u("https://a.example/x"),
            &u("https://b.example/x")
        ));
        assert!(!same_origin_or_upgrade(
            &u("http://a.example:1/x"),
            &u("http://a.example:2/x")
        ));
    }

    #[test]
    fn a_cap_sink_stops_after_the_cap() {
        let mut s = CapSink::new(3);
        s.push(b"ab");
        assert!(!s.over());
        s.push(b"cdef");
        assert!(s.over());
        assert_eq!(s.len, 4);
    }
}
