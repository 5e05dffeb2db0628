//! The service's HTTP API (`--listen ADDR`), on hyper's HTTP/1 server.
//!
//! | method, path | answer |
//! |---|---|
//! | `POST /sync` | 202: a pass of every site is queued (merged with any queued) |
//! | `POST /sync/<site>` | 202: a pass of that site (config entry or preview folder); 404 if unknown |
//! | `GET /status` | the status document (JSON, `"version": 1`; see [`super`]) |
//! | `GET /metrics` | Prometheus text ([`super::metrics`]) |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 once a config is loaded and a first pass is done, else 503 |
//! | `GET /` | the status page for the person on call ([`super::page`]) |
//!
//! The webhook needs `Authorization: Bearer <token>`, compared in constant time with the token of
//! `--token-file` (read at each request, so a rotated Secret takes effect) or
//! `SITEBUNDLE_SYNC_TOKEN`. Without a token configured the webhook is off: 404, and the log says
//! why. A wrong or missing token: 401, logged without the token.
//!
//! Bounds against hostile clients: [`MAX_CONNECTIONS`] at once (others wait in the kernel's
//! backlog), request heads of at most [`MAX_HEAD`] bytes, the head within [`HEAD_TIMEOUT`], a
//! whole connection within [`CONNECTION_TIMEOUT`]; request bodies are never read (no endpoint
//! takes one) and a body announced above [`MAX_BODY`] is refused with 413.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::{Shared, TokenSource, Trigger};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Largest request head (request line and headers), bytes (hyper's floor is 8 KiB).
pub const MAX_HEAD: usize = 16 * 1024;
/// Time allowed for a request head to arrive.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a whole connection (keep-alive included).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request body announced (none is read).
pub const MAX_BODY: u64 = 64 * 1024;
/// Largest token file read.
pub const MAX_TOKEN_FILE: u64 = 4096;

/// Accept connections until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req, peer)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), svc);
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "connection ended"),
                Err(_) => tracing::debug!(peer = %peer, "connection cut after its time limit"),
            }
            drop(permit);
        });
    }
}

fn answer(
    status: StatusCode,
    ctype: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut s = body.into();
    s.push('\n');
    answer(status, "text/plain; charset=utf-8", s)
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    answer(status, "application/json", body)
}

/// Answer one request (never panics on what a client sends).
pub fn handle(
    shared: &Shared,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Response<Full<Bytes>> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (method.clone(), path.as_str()) {
        (Method::GET | Method::HEAD, "/healthz") => text(StatusCode::OK, "ok"),
        (Method::GET | Method::HEAD, "/readyz") => {
            let st = shared.state();
            if st.ready() {
                text(StatusCode::OK, "ready")
            } else if st.config.is_none() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: no config loaded",
                )
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: first pass not done",
                )
            }
        }
        (Method::GET | Method::HEAD, "/status") => {
            json(StatusCode::OK, &shared.state().status_json())
        }
        (Method::GET | Method::HEAD, "/metrics") => answer(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            super::metrics::render(&shared.state()),
        ),
        (Method::GET | Method::HEAD, "/") => answer(
            StatusCode::OK,
            "text/html; charset=utf-8",
            super::page::render(&shared.state()),
        ),
        (Method::POST, p) if p == "/sync" || p.starts_with("/sync/") => {
            webhook(shared, &req, p, peer)
        }
        (_, "/sync")
        | (_, "/healthz")
        | (_, "/readyz")
        | (_, "/status")
        | (_, "/metrics")
        | (_, "/") => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The expected token, or why the webhook is off / broken.
fn expected_token(source: &TokenSource) -> Result<Option<Vec<u8>>, String> {
    match source {
        TokenSource::None => Ok(None),
        TokenSource::Value(v) => Ok(Some(v.trim().as_bytes().to_vec())),
        TokenSource::File(p) => {
            use std::io::Read;
            let mut buf = Vec::new();
            std::fs::File::open(p)
                .and_then(|f| f.take(MAX_TOKEN_FILE + 1).read_to_end(&mut buf))
                .map_err(|e| format!("token file {}: {e}", p.display()))?;
            if buf.len() as u64 > MAX_TOKEN_FILE {
                return Err(format!(
                    "token file {}: larger than {MAX_TOKEN_FILE} bytes",
                    p.display()
                ));
            }
            let t = String::from_utf8_lossy(&buf).trim().as_bytes().to_vec();
            if t.is_empty() {
                return Err(format!("token file {} is empty", p.display()));
            }
            Ok(Some(t))
        }
    }
}

/// Whether `given` equals `want`, in time that does not depend on where they differ.
pub fn token_matches(given: &[u8], want: &[u8]) -> bool {
    // Lengths are compared in the open: a token's length is not the secret.
    given.len() == want.len() && bool::from(given.ct_eq(want))
}

fn webhook(
    shared: &Shared,
    req: &Request<Incoming>,
    path: &str,
    peer: std::net::SocketAddr,
) -> Response<Full<Bytes>> {
    let want = match expected_token(&shared.token) {
        Ok(Some(t)) => t,
        Ok(None) => {
            tracing::warn!(peer = %peer, path, "webhook refused: no token configured (--token-file or SITEBUNDLE_SYNC_TOKEN), the webhook is off");
            return text(
                StatusCode::NOT_FOUND,
                "webhook off: no token configured on the server",
            );
        }
        Err(e) => {
            tracing::error!(peer = %peer, error = %e, "webhook refused: the token cannot be read");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "webhook token unavailable on the server",
            );
        }
    };
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .map(|t| t.trim_ascii());
    let Some(given) = given else {
        tracing::warn!(peer = %peer, path, "webhook refused: no bearer token");
        return text(StatusCode::UNAUTHORIZED, "missing bearer token");
    };
    if !token_matches(given, &want) {
        tracing::warn!(peer = %peer, path, "webhook refused: wrong token");
        return text(StatusCode::UNAUTHORIZED, "wrong token");
    }
    let trigger = match path.strip_prefix("/sync/") {
        None => Trigger::All("webhook"),
        Some(site) => {
            if !shared.state().knows(site) {
                return text(StatusCode::NOT_FOUND, "no such site");
            }
            Trigger::Sites([site.to_string()].into_iter().collect())
        }
    };
    tracing::info!(peer = %peer, what = %trigger.describe(), "webhook: pass queued");
    shared.trigger(trigger);
    json(StatusCode::ACCEPTED, &serde_json::json!({"queued": true}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches(b"s3cret", b"s3cret"));
        assert!(!token_matches(b"s3cre", b"s3cret"));
        assert!(!token_matches(b"s3creT", b"s3cret"));
        assert!(!token_matches(b"", b"s3cret"));
    }
}
