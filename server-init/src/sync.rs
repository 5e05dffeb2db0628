//! Sync mode: one server, many sites. Keeps `DEST/<site>/current` of every site at the digest its
//! channel (or pinned digest) names. This module is the config and one pass over the sites; the
//! long-running service around it (HTTP API, reloads, previews, signals) is [`crate::service`].
//!
//! ## Config (TOML, one file a ConfigMap can carry)
//! ```toml
//! # Origins for every site; "{site}" is replaced by the site's name, "{channel}" by the channel.
//! origins = ["oci://registry.home.arpa/sites/{site}", "s3://my-sites/{site}"]
//! # Hosts the origins (and every redirect they send) may reach; merged with --allowed-hosts.
//! allowed_hosts = ["registry.home.arpa", "my-sites"]
//! concurrency = 4          # sites installed at once (default 4)
//! site_timeout = "10m"     # longest one site may take in a pass (default 10m)
//! preview_grace = "1h"     # how long a preview folder outlives its channel (default 1h)
//!
//! [sites.blog]
//! channel = "prod"            # follows the channel: re-resolved at every pass
//!
//! [sites.docs]
//! digest = "sha256:..."       # pinned: never replaced by a channel
//! origins = ["https://origin.example.com/docs"]   # overrides the defaults for this site
//!
//! [sites.shop]
//! channels = "pr-*"           # previews: one folder per matching channel, shop--pr-123
//! ```
//! Each site is installed exactly like the single-site mode ([`crate::run::install_one`]) into
//! `DEST/<site>/`, so each swap is atomic and the previous version is kept. A failing site does not
//! stop the others; its status says why, and its `current` keeps serving what it served. Sites
//! removed from the config are left in place (never deleted by a sync); only preview folders go,
//! after their grace period ([`crate::service::previews`]).
//!
//! ## Site names
//! `[a-z0-9][a-z0-9._-]*`, at most 63 characters, not ending in `-`, no `--` (reserved for
//! previews: `<site>--<channel>`), none of [`RESERVED_SITE_NAMES`], not a 64-hex tree name.
//!
//! ## Status file (JSON, replaced atomically after every pass)
//! The same document as the service's `GET /status` ([`crate::service`]): `{"version": 1, "ok":
//! true, "sites": {"blog": {"ok": true, "id": "sha256:...", "manifest": "sha256:...", "changed":
//! false, "origin": "...", "error": null, ...}}, ...}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Deserialize;
use tracing::Instrument;

use crate::error::{chain, ExitStatus, InitError, Result};
use crate::fetch::Timeouts;
use crate::run::{install_one, parse_digest, Outcome, Request, Want};

/// Sites installed at once when the config does not say.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Most sites installed at once, whatever the config says (each holds connections and a
/// blocking thread while it extracts).
pub const MAX_CONCURRENCY: usize = 64;
/// Longest one site may take in a pass when the config does not say: past it the site is
/// reported as timed out and the pass goes on (its `current` is whatever it was).
pub const DEFAULT_SITE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a preview folder outlives its channel when the config does not say.
pub const DEFAULT_PREVIEW_GRACE: Duration = Duration::from_secs(3600);
/// Largest config file read (a ConfigMap holds at most 1 MiB).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The sync config file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Default origins; `{site}` is replaced by the site name, `{channel}` by the channel.
    #[serde(default)]
    pub origins: Vec<String>,
    /// Hosts origins may reach (merged with `--allowed-hosts`; see [`replicator::allow`]).
    #[serde(default)]
    pub allowed_hosts: Option<Vec<String>>,
    /// Sites installed at once (default [`DEFAULT_CONCURRENCY`], at most [`MAX_CONCURRENCY`]).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Longest one site may take in a pass (e.g. `"10m"`).
    #[serde(default)]
    pub site_timeout: Option<String>,
    /// How long a preview folder outlives its channel (e.g. `"1h"`).
    #[serde(default)]
    pub preview_grace: Option<String>,
    /// Sites by name.
    pub sites: BTreeMap<String, SiteConfig>,
}

/// One site in the config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Channel to follow.
    pub channel: Option<String>,
    /// Pinned digest.
    pub digest: Option<String>,
    /// Previews: follow every channel matching this glob (`*` and `?`), one folder each.
    pub channels: Option<String>,
    /// Origins for this site (default: the top-level ones).
    pub origins: Option<Vec<String>>,
    /// Versions kept on disk for this site, `current` included (default 2, at most 32).
    pub keep: Option<usize>,
}

