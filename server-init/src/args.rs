//! Flags of `sitebundle-init`. Every flag can also come from an environment variable, so a pod
//! spec can stay short (`env:` entries) and nothing secret ever needs to be on the command line:
//! credentials come from the provider chains (see the replicator's `env` module).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Comma-separated origin URLs, tried in order.
pub const SITEBUNDLE_ORIGINS: &str = "SITEBUNDLE_ORIGINS";
/// Bundle id or manifest digest to install.
pub const SITEBUNDLE_DIGEST: &str = "SITEBUNDLE_DIGEST";
/// Channel to resolve (once, on the first origin that answers).
pub const SITEBUNDLE_CHANNEL: &str = "SITEBUNDLE_CHANNEL";
/// Installation directory.
pub const SITEBUNDLE_DEST: &str = "SITEBUNDLE_DEST";
/// Per-origin timeout (the same variable `sitebundle pull` reads).
pub const SITEBUNDLE_TIMEOUT: &str = replicator::env::SITEBUNDLE_TIMEOUT;
/// Per-origin connect timeout.
pub const SITEBUNDLE_CONNECT_TIMEOUT: &str = "SITEBUNDLE_CONNECT_TIMEOUT";
/// `text` or `json`.
pub const SITEBUNDLE_LOG_FORMAT: &str = "SITEBUNDLE_LOG_FORMAT";
/// Sync mode: path of the sites config.
pub const SITEBUNDLE_SYNC: &str = "SITEBUNDLE_SYNC";
/// Sync mode: seconds between passes (absent: one pass).
pub const SITEBUNDLE_INTERVAL: &str = "SITEBUNDLE_INTERVAL";
/// Sync mode: where the status file is written.
pub const SITEBUNDLE_STATUS_FILE: &str = "SITEBUNDLE_STATUS_FILE";
/// Sync mode: address of the HTTP API (webhook, status, metrics, page).
pub const SITEBUNDLE_LISTEN: &str = "SITEBUNDLE_LISTEN";
/// Sync mode: file holding the webhook's bearer token.
pub const SITEBUNDLE_TOKEN_FILE: &str = "SITEBUNDLE_TOKEN_FILE";
/// Sync mode: the webhook's bearer token itself (or use `--token-file`).
pub const SITEBUNDLE_SYNC_TOKEN: &str = "SITEBUNDLE_SYNC_TOKEN";
/// Sync mode: comma-separated hosts origins may reach.
pub const SITEBUNDLE_ALLOWED_HOSTS: &str = "SITEBUNDLE_ALLOWED_HOSTS";
/// Longest wait for another installer's DEST lock.
pub const SITEBUNDLE_LOCK_TIMEOUT: &str = "SITEBUNDLE_LOCK_TIMEOUT";
/// Versions kept on disk for an instant local rollback.
pub const SITEBUNDLE_KEEP: &str = "SITEBUNDLE_KEEP";

/// Fetch a site bundle by digest from the first healthy origin, verify every byte, and install
/// it atomically under DEST (nginx serves DEST/current).
///
/// Exit codes: 0 installed or already installed; 1 usage or configuration error; 2 every origin
/// failed (down, slow, missing the bundle); 3 integrity (bytes did not match their digest on
/// every origin that answered, or the bundle breaks a format rule); 4 local error (DEST not
/// writable, disk full, I/O error, DEST/current not a symlink, lock not obtained in time).
/// On any failure DEST is as it was.
#[derive(Debug, Clone, Parser)]
#[command(name = "sitebundle-init", version, max_term_width = 100)]
pub struct Args {
    /// Origin to fetch from, tried in the order given: a `sitebundle --target` URL read-only,
    /// oci://host/repo (oci+http:// for plain HTTP), s3://bucket/prefix, gs://bucket/prefix,
    /// az://container/prefix, file:///dir, https://host/path. Never put credentials in a URL:
    /// they come from the environment.
    #[arg(long = "origin", visible_alias = "target", value_name = "URL", env = SITEBUNDLE_ORIGINS, value_delimiter = ',')]
    pub origins: Vec<String>,

    /// Bundle id or manifest digest (sha256:...) to install: either resolves on every origin kind.
    /// A pinned digest is never replaced by what a channel says.
    #[arg(long, env = SITEBUNDLE_DIGEST, conflicts_with = "channel")]
    pub digest: Option<String>,

    /// Channel to install (e.g. prod), resolved once, on the first origin that answers.
    #[arg(long, env = SITEBUNDLE_CHANNEL)]
    pub channel: Option<String>,

