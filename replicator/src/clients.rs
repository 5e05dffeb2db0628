//! One HTTP client per set of settings for the whole process, when the binary asks for it.
//!
//! Building a reqwest client loads the system's root certificates (a stat and a PEM parse of
//! every file under `/etc/ssl/certs`, 5 to 6 ms here) and sets up a resolver and a connection
//! pool. One target per site per pass is cheap otherwise, so at 1,000 sites that load was most
//! of a sync pass (perf: 28 % of its CPU in PEM and base64 decoding, most of its system time in
//! the certificate paths' `statx`), and no site reused another's keep-alive connection to the
//! same origin.
//!
//! Sharing is off unless [`enable`] is called, because a pooled connection lives on the tokio
//! runtime that opened it: a library user (a test) with several runtimes alive at once could
//! pick up a connection whose runtime is being shut down. `sitebundle-init` runs one runtime
//! for the life of the process and turns sharing on. Clients are keyed by everything that
//! configures them (the extra CA bytes included), never by a credential: credentials are
//! headers on each request ([`crate::net::Http::send`]), so sharing a pool between targets
//! of one host shares no secret.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::error::Result;

static SHARING: AtomicBool = AtomicBool::new(false);
static CLIENTS: OnceLock<Cache> = OnceLock::new();

/// Share clients between targets from now on (for a process with one long-lived runtime).
pub fn enable() {
    SHARING.store(true, Ordering::SeqCst);
}

/// The client for `key` (a complete description of its settings, see [`key`]), built by
/// `build` the first time when sharing is on, and every time when it is off.
pub fn get(key: &[u8], build: impl FnOnce() -> Result<reqwest::Client>) -> Result<reqwest::Client> {
    if !SHARING.load(Ordering::SeqCst) {
        return build();
    }
    CLIENTS.get_or_init(Cache::default).get(key, build)
}

/// A key from labelled parts (so that `("a", "bc")` and `("ab", "c")` differ).
pub fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::new();
    for p in parts {
        k.extend_from_slice(&(p.len() as u64).to_le_bytes());
        k.extend_from_slice(p);
    }
    k
}

/// A key part telling "no extra CA" from any CA bytes.
pub fn ca_marker(pem: Option<&[u8]>) -> &'static [u8] {
    if pem.is_some() {
        b"extra-ca"
    } else {
        b"system-roots"
    }
}

/// Built clients by key.
#[derive(Default)]
struct Cache(Mutex<HashMap<Vec<u8>, reqwest::Client>>);

impl Cache {
    fn get(
        &self,
        key: &[u8],
        build: impl FnOnce() -> Result<reqwest::Client>,
    ) -> Result<reqwest::Client> {
        if let Some(c) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(key) {
            return Ok(c.clone());
        }
        // Built outside the lock: two first callers may both build, and one client is kept.
        let c = build()?;
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_vec())
            .or_insert(c)
            .clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_are_unambiguous_and_a_cache_builds_once_per_key() {
        assert_ne!(key(&[b"a", b"bc"]), key(&[b"ab", b"c"]));
        let cache = Cache::default();
        let mut built = 0;
        for k in [b"one", b"one", b"two", b"one"] {
            cache
                .get(&key(&[k]), || {
                    built += 1;
                    Ok(reqwest::Client::new())
                })
                .unwrap();
        }
        assert_eq!(built, 2, "one build per distinct key");
    }
}
