//! Target URLs, parsed once into a typed [`TargetUrl`].
//!
//! | URL | target |
//! |---|---|
//! | `oci://host[:port]/repo/path` | OCI registry over HTTPS |
//! | `oci+http://host[:port]/repo` | OCI registry over plain HTTP (loopback tests, in-cluster registries) |
//! | `s3://bucket[/prefix]` | S3 (credentials and endpoint from the AWS chain) |
//! | `gs://bucket[/prefix]` | Google Cloud Storage |
//! | `az://container[/prefix]` | Azure Blob (account from `AZURE_STORAGE_ACCOUNT_NAME`) |
//! | `file:///abs/path` | a local directory |
//! | `http(s)://origin[/path]` | a static HTTP origin serving a directory target (read-only) |
//!
//! A URL never carries credentials: one with userinfo (`user:pass@`), a query or a fragment
//! (where presigned signatures and tokens live) is refused, and the error shows it redacted
//! ([`redact`]), never echoing the secret. `Display` prints the canonical form, which is what logs,
//! errors and `status` show.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Error;

/// A parsed target URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetUrl {
    /// An OCI distribution registry.
    Oci {
        /// `host[:port]`.
        registry: String,
        /// Repository path (lowercase, `/`-separated).
        repository: String,
        /// Speak plain HTTP instead of HTTPS.
        plain_http: bool,
    },
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
        /// Container.
        container: String,
        /// Blob name prefix (may be empty).
        prefix: String,
    },
    /// A local directory.
    Dir {
        /// Absolute path.
        path: PathBuf,
    },
    /// A read-only HTTP(S) origin; the base always ends with `/`.
    Http {
        /// Base URL.
        base: url::Url,
    },
}

impl TargetUrl {
    /// Short kind name: `oci`, `s3`, `gs`, `az`, `file`, `http`.
    pub fn kind(&self) -> &'static str {
        match self {
            TargetUrl::Oci { .. } => "oci",
            TargetUrl::S3 { .. } => "s3",
            TargetUrl::Gcs { .. } => "gs",
            TargetUrl::Azure { .. } => "az",
            TargetUrl::Dir { .. } => "file",
            TargetUrl::Http { .. } => "http",
        }
    }

    /// Can this kind of target be written to?
    pub fn is_writable(&self) -> bool {
        !matches!(self, TargetUrl::Http { .. })
    }
}

/// The URL fit for a message: any userinfo replaced by `***`, and any query or fragment by `?***`
/// (a presigned URL's signature, a SAS `sig=`, a `?token=` live there). Works on strings that do
/// not parse, so a refused URL can be named without echoing its secret.
pub fn redact(raw: &str) -> String {
    let (scheme, rest) = match raw.find("://") {
        Some(i) => (&raw[..i + 3], &raw[i + 3..]),
        None => ("", raw),
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let rest = match rest[..auth_end].rfind('@') {
        Some(at) => format!("***@{}", &rest[at + 1..]),
        None => rest.to_string(),
    };
    match rest.find(['?', '#']) {
        Some(cut) => format!("{scheme}{}?***", &rest[..cut]),
        None => format!("{scheme}{rest}"),
    }
}

/// A prefix or repository path without leading or trailing `/`.
pub(crate) fn clean_prefix(p: &str) -> String {
    p.trim_matches('/').to_string()
}

/// Parse a target URL, refusing credentials, a query or a fragment (the places a secret would
/// ride along); every message names the URL redacted. `where_credentials_go` ends the
/// credentials message: where this kind of target takes them instead.
pub(crate) fn parse_without_secrets(
    raw: &str,
    where_credentials_go: &str,
) -> Result<url::Url, Error> {
    let bad = |reason: String| Error::InvalidUrl {
        url: redact(raw),
        reason,
    };
    let u = url::Url::parse(raw).map_err(|e| bad(e.to_string()))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad(format!(
            "credentials in a URL are refused; give them through the environment \
             ({where_credentials_go})"
        )));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(bad("query strings and fragments are not used".into()));
    }
    Ok(u)
}

impl FromStr for TargetUrl {
    type Err = Error;

