//! Website target URLs: the `+site` schemes.
//!
//! A website target holds a site's *files* as objects (what a browser fetches), where a bundle
//! target holds the bundle itself. The two kinds can share a bucket, but never a prefix, so the
//! scheme says which one is meant:
//!
//! | URL | website target |
//! |---|---|
//! | `s3+site://bucket[/prefix]` | S3 bucket (website endpoint, or private behind CloudFront OAC) |
//! | `gs+site://bucket[/prefix]` | Google Cloud Storage bucket |
//! | `az+site://container[/prefix]` | Azure Blob container, usually `$web` (static website) |
//! | `file+site:///abs/path` | a local directory (a web server's root) |
//!
//! The prefix is exact: `s3+site://b/www` touches `www/...` only, never `www2/...`. As for bundle
//! targets, a URL never carries credentials, a query or a fragment.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Error;
use crate::url::{clean_prefix, parse_without_secrets, redact};

/// A parsed website target URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SiteUrl {
    /// S3 or an S3-compatible store.
    S3 {
        /// Bucket.
        bucket: String,
        /// Key prefix without leading or trailing `/` (may be empty).
        prefix: String,
    },
    /// Google Cloud Storage.
    Gcs {
        /// Bucket.
        bucket: String,
        /// Key prefix (may be empty).
        prefix: String,
    },
    /// Azure Blob Storage.
    Azure {
        /// Container (`$web` for a static website).
        container: String,
        /// Blob name prefix (may be empty).
        prefix: String,
    },
    /// A local directory.
    Dir {
        /// Absolute path.
        path: PathBuf,
    },
}

impl SiteUrl {
    /// Short kind name: `s3`, `gs`, `az`, `file`.
    pub fn kind(&self) -> &'static str {
        match self {
            SiteUrl::S3 { .. } => "s3",
            SiteUrl::Gcs { .. } => "gs",
            SiteUrl::Azure { .. } => "az",
            SiteUrl::Dir { .. } => "file",
        }
    }

    /// The prefix keys live under (empty for a directory: the directory itself is the root).
    pub fn prefix(&self) -> &str {
        match self {
            SiteUrl::S3 { prefix, .. }
            | SiteUrl::Gcs { prefix, .. }
            | SiteUrl::Azure { prefix, .. } => prefix,
            SiteUrl::Dir { .. } => "",
        }
    }
}

/// Does this string use one of the `+site` schemes? (Decides which parser a target name or URL
/// goes to; nothing else is checked.)
pub fn is_site_url(raw: &str) -> bool {
    raw.split_once("://")
        .is_some_and(|(scheme, _)| scheme.ends_with("+site"))
}

impl FromStr for SiteUrl {
    type Err = Error;

    fn from_str(raw: &str) -> Result<SiteUrl, Error> {
        let bad = |reason: &str| Error::InvalidUrl {
            url: redact(raw),
            reason: reason.to_string(),
        };
        // The URL parser would resolve `..` away; a prefix that needs it is a mistake.
        if raw.split_once("://").is_some_and(|(_, rest)| {
            rest.split(['/', '?', '#'])
                .skip(1)
                .any(|c| c == "." || c == ".." || c.eq_ignore_ascii_case("%2e%2e"))
        }) {
            return Err(bad("a prefix has no . or .. segments"));
        }
        let u = parse_without_secrets(raw, "the cloud provider chain")?;
        let host = || {
            u.host_str()
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .ok_or_else(|| bad("missing bucket / container"))
        };
        let prefix = clean_prefix(u.path());
        match u.scheme() {
            "s3+site" => Ok(SiteUrl::S3 {
                bucket: host()?,
                prefix,
            }),
            "gs+site" => Ok(SiteUrl::Gcs {
                bucket: host()?,
                prefix,
            }),
            "az+site" | "azure+site" => Ok(SiteUrl::Azure {
                container: host()?,
                prefix,
            }),
            "file+site" => {
                if u.host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost")
                {
                    return Err(bad("a file URL has no host: file+site:///absolute/path"));
                }
                let path = PathBuf::from(
                    percent_encoding::percent_decode_str(u.path())
                        .decode_utf8()
                        .map_err(|_| bad("the path is not UTF-8"))?
                        .into_owned(),
                );
                if !path.is_absolute() || u.path() == "/" {
                    return Err(bad("not an absolute directory path (and not /)"));
                }
                Ok(SiteUrl::Dir { path })
            }
            other => Err(bad(&format!(
                "unknown website scheme {other:?} (s3+site, gs+site, az+site, file+site)"
            ))),
        }
    }
}

fn with_prefix(f: &mut fmt::Formatter<'_>, scheme: &str, b: &str, p: &str) -> fmt::Result {
    if p.is_empty() {
        write!(f, "{scheme}://{b}")
    } else {
        write!(f, "{scheme}://{b}/{p}")
    }
}

impl fmt::Display for SiteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SiteUrl::S3 { bucket, prefix } => with_prefix(f, "s3+site", bucket, prefix),
            SiteUrl::Gcs { bucket, prefix } => with_prefix(f, "gs+site", bucket, prefix),
            SiteUrl::Azure { container, prefix } => with_prefix(f, "az+site", container, prefix),
            SiteUrl::Dir { path } => write!(f, "file+site://{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> SiteUrl {
        match s.parse() {
            Ok(t) => t,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn parses_and_round_trips() {
        assert_eq!(
            p("s3+site://www-example/site/"),
            SiteUrl::S3 {
                bucket: "www-example".into(),
                prefix: "site".into()
            }
        );
        assert_eq!(
            p("az+site://$web"),
            SiteUrl::Azure {
                container: "$web".into(),
                prefix: String::new()
            }
        );
        for s in [
            "s3+site://b/p",
            "gs+site://b",
            "az+site://$web/x/y",
            "file+site:///srv/www",
        ] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
        assert!(is_site_url("s3+site://b"));
        assert!(!is_site_url("s3://b"));
    }

    #[test]
    fn refuses_bad_urls_without_echoing_secrets() {
        for s in [
            "s3+site:///nobucket",
            "file+site://host/x",
            "file+site:///",
            "ftp+site://x",
            "s3+site://b/p?x=1",
            "s3+site://b/../x",
        ] {
            assert!(s.parse::<SiteUrl>().is_err(), "{s}");
        }
        let e = "s3+site://AKIA:hunter2@b/p"
            .parse::<SiteUrl>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