/// One site to install in a pass.
#[derive(Debug, Clone)]
pub struct Job {
    /// Folder name under the root.
    pub name: String,
    /// The channel followed, if any.
    pub channel: Option<String>,
    /// The preview set it belongs to (its config entry), if it is a preview.
    pub preview_of: Option<String>,
    /// The request, or why none could be made (e.g. an origin outside the allow-list).
    pub request: std::result::Result<Request, String>,
}

/// What a pass did for one site.
#[derive(Debug)]
pub struct JobResult {
    /// The job.
    pub job: Job,
    /// The outcome, or the error and its exit status; `None`: not started (shutting down).
    pub result: Option<std::result::Result<Outcome, (String, ExitStatus)>>,
    /// Time taken.
    pub duration: Duration,
}

fn bad(path: &Path, msg: impl std::fmt::Display) -> InitError {
    InitError::Usage(format!("sync config {}: {msg}", path.display()))
}

impl SyncConfig {
    /// Read and check a config file, and that no site's directory under `root` would be the
    /// status file.
    pub fn load_for(path: &Path, root: &Path, status_file: &Path) -> Result<SyncConfig> {
        let text = read_config(path)?;
        SyncConfig::parse_for(path, &text, root, status_file)
    }

    /// Check config text (read from `path`) as [`SyncConfig::load_for`] does.
    pub fn parse_for(
        path: &Path,
        text: &str,
        root: &Path,
        status_file: &Path,
    ) -> Result<SyncConfig> {
        let c = SyncConfig::parse(path, text)?;
        for name in c.sites.keys() {
            if root.join(name) == status_file {
                return Err(bad(
                    path,
                    format!(
                        "site {name} would be the status file {}",
                        status_file.display()
                    ),
                ));
            }
        }
        Ok(c)
    }

    /// Read and check a config file.
    pub fn load(path: &Path) -> Result<SyncConfig> {
        let text = read_config(path)?;
        SyncConfig::parse(path, &text)
    }

    /// Check config text read from `path` (named in messages).
    pub fn parse(path: &Path, text: &str) -> Result<SyncConfig> {
        let c: SyncConfig = toml::from_str(text).map_err(|e| bad(path, e))?;
        for (name, s) in &c.sites {
            check_site_name(name).map_err(|e| bad(path, chain(&e)))?;
            match (&s.channel, &s.digest, &s.channels) {
                (Some(_), None, None) => {}
                (None, Some(d), None) => {
                    parse_digest(d)?;
                }
                (None, None, Some(g)) => {
                    if g.is_empty() || g.contains('/') {
                        return Err(bad(
                            path,
                            format!("site {name}: channels = {g:?} is not a channel glob"),
                        ));
                    }
                }
                _ => {
                    return Err(bad(
                        path,
                        format!("site {name}: give exactly one of channel, digest or channels"),
                    ))
                }
            }
            if s.origins.as_ref().unwrap_or(&c.origins).is_empty() {
                return Err(bad(path, format!("site {name} has no origins")));
            }
        }
        if let Some(n) = c.concurrency {
            if n == 0 || n > MAX_CONCURRENCY {
                return Err(bad(
                    path,
                    format!("concurrency = {n}: use 1 to {MAX_CONCURRENCY}"),
                ));
            }
        }
        for (k, v) in [
            ("site_timeout", &c.site_timeout),
            ("preview_grace", &c.preview_grace),
        ] {
            if let Some(v) = v {
                replicator::env::parse_duration(v)
                    .map_err(|e| bad(path, format!("{k} = {v:?}: {e}")))?;
            }
        }
        if let Some(h) = &c.allowed_hosts {
            replicator::allow::AllowList::parse(h).map_err(|e| bad(path, e))?;
        }
        Ok(c)
    }

