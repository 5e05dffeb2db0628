//! Registry credentials, resolved from the environment only (never argv), in this order:
//!
//! 1. `SITEBUNDLE_REGISTRY_USER` + `SITEBUNDLE_REGISTRY_PASSWORD` (Basic), or
//!    `SITEBUNDLE_REGISTRY_TOKEN` (Bearer);
//! 2. a docker-style auth file: `REGISTRY_AUTH_FILE`, then `$XDG_RUNTIME_DIR/containers/auth.json`,
//!    then `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`): a `credHelpers` entry for
//!    the registry, else an `auths` entry (base64 `user:pass`), else `credsStore`;
//!    helpers run as `docker-credential-<name> get` with the registry on stdin;
//! 3. anonymous.
//!
//! oci-client only takes Basic or Bearer (oras-project/rust-oci-client#17), so this module turns
//! every source into one of those. Secrets are never formatted into errors or logs: the
//! [`RegistryAuth`] `Debug` impl hides them, and our errors name only files and registries.

use std::path::PathBuf;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;

use crate::env::{self, var};
use crate::error::{Error, Result};

/// Where a credential came from (for `--verbose` output; never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSource {
    /// No credentials found.
    Anonymous,
    /// `SITEBUNDLE_REGISTRY_USER`/`PASSWORD` or `SITEBUNDLE_REGISTRY_TOKEN`.
    Env,
    /// An `auths` entry of this file.
    File(PathBuf),
    /// A docker credential helper.
    Helper(String),
}

/// Resolve the credentials for `registry` (`host[:port]`).
pub fn resolve(registry: &str) -> Result<(RegistryAuth, AuthSource)> {
    if let (Some(u), Some(p)) = (
        var(env::SITEBUNDLE_REGISTRY_USER),
        var(env::SITEBUNDLE_REGISTRY_PASSWORD),
    ) {
        return Ok((RegistryAuth::Basic(u, p), AuthSource::Env));
    }
    if let Some(t) = var(env::SITEBUNDLE_REGISTRY_TOKEN) {
        return Ok((RegistryAuth::Bearer(t), AuthSource::Env));
    }
    for file in auth_files() {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        let cfg: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Config {
            what: file.display().to_string(),
            reason: format!("not valid JSON ({})", e.classify_name()),
        })?;
        if let Some(helper) = cfg
            .get("credHelpers")
            .and_then(|h| h.get(registry))
            .and_then(|h| h.as_str())
        {
            return helper_get(helper, registry).map(|a| (a, AuthSource::Helper(helper.into())));
        }
        if let Some(entry) = find_auth_entry(&cfg, registry) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(entry.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| Error::Config {
                    what: file.display().to_string(),
                    reason: format!("auths entry for {registry} is not base64 of user:password"),
                })?;
            let (u, p) = decoded.split_once(':').ok_or_else(|| Error::Config {
                what: file.display().to_string(),
                reason: format!("auths entry for {registry} is not base64 of user:password"),
            })?;
            return Ok((
                RegistryAuth::Basic(u.to_string(), p.to_string()),
                AuthSource::File(file),
            ));
        }
        if let Some(store) = cfg.get("credsStore").and_then(|s| s.as_str()) {
            if let Ok(a) = helper_get(store, registry) {
                return Ok((a, AuthSource::Helper(store.into())));
            }
        }
    }
    Ok((RegistryAuth::Anonymous, AuthSource::Anonymous))
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}
impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// The auth files consulted, in order.
fn auth_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(f) = var(env::REGISTRY_AUTH_FILE) {
        v.push(PathBuf::from(f));
    }
    if let Some(x) = var("XDG_RUNTIME_DIR") {
        v.push(PathBuf::from(x).join("containers/auth.json"));
    }
    if let Some(d) = var(env::DOCKER_CONFIG) {
        v.push(PathBuf::from(d).join("config.json"));
    } else if let Some(h) = var("HOME") {
        v.push(PathBuf::from(h).join(".docker/config.json"));
    }
    v
}

/// The base64 `auth` of the `auths` entry matching `registry` (keys may carry a scheme or path).
fn find_auth_entry(cfg: &serde_json::Value, registry: &str) -> Option<String> {
    let auths = cfg.get("auths")?.as_object()?;
    auths.iter().find_map(|(k, v)| {
        let host = k
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        let same = host == registry
            || (registry == "index.docker.io" && host == "docker.io")
            || (registry == "docker.io" && host == "index.docker.io");
        same.then(|| v.get("auth")?.as_str().map(String::from))
            .flatten()
    })
}

/// Most bytes read from a credential helper's answer.
const HELPER_MAX: u64 = 1024 * 1024;

/// Run `docker-credential-<helper> get` for `registry`.
fn helper_get(helper: &str, registry: &str) -> Result<RegistryAuth> {
    use std::io::Write;
    let prog = format!("docker-credential-{helper}");
    let fail = |reason: String| Error::Config {
        what: format!("credential helper {prog}"),
        reason,
    };
    let mut child = std::process::Command::new(&prog)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("could not run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(registry.as_bytes())
            .map_err(|e| fail(format!("could not write to it: {e}")))?;
    }
    // Its answer is a small JSON object: read at most HELPER_MAX bytes of it.
    let mut stdout = Vec::new();
    if let Some(o) = child.stdout.take() {
        use std::io::Read;
        o.take(HELPER_MAX + 1)
            .read_to_end(&mut stdout)
            .map_err(|e| fail(format!("could not read its answer: {e}")))?;
    }
    if stdout.len() as u64 > HELPER_MAX {
        let _ = child.kill();
        let _ = child.wait();
        return Err(fail(format!("answered more than {HELPER_MAX} bytes")));
    }
    let status = child.wait().map_err(|e| fail(format!("failed: {e}")))?;
    if !status.success() {
        return Err(fail(format!("no credentials for {registry}")));
    }
    let v: serde_json::Value = serde_json::from_slice(&stdout)
        .map_err(|_| fail("answered something that is not JSON".into()))?;
    let user = v.get("Username").and_then(|s| s.as_str()).unwrap_or("");
    let secret = v.get("Secret").and_then(|s| s.as_str()).unwrap_or("");
    if secret.is_empty() {
        return Err(fail(format!("no credentials for {registry}")));
    }
    // Docker's convention: user "<token>" means the secret is an identity token.
    if user == "<token>" {
        Ok(RegistryAuth::Bearer(secret.to_string()))
    } else {
        Ok(RegistryAuth::Basic(user.to_string(), secret.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_auths_entries_by_host() {
        let cfg = serde_json::json!({"auths": {
            "https://reg.example:5000/v1/": {"auth": "dTpw"},
            "other.example": {"auth": "eDp5"}
        }});
        assert_eq!(
            find_auth_entry(&cfg, "reg.example:5000").as_deref(),
            Some("dTpw")
        );
        assert_eq!(
            find_auth_entry(&cfg, "other.example").as_deref(),
            Some("eDp5")
        );
        assert_eq!(find_auth_entry(&cfg, "nope.example"), None);
    }
}
