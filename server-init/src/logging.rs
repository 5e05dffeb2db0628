//! Logs: one line per step on stderr, as text or JSON, through `tracing`.
//!
//! Never a credential: URLs are logged through [`redact`] (userinfo, query and fragment removed:
//! a presigned URL's signature lives in its query), and credentials are never read from flags.

use crate::args::LogFormat;

/// Install the global subscriber. `RUST_LOG` refines the level (default `info`).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// A URL fit for a log: userinfo, query and fragment removed. Works on strings that do not parse.
pub fn redact(raw: &str) -> String {
    let userless = replicator::url::redact(raw);
    let cut = userless.find(['?', '#']).unwrap_or(userless.len());
    let mut s = userless[..cut].to_string();
    if cut < userless.len() {
        s.push_str("?***");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts() {
        assert_eq!(
            redact("https://user:pw@host/p?X-Amz-Signature=abc"),
            "https://***@host/p?***"
        );
        assert_eq!(redact("s3://bucket/prefix"), "s3://bucket/prefix");
        assert_eq!(redact("not a url"), "not a url");
    }
}