    /// Sites installed at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency.unwrap_or(DEFAULT_CONCURRENCY)
    }

    /// Longest one site may take in a pass.
    pub fn site_timeout(&self) -> Duration {
        self.site_timeout
            .as_deref()
            .and_then(|v| replicator::env::parse_duration(v).ok())
            .unwrap_or(DEFAULT_SITE_TIMEOUT)
    }

    /// How long a preview folder outlives its channel.
    pub fn preview_grace(&self) -> Duration {
        self.preview_grace
            .as_deref()
            .and_then(|v| replicator::env::parse_duration(v).ok())
            .unwrap_or(DEFAULT_PREVIEW_GRACE)
    }

    /// The origin URLs of config entry `name` for `channel` (`{site}`, `{channel}` replaced).
    pub fn origins_of(&self, name: &str, channel: Option<&str>) -> Vec<String> {
        self.sites
            .get(name)
            .and_then(|s| s.origins.as_ref())
            .unwrap_or(&self.origins)
            .iter()
            .map(|o| {
                let o = o.replace("{site}", name);
                match channel {
                    Some(c) => o.replace("{channel}", c),
                    None => o,
                }
            })
            .collect()
    }

    /// The request for site `name`, installing under `root/<name>`.
    pub fn request(&self, name: &str, root: &Path, timeouts: Timeouts) -> Result<Request> {
        let s = self
            .sites
            .get(name)
            .ok_or_else(|| InitError::Usage(format!("no site {name}")))?;
        let want = match (&s.channel, &s.digest) {
            (_, Some(d)) => Want::Digest(parse_digest(d)?),
            (Some(c), None) => Want::Channel(c.clone()),
            (None, None) => {
                return Err(InitError::Usage(format!("site {name}: nothing to install")))
            }
        };
        let origins = self.origins_of(name, s.channel.as_deref());
        check_allowed(&origins)?;
        Ok(Request {
            want,
            origins,
            dest: root.join(name),
            timeouts,
            keep: s
                .keep
                .unwrap_or(crate::install::DEFAULT_KEEP)
                .clamp(1, crate::install::MAX_KEEP),
        })
    }
}

/// Read a config file, bounded ([`MAX_CONFIG_BYTES`]).
pub fn read_config(path: &Path) -> Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| bad(path, e))?;
    let mut text = String::new();
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| bad(path, e))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(bad(path, format!("larger than {MAX_CONFIG_BYTES} bytes")));
    }
    Ok(text)
}

/// Check every origin URL against the process-wide allow-list ([`replicator::allow`]) before
/// anything is opened. Redirects are checked again, hop by hop, by the replicator.
pub fn check_allowed(origins: &[String]) -> Result<()> {
    for o in origins {
        // `oci://`, `s3://`, `file://`, `https://`: all parse as URLs with the host (or
        // bucket) where the allow-list looks for it.
        let u: url::Url = o
            .parse()
            .map_err(|e| InitError::Usage(format!("origin {}: {e}", crate::logging::redact(o))))?;
        replicator::allow::check(&u).map_err(|reason| {
            InitError::Usage(format!(
                "origin {} refused: {reason}",
                crate::logging::redact(o)
            ))
        })?;
    }
    Ok(())
}

/// Names a site may not have: the sync root's own status file, and the names a DEST uses for
/// itself (a site directory must never be mistaken for, or collide with, one of them).
pub const RESERVED_SITE_NAMES: &[&str] = &[
    "status.json",
    crate::install::CURRENT,
    crate::install::PREVIOUS,
    "lost+found",
];

