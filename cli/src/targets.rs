//! Targets on the command line: `--target` takes URLs or names from `sitebundle.toml`, and commands
//! that talk to targets run on a tokio runtime built here.
//!
//! ```toml
//! # sitebundle.toml (or the file named by SITEBUNDLE_CONFIG)
//! [targets]
//! registry = "oci://ghcr.io/me/site"
//! s3 = "s3://my-bucket/site"
//! # website targets (the site's files, served to the public): a +site URL, optionally with the
//! # public URL it is served at (for `status --verify` and `audit`)
//! www = { url = "s3+site://www-example-com", public_url = "https://www.example.com/" }
//! [defaults]
//! to = ["registry", "s3", "www"]
//! [site]                                # how website targets are published
//! max_delete = "50%"                    # refuse a publish deleting more (a number, N%, all)
//! keep_removed = "no"                   # no, next, or a duration (24h) before deleting
//! [[site.headers]]
//! path = "**/*.html"
//! cache_control = "no-cache"
//! ```
//! Credentials never go in this file or on the command line: they come from the environment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use replicator::site::headers::{HeaderRule, HeaderSpec, Rules};
use replicator::site::{SiteTarget, SiteUrl};
use replicator::{Target, TargetUrl};
use serde::Deserialize;

/// The parsed `sitebundle.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Named targets.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetEntry>,
    /// Defaults.
    #[serde(default)]
    pub defaults: Defaults,
    /// How website targets are published.
    #[serde(default)]
    pub site: SiteConfig,
}

/// A named target: its URL, or a table with the URL and, for website targets, the public URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TargetEntry {
    /// `name = "url"`.
    Url(String),
    /// `name = { url = "...", public_url = "..." }`.
    Table(TargetTable),
}

/// The table form of a target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetTable {
    /// The target URL.
    pub url: String,
    /// Where the public fetches a website target (`https://www.example.com/`).
    #[serde(default)]
    pub public_url: Option<String>,
}

impl TargetEntry {
    fn url(&self) -> &str {
        match self {
            TargetEntry::Url(u) => u,
            TargetEntry::Table(t) => &t.url,
        }
    }
    fn public_url(&self) -> Option<&str> {
        match self {
            TargetEntry::Url(_) => None,
            TargetEntry::Table(t) => t.public_url.as_deref(),
        }
    }
}

/// `[defaults]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Targets used when `--target` is not given (the key keeps its name: `to = [...]`).
    #[serde(default)]
    pub to: Vec<String>,
}

/// `[site]`: publishing to website targets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Header rules, in order.
    #[serde(default)]
    pub headers: Vec<HeaderRule>,
    /// The delete guard (`--max-delete` wins).
    #[serde(default)]
    pub max_delete: Option<String>,
    /// When removed objects go (`--keep-removed` wins).
    #[serde(default)]
    pub keep_removed: Option<String>,
    /// Parallel object requests per website target (`--jobs` wins).
    #[serde(default)]
    pub jobs: Option<usize>,
    /// Most CDN invalidation paths before wildcards.
    #[serde(default)]
    pub invalidation_budget: Option<usize>,
}

impl SiteConfig {
    /// The header rules, compiled.
    pub fn rules(&self) -> Result<Rules> {
        Rules::new(HeaderSpec::new(self.headers.clone()))
            .with_context(|| format!("[[site.headers]] in {}", config_path().display()))
    }
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

/// A target from the command line or the config.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// A place bundles live.
    Bundle(TargetUrl),
    /// A website target.
    Site {
        /// Its URL.
        url: SiteUrl,
        /// Where the public fetches it.
        public_url: Option<url::Url>,
    },
}

fn parse_public(raw: &str, name: &str) -> Result<url::Url> {
    let u = url::Url::parse(raw).with_context(|| format!("public_url of {name}: {raw:?}"))?;
    if !matches!(u.scheme(), "http" | "https") || !u.username().is_empty() || u.password().is_some()
    {
        bail!("public_url of {name} must be an http(s) URL without credentials");
    }
    Ok(u)
}

/// Resolve `--target` values (or the configured defaults) against `cfg`.
pub fn resolve_with(cfg: &Config, given: &[String]) -> Result<Vec<Resolved>> {
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
            let (raw, public) = if n.contains("://") {
                (n.clone(), None)
            } else {
                let e = cfg.targets.get(n).with_context(|| {
                    format!(
                        "unknown target name {n:?}: not a URL and not under [targets] in {}",
                        config_path().display()
                    )
                })?;
                (e.url().to_string(), e.public_url().map(str::to_string))
            };
            if replicator::site::url::is_site_url(&raw) {
                let public_url = public.map(|p| parse_public(&p, n)).transpose()?;
                Ok(Resolved::Site {
                    url: raw.parse()?,
                    public_url,
                })
            } else {
                if public.is_some() {
                    bail!("{n}: public_url is for website targets (+site URLs) only");
                }
                Ok(Resolved::Bundle(raw.parse::<TargetUrl>()?))
            }
        })
        .collect()
}

/// Turn `--to` values (or the configured defaults) into bundle target URLs; website targets are
/// refused here (the command does not publish sites).
pub fn resolve_urls(given: &[String]) -> Result<Vec<TargetUrl>> {
    let cfg = load_config()?;
    resolve_with(&cfg, given)?
        .into_iter()
        .map(|r| match r {
            Resolved::Bundle(u) => Ok(u),
            Resolved::Site { url, .. } => bail!(
                "{url} is a website target: this command works on bundle targets only \
                 (website targets are for publish, push, promote, rollback, status and audit)"
            ),
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

/// Bundle targets and website targets, opened.
pub type Opened = (Vec<Arc<dyn Target>>, Vec<SiteTarget>);

/// Open bundle targets and website targets named by `--to` (or the defaults).
pub fn open_all(cfg: &Config, given: &[String]) -> Result<Opened> {
    let mut bundles = Vec::new();
    let mut sites = Vec::new();
    for r in resolve_with(cfg, given)? {
        match r {
            Resolved::Bundle(u) => bundles.push(replicator::open(&u)?),
            Resolved::Site { url, public_url } => {
                sites.push(replicator::site::open(&url, public_url)?)
            }
        }
    }
    Ok((bundles, sites))
}

/// A runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}
