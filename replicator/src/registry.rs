//! A small client for the OCI distribution API, over [`crate::net`], so every registry answer is
//! read within its cap, every redirect obeys one rule and credentials go only where they may.
//!
//! (It replaces oci-client's `Client`, which reads every body whole, follows any redirect to any
//! host, and sends a registry's Basic credentials to whatever token realm the registry names.)
//!
//! ## Authentication
//! A request goes out with the authorization cached for its scope (`pull`, or `pull,push`), none
//! at first. On `401`, the `WWW-Authenticate` challenge decides:
//! - `Basic`: the Basic credentials, if any, are sent to the registry.
//! - `Bearer realm=…`: a token is asked from the realm for `repository:<repo>:<scope>`. Basic
//!   credentials go with that request **only** if the realm is on the registry's own origin
//!   (same scheme, host and port), or is an HTTPS host listed in
//!   `SITEBUNDLE_REGISTRY_TOKEN_HOSTS`; any other realm (another host, or plain HTTP for an
//!   HTTPS registry) is asked for an anonymous token, and a warning says why.
//! - A `SITEBUNDLE_REGISTRY_TOKEN` bearer token is sent as is, to the registry only.
//!
//! The request is then sent once more with the new authorization. Authorization headers are
//! attached only to requests addressed to the registry's origin ([`Http::send`]): a blob
//! download redirected to storage on another host goes there without them.

use std::collections::HashMap;

use base64::Engine as _;
use bundle::Digest;
use bytes::Bytes;
use oci_client::secrets::RegistryAuth;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE, LOCATION, RANGE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use tokio::sync::Mutex;

use crate::env::{self, var};
use crate::error::{Error, Result};
use crate::net::{self, Follow, Http, Request};
use crate::target::BlobStream;

/// Most tags listed from one repository (a bound on the paging loop).
pub const MAX_TAGS: usize = 100_000;

/// What a request needs to be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Read.
    Pull,
    /// Read and write.
    Push,
}

impl Scope {
    fn actions(self) -> &'static str {
        match self {
            Scope::Pull => "pull",
            Scope::Push => "pull,push",
        }
    }
}

/// One repository of one registry.
pub struct Registry {
    http: Http,
    base: url::Url,
    repository: String,
    auth: RegistryAuth,
    token_hosts: Vec<String>,
    cache: Mutex<HashMap<Scope, HeaderValue>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print credentials or tokens.
        f.debug_struct("Registry")
            .field("base", &self.base.as_str())
            .field("repository", &self.repository)
            .finish()
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lowercase).
    pub scheme: String,
    /// Parameters, keys lowercase.
    pub params: HashMap<String, String>,
}

/// Parse a `WWW-Authenticate` value: `Scheme k="v", k2=v2`.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(char::is_whitespace).unwrap_or((h, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.trim().is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

fn sensitive(v: String) -> Option<HeaderValue> {
    let mut h = HeaderValue::from_str(&v).ok()?;
    h.set_sensitive(true);
    Some(h)
}

fn basic(user: &str, password: &str) -> Option<HeaderValue> {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    sensitive(format!("Basic {b}"))
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
}