/// Whether `name` is a valid folder name under the sync root (`max` characters at most).
fn folder_name_ok(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// A site name becomes a directory name under the sync root: `[a-z0-9][a-z0-9._-]*`, at most 63
/// characters (so no path separator, no `.`/`..`, no hidden name such as `.lock`, `.meta` or a
/// `.staging-*`), and none of [`RESERVED_SITE_NAMES`], nor a 64-hex tree name. No `--` and no
/// trailing `-`: `<site>--<channel>` is a preview's folder, and must split one way only.
pub fn check_site_name(name: &str) -> Result<()> {
    if !folder_name_ok(name, 63) {
        return Err(InitError::Usage(format!(
            "site name {name:?}: use lowercase letters, digits, . _ - starting with a letter or \
             digit, at most 63 characters (it becomes a directory name)"
        )));
    }
    if name.contains("--") || name.ends_with('-') {
        return Err(InitError::Usage(format!(
            "site name {name:?}: no \"--\" and no trailing \"-\" (SITE--CHANNEL is the folder of \
             a preview)"
        )));
    }
    let tree_like = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
    if RESERVED_SITE_NAMES.contains(&name) || tree_like {
        return Err(InitError::Usage(format!(
            "site name {name:?} collides with a name the sync root or a DEST uses for itself \
             ({}, or a 64-hex tree name): choose another",
            RESERVED_SITE_NAMES.join(", ")
        )));
    }
    Ok(())
}

/// The folder of the preview of `site` for `channel`: `<site>--<channel>`, when the channel is
/// a valid folder name part (lowercase letters, digits, `._-`, starting with a letter or digit,
/// the whole at most 128 characters); `None` otherwise (the channel is skipped and reported).
pub fn preview_folder(site: &str, channel: &str) -> Option<String> {
    let name = format!("{site}--{channel}");
    (folder_name_ok(channel, 128) && folder_name_ok(&name, 128)).then_some(name)
}

/// The site a preview folder belongs to (the part before the first `--`).
pub fn preview_parent(folder: &str) -> Option<&str> {
    folder.split_once("--").map(|(p, _)| p)
}

/// Whether `name` matches `glob` (`*`: any run of characters, `?`: one character).
pub fn glob_match(glob: &str, name: &str) -> bool {
    let (g, n): (Vec<char>, Vec<char>) = (glob.chars().collect(), name.chars().collect());
    let (mut gi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == n[ni]) {
            gi += 1;
            ni += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some(gi);
            mark = ni;
            gi += 1;
        } else if let Some(s) = star {
            gi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|c| *c == '*')
}

/// The jobs of the plain (non-preview) sites of `config`.
pub fn plain_jobs(config: &SyncConfig, root: &Path, timeouts: Timeouts) -> Vec<Job> {
    config
        .sites
        .iter()
        .filter(|(_, s)| s.channels.is_none())
        .map(|(name, s)| Job {
            name: name.clone(),
            channel: s.channel.clone(),
            preview_of: None,
            request: config.request(name, root, timeouts).map_err(|e| chain(&e)),
        })
        .collect()
}

/// Run one pass over `jobs`: at most `concurrency` at once, each within `site_timeout`, so one
/// slow or failing site never holds the others back past its own timeout. Once `stop` is set,
/// no new site starts; the ones running finish (each swap is atomic, so every site stays
/// complete), and the ones not started are returned with `result: None`.
///
/// A site cut by its timeout while it was extracting (on the blocking pool, which cannot be
/// cancelled) finishes that extraction in the background, still holding its DEST lock: its swap
/// stays atomic, and the next pass for it waits for the lock (bounded by `--lock-timeout`).
pub async fn pass(
    jobs: Vec<Job>,
    concurrency: usize,
    site_timeout: Duration,
    stop: &AtomicBool,
) -> Vec<JobResult> {
    futures::stream::iter(jobs)
        .map(|job| async move {
            let started = Instant::now();
            if stop.load(Ordering::SeqCst) {
                return JobResult {
                    job,
                    result: None,
                    duration: Duration::ZERO,
                };
            }
            let span = tracing::info_span!("site", site = %job.name);
            let result = match &job.request {
                Err(e) => Err((e.clone(), ExitStatus::Usage)),
                Ok(req) => {
                    match tokio::time::timeout(site_timeout, install_one(req.clone()).instrument(span))
                        .await
                    {
                        Ok(Ok(o)) => Ok(o),
                        Ok(Err(e)) => Err((chain(&e), e.exit_status())),
                        Err(_) => Err((
                            format!(
                                "site took longer than its timeout ({}s, site_timeout); it keeps serving what it served",
                                site_timeout.as_secs()
                            ),
                            ExitStatus::Origins,
                        )),
                    }
                }
            };
            if let Err((e, code)) = &result {
                tracing::error!(site = %job.name, error = %e, code = *code as u8, "site failed; it keeps serving what it served");
            }
            JobResult {
                job,
                result: Some(result),
                duration: started.elapsed(),
            }
        })
        .buffer_unordered(concurrency.clamp(1, MAX_CONCURRENCY))
        .collect()
        .await
}

/// The bundle id `DEST/<site>/current` points at, if any.
pub fn served_id(site_dir: &Path) -> Option<String> {
    let t = std::fs::read_link(site_dir.join(crate::install::CURRENT)).ok()?;
    Some(format!("sha256:{}", t.to_str()?))
}

/// Write the status file atomically.
pub fn write_status(path: &Path, status: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(InitError::local("create directory", dir))?;
    }
    let bytes = serde_json::to_vec_pretty(status).unwrap_or_default();
    bundle::store::write_atomic(path, &bytes).map_err(|e| InitError::Local {
        op: "write status file",
        path: path.to_path_buf(),
        source: std::io::Error::other(chain(&e)),
    })
}