    fn from_str(raw: &str) -> Result<TargetUrl, Error> {
        let bad = |reason: &str| Error::InvalidUrl {
            url: redact(raw),
            reason: reason.to_string(),
        };
        let u = parse_without_secrets(
            raw,
            "SITEBUNDLE_REGISTRY_USER/PASSWORD, docker config, or the cloud provider chain",
        )?;
        let host = || {
            u.host_str()
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .ok_or_else(|| bad("missing host / bucket"))
        };
        match u.scheme() {
            "oci" | "oci+http" => {
                let mut registry = host()?;
                if let Some(p) = u.port() {
                    registry = format!("{registry}:{p}");
                }
                let repository = clean_prefix(u.path());
                if repository.is_empty() {
                    return Err(bad("missing repository: oci://host/repo"));
                }
                let ok = repository.split('/').all(|c| {
                    !c.is_empty()
                        && c.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                        })
                        && c.as_bytes()[0].is_ascii_alphanumeric()
                });
                if !ok {
                    return Err(bad(
                        "a repository is lowercase letters, digits and . _ - in /-separated parts",
                    ));
                }
                let plain_http = u.scheme() == "oci+http"
                    || crate::env::var(crate::env::SITEBUNDLE_REGISTRY_PLAIN_HTTP)
                        .is_some_and(|l| l.split(',').any(|h| h.trim() == registry));
                Ok(TargetUrl::Oci {
                    registry,
                    repository,
                    plain_http,
                })
            }
            "s3" => Ok(TargetUrl::S3 {
                bucket: host()?,
                prefix: clean_prefix(u.path()),
            }),
            "gs" => Ok(TargetUrl::Gcs {
                bucket: host()?,
                prefix: clean_prefix(u.path()),
            }),
            "az" | "azure" => Ok(TargetUrl::Azure {
                container: host()?,
                prefix: clean_prefix(u.path()),
            }),
            "file" => {
                if u.host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost")
                {
                    return Err(bad("a file URL has no host: file:///absolute/path"));
                }
                let path = u
                    .to_file_path()
                    .map_err(|()| bad("not an absolute local path"))?;
                Ok(TargetUrl::Dir { path })
            }
            "http" | "https" => {
                host()?;
                let mut base = u.clone();
                if !base.path().ends_with('/') {
                    let p = format!("{}/", base.path());
                    base.set_path(&p);
                }
                Ok(TargetUrl::Http { base })
            }
            other => Err(bad(&format!(
                "unknown scheme {other:?} (oci, oci+http, s3, gs, az, file, http, https)"
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

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetUrl::Oci {
                registry,
                repository,
                plain_http,
            } => {
                let s = if *plain_http { "oci+http" } else { "oci" };
                write!(f, "{s}://{registry}/{repository}")
            }
            TargetUrl::S3 { bucket, prefix } => with_prefix(f, "s3", bucket, prefix),
            TargetUrl::Gcs { bucket, prefix } => with_prefix(f, "gs", bucket, prefix),
            TargetUrl::Azure { container, prefix } => with_prefix(f, "az", container, prefix),
            TargetUrl::Dir { path } => write!(f, "file://{}", path.display()),
            TargetUrl::Http { base } => f.write_str(base.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TargetUrl {
        match s.parse() {
            Ok(t) => t,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn parses_every_kind() {
        assert_eq!(
            p("oci://127.0.0.1:15000/sites/blog"),
            TargetUrl::Oci {
                registry: "127.0.0.1:15000".into(),
                repository: "sites/blog".into(),
                plain_http: false
            }
        );
        assert!(matches!(
            p("oci+http://localhost:5000/a"),
            TargetUrl::Oci {
                plain_http: true,
                ..
            }
        ));
        assert_eq!(
            p("s3://bucket/some/prefix/"),
            TargetUrl::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            }
        );
        assert_eq!(
            p("gs://b"),
            TargetUrl::Gcs {
                bucket: "b".into(),
                prefix: String::new()
            }
        );
        assert!(matches!(p("az://c/x"), TargetUrl::Azure { .. }));
        assert_eq!(
            p("file:///srv/site"),
            TargetUrl::Dir {
                path: "/srv/site".into()
            }
        );
        let TargetUrl::Http { base } = p("https://origin.example/sites/blog") else {
            panic!("not http")
        };
        assert_eq!(base.as_str(), "https://origin.example/sites/blog/");
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "oci://r.example/a/b",
            "oci+http://127.0.0.1:15000/x",
            "s3://b/p",
            "gs://b",
            "az://c/p/q",
            "file:///tmp/x",
            "http://127.0.0.1:18080/x/",
        ] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
    }

    #[test]
    fn refuses_credentials_without_echoing_them() {
        let e = "oci://user:hunter2@r.example/a"
            .parse::<TargetUrl>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("credentials"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        assert_eq!(redact("s3://AKIA:secret@b/p"), "s3://***@b/p".to_string());
    }

    #[test]
    fn refuses_queries_and_fragments_without_echoing_them() {
        for raw in [
            "https://cdn.example/site?token=SECRET1",
            "s3://bucket/p?X-Amz-Signature=SECRET1&X-Amz-Credential=AKIA",
            "az://c/p?sv=2020&sig=SECRET1",
            "oci://r.example/a?access_token=SECRET1",
            "https://h.example/p#SECRET1",
            "https://u:SECRET1@h.example/p?SECRET1",
            "notascheme://x@y/p?SECRET1",
            "htp:/broken?SECRET1",
        ] {
            let e = raw.parse::<TargetUrl>().err().map(|e| e.to_string());
            let e = e.unwrap_or_else(|| panic!("{raw} accepted"));
            assert!(!e.contains("SECRET1"), "{raw}: {e}");
            assert!(!redact(raw).contains("SECRET1"), "{raw}: {}", redact(raw));
        }
        assert_eq!(redact("https://h/p?a=b#c"), "https://h/p?***");
        assert_eq!(redact("https://h/p"), "https://h/p");
    }

    #[test]
    fn refuses_bad_urls() {
        for s in [
            "ftp://x/y",
            "oci://r.example",
            "oci://r.example/UPPER",
            "file://host/x",
            "s3:///nobucket",
            "not a url",
        ] {
            assert!(s.parse::<TargetUrl>().is_err(), "{s}");
        }
    }
}