#[derive(serde::Deserialize)]
struct TagPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
struct ErrorEnvelope {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(serde::Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: String,
}

impl Registry {
    /// A client for `registry` (`host[:port]`) / `repository`, over HTTPS unless `plain_http`.
    /// `name` is the target's name in messages; `ca_pem` extra CA certificates.
    pub fn new(
        name: &str,
        registry: &str,
        repository: &str,
        plain_http: bool,
        auth: RegistryAuth,
        ca_pem: Option<&[u8]>,
    ) -> Result<Registry> {
        let scheme = if plain_http { "http" } else { "https" };
        let base: url::Url =
            format!("{scheme}://{registry}/")
                .parse()
                .map_err(|e: url::ParseError| Error::InvalidUrl {
                    url: name.to_string(),
                    reason: e.to_string(),
                })?;
        let key = crate::clients::key(&[
            b"registry",
            crate::clients::ca_marker(ca_pem),
            ca_pem.unwrap_or_default(),
        ]);
        let client = crate::clients::get(&key, || {
            net::client_builder(ca_pem, "SITEBUNDLE_REGISTRY_CA")?
                .build()
                .map_err(|e| net::backend(name, "set up client for", "", e))
        })?;
        let token_hosts = var(env::SITEBUNDLE_REGISTRY_TOKEN_HOSTS)
            .map(|v| {
                v.split(',')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let mut cache = HashMap::new();
        if let RegistryAuth::Bearer(t) = &auth {
            if let Some(h) = sensitive(format!("Bearer {t}")) {
                cache.insert(Scope::Pull, h.clone());
                cache.insert(Scope::Push, h);
            }
        }
        Ok(Registry {
            http: Http::new(client, base.clone(), name),
            base,
            repository: repository.to_string(),
            auth,
            token_hosts,
            cache: Mutex::new(cache),
        })
    }

    fn target(&self) -> &str {
        self.http.target()
    }

    fn url(&self, rest: &str) -> Result<url::Url> {
        self.base
            .join(&format!("v2/{}/{rest}", self.repository))
            .map_err(|e| Error::InvalidUrl {
                url: self.target().to_string(),
                reason: e.to_string(),
            })
    }

    /// Send with the cached authorization; on 401, authorize from the challenge and send again.
    async fn call(&self, req: &Request, scope: Scope) -> Result<reqwest::Response> {
        let cached = self.cache.lock().await.get(&scope).cloned();
        let r = self.http.send(req, cached.as_ref()).await?;
        if r.status() != StatusCode::UNAUTHORIZED {
            return Ok(r);
        }
        let Some(challenge) = r
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .and_then(parse_challenge)
        else {
            return Ok(r);
        };
        let Some(fresh) = self.authorize(&challenge, scope).await? else {
            return Ok(r);
        };
        if cached.as_ref() == Some(&fresh) {
            return Ok(r);
        }
        self.cache.lock().await.insert(scope, fresh.clone());
        self.http.send(req, Some(&fresh)).await
    }

    /// The authorization a challenge asks for, if we can give one.
    async fn authorize(&self, c: &Challenge, scope: Scope) -> Result<Option<HeaderValue>> {
        match (&self.auth, c.scheme.as_str()) {
            (RegistryAuth::Bearer(_), _) => Ok(None),
            (RegistryAuth::Basic(u, p), "basic") => Ok(basic(u, p)),
            (_, "bearer") => self.token(c, scope).await,
            _ => Ok(None),
        }
    }

    /// May our credentials go to this token realm?
    fn realm_trusted(&self, realm: &url::Url) -> bool {
        if net::same_origin(&self.base, realm) {
            return true;
        }
        if realm.scheme() == "https" && well_known_token_host(&self.base, realm) {
            return true;
        }
        let host = match (realm.host_str(), realm.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => return false,
        };
        realm.scheme() == "https"
            && (self.token_hosts.contains(&host.to_ascii_lowercase())
                || realm
                    .host_str()
                    .is_some_and(|h| self.token_hosts.contains(&h.to_ascii_lowercase())))
    }

    /// Ask a token realm for a bearer token.
    async fn token(&self, c: &Challenge, scope: Scope) -> Result<Option<HeaderValue>> {
        let refuse = |reason: String| Error::Refused {
            target: self.target().to_string(),
            what: "authenticate".into(),
            reason,
        };
        let Some(realm) = c.params.get("realm") else {
            return Err(refuse("a bearer challenge without a realm".into()));
        };
        let mut realm: url::Url = realm
            .parse()
            .map_err(|_| refuse("a token realm that is not a URL".into()))?;
        if !matches!(realm.scheme(), "http" | "https") {
            return Err(refuse(format!(
                "a token realm of scheme {}",
                realm.scheme()
            )));
        }
        let shown = net::redact_url(&realm);
        let trusted = self.realm_trusted(&realm);
        let creds = match (&self.auth, trusted) {
            (RegistryAuth::Basic(u, p), true) => basic(u, p),
            (RegistryAuth::Basic(..), false) => {
                tracing::warn!(
                    target_url = %self.target(),
                    realm = %shown,
                    "the registry's token realm is not on its own origin (or is plain HTTP): \
                     asking it for an anonymous token, without the registry credentials \
                     (list its host in SITEBUNDLE_REGISTRY_TOKEN_HOSTS to trust it over HTTPS)"
                );
                None
            }
            _ => None,
        };
        {
            let mut q = realm.query_pairs_mut();
            if let Some(s) = c.params.get("service") {
                q.append_pair("service", s);
            }
            q.append_pair(
                "scope",
                &format!("repository:{}:{}", self.repository, scope.actions()),
            );
        }
        // The realm is its own origin: credentials (when trusted) are scoped to it.
        let origin = realm.clone();
        let http = Http::new(self.http_client(), origin, self.target());
        let req = Request::get(realm, "get a token from", shown.clone());
        let r = http.send(&req, creds.as_ref()).await?;
        let status = r.status();
        if !status.is_success() {
            let text = net::error_text(r).await;
            return Err(Error::Backend {
                target: self.target().to_string(),
                op: "get a token from",
                object: shown,
                retryable: status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
                source: format!("HTTP {status}: {text}").into(),
            });
        }
        let body =
            net::read_body(r, net::MAX_TOKEN, self.target(), "get a token from", &shown).await?;
        let t: TokenAnswer = serde_json::from_slice(&body).map_err(|e| Error::Corrupt {
            target: self.target().to_string(),
            what: format!("token from {shown}"),
            reason: e.to_string(),
        })?;
        let token = t.token.or(t.access_token).filter(|t| !t.is_empty());
        Ok(token.and_then(|t| sensitive(format!("Bearer {t}"))))
    }

    fn http_client(&self) -> reqwest::Client {
        self.http.client().clone()
    }

    /// An error for an answer that is not what was asked (reads a bounded snippet of its body).
    async fn status_error(&self, r: reqwest::Response, op: &'static str, object: &str) -> Error {
        let status = r.status();
        let text = net::error_text(r).await;
        let codes: Vec<String> = serde_json::from_str::<ErrorEnvelope>(&text)
            .map(|e| e.errors.into_iter().map(|e| e.code).collect())
            .unwrap_or_default();
        let unknown = codes.iter().any(|c| {
            matches!(
                c.as_str(),
                "MANIFEST_UNKNOWN" | "BLOB_UNKNOWN" | "NAME_UNKNOWN"
            )
        });
        if status == StatusCode::NOT_FOUND || unknown {
            return Error::NotFound {
                target: self.target().to_string(),
                what: object.to_string(),
            };
        }
        let hint = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                " (check the registry credentials in the environment)"
            }
            _ => "",
        };
        Error::Backend {
            target: self.target().to_string(),
            op,
            object: object.to_string(),
            retryable: status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
            source: format!("HTTP {status}{hint}: {text}").into(),
        }
    }