/// The default status file of a sync root.
pub fn default_status_file(root: &Path, status_file: Option<PathBuf>) -> PathBuf {
    status_file.unwrap_or_else(|| root.join("status.json"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn config_parses_and_substitutes() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sites.toml");
        std::fs::write(
            &p,
            r#"
origins = ["oci://reg/sites/{site}", "s3://b/{site}"]
[sites.blog]
channel = "prod"
[sites.docs]
digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
origins = ["https://o/docs"]
"#,
        )
        .unwrap();
        let c = SyncConfig::load(&p).unwrap();
        let t2 = Timeouts {
            total: Duration::from_secs(1),
            io: Duration::from_secs(1),
            lock: Duration::from_secs(1),
        };
        let r = c.request("blog", Path::new("/sites"), t2).unwrap();
        assert_eq!(r.origins, ["oci://reg/sites/blog", "s3://b/blog"]);
        assert_eq!(r.dest, Path::new("/sites/blog"));
        assert_eq!(r.want, Want::Channel("prod".into()));
        let r = c.request("docs", Path::new("/sites"), t2).unwrap();
        assert_eq!(r.origins, ["https://o/docs"]);
    }

    #[test]
    fn bad_configs() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s.toml");
        for bad in [
            "origins=['x']\n[sites.a]\n",
            "origins=['x']\n[sites.'../x']\nchannel='p'\n",
            "[sites.a]\nchannel='p'\n",
            "origins=['x']\n[sites.a]\nchannel='p'\ndigest='sha256:00'\n",
            "origins=['x']\n[sites.'status.json']\nchannel='p'\n",
            "origins=['x']\n[sites.current]\nchannel='p'\n",
            "origins=['x']\n[sites.previous]\nchannel='p'\n",
            "origins=['x']\n[sites.'.lock']\nchannel='p'\n",
            "origins=['x']\n[sites.'.staging-x']\nchannel='p'\n",
            "origins=['x']\n[sites.'..']\nchannel='p'\n",
            "origins=['x']\n[sites.'.']\nchannel='p'\n",
            "origins=['x']\n[sites.'a/b']\nchannel='p'\n",
            "origins=['x']\n[sites.'.hidden']\nchannel='p'\n",
            "origins=['x']\n[sites.'a--b']\nchannel='p'\n",
            "origins=['x']\n[sites.'a-']\nchannel='p'\n",
            "origins=['x']\n[sites.a]\nchannel='p'\nchannels='pr-*'\n",
            "origins=['x']\nconcurrency=0\n[sites.a]\nchannel='p'\n",
            "origins=['x']\nsite_timeout='soon'\n[sites.a]\nchannel='p'\n",
            "origins=['x']\nallowed_hosts=['https://x/']\n[sites.a]\nchannel='p'\n",
        ] {
            std::fs::write(&p, bad).unwrap();
            assert!(SyncConfig::load(&p).is_err(), "{bad}");
        }
    }

    /// The ConfigMap of `deploy/sync.yaml` is a config this parser takes.
    #[test]
    fn the_deploy_config_map_parses() {
        let yaml = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/sync.yaml"),
        )
        .unwrap();
        let start = yaml.find("  sites.toml: |\n").unwrap() + "  sites.toml: |\n".len();
        let end = yaml.find("  nginx.conf: |").unwrap();
        let toml: String = yaml[start..end]
            .lines()
            .map(|l| l.strip_prefix("    ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let c = SyncConfig::parse(Path::new("deploy/sync.yaml"), &toml).unwrap();
        assert!(c.sites.contains_key("blog-pr"));
        assert!(c.allowed_hosts.is_some());
    }

    #[test]
    fn globs_and_preview_folders() {
        assert!(glob_match("pr-*", "pr-123"));
        assert!(glob_match("pr-*", "pr-"));
        assert!(!glob_match("pr-*", "prod"));
        assert!(glob_match("*-rc?", "v1-rc2"));
        assert!(!glob_match("*-rc?", "v1-rc"));
        assert!(glob_match("*", "anything"));
        assert_eq!(
            preview_folder("shop", "pr-1").as_deref(),
            Some("shop--pr-1")
        );
        assert_eq!(preview_folder("shop", "PR-1"), None);
        assert_eq!(preview_folder("shop", "../x"), None);
        assert_eq!(preview_folder("shop", "-x"), None);
        assert_eq!(preview_parent("shop--pr-1--b"), Some("shop"));
    }
}
