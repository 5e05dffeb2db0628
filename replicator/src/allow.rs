//! The host allow-list: which hosts a process may reach, checked on every hop.
//!
//! A server that reads origin URLs from a config others can edit (`sitebundle-init --sync`, a
//! ConfigMap) must not become a way to reach the cluster's internal services (SSRF). The origin
//! URL is checked when it is opened, but that is not enough: an allowed origin may redirect
//! (blob downloads may go to another host, [`crate::net::Follow::Blob`]). So the list is
//! process-wide, set once by the binary ([`set`]), and consulted by [`crate::net::Http::send`]
//! before **every** request it sends (the first one and each redirect hop) and by the redirect
//! policy of every object-store client ([`crate::net::SafeConnector`]). Without a list (the
//! CLI, a single-site init) every host is allowed, as before.
//!
//! ## Entries
//! - `host` (a DNS name or an IP address): that host, on any port;
//! - `host:port` (`[v6]:port` for IPv6): that host on that port only;
//! - `*.example.com`: any name under `example.com` (not `example.com` itself);
//! - `file:///some/dir/`: directory origins under that path (`file://` origins are refused
//!   unless an entry allows them: a config must not read arbitrary local directories);
//! - `*`: everything (an explicit opt-out, logged by the binary).
//!
//! Object-store origins (`s3://bucket`, `gs://bucket`, `az://container`) are matched by their
//! bucket or container name, like a host; the endpoint they talk to comes from the operator's
//! environment, and redirects from it stay within it.

use std::sync::{Arc, RwLock};

/// A parsed allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    any: bool,
    hosts: Vec<(String, Option<u16>)>,
    suffixes: Vec<String>,
    dirs: Vec<String>,
}

/// An allow-list entry that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("allowed host {entry:?}: {reason}")]
pub struct BadEntry {
    /// The entry as given.
    pub entry: String,
    /// What is wrong with it.
    pub reason: String,
}

impl AllowList {
    /// Parse entries (see the module doc); empty entries are skipped.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, BadEntry> {
        let mut l = AllowList::default();
        for e in entries {
            let raw = e.as_ref().trim();
            if raw.is_empty() {
                continue;
            }
            let bad = |reason: &str| BadEntry {
                entry: raw.to_string(),
                reason: reason.to_string(),
            };
            if raw == "*" {
                l.any = true;
            } else if let Some(path) = raw.strip_prefix("file://") {
                if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
                    return Err(bad("a file:// entry needs an absolute path without .."));
                }
                let mut p = path.to_string();
                if !p.ends_with('/') {
                    p.push('/');
                }
                l.dirs.push(p);
            } else if raw.contains("://") || raw.contains('/') || raw.contains('@') {
                return Err(bad(
                    "give a host name (host, host:port, *.domain), not a URL (except file:///dir/)",
                ));
            } else if let Some(s) = raw.strip_prefix("*.") {
                if s.is_empty() || s.contains('*') {
                    return Err(bad(
                        "a wildcard is only allowed as the first label: *.example.com",
                    ));
                }
                l.suffixes.push(format!(".{}", s.to_ascii_lowercase()));
            } else {
                let (host, port) =
                    split_host_port(raw).ok_or_else(|| bad("not host or host:port"))?;
                if host.is_empty() || host.contains('*') {
                    return Err(bad("not host or host:port"));
                }
                l.hosts.push((host.to_ascii_lowercase(), port));
            }
        }
        Ok(l)
    }

    /// Whether the list allows everything (`*`).
    pub fn allows_any(&self) -> bool {
        self.any
    }

    /// Whether `url` may be reached (see the module doc). `Err` says why not.
    pub fn check(&self, url: &url::Url) -> Result<(), String> {
        if self.any {
            return Ok(());
        }
        if url.scheme() == "file" {
            let path = url.path();
            let mut p = path.to_string();
            if !p.ends_with('/') {
                p.push('/');
            }
            if !path.split('/').any(|c| c == "..") && self.dirs.iter().any(|d| p.starts_with(d)) {
                return Ok(());
            }
            return Err(format!(
                "directory {path} is not under an allowed file:// entry of the allow-list"
            ));
        }
        let Some(host) = url.host_str() else {
            return Err("the URL has no host".into());
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = url.port_or_known_default();
        let by_host = self
            .hosts
            .iter()
            .any(|(h, p)| *h == host && (p.is_none() || *p == port));
        let by_suffix = self.suffixes.iter().any(|s| host.ends_with(s.as_str()));
        if by_host || by_suffix {
            Ok(())
        } else {
            Err(format!(
                "host {}{} is not in the allow-list (--allowed-hosts)",
                host,
                port.map(|p| format!(":{p}")).unwrap_or_default()
            ))
        }
    }
}

fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((h, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((h, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address.
        Some((h, _)) if h.contains(':') => Some((s, None)),
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((s, None)),
    }
}

static GLOBAL: RwLock<Option<Arc<AllowList>>> = RwLock::new(None);

/// Set (or, with `None`, clear) the process-wide allow-list. A config reload calls it again.
pub fn set(list: Option<AllowList>) {
    let mut g = match GLOBAL.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    *g = list.map(Arc::new);
}

/// The process-wide allow-list, if one is set.
pub fn get() -> Option<Arc<AllowList>> {
    match GLOBAL.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

/// Check `url` against the process-wide list (always `Ok` when none is set).
pub fn check(url: &url::Url) -> Result<(), String> {
    match get() {
        Some(l) => l.check(url),
        None => Ok(()),
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
    fn entries_match_hosts_ports_suffixes_and_dirs() {
        let l = AllowList::parse(&[
            "reg.example",
            "127.0.0.1:8080",
            "*.cdn.example",
            "file:///srv/origins",
            "[::1]:9000",
        ])
        .unwrap();
        assert!(l.check(&u("https://reg.example/v2/")).is_ok());
        assert!(l.check(&u("https://REG.example:444/v2/")).is_ok());
        assert!(l.check(&u("http://127.0.0.1:8080/x")).is_ok());
        assert!(l.check(&u("http://127.0.0.1:8081/x")).is_err());
        assert!(l.check(&u("https://a.cdn.example/x")).is_ok());
        assert!(l.check(&u("https://cdn.example/x")).is_err());
        assert!(l.check(&u("https://evilcdn.example/x")).is_err());
        assert!(l.check(&u("http://[::1]:9000/x")).is_ok());
        assert!(l.check(&u("http://169.254.169.254/latest")).is_err());
        assert!(l.check(&u("file:///srv/origins/blog")).is_ok());
        assert!(l.check(&u("file:///srv/originsX")).is_err());
        assert!(l.check(&u("file:///etc")).is_err());
        assert!(AllowList::parse(&["*"])
            .unwrap()
            .check(&u("http://x/"))
            .is_ok());
        assert!(AllowList::default().check(&u("http://x/")).is_err());
    }

    #[test]
    fn bad_entries() {
        for bad in [
            "https://x/",
            "a/b",
            "x:notaport",
            "*",
            "a.*.b",
            "file://rel",
            "u@h",
        ] {
            if bad == "*" {
                continue;
            }
            assert!(AllowList::parse(&[bad]).is_err(), "{bad}");
        }
    }
}