    /// A manifest by digest or tag: `None` when the registry does not have it.
    pub async fn get_manifest(&self, reference: &str, accept: &[&str]) -> Result<Option<Bytes>> {
        let what = format!("manifest {reference}");
        let accept =
            HeaderValue::from_str(&accept.join(", ")).map_err(|e| Error::Task(e.to_string()))?;
        let req = Request::get(self.url(&format!("manifests/{reference}"))?, "get", &what)
            .header(ACCEPT, accept);
        let r = self.call(&req, Scope::Pull).await?;
        if !r.status().is_success() {
            return match self.status_error(r, "get", &what).await {
                Error::NotFound { .. } => Ok(None),
                e => Err(e),
            };
        }
        net::read_body(r, net::MAX_MANIFEST, self.target(), "get", &what)
            .await
            .map(Some)
    }

    /// Is the blob there?
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let what = format!("blob {digest}");
        let req = Request::get(self.url(&format!("blobs/{digest}"))?, "check", &what)
            .method(Method::HEAD)
            .follow(Follow::Blob);
        let r = self.call(&req, Scope::Pull).await?;
        if r.status().is_success() {
            return Ok(true);
        }
        match self.status_error(r, "check", &what).await {
            Error::NotFound { .. } => Ok(false),
            e => Err(e),
        }
    }

    /// Stream a blob (unverified; see [`crate::download_blob`]). May be redirected to storage on
    /// another host, which then gets no credentials.
    pub async fn get_blob(&self, digest: &Digest) -> Result<BlobStream> {
        let what = format!("blob {digest}");
        let req =
            Request::get(self.url(&format!("blobs/{digest}"))?, "get", &what).follow(Follow::Blob);
        let r = self.call(&req, Scope::Pull).await?;
        if !r.status().is_success() {
            return Err(self.status_error(r, "get", &what).await);
        }
        Ok(net::stream(r, self.target(), "read", &what))
    }

    /// `len` bytes of a blob at `offset` (the registry may ignore the range: then they are cut
    /// out of the full answer, reading no further than needed).
    pub async fn get_blob_range(&self, digest: &Digest, offset: u64, len: u64) -> Result<Bytes> {
        let what = format!("blob {digest}");
        let range = HeaderValue::from_str(&format!("bytes={offset}-{}", offset + len.max(1) - 1))
            .map_err(|e| Error::Task(e.to_string()))?;
        let req = Request::get(
            self.url(&format!("blobs/{digest}"))?,
            "read range of",
            &what,
        )
        .follow(Follow::Blob)
        .header(RANGE, range);
        let r = self.call(&req, Scope::Pull).await?;
        let status = r.status();
        if !status.is_success() {
            return Err(self.status_error(r, "read range of", &what).await);
        }
        let partial = status == StatusCode::PARTIAL_CONTENT;
        net::read_range(r, partial, offset, len, self.target(), &what).await
    }

