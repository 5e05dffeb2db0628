//! The HTTP headers each published object carries, from glob rules in `sitebundle.toml`.
//!
//! ```toml
//! [[site.headers]]
//! path = "**/*.html"                 # a glob over the site path
//! cache_control = "no-cache"
//! [[site.headers]]
//! path = "_static/**"
//! cache_control = "public, max-age=31536000, immutable"
//! [[site.headers]]
//! path = "*.gz"                      # no `/`: matches the file name in any directory
//! content_encoding = "gzip"          # a precompressed variant: type from the name without .gz
//! ```
//!
//! Why rules and not per-store settings: the same site must answer with the same headers from
//! every origin a CDN may fail over to, so the headers are a function of the path and the rules
//! alone, computed once and given to every store. Rules apply in order; for each header the last
//! matching rule that sets it wins. `Content-Type` defaults to [`super::mime::content_type`].
//! Globs use `globset` (linear time): `*` and `?` stay inside one path segment, `**` crosses them,
//! `{a,b}` alternates. The rules (and the MIME table's version) are recorded in the marker, so the
//! next publish knows the headers every object was given without asking the store for them.

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

use super::mime;
use super::SiteError;

/// Longest header value accepted from a rule.
pub const MAX_HEADER_VALUE: usize = 1024;

/// One rule: a glob and the headers it sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRule {
    /// Glob over the site path (without `/`: over the file name, in any directory).
    pub path: String,
    /// `Cache-Control`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `Content-Type` (instead of the MIME table's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `Content-Encoding` (for precompressed variants, e.g. `gzip` on `*.gz`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
}

/// The header rules, as configured (and as recorded in the marker).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSpec {
    /// Version of the built-in MIME table these rules were applied with.
    pub mime_table: u32,
    /// The rules, in order.
    #[serde(default)]
    pub rules: Vec<HeaderRule>,
}

impl HeaderSpec {
    /// The given rules with the current MIME table.
    pub fn new(rules: Vec<HeaderRule>) -> HeaderSpec {
        HeaderSpec {
            mime_table: mime::TABLE_VERSION,
            rules,
        }
    }
}

/// The headers of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Headers {
    /// `Content-Type`.
    pub content_type: String,
    /// `Cache-Control`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `Content-Encoding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
}

impl Headers {
    /// Is the object marked as never changing (`immutable` in `Cache-Control`)? Such paths are
    /// left out of CDN invalidation lists.
    pub fn is_immutable(&self) -> bool {
        self.cache_control.as_deref().is_some_and(|c| {
            c.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("immutable"))
        })
    }
}

/// Rules ready to apply.
#[derive(Debug, Clone)]
pub struct Rules {
    spec: HeaderSpec,
    matchers: Vec<(GlobMatcher, bool)>,
}

fn check_value(rule: &str, name: &str, v: &Option<String>) -> Result<(), SiteError> {
    let Some(v) = v else { return Ok(()) };
    let ok = !v.is_empty()
        && v.len() <= MAX_HEADER_VALUE
        && v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        && v.trim() == v;
    if ok {
        Ok(())
    } else {
        Err(SiteError::BadRule {
            rule: rule.to_string(),
            reason: format!(
                "{name} must be printable ASCII without leading or trailing spaces, \
                 1 to {MAX_HEADER_VALUE} characters"
            ),
        })
    }
}

