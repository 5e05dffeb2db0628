//! Every environment variable sitebundle reads, in one place.
//!
//! Credentials only ever come from here (or from the provider chains the cloud SDKs read), never
//! from the command line, and they are never logged. Variables of the cloud providers are read by
//! `object_store`'s builders (`from_env`); they are listed here for reference.

/// The local store (read by `bundle::Store::default_root` and the CLI's `--store`).
pub const SITEBUNDLE_HOME: &str = "SITEBUNDLE_HOME";
/// Name recorded as "who" in channel history. Falls back to CI variables (see [`actor`]).
pub const SITEBUNDLE_ACTOR: &str = "SITEBUNDLE_ACTOR";
/// Free-text message recorded in channel history (the CLI's `--message` wins).
pub const SITEBUNDLE_MESSAGE: &str = "SITEBUNDLE_MESSAGE";
/// Path of the `sitebundle.toml` with named targets (default: `./sitebundle.toml`).
pub const SITEBUNDLE_CONFIG: &str = "SITEBUNDLE_CONFIG";
/// Registry user for Basic auth (with [`SITEBUNDLE_REGISTRY_PASSWORD`]); wins over docker config.
pub const SITEBUNDLE_REGISTRY_USER: &str = "SITEBUNDLE_REGISTRY_USER";
/// Registry password or token for Basic auth.
pub const SITEBUNDLE_REGISTRY_PASSWORD: &str = "SITEBUNDLE_REGISTRY_PASSWORD";
/// A bearer token for registries that take one directly (GHCR, GAR access tokens).
pub const SITEBUNDLE_REGISTRY_TOKEN: &str = "SITEBUNDLE_REGISTRY_TOKEN";
/// PEM file of extra CA certificates trusted for registries and HTTP origins.
pub const SITEBUNDLE_REGISTRY_CA: &str = "SITEBUNDLE_REGISTRY_CA";
/// Comma-separated `host[:port]` list of registries spoken to over plain HTTP (as `oci+http://`).
pub const SITEBUNDLE_REGISTRY_PLAIN_HTTP: &str = "SITEBUNDLE_REGISTRY_PLAIN_HTTP";
/// Parallel blob uploads per target (default [`crate::push::DEFAULT_JOBS`]).
pub const SITEBUNDLE_JOBS: &str = "SITEBUNDLE_JOBS";
/// Retries per operation on 5xx / timeouts / cut connections (default [`crate::open::DEFAULT_RETRIES`]).
pub const SITEBUNDLE_RETRIES: &str = "SITEBUNDLE_RETRIES";
/// Hosts (comma-separated `host[:port]`) trusted to receive registry credentials for a token
/// exchange when a registry's token realm is on another host (Docker Hub's `auth.docker.io`).
/// Only over HTTPS. Unset: credentials go to a realm only on the registry's own origin; other
/// realms are asked for an anonymous token.
pub const SITEBUNDLE_REGISTRY_TOKEN_HOSTS: &str = "SITEBUNDLE_REGISTRY_TOKEN_HOSTS";
/// Time allowed for one target to deliver a whole `sitebundle pull` (e.g. `10m`, default 30m);
/// `sitebundle-init` reads it as its per-origin `--timeout`.
pub const SITEBUNDLE_TIMEOUT: &str = "SITEBUNDLE_TIMEOUT";
/// Slowest transfer accepted from a target, in bytes per second averaged over each
/// [`SITEBUNDLE_RATE_WINDOW`] (default [`crate::net::DEFAULT_MIN_RATE`]; 0 turns it off).
pub const SITEBUNDLE_MIN_RATE: &str = "SITEBUNDLE_MIN_RATE";
/// Window over which [`SITEBUNDLE_MIN_RATE`] is measured (default 30s).
pub const SITEBUNDLE_RATE_WINDOW: &str = "SITEBUNDLE_RATE_WINDOW";
/// Docker-style auth file (`auths` entries with base64 `user:pass`), read before `~/.docker/config.json`.
pub const REGISTRY_AUTH_FILE: &str = "REGISTRY_AUTH_FILE";
/// Directory holding `config.json` (default `~/.docker`).
pub const DOCKER_CONFIG: &str = "DOCKER_CONFIG";