    /// Installation directory: DEST/ID/ trees (ID: bundle id) and the DEST/current symlink.
    #[arg(long, env = SITEBUNDLE_DEST, default_value = "/srv/site")]
    pub dest: PathBuf,

    /// Time allowed for each origin to deliver the whole bundle (e.g. 60s, 2m, 500ms).
    #[arg(long, env = SITEBUNDLE_TIMEOUT, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Time allowed to connect to an origin (and for each read to make progress).
    #[arg(long, env = SITEBUNDLE_CONNECT_TIMEOUT, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Longest wait for another installer holding DEST's lock (it is logged, with who holds
    /// it); then exit 4.
    #[arg(long, env = SITEBUNDLE_LOCK_TIMEOUT, default_value = "10m", value_parser = parse_duration)]
    pub lock_timeout: Duration,

    /// Versions kept under DEST after a successful run, `current` included (1 to 32): rolling
    /// back to any of them is a symlink swap, without network. Sync mode reads each site's `keep`
    /// from its config (default 2).
    #[arg(long, env = SITEBUNDLE_KEEP, default_value_t = server_init_keep_default(), value_parser = parse_keep)]
    pub keep: usize,

    /// Log format: one line per step on stderr.
    #[arg(long, env = SITEBUNDLE_LOG_FORMAT, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Sync mode: keep DEST/SITE/current of every site listed in this TOML file at the digest
    /// its channel (or pinned digest) names.
    #[arg(long, value_name = "CONFIG", env = SITEBUNDLE_SYNC, conflicts_with_all = ["digest", "channel"])]
    pub sync: Option<PathBuf>,

    /// Sync mode: run a pass every INTERVAL (e.g. 60s, 5m); without it, run one pass and exit.
    #[arg(long, env = SITEBUNDLE_INTERVAL, value_parser = parse_duration, requires = "sync")]
    pub interval: Option<Duration>,

    /// Sync mode: status file (JSON, written atomically after each pass). Default DEST/status.json.
    #[arg(long, env = SITEBUNDLE_STATUS_FILE, requires = "sync")]
    pub status_file: Option<PathBuf>,

    /// Sync mode: serve the HTTP API on ADDR (e.g. 0.0.0.0:8080): POST /sync and
    /// /sync/SITE (webhook, needs the token), GET /status, /metrics, /healthz, /readyz and / (the
    /// status page). Runs as a service (until SIGTERM) even without --interval. Needs an
    /// allow-list (--allowed-hosts).
    #[arg(long, value_name = "ADDR", env = SITEBUNDLE_LISTEN, requires = "sync")]
    pub listen: Option<std::net::SocketAddr>,

    /// Sync mode: file holding the webhook's bearer token (read at each request). Or set
    /// SITEBUNDLE_SYNC_TOKEN. Without either the webhook is off.
    #[arg(long, value_name = "PATH", env = SITEBUNDLE_TOKEN_FILE, requires = "sync")]
    pub token_file: Option<PathBuf>,

    /// Sync mode: hosts origins, and every redirect they send, may reach: host, host:port,
    /// *.domain, file:///dir/ for directory origins, or * for any. Merged with the config's
    /// allowed_hosts. Required with --listen.
    #[arg(long, value_name = "HOSTS", env = SITEBUNDLE_ALLOWED_HOSTS, value_delimiter = ',', requires = "sync")]
    pub allowed_hosts: Vec<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn server_init_keep_default() -> usize {
    crate::install::DEFAULT_KEEP
}

/// `--keep`: 1 to [`crate::install::MAX_KEEP`].
pub fn parse_keep(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=crate::install::MAX_KEEP).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?}: give a number of versions from 1 (current only) to {}",
            crate::install::MAX_KEEP
        )),
    }
}

/// Parse `90`, `90s`, `500ms`, `5m`, `1h` into a duration ([`replicator::env::parse_duration`]).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    replicator::env::parse_duration(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 years").is_err());
    }

    #[test]
    fn flags_parse() {
        let a = Args::try_parse_from([
            "sitebundle-init",
            "--origin",
            "file:///a",
            "--origin",
            "https://b/c",
            "--digest",
            "sha256:00",
            "--dest",
            "/tmp/x",
        ])
        .unwrap();
        assert_eq!(a.origins.len(), 2);
        assert!(Args::try_parse_from(["x", "--digest", "d", "--channel", "c"]).is_err());
        Args::command_debug();
    }

    impl Args {
        fn command_debug() {
            use clap::CommandFactory;
            Args::command().debug_assert();
        }
    }
}
