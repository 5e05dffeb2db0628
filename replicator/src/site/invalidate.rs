//! The paths a CDN must invalidate after a publish, from the plan (never from a listing).
//!
//! Only *stable* names are listed: a path whose name carries a content hash
//! (`app.be7d3bbb2ef33a8344ce.js`) or whose headers say `immutable` changes name when its bytes
//! change, so no cache holds a stale copy of it. Each changed, added or removed page is listed
//! as it may be requested: `/d/index.html` also as `/d/` and `/d` (a directory index), the root
//! as `/` too. Paths have a leading slash and are percent-encoded (`*` too, which CloudFront
//! would take as a wildcard), so `aws cloudfront create-invalidation --paths` takes the list as
//! it is. Above the budget (CloudFront bills per path beyond its free tier and allows 3000 per
//! invalidation), paths are folded into one wildcard per top-level directory, then into `/*`.
//! The marker is always listed when anything changed: an audit through the CDN reads it.

use std::collections::{BTreeMap, BTreeSet};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::headers::Headers;
use super::plan::Plan;

/// Default most paths listed before folding into wildcards.
pub const DEFAULT_BUDGET: usize = 1000;

/// What a path component may keep unencoded: RFC 3986 unreserved plus a few sub-delims that
/// CloudFront takes literally; never `*` (a wildcard there) or `%`.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b'@')
    .remove(b':');

fn encode(key: &str) -> String {
    let mut s = String::with_capacity(key.len() + 1);
    for part in key.split('/') {
        s.push('/');
        s.extend(utf8_percent_encode(part, KEEP));
    }
    s
}

/// Does a file name carry a content hash: a `.`- or `-`-separated part of at least 8 hex digits
/// with both letters and digits (`index.ff1ffe59.css`, `chunk-3f2a9c1b.js`)?
pub fn looks_hashed(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.split(['.', '-', '_']).any(|p| {
        p.len() >= 8
            && p.bytes().all(|b| b.is_ascii_hexdigit())
            && p.bytes().any(|b| b.is_ascii_digit())
            && p.bytes().any(|b| b.is_ascii_alphabetic())
    })
}

fn stable(key: &str, headers: Option<&Headers>) -> bool {
    !looks_hashed(key) && !headers.is_some_and(Headers::is_immutable)
}

/// The request paths of one key.
fn forms(key: &str, out: &mut BTreeSet<String>) {
    out.insert(encode(key));
    if key == "index.html" {
        out.insert("/".to_string());
    } else if let Some(dir) = key.strip_suffix("/index.html") {
        let d = encode(dir);
        out.insert(format!("{d}/"));
        out.insert(d);
    }
}

/// The invalidation paths of `plan`, at most `budget` (then folded into wildcards).
/// `old_headers` gives the headers a removed key had, when known.
pub fn paths(
    plan: &Plan,
    removed_headers: &BTreeMap<String, Headers>,
    budget: usize,
) -> Vec<String> {
    let mut out = BTreeSet::new();
    for w in &plan.writes {
        if stable(&w.key, Some(&w.headers)) {
            forms(&w.key, &mut out);
        }
    }
    for k in &plan.deletes {
        if !super::is_reserved(k) && stable(k, removed_headers.get(k)) {
            forms(k, &mut out);
        }
    }
    if out.is_empty() {
        return Vec::new();
    }
    out.insert(encode(super::MARKER_KEY));
    fold(out, budget.max(1))
}

fn fold(paths: BTreeSet<String>, budget: usize) -> Vec<String> {
    if paths.len() <= budget {
        return paths.into_iter().collect();
    }
    // One wildcard per top-level directory; files at the root stay as they are.
    let mut folded = BTreeSet::new();
    for p in &paths {
        match p[1..].find('/') {
            Some(i) => {
                folded.insert(format!("{}/*", &p[..i + 1]));
            }
            None => {
                folded.insert(p.clone());
            }
        }
    }
    if folded.len() <= budget {
        folded.into_iter().collect()
    } else {
        vec!["/*".to_string()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_encoding() {
        assert!(looks_hashed(
            "_static/css/index.ff1ffe594081f20da1ef19478df9384b.css"
        ));
        assert!(looks_hashed("_static/js/index.be7d3bbb2ef33a8344ce.js"));
        assert!(!looks_hashed("reference/generated/scipy.linalg.funm.html"));
        assert!(!looks_hashed("deadbeef.html"));
        let mut s = BTreeSet::new();
        forms("a b/index.html", &mut s);
        forms("index.html", &mut s);
        forms("x*y.html", &mut s);
        let v: Vec<&str> = s.iter().map(String::as_str).collect();
        assert_eq!(
            v,
            vec![
                "/",
                "/a%20b",
                "/a%20b/",
                "/a%20b/index.html",
                "/index.html",
                "/x%2Ay.html"
            ]
        );
        let many: BTreeSet<String> = (0..10).map(|i| format!("/d{}/p{i}.html", i % 2)).collect();
        assert_eq!(fold(many.clone(), 5), vec!["/d0/*", "/d1/*"]);
        assert_eq!(fold(many, 1), vec!["/*"]);
    }
}
