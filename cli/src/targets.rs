//! Targets on the command line: `--target` takes URLs or names from `sitebundle.toml`, and commands
//! that talk to targets run on a tokio runtime built here.
//!
//! ```toml
//! # sitebundle.toml (or the file named by SITEBUNDLE_CONFIG)
//! [targets]
//! registry = "oci://ghcr.io/me/site"
//! s3 = "s3://my-bucket/site"
//! [defaults]
//! to = ["registry", "s3"]
//! ```
//! Credentials never go in this file or on the command line: they come from the environment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use replicator::{Target, TargetUrl};
use serde::Deserialize;

/// The parsed `sitebundle.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Named targets.
    #[serde(default)]
    pub targets: BTreeMap<String, String>,
    /// Defaults.
    #[serde(default)]
    pub defaults: Defaults,
}

/// `[defaults]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Targets used when `--target` is not given (the key keeps its name: `to = [...]`).
    #[serde(default)]
    pub to: Vec<String>,
}

/// Where the config file is: `SITEBUNDLE_CONFIG`, else `./sitebundle.toml`.
pub fn config_path() -> PathBuf {
    replicator::env::var(replicator::env::SITEBUNDLE_CONFIG)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("sitebundle.toml"))
}

/// Read the config file; a missing default file is an empty config.
pub fn load_config() -> Result<Config> {
    let p = config_path();
    let explicit = replicator::env::var(replicator::env::SITEBUNDLE_CONFIG).is_some();
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(Config::default())
        }
        Err(e) => return Err(e).with_context(|| format!("read {}", p.display())),
    };
    toml::from_str(&text).with_context(|| format!("parse {}", p.display()))
}

/// Turn `--target` values (or the configured defaults) into URLs.
pub fn resolve_urls(given: &[String]) -> Result<Vec<TargetUrl>> {
    let cfg = load_config()?;
    let names: Vec<String> = if given.is_empty() {
        cfg.defaults.to.clone()
    } else {
        given.to_vec()
    };
    if names.is_empty() {
        bail!(
            "no target given: pass --target URL|NAME, or list default targets under [defaults] to = [...] in {}",
            config_path().display()
        );
    }
    names
        .iter()
        .map(|n| {
            let raw = if n.contains("://") {
                n.clone()
            } else {
                cfg.targets.get(n).cloned().with_context(|| {
                    format!(
                        "unknown target name {n:?}: not a URL and not under [targets] in {}",
                        config_path().display()
                    )
                })?
            };
            Ok(raw.parse::<TargetUrl>()?)
        })
        .collect()
}

/// Open the targets named by `--target` (or the defaults).
pub fn open_targets(given: &[String]) -> Result<Vec<Arc<dyn Target>>> {
    resolve_urls(given)?
        .iter()
        .map(|u| replicator::open(u).map_err(anyhow::Error::from))
        .collect()
}

/// A runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}
