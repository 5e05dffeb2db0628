//! Opening a target from its URL, with every client configured from the environment.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{BackoffConfig, RetryConfig};

use crate::env::{self, var};
use crate::error::{Error, Result};
use crate::http::HttpTarget;
use crate::oci::OciTarget;
use crate::store_target::{StoreKind, StoreTarget};
use crate::target::Target;
use crate::url::TargetUrl;

/// Default retries of one request on 5xx, timeouts and cut connections.
pub const DEFAULT_RETRIES: usize = 4;

/// The retry policy given to object_store clients (`SITEBUNDLE_RETRIES` overrides the count).
pub fn retry_config() -> RetryConfig {
    let max_retries = var(env::SITEBUNDLE_RETRIES)
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_RETRIES);
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries,
        retry_timeout: Duration::from_secs(60),
    }
}

/// Open the target a URL names. Credentials and endpoints come from the environment (see
/// [`crate::env`]); nothing here logs or returns a secret. Cloud clients are built by
/// [`crate::net::SafeConnector`], so a signed request never follows a redirect to another host.
pub fn open(url: &TargetUrl) -> Result<Arc<dyn Target>> {
    let name = url.to_string();
    let build_err = |e: object_store::Error| Error::Backend {
        target: name.clone(),
        op: "configure",
        object: String::new(),
        retryable: false,
        source: Box::new(e),
    };
    Ok(match url {
        TargetUrl::Oci {
            registry,
            repository,
            plain_http,
        } => Arc::new(OciTarget::new(registry, repository, *plain_http)?),
        TargetUrl::S3 { bucket, prefix } => cloud(
            &name,
            AmazonS3Builder::from_env()
                .with_http_connector(crate::net::SafeConnector)
                .with_bucket_name(bucket)
                .with_retry(retry_config())
                .build()
                .map_err(build_err)?,
            prefix,
        ),
        TargetUrl::Gcs { bucket, prefix } => cloud(
            &name,
            GoogleCloudStorageBuilder::from_env()
                .with_http_connector(crate::net::SafeConnector)
                .with_bucket_name(bucket)
                .with_retry(retry_config())
                .build()
                .map_err(build_err)?,
            prefix,
        ),
        TargetUrl::Azure { container, prefix } => cloud(
            &name,
            MicrosoftAzureBuilder::from_env()
                .with_http_connector(crate::net::SafeConnector)
                .with_container_name(container)
                .with_retry(retry_config())
                .build()
                .map_err(build_err)?,
            prefix,
        ),
        TargetUrl::Dir { path } => Arc::new(StoreTarget::dir(path)?),
        TargetUrl::Http { base } => Arc::new(HttpTarget::new(base.clone())?),
    })
}

/// A cloud bucket target over a configured object_store client.
fn cloud(name: &str, store: impl object_store::ObjectStore, prefix: &str) -> Arc<dyn Target> {
    Arc::new(StoreTarget::new(
        name,
        Arc::new(store),
        prefix,
        StoreKind::Cloud,
    ))
}