impl Rules {
    /// Compile `spec`, checking every glob and header value.
    pub fn new(spec: HeaderSpec) -> Result<Rules, SiteError> {
        let mut matchers = Vec::with_capacity(spec.rules.len());
        for r in &spec.rules {
            let glob = GlobBuilder::new(&r.path)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| SiteError::BadRule {
                    rule: r.path.clone(),
                    reason: e.kind().to_string(),
                })?;
            check_value(&r.path, "cache_control", &r.cache_control)?;
            check_value(&r.path, "content_type", &r.content_type)?;
            check_value(&r.path, "content_encoding", &r.content_encoding)?;
            check_value(&r.path, "content_disposition", &r.content_disposition)?;
            check_value(&r.path, "content_language", &r.content_language)?;
            if let Some(enc) = &r.content_encoding {
                if !enc
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b',' || b == b' ')
                {
                    return Err(SiteError::BadRule {
                        rule: r.path.clone(),
                        reason: "content_encoding is a list of codings such as gzip or br".into(),
                    });
                }
            }
            matchers.push((glob.compile_matcher(), r.path.contains('/')));
        }
        Ok(Rules { spec, matchers })
    }

    /// No rules: MIME table only.
    pub fn none() -> Rules {
        Rules {
            spec: HeaderSpec::new(Vec::new()),
            matchers: Vec::new(),
        }
    }

    /// The spec these rules were compiled from.
    pub fn spec(&self) -> &HeaderSpec {
        &self.spec
    }

    /// The headers of the object at site path `key`.
    pub fn headers(&self, key: &str) -> Headers {
        let name = key.rsplit('/').next().unwrap_or(key);
        let mut h = Headers::default();
        let mut content_type = None;
        for (r, (m, whole)) in self.spec.rules.iter().zip(&self.matchers) {
            let hit = if *whole {
                m.is_match(key)
            } else {
                m.is_match(name)
            };
            if !hit {
                continue;
            }
            if r.cache_control.is_some() {
                h.cache_control.clone_from(&r.cache_control);
            }
            if r.content_type.is_some() {
                content_type.clone_from(&r.content_type);
            }
            if r.content_encoding.is_some() {
                h.content_encoding.clone_from(&r.content_encoding);
            }
            if r.content_disposition.is_some() {
                h.content_disposition.clone_from(&r.content_disposition);
            }
            if r.content_language.is_some() {
                h.content_language.clone_from(&r.content_language);
            }
        }
        h.content_type = content_type.unwrap_or_else(|| {
            // A precompressed variant (`app.js.gz` sent with `Content-Encoding: gzip`) has the
            // type of what it decodes to.
            let stripped = h.content_encoding.as_deref().and_then(|enc| {
                let suffix = match enc.trim() {
                    "gzip" => ".gz",
                    "br" => ".br",
                    "zstd" => ".zst",
                    _ => return None,
                };
                name.strip_suffix(suffix).filter(|s| !s.is_empty())
            });
            mime::content_type(stripped.unwrap_or(name))
        });
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: &str) -> HeaderRule {
        HeaderRule {
            path: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn last_matching_rule_wins_per_header() {
        let rules = Rules::new(HeaderSpec::new(vec![
            HeaderRule {
                cache_control: Some("public, max-age=600".into()),
                ..rule("**")
            },
            HeaderRule {
                cache_control: Some("no-cache".into()),
                ..rule("*.html")
            },
            HeaderRule {
                cache_control: Some("public, max-age=31536000, immutable".into()),
                ..rule("_static/**")
            },
            HeaderRule {
                content_encoding: Some("gzip".into()),
                ..rule("*.gz")
            },
        ]))
        .expect("rules");
        let h = rules.headers("a/b/index.html");
        assert_eq!(h.cache_control.as_deref(), Some("no-cache"));
        assert_eq!(h.content_type, "text/html; charset=utf-8");
        let h = rules.headers("_static/css/index.ff1ffe59.css");
        assert!(h.is_immutable());
        assert_eq!(h.content_type, "text/css; charset=utf-8");
        let h = rules.headers("x/app.js.gz");
        assert_eq!(h.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(h.content_type, "text/javascript; charset=utf-8");
        assert_eq!(
            rules.headers("robots.txt").cache_control.as_deref(),
            Some("public, max-age=600")
        );
        // `*` stays inside a segment when the glob has a `/`.
        let r = Rules::new(HeaderSpec::new(vec![HeaderRule {
            cache_control: Some("x".into()),
            ..rule("a/*.html")
        }]))
        .expect("rules");
        assert!(r.headers("a/b/c.html").cache_control.is_none());
        assert!(r.headers("a/c.html").cache_control.is_some());
    }

    #[test]
    fn bad_rules_are_refused() {
        for r in [
            HeaderRule {
                cache_control: Some("a\r\nx-evil: 1".into()),
                ..rule("*")
            },
            rule("a/[b"),
            HeaderRule {
                content_encoding: Some("gzip;q=1".into()),
                ..rule("*")
            },
        ] {
            assert!(
                Rules::new(HeaderSpec::new(vec![r.clone()])).is_err(),
                "{r:?}"
            );
        }
    }
}