    /// Upload a blob in one request (POST, then PUT with the bytes).
    pub async fn push_blob(&self, digest: &Digest, data: Bytes) -> Result<()> {
        self.push_blob_body(digest, net::Body::Bytes(data)).await
    }

    /// Upload the blob in the first `size` bytes of `file` in one request, streamed from disk:
    /// memory stays flat whatever the layer's size.
    pub async fn push_blob_file(
        &self,
        digest: &Digest,
        file: &std::path::Path,
        size: u64,
    ) -> Result<()> {
        self.push_blob_body(
            digest,
            net::Body::File {
                path: file.to_path_buf(),
                len: size,
            },
        )
        .await
    }

    async fn push_blob_body(&self, digest: &Digest, data: net::Body) -> Result<()> {
        let what = format!("blob {digest}");
        let req = Request::get(self.url("blobs/uploads/")?, "start upload of", &what)
            .method(Method::POST);
        let r = self.call(&req, Scope::Push).await?;
        if r.status() != StatusCode::ACCEPTED && !r.status().is_success() {
            return Err(self.status_error(r, "start upload of", &what).await);
        }
        let mut at = self.upload_location(&r, &req.url, &what)?;
        at.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let put = Request::get(at, "upload", &what)
            .method(Method::PUT)
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
        let put = net::Request {
            body: Some(data),
            ..put
        };
        let r = self.call(&put, Scope::Push).await?;
        if !r.status().is_success() {
            return Err(self.status_error(r, "upload", &what).await);
        }
        Ok(())
    }

    /// Where an upload continues: its `Location`, which must stay on the registry's origin.
    fn upload_location(
        &self,
        r: &reqwest::Response,
        from: &url::Url,
        what: &str,
    ) -> Result<url::Url> {
        let loc = r
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| Error::Backend {
                target: self.target().to_string(),
                op: "start upload of",
                object: what.to_string(),
                retryable: false,
                source: "the registry gave no upload Location".into(),
            })?;
        let at = from.join(loc).map_err(|e| Error::Backend {
            target: self.target().to_string(),
            op: "start upload of",
            object: what.to_string(),
            retryable: false,
            source: format!("bad upload Location: {e}").into(),
        })?;
        if !net::same_origin(&self.base, &at) {
            return Err(Error::Refused {
                target: self.target().to_string(),
                what: format!("upload {what}"),
                reason: format!(
                    "an upload location on another origin ({}): credentials are sent only to the registry",
                    net::redact_url(&at)
                ),
            });
        }
        Ok(at)
    }

    /// Mount a blob from repository `from` of the same registry. `Ok(false)`: not mounted
    /// (the registry started an upload instead, or refused).
    pub async fn mount_blob(&self, digest: &Digest, from: &str) -> Result<bool> {
        let what = format!("blob {digest}");
        let mut url = self.url("blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let req = Request::get(url, "mount", &what).method(Method::POST);
        let r = self.call(&req, Scope::Push).await?;
        Ok(r.status() == StatusCode::CREATED)
    }

    /// Store a manifest under `reference` (a digest or a tag).
    pub async fn put_manifest(
        &self,
        reference: &str,
        bytes: Bytes,
        media_type: &'static str,
    ) -> Result<()> {
        let what = format!("manifest {reference}");
        let req = Request::get(self.url(&format!("manifests/{reference}"))?, "put", &what)
            .method(Method::PUT)
            .header(CONTENT_TYPE, HeaderValue::from_static(media_type))
            .body(bytes);
        let r = self.call(&req, Scope::Push).await?;
        if !r.status().is_success() {
            return Err(self.status_error(r, "put", &what).await);
        }
        Ok(())
    }

    /// Every tag of the repository (empty when it does not exist), at most [`MAX_TAGS`].
    pub async fn list_tags(&self, page: usize) -> Result<Vec<String>> {
        let what = format!("tags of {}", self.repository);
        let mut out: Vec<String> = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let mut url = self.url("tags/list")?;
            url.query_pairs_mut().append_pair("n", &page.to_string());
            if let Some(l) = &last {
                url.query_pairs_mut().append_pair("last", l);
            }
            let req = Request::get(url, "list", &what);
            let r = self.call(&req, Scope::Pull).await?;
            if !r.status().is_success() {
                return match self.status_error(r, "list", &what).await {
                    Error::NotFound { .. } => Ok(out),
                    e => Err(e),
                };
            }
            let body = net::read_body(r, net::MAX_TAG_PAGE, self.target(), "list", &what).await?;
            let p: TagPage = serde_json::from_slice(&body).map_err(|e| Error::Corrupt {
                target: self.target().to_string(),
                what: what.clone(),
                reason: e.to_string(),
            })?;
            let tags = p.tags.unwrap_or_default();
            let n = tags.len();
            let next = tags.iter().max().cloned();
            out.extend(tags);
            if out.len() > MAX_TAGS {
                return Err(Error::Corrupt {
                    target: self.target().to_string(),
                    what,
                    reason: format!("more than {MAX_TAGS} tags"),
                });
            }
            // A page must move forward, or a hostile registry could page us forever.
            if n < page || next.is_none() || next <= last {
                break;
            }
            last = next;
        }
        Ok(out)
    }
}

