//! The audit: fetch every file of a bundle from live origins and compare it with the index.
//!
//! Why: a publish can say it succeeded and the public can still get something else (a CDN's
//! stale copy, a failover origin left behind, a hand edit, a tool that skipped same-size files).
//! The audit asks each origin the way a browser does ([`super::fetch`]), hashes every body with
//! BLAKE3 and compares it with the index; it reports, per origin:
//! - **missing** files (404/410), **different** ones (other bytes, a longer body, a redirect, an
//!   error status), **header drift** (a `Content-Type`, `Cache-Control` or `Content-Encoding`
//!   other than the rules give), and **extra** objects where the target can be listed (through
//!   its store, with the environment's credentials; nothing is sent to the audited origin);
//! - the **marker** each origin serves, which must name the audited bundle; across several
//!   origins (a CDN's origin group serves whichever answers) the markers must also agree.
//!
//! `sample` checks a pseudo-random subset (the seed is reported, so a run can be repeated);
//! `wait` repeats the failing checks with backoff until they pass or the time is up (a CDN
//! converging after a publish). Concurrency and rate are bounded per origin.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bundle::Digest;
use futures::StreamExt;
use serde::Serialize;

use super::fetch::{FetchOptions, Fetcher, Outcome, Seen};
use super::files::{SiteFiles, SiteObject};
use super::headers::Headers;
use super::marker::{Marker, MAX_MARKER_BYTES};
use super::{SiteTarget, MARKER_KEY};
use crate::error::Result;

/// Entries kept per kind of problem in a report (counts are always complete).
pub const MAX_LISTED: usize = 1000;
/// Default parallel requests per origin.
pub const DEFAULT_JOBS: usize = 8;

/// Which headers the audit compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeaderCheck {
    /// Content-Type, Cache-Control (where a rule sets it), Content-Encoding.
    #[default]
    All,
    /// Content-Type only.
    ContentType,
    /// None (an origin whose server sets its own headers, such as nginx over a directory).
    None,
}

impl std::str::FromStr for HeaderCheck {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<HeaderCheck, String> {
        match s {
            "all" => Ok(HeaderCheck::All),
            "content-type" => Ok(HeaderCheck::ContentType),
            "none" => Ok(HeaderCheck::None),
            _ => Err(format!("{s:?}: expected all, content-type or none")),
        }
    }
}

/// How to audit.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Parallel requests per origin.
    pub jobs: usize,
    /// Rate limit and cache-busting.
    pub fetch: FetchOptions,
    /// Check this many files (at random) instead of all.
    pub sample: Option<usize>,
    /// Seed of the sample.
    pub seed: u64,
    /// Headers compared.
    pub headers: HeaderCheck,
    /// Keep re-checking failures this long.
    pub wait: Option<Duration>,
    /// Require each origin to serve a marker naming the bundle.
    pub require_marker: bool,
}

impl Default for AuditOptions {
    fn default() -> AuditOptions {
        AuditOptions {
            jobs: DEFAULT_JOBS,
            fetch: FetchOptions {
                rate: None,
                cache_bust: true,
            },
            sample: None,
            seed: 0,
            headers: HeaderCheck::All,
            wait: None,
            require_marker: true,
        }
    }
}

/// What the audit expects: a bundle's objects.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Manifest digest.
    pub manifest: Digest,
    /// Bundle id.
    pub id: Digest,
    /// The objects, with the headers the rules give.
    pub files: SiteFiles,
}

/// The marker as one origin serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum MarkerState {
    /// It names the audited bundle (and no unfinished publish).
    Ok,
    /// It names the audited bundle, with a publish still unfinished.
    Unfinished,
    /// It names another bundle.
    Other {
        /// The manifest it serves.
        serving: Option<Digest>,
    },
    /// There is none (404).
    Missing,
    /// It could not be read or parsed.
    Unreadable {
        /// Why.
        reason: String,
    },
}

