//! Sync mode: one server, many sites. Keeps `DEST/<site>/current` of every site at the digest its
//! channel (or pinned digest) names, and writes a status file after each pass.
//!
//! ## Config (TOML)
//! ```toml
//! # Origins for every site; "{site}" is replaced by the site's name.
//! origins = ["oci://registry.home.arpa/sites/{site}", "s3://my-sites/{site}"]
//!
//! [sites.blog]
//! channel = "prod"            # follows the channel: re-resolved at every pass
//!
//! [sites.docs]
//! digest = "sha256:..."       # pinned: never replaced by a channel
//! origins = ["https://origin.example.com/docs"]   # overrides the defaults for this site
//! ```
//! Each site is installed exactly like the single-site mode ([`crate::run::install_one`]) into
//! `DEST/<site>/`, so each swap is atomic and the previous version is kept. A failing site does not
//! stop the others; its status says why, and its `current` keeps serving what it served. Sites
//! removed from the config are left in place (never deleted by a sync).
//!
//! ## Status file (JSON, replaced atomically after every pass)
//! `{"updated_at": "...", "ok": true, "sites": {"blog": {"ok": true, "id": "sha256:...",
//! "manifest": "sha256:...", "changed": false, "origin": "...", "error": null, ...}}}`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::error::{chain, ExitStatus, InitError, Result};
use crate::fetch::Timeouts;
use crate::run::{install_one, parse_digest, Request, Want};

/// The sync config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Default origins; `{site}` is replaced by the site name.
    #[serde(default)]
    pub origins: Vec<String>,
    /// Sites by name.
    pub sites: BTreeMap<String, SiteConfig>,
}

/// One site in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Channel to follow.
    pub channel: Option<String>,
    /// Pinned digest.
    pub digest: Option<String>,
    /// Origins for this site (default: the top-level ones).
    pub origins: Option<Vec<String>>,
    /// Versions kept on disk for this site, `current` included (default 2, at most 32).
    pub keep: Option<usize>,
}

/// Status of one site after a pass.
#[derive(Debug, Clone, Serialize)]
pub struct SiteStatus {
    /// Whether the last pass succeeded for this site.
    pub ok: bool,
    /// The channel followed, if any.
    pub channel: Option<String>,
    /// Bundle id now current (after a failure: what is still served, if known).
    pub id: Option<String>,
    /// Manifest digest installed in this pass, when known.
    pub manifest: Option<String>,
    /// Whether `current` moved in this pass.
    pub changed: bool,
    /// The origin used, if something was fetched.
    pub origin: Option<String>,
    /// The error, if the pass failed for this site.
    pub error: Option<String>,
    /// When this site last succeeded (RFC 3339).
    pub last_success: Option<String>,
}

/// The status file.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// When the pass ended (RFC 3339).
    pub updated_at: String,
    /// All sites succeeded (and the config was read).
    pub ok: bool,
    /// The config could not be read at this pass: the last good one was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    /// Per site.
    pub sites: BTreeMap<String, SiteStatus>,
}

impl SyncConfig {
    /// Read and check a config file, and that no site's directory under `root` would be the
    /// status file.
    pub fn load_for(path: &Path, root: &Path, status_file: &Path) -> Result<SyncConfig> {
        let c = SyncConfig::load(path)?;
        for name in c.sites.keys() {
            if root.join(name) == status_file {
                return Err(InitError::Usage(format!(
                    "sync config {}: site {name} would be the status file {}",
                    path.display(),
                    status_file.display()
                )));
            }
        }
        Ok(c)
    }

    /// Read and check a config file.
    pub fn load(path: &Path) -> Result<SyncConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| InitError::Usage(format!("sync config {}: {e}", path.display())))?;
        let c: SyncConfig = toml::from_str(&text)
            .map_err(|e| InitError::Usage(format!("sync config {}: {e}", path.display())))?;
        for (name, s) in &c.sites {
            check_site_name(name).map_err(|e| {
                InitError::Usage(format!("sync config {}: {}", path.display(), chain(&e)))
            })?;
            match (&s.channel, &s.digest) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(InitError::Usage(format!(
                        "sync config {}: site {name}: give exactly one of channel or digest",
                        path.display()
                    )))
                }
                (None, Some(d)) => {
                    parse_digest(d)?;
                }
                (Some(_), None) => {}
            }
            if s.origins.as_ref().unwrap_or(&c.origins).is_empty() {
                return Err(InitError::Usage(format!(
                    "sync config {}: site {name} has no origins",
                    path.display()
                )));
            }
        }
        Ok(c)
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
        let origins = s
            .origins
            .as_ref()
            .unwrap_or(&self.origins)
            .iter()
            .map(|o| o.replace("{site}", name))
            .collect();
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

/// Names a site may not have: the sync root's own status file, and the names a DEST uses for
/// itself (a site directory must never be mistaken for, or collide with, one of them).
pub const RESERVED_SITE_NAMES: &[&str] = &[
    "status.json",
    crate::install::CURRENT,
    crate::install::PREVIOUS,
    "lost+found",
];