/// Settings the test suites read (`scripts/test` exports them from the services' env file):
/// endpoints, buckets and known test credentials of the loopback services, plus the corpus.
pub const TEST_VARS: &[&str] = &[
    "SITEBUNDLE_TEST_CORPUS",
    "SITEBUNDLE_TEST_REGISTRY",
    "SITEBUNDLE_TEST_REGISTRY_AUTH",
    "SITEBUNDLE_TEST_REGISTRY_AUTH_USER",
    "SITEBUNDLE_TEST_REGISTRY_AUTH_PASSWORD",
    "SITEBUNDLE_TEST_REGISTRY_CA",
    "SITEBUNDLE_TEST_S3_ENDPOINT",
    "SITEBUNDLE_TEST_S3_BUCKET",
    "SITEBUNDLE_TEST_S3_REGION",
    "SITEBUNDLE_TEST_S3_ACCESS_KEY_ID",
    "SITEBUNDLE_TEST_S3_SECRET_ACCESS_KEY",
    "SITEBUNDLE_TEST_AWS_CLI",
    "SITEBUNDLE_TEST_AZURE_ENDPOINT",
    "SITEBUNDLE_TEST_AZURE_ACCOUNT",
    "SITEBUNDLE_TEST_AZURE_KEY",
    "SITEBUNDLE_TEST_AZURE_CONTAINER",
    "SITEBUNDLE_TEST_GCS_ENDPOINT",
    "SITEBUNDLE_TEST_GCS_BUCKET",
    "SITEBUNDLE_TEST_GCS_SERVICE_ACCOUNT",
    "SITEBUNDLE_TEST_HTTP_ORIGIN",
    "SITEBUNDLE_TEST_HTTP_ROOT",
];

/// CI variables consulted, in order, for the history's "who" when [`SITEBUNDLE_ACTOR`] is unset.
pub const CI_ACTOR_VARS: &[(&str, &str)] = &[
    ("CI_PIPELINE_ID", "gitlab pipeline"),
    ("GITHUB_RUN_ID", "github run"),
    ("BITBUCKET_BUILD_NUMBER", "bitbucket build"),
    ("BUILD_BUILDID", "azure pipelines build"),
    ("BUILD_ID", "build"),
];

/// Variables read by the providers' builders (not by sitebundle itself), for reference:
/// S3 `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
/// `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (IRSA),
/// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (ECS), IMDS otherwise (`AWS_EC2_METADATA_DISABLED`);
/// GCS `GOOGLE_SERVICE_ACCOUNT` / `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server;
/// Azure `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_ENDPOINT`,
/// `AZURE_ALLOW_HTTP`, `AZURE_FEDERATED_TOKEN_FILE` (workload identity), managed identity otherwise.
pub const PROVIDER_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_ENDPOINT",
    "AWS_ALLOW_HTTP",
    "GOOGLE_SERVICE_ACCOUNT",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ENDPOINT",
    "AZURE_ALLOW_HTTP",
];

/// A variable's value, if set and not empty.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Who is moving a channel: `SITEBUNDLE_ACTOR`, else the first CI variable set, else `user@host`.
pub fn actor() -> String {
    if let Some(a) = var(SITEBUNDLE_ACTOR) {
        return a;
    }
    for (v, label) in CI_ACTOR_VARS {
        if let Some(id) = var(v) {
            return format!("{label} {id}");
        }
    }
    let user = var("USER").unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

/// Parse `90`, `90s`, `500ms`, `5m`, `1h` into a duration (more than zero).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with an optional unit (ms, s, m, h)"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if d.is_zero() {
        return Err(format!("{s:?}: must be more than zero"));
    }
    Ok(d)
}