/// One problem with one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The key.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// One origin's findings.
#[derive(Debug, Clone, Serialize)]
pub struct OriginReport {
    /// The origin's base URL.
    pub origin: String,
    /// Its marker.
    pub marker: MarkerState,
    /// The manifest its marker serves, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving: Option<Digest>,
    /// Files checked.
    pub checked: usize,
    /// Files that matched (bytes, and headers as far as checked).
    pub ok: usize,
    /// Counts by kind.
    pub missing_count: usize,
    /// Files with other bytes, statuses or redirects.
    pub different_count: usize,
    /// Files whose headers differ from the rules.
    pub header_count: usize,
    /// Objects not in the bundle (only with a listing).
    pub extra_count: usize,
    /// Requests that failed (network, timeouts).
    pub error_count: usize,
    /// Missing files (first [`MAX_LISTED`]).
    pub missing: Vec<String>,
    /// Different files.
    pub different: Vec<Problem>,
    /// Header drift.
    pub headers: Vec<Problem>,
    /// Extra objects.
    pub extra: Vec<String>,
    /// Failed requests.
    pub errors: Vec<Problem>,
}

impl OriginReport {
    /// No difference found.
    pub fn is_clean(&self, require_marker: bool) -> bool {
        // An unfinished publish over the audited bundle leaves it served as it was.
        let marker_ok = match self.marker {
            MarkerState::Ok | MarkerState::Unfinished => true,
            MarkerState::Missing => !require_marker,
            _ => false,
        };
        marker_ok
            && self.missing_count == 0
            && self.different_count == 0
            && self.header_count == 0
            && self.extra_count == 0
            && self.error_count == 0
    }
}

/// The whole audit.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// Manifest digest audited.
    pub manifest: Digest,
    /// Bundle id.
    pub id: Digest,
    /// Files in the bundle.
    pub files: usize,
    /// Files checked per origin (all, or the sample).
    pub sampled: usize,
    /// The sample's seed, when sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Per origin, in the order given.
    pub origins: Vec<OriginReport>,
    /// Every origin's marker names the same bundle.
    pub markers_agree: bool,
    /// Rounds run (more than one with `wait`).
    pub rounds: u32,
    /// No difference anywhere.
    pub clean: bool,
}

/// A small deterministic generator for the sample (xorshift64*): the same seed picks the same
/// files on every run.
fn sample_keys(keys: &[&String], n: usize, seed: u64) -> Vec<String> {
    if n >= keys.len() {
        return keys.iter().map(|k| (*k).clone()).collect();
    }
    // splitmix64 of the seed, so nearby seeds give unrelated samples.
    let mut x = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x = (x ^ (x >> 31)) | 1;
    let mut idx: Vec<usize> = (0..keys.len()).collect();
    // Partial Fisher-Yates: the first n positions are the sample.
    for i in 0..n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let j = i + (r % (keys.len() - i) as u64) as usize;
        idx.swap(i, j);
    }
    let mut out: Vec<String> = idx[..n].iter().map(|&i| keys[i].clone()).collect();
    out.sort();
    out
}

fn norm(v: &str) -> String {
    v.split(';')
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn norm_cc(v: &str) -> String {
    let mut parts: Vec<String> = v
        .split(',')
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    parts.sort();
    parts.join(", ")
}

/// The header differences of one response.
fn header_drift(check: HeaderCheck, want: &Headers, seen: &Seen) -> Vec<String> {
    let mut out = Vec::new();
    if check == HeaderCheck::None {
        return out;
    }
    let got = seen.content_type.as_deref().unwrap_or("");
    if norm(got) != norm(&want.content_type) {
        out.push(format!(
            "Content-Type is {got:?}, the rules give {:?}",
            want.content_type
        ));
    }
    if check == HeaderCheck::ContentType {
        return out;
    }
    if let Some(cc) = &want.cache_control {
        let got = seen.cache_control.as_deref().unwrap_or("");
        if norm_cc(got) != norm_cc(cc) {
            out.push(format!("Cache-Control is {got:?}, the rules give {cc:?}"));
        }
    }
    let enc = seen
        .content_encoding
        .as_deref()
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e != "identity");
    let want_enc = want
        .content_encoding
        .as_deref()
        .map(|e| e.trim().to_ascii_lowercase());
    if enc.is_some() && want_enc.is_some() && enc != want_enc || enc.is_none() && want_enc.is_some()
    {
        out.push(format!(
            "Content-Encoding is {:?}, the rules give {:?}",
            seen.content_encoding.as_deref().unwrap_or(""),
            want.content_encoding.as_deref().unwrap_or("")
        ));
    }
    out
}