/// A site name becomes a directory name under the sync root: `[a-z0-9][a-z0-9._-]*`, at most 63
/// characters (so no path separator, no `.`/`..`, no hidden name such as `.lock`, `.meta` or a
/// `.staging-*`), and none of [`RESERVED_SITE_NAMES`], nor a 64-hex tree name.
fn check_site_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !ok {
        return Err(InitError::Usage(format!(
            "site name {name:?}: use lowercase letters, digits, . _ - starting with a letter or \
             digit, at most 63 characters (it becomes a directory name)"
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

/// Run one pass over every site; returns the status and the exit status of the pass.
pub async fn pass(
    config: &SyncConfig,
    root: &Path,
    timeouts: Timeouts,
    before: &Status,
) -> (Status, ExitStatus) {
    let mut sites = BTreeMap::new();
    let mut worst = ExitStatus::Ok;
    for name in config.sites.keys() {
        let span = tracing::info_span!("site", site = %name);
        let channel = config.sites.get(name).and_then(|s| s.channel.clone());
        let prev = before.sites.get(name);
        let result = match config.request(name, root, timeouts) {
            Ok(req) => install_one(req).instrument(span).await,
            Err(e) => Err(e),
        };
        let status = match result {
            Ok(o) => SiteStatus {
                ok: true,
                channel,
                id: Some(o.id.to_string()),
                manifest: o.manifest.map(|d| d.to_string()),
                changed: o.changed,
                origin: o.origin,
                error: None,
                last_success: Some(replicator::channel::now_rfc3339()),
            },
            Err(e) => {
                let code = e.exit_status();
                if code as u8 > worst as u8 {
                    worst = code;
                }
                tracing::error!(site = %name, error = %chain(&e), code = code as u8, "site failed; it keeps serving what it served");
                SiteStatus {
                    ok: false,
                    channel,
                    id: served_id(&root.join(name)),
                    manifest: None,
                    changed: false,
                    origin: None,
                    error: Some(chain(&e)),
                    last_success: prev.and_then(|p| p.last_success.clone()),
                }
            }
        };
        sites.insert(name.clone(), status);
    }
    let status = Status {
        updated_at: replicator::channel::now_rfc3339(),
        ok: worst == ExitStatus::Ok,
        config_error: None,
        sites,
    };
    (status, worst)
}

fn served_id(site_dir: &Path) -> Option<String> {
    let t = std::fs::read_link(site_dir.join(crate::install::CURRENT)).ok()?;
    Some(format!("sha256:{}", t.to_str()?))
}

/// Write the status file atomically.
pub fn write_status(path: &Path, status: &Status) -> Result<()> {
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

/// Sync mode: one pass, or a pass every `interval` until SIGTERM / SIGINT.
///
/// The config is read again at every pass (a ConfigMap update takes effect without a restart).
/// Under `interval`, a config that no longer reads (a typo, a refused site name) does not end
/// the loop: the last good config is used, the error is logged and put in the status file
/// (`config_error`), and the next pass reads it again. Without a good config yet (the first
/// read), it is a usage error (exit 1).
pub async fn run(
    config_path: &Path,
    root: &Path,
    status_file: Option<PathBuf>,
    interval: Option<Duration>,
    timeouts: Timeouts,
) -> Result<ExitStatus> {
    let status_path = status_file.unwrap_or_else(|| root.join("status.json"));
    let mut last = Status {
        updated_at: String::new(),
        ok: true,
        config_error: None,
        sites: BTreeMap::new(),
    };
    let mut good: Option<SyncConfig> = None;
    loop {
        let (config, config_error) = match SyncConfig::load_for(config_path, root, &status_path) {
            Ok(c) => {
                good = Some(c.clone());
                (c, None)
            }
            Err(e) => match (&good, interval) {
                (Some(g), Some(_)) => {
                    tracing::error!(
                        config = %config_path.display(),
                        error = %chain(&e),
                        "sync config unreadable: keeping the last good one, reading it again next pass"
                    );
                    (g.clone(), Some(chain(&e)))
                }
                _ => return Err(e),
            },
        };
        let (mut status, mut code) = pass(&config, root, timeouts, &last).await;
        if let Some(err) = config_error {
            status.ok = false;
            status.config_error = Some(err);
            if code == ExitStatus::Ok {
                code = ExitStatus::Usage;
            }
        }
        write_status(&status_path, &status)?;
        tracing::info!(
            sites = status.sites.len(),
            failed = status.sites.values().filter(|s| !s.ok).count(),
            status_file = %status_path.display(),
            "sync pass done"
        );
        last = status;
        let Some(every) = interval else {
            return Ok(code);
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown() => {
                tracing::info!("stopping on signal");
                return Ok(ExitStatus::Ok);
            }
        }
    }
}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
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
        ] {
            std::fs::write(&p, bad).unwrap();
            assert!(SyncConfig::load(&p).is_err(), "{bad}");
        }
    }
}