/// Registries whose token service lives on another host by design, and that host (HTTPS only):
/// without this, Docker Hub with credentials would need `SITEBUNDLE_REGISTRY_TOKEN_HOSTS`. Only
/// exact pairs are listed, so a hostile registry cannot name its own realm here.
const WELL_KNOWN_TOKEN_HOSTS: &[(&str, &str)] = &[
    ("registry-1.docker.io", "auth.docker.io"),
    ("index.docker.io", "auth.docker.io"),
    ("docker.io", "auth.docker.io"),
];

fn well_known_token_host(base: &url::Url, realm: &url::Url) -> bool {
    let (Some(registry), Some(realm_host)) = (base.host_str(), realm.host_str()) else {
        return false;
    };
    base.scheme() == "https"
        && realm.port().is_none()
        && WELL_KNOWN_TOKEN_HOSTS
            .iter()
            .any(|(r, t)| registry.eq_ignore_ascii_case(r) && realm_host.eq_ignore_ascii_case(t))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:a/b:pull");
        let c = parse_challenge(r#"Basic realm="sitebundle-test""#).unwrap();
        assert_eq!(c.scheme, "basic");
        let c = parse_challenge(r#"Bearer realm=http://x/t, service="a\"b""#).unwrap();
        assert_eq!(c.params["realm"], "http://x/t");
        assert_eq!(c.params["service"], "a\"b");
        assert!(parse_challenge("").is_none());
    }

    fn reg(base: &str, hosts: &[&str]) -> Registry {
        let plain = base.starts_with("http://");
        let host = base.split("://").nth(1).unwrap().trim_end_matches('/');
        let mut r = Registry::new("t", host, "a/b", plain, RegistryAuth::Anonymous, None).unwrap();
        r.token_hosts = hosts.iter().map(|h| h.to_string()).collect();
        r
    }

    #[test]
    fn token_realms_that_may_receive_credentials() {
        let u = |s: &str| s.parse::<url::Url>().unwrap();
        let r = reg("https://reg.example", &[]);
        assert!(r.realm_trusted(&u("https://reg.example/token")));
        assert!(!r.realm_trusted(&u("https://auth.example/token")));
        assert!(!r.realm_trusted(&u("http://reg.example/token")));
        assert!(!r.realm_trusted(&u("https://reg.example:8443/token")));
        let r = reg("https://reg.example", &["auth.example"]);
        assert!(r.realm_trusted(&u("https://auth.example/token")));
        assert!(!r.realm_trusted(&u("http://auth.example/token")));
        let r = reg("http://127.0.0.2:5000", &[]);
        assert!(r.realm_trusted(&u("http://127.0.0.2:5000/token")));
        assert!(!r.realm_trusted(&u("http://127.0.0.3:5000/token")));
        // Docker Hub's token service is a known pair, over HTTPS only, and only for Docker Hub.
        let r = reg("https://registry-1.docker.io", &[]);
        assert!(r.realm_trusted(&u("https://auth.docker.io/token")));
        assert!(!r.realm_trusted(&u("http://auth.docker.io/token")));
        assert!(!r.realm_trusted(&u("https://auth.docker.io:8443/token")));
        let r = reg("https://evil.example", &[]);
        assert!(!r.realm_trusted(&u("https://auth.docker.io/token")));
    }
}