/// Check one file.
async fn check_file(
    f: &Fetcher,
    key: &str,
    o: &SiteObject,
    check: HeaderCheck,
) -> (String, Finding) {
    let want = o.headers.clone().unwrap_or_default();
    let out = f.get(key, o.size, want.content_encoding.as_deref()).await;
    let finding = match out {
        Outcome::Body {
            hash,
            size,
            too_long,
            headers,
        } => {
            if too_long {
                Finding::Different(format!(
                    "longer than the {} bytes the index declares",
                    o.size
                ))
            } else if hash != o.hash {
                Finding::Different(format!(
                    "BLAKE3 {} ({size} bytes), the index says {} ({} bytes)",
                    hash.hex(),
                    o.hash.hex(),
                    o.size
                ))
            } else {
                let drift = header_drift(check, &want, &headers);
                if drift.is_empty() {
                    Finding::Ok
                } else {
                    Finding::Headers(drift.join("; "))
                }
            }
        }
        Outcome::Missing => Finding::Missing,
        Outcome::Redirect { location } => {
            Finding::Different(format!("redirects to {location:?} (not followed)"))
        }
        Outcome::Status { code } => Finding::Different(format!("HTTP {code}")),
        Outcome::Failed { reason } => Finding::Error(reason),
    };
    (key.to_string(), finding)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Finding {
    Ok,
    Missing,
    Different(String),
    Headers(String),
    Error(String),
}

async fn read_marker(f: &Fetcher, expected: &Expected) -> (MarkerState, Option<Digest>) {
    match f.get_small(MARKER_KEY, MAX_MARKER_BYTES).await {
        Ok(None) => (MarkerState::Missing, None),
        Err(reason) => (MarkerState::Unreadable { reason }, None),
        Ok(Some(bytes)) => match Marker::parse(f.base().as_str(), &bytes) {
            Err(e) => (
                MarkerState::Unreadable {
                    reason: e.to_string(),
                },
                None,
            ),
            Ok(m) => {
                let serving = m.serving.as_ref().map(|s| s.manifest);
                let st = match serving {
                    Some(d) if d == expected.manifest && m.pending.is_empty() => MarkerState::Ok,
                    Some(d) if d == expected.manifest => MarkerState::Unfinished,
                    _ => MarkerState::Other { serving },
                };
                (st, serving)
            }
        },
    }
}

/// Audit `origins` against `expected`. `listing` gives each origin's target for the extra-object
/// check (same order; `None` where the origin cannot be listed).
pub async fn audit(
    origins: &[url::Url],
    listing: &[Option<SiteTarget>],
    expected: &Expected,
    opts: &AuditOptions,
) -> Result<AuditReport> {
    let keys: Vec<&String> = expected.files.objects.keys().collect();
    let chosen: Vec<String> = match opts.sample {
        Some(n) => sample_keys(&keys, n, opts.seed),
        None => keys.iter().map(|k| (*k).clone()).collect(),
    };
    let mut fetchers = Vec::with_capacity(origins.len());
    for o in origins {
        fetchers.push(Fetcher::new(o, &opts.fetch)?);
    }
    let start = Instant::now();
    let mut rounds = 0u32;
    // Per origin: key -> finding, and the marker.
    let mut findings: Vec<BTreeMap<String, Finding>> = vec![BTreeMap::new(); origins.len()];
    let mut markers: Vec<(MarkerState, Option<Digest>)> =
        vec![(MarkerState::Missing, None); origins.len()];
    let mut extras: Vec<Vec<String>> = vec![Vec::new(); origins.len()];
    for (i, l) in listing.iter().enumerate().take(origins.len()) {
        if let Some(t) = l {
            let listed = t.store.list().await?;
            extras[i] = listed
                .into_iter()
                .map(|(k, _)| k)
                .filter(|k| !super::is_reserved(k) && !expected.files.objects.contains_key(k))
                .collect();
        }
    }
    let mut todo: Vec<Vec<String>> = vec![chosen.clone(); origins.len()];
    let mut delay = Duration::from_secs(2);
    loop {
        rounds += 1;
        for (i, f) in fetchers.iter().enumerate() {
            markers[i] = read_marker(f, expected).await;
            let results: Vec<(String, Finding)> = futures::stream::iter(todo[i].iter())
                .filter_map(|k| async move { expected.files.objects.get(k).map(|o| (k, o)) })
                .map(|(k, o)| check_file(f, k, o, opts.headers))
                .buffer_unordered(opts.jobs.max(1))
                .collect()
                .await;
            for (k, fnd) in results {
                findings[i].insert(k, fnd);
            }
        }
        let marker_ok = |m: &MarkerState| match m {
            MarkerState::Ok | MarkerState::Unfinished => true,
            MarkerState::Missing => !opts.require_marker,
            _ => false,
        };
        let all_ok = (0..origins.len())
            .all(|i| marker_ok(&markers[i].0) && findings[i].values().all(|f| *f == Finding::Ok));
        let Some(wait) = opts.wait else { break };
        if all_ok || start.elapsed() >= wait {
            break;
        }
        for i in 0..origins.len() {
            todo[i] = findings[i]
                .iter()
                .filter(|(_, f)| **f != Finding::Ok)
                .map(|(k, _)| k.clone())
                .collect();
        }
        tokio::time::sleep(delay.min(wait.saturating_sub(start.elapsed()))).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
    let mut reports = Vec::new();
    for (i, o) in origins.iter().enumerate() {
        let mut r = OriginReport {
            origin: o.to_string(),
            marker: markers[i].0.clone(),
            serving: markers[i].1,
            checked: findings[i].len(),
            ok: 0,
            missing_count: 0,
            different_count: 0,
            header_count: 0,
            extra_count: extras[i].len(),
            error_count: 0,
            missing: Vec::new(),
            different: Vec::new(),
            headers: Vec::new(),
            extra: extras[i].iter().take(MAX_LISTED).cloned().collect(),
            errors: Vec::new(),
        };
        for (k, f) in &findings[i] {
            let p = |reason: &String| Problem {
                key: k.clone(),
                reason: reason.clone(),
            };
            match f {
                Finding::Ok => r.ok += 1,
                Finding::Missing => {
                    r.missing_count += 1;
                    if r.missing.len() < MAX_LISTED {
                        r.missing.push(k.clone());
                    }
                }
                Finding::Different(x) => {
                    r.different_count += 1;
                    if r.different.len() < MAX_LISTED {
                        r.different.push(p(x));
                    }
                }
                Finding::Headers(x) => {
                    r.header_count += 1;
                    if r.headers.len() < MAX_LISTED {
                        r.headers.push(p(x));
                    }
                }
                Finding::Error(x) => {
                    r.error_count += 1;
                    if r.errors.len() < MAX_LISTED {
                        r.errors.push(p(x));
                    }
                }
            }
        }
        reports.push(r);
    }
    let first = reports.first().map(|r| (r.marker.clone(), r.serving));
    let markers_agree = reports
        .iter()
        .all(|r| Some((r.marker.clone(), r.serving)) == first);
    let clean = markers_agree && reports.iter().all(|r| r.is_clean(opts.require_marker));
    Ok(AuditReport {
        manifest: expected.manifest,
        id: expected.id,
        files: expected.files.len(),
        sampled: chosen.len(),
        seed: opts.sample.map(|_| opts.seed),
        origins: reports,
        markers_agree,
        rounds,
        clean,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_repeat_with_their_seed() {
        let owned: Vec<String> = (0..100).map(|i| format!("k{i:03}")).collect();
        let keys: Vec<&String> = owned.iter().collect();
        let a = sample_keys(&keys, 10, 42);
        assert_eq!(a.len(), 10);
        assert_eq!(a, sample_keys(&keys, 10, 42));
        assert_ne!(a, sample_keys(&keys, 10, 43));
        assert_eq!(sample_keys(&keys, 1000, 1).len(), 100);
    }

    #[test]
    fn header_drift_is_named() {
        let want = Headers {
            content_type: "text/html; charset=utf-8".into(),
            cache_control: Some("no-cache".into()),
            ..Default::default()
        };
        let ok = Seen {
            content_type: Some("text/html;charset=UTF-8".into()),
            cache_control: Some("no-cache".into()),
            content_encoding: None,
        };
        assert!(header_drift(HeaderCheck::All, &want, &ok).is_empty());
        let bad = Seen {
            content_type: Some("text/plain".into()),
            ..ok.clone()
        };
        assert_eq!(header_drift(HeaderCheck::All, &want, &bad).len(), 1);
        assert!(header_drift(HeaderCheck::None, &want, &bad).is_empty());
    }
}
