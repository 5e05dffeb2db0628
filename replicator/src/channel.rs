//! Channels (`staging`, `prod`, ...): named pointers to a bundle, kept on every target, and their
//! append-only history.
//!
//! A channel record names a **manifest digest** (what registries and Kubernetes address) and the
//! **bundle id** (config digest, content-only). A channel moves only by compare-and-swap
//! ([`crate::Target::swap_channel`]), comparing the manifest digest.

use bundle::Digest;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Longest channel name (the OCI tag limit).
pub const MAX_CHANNEL_LEN: usize = 128;

/// Tag prefix reserved for sitebundle's own records on registries.
pub const RESERVED_PREFIX: &str = "sitebundle-";

/// Where a channel points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    /// Manifest digest.
    pub manifest: Digest,
    /// Bundle id (config digest).
    pub id: Digest,
    /// Manifest size in bytes.
    pub size: u64,
}

impl ChannelRecord {
    /// "sha256:..." or "nothing", for messages.
    pub fn describe(r: Option<&ChannelRecord>) -> String {
        r.map_or_else(|| "nothing".to_string(), |r| r.manifest.to_string())
    }
}

/// What moved a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `sitebundle push --channel`.
    Push,
    /// `sitebundle promote`.
    Promote,
    /// `sitebundle rollback`.
    Rollback,
}

/// One entry of a channel's append-only history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// Position in the channel's history, from 1; assigned by the target on append.
    #[serde(default)]
    pub seq: u64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The channel.
    pub channel: String,
    /// What moved it.
    pub action: Action,
    /// Manifest digest before (none for a new channel).
    pub from: Option<Digest>,
    /// Manifest digest after.
    pub to: Digest,
    /// Bundle id after.
    pub to_id: Digest,
    /// Who or which pipeline ([`crate::env::actor`]).
    pub actor: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Check a channel name: a valid OCI tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`), not reserved.
pub fn validate_channel(name: &str) -> Result<(), Error> {
    let bad = |reason| Error::InvalidChannel {
        name: name.to_string(),
        reason,
    };
    let b = name.as_bytes();
    if b.is_empty() || b.len() > MAX_CHANNEL_LEN {
        return Err(bad("a channel name has 1 to 128 characters"));
    }
    if !(b[0].is_ascii_alphanumeric() || b[0] == b'_') {
        return Err(bad("a channel name starts with a letter, digit or _"));
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
    {
        return Err(bad("a channel name holds only letters, digits, . _ -"));
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(bad("names starting with sitebundle- are reserved"));
    }
    Ok(())
}

/// The current time as RFC 3339 UTC (`2026-11-22T01:30:00Z`), without a date crate.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// Format seconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        for ok in ["prod", "staging", "v1.2_x-y", "_a"] {
            assert!(validate_channel(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "a/b", "a b", "sitebundle-history-prod", "ü"] {
            assert!(validate_channel(bad).is_err(), "{bad}");
        }
        assert!(validate_channel(&"a".repeat(129)).is_err());
    }

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_311_000), "2026-11-22T01:30:00Z");
    }
}
